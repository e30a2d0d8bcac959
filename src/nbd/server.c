/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the NBD server: listening sockets (unix, inet), the accept
 * thread, one thread per connection, and nbd-server-start/stop.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "crypto/tls-creds.h"
#include "nbd/nbd-int.h"
#include "util/cleanup.h"
#include "util/keyval.h"
#include "util/log.h"

#define MAX_LISTENERS 8

static pthread_mutex_t server_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t server_cond = PTHREAD_COND_INITIALIZER;
static struct {
    bool running;
    bool stopping;
    bool accept_held;         /* startup gate, see nbd_server_hold_accept */
    int listen_fds[MAX_LISTENERS];
    int nlisten;
    char *unix_path;          /* removed on stop */
    int wake[2];              /* pipe that interrupts the accept poll */
    pthread_t accept_thread;
    uint32_t max_connections; /* 0 = unlimited */
    uint32_t handshake_max_seconds;   /* 0 = no deadline */
    StrataObject *tls_creds;  /* a reference while running with TLS */
    char *tls_authz;
    int nconns;
    NbdConn *conns;
} srv = { .wake = { -1, -1 } };

bool nbd_server_running(void)
{
    LOCK_GUARD(&server_lock);
    return srv.running;
}

/* ---- connections ---- */

static void *conn_thread(void *opaque)
{
    NbdConn *conn = opaque;

    nbd_conn_serve(conn);

    pthread_mutex_lock(&server_lock);
    for (NbdConn **p = &srv.conns; *p; p = &(*p)->srv_next) {
        if (*p == conn) {
            *p = conn->srv_next;
            break;
        }
    }
    srv.nconns--;
    close(conn->fd);
    pthread_cond_broadcast(&server_cond);
    pthread_mutex_unlock(&server_lock);

    nbd_conn_destroy(conn);
    free(conn);
    return NULL;
}

static void start_connection(int fd)
{
    NbdConn *conn = malloc(sizeof(*conn));
    pthread_attr_t attr;

    if (!conn) {
        close(fd);
        return;
    }
    nbd_conn_init(conn, fd);
    pthread_mutex_lock(&server_lock);
    conn->handshake_max_seconds = srv.handshake_max_seconds;
    if (srv.tls_creds) {
        conn->tls_creds = object_ref(srv.tls_creds);
        /* Borrowed: nbd_server_stop waits for every connection before
         * it frees the server's copy. */
        conn->tls_authz = srv.tls_authz;
    }
    conn->srv_next = srv.conns;
    srv.conns = conn;
    srv.nconns++;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int ret = pthread_create(&conn->thread, &attr, conn_thread, conn);
    pthread_attr_destroy(&attr);
    if (ret != 0) {
        srv.conns = conn->srv_next;
        srv.nconns--;
        pthread_mutex_unlock(&server_lock);
        log_warn("nbd: cannot start a connection thread: %s", strerror(ret));
        close(fd);
        nbd_conn_destroy(conn);
        free(conn);
        return;
    }
    pthread_mutex_unlock(&server_lock);
}

static void *accept_main(void *opaque)
{
    struct pollfd pfd[MAX_LISTENERS + 1];

    for (;;) {
        pthread_mutex_lock(&server_lock);
        /* At max-connections, stop accepting until one leaves: new
         * clients wait in the listen backlog, as with qsd. */
        while (!srv.stopping && (srv.accept_held ||
               (srv.max_connections &&
                srv.nconns >= (int)srv.max_connections))) {
            pthread_cond_wait(&server_cond, &server_lock);
        }
        bool stopping = srv.stopping;
        int n = srv.nlisten;
        for (int i = 0; i < n; i++) {
            pfd[i] = (struct pollfd){ .fd = srv.listen_fds[i], .events = POLLIN };
        }
        pfd[n] = (struct pollfd){ .fd = srv.wake[0], .events = POLLIN };
        pthread_mutex_unlock(&server_lock);
        if (stopping) {
            return NULL;
        }

        if (poll(pfd, n + 1, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            log_error("nbd: poll on the listening sockets failed: %s",
                      strerror(errno));
            return NULL;
        }
        if (pfd[n].revents) {
            continue;   /* woken up: re-check stopping */
        }
        for (int i = 0; i < n; i++) {
            if (!(pfd[i].revents & POLLIN)) {
                continue;
            }
            struct sockaddr_storage ss;
            socklen_t sslen = sizeof(ss);
            int fd = accept4(pfd[i].fd, (struct sockaddr *)&ss, &sslen,
                             SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno != EAGAIN && errno != EINTR &&
                    errno != ECONNABORTED) {
                    log_warn("nbd: accept failed: %s", strerror(errno));
                }
                continue;
            }
            if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            }
            start_connection(fd);
        }
    }
}

/* ---- listeners ---- */

static void close_listeners(void)
{
    for (int i = 0; i < srv.nlisten; i++) {
        close(srv.listen_fds[i]);
    }
    srv.nlisten = 0;
    if (srv.unix_path) {
        unlink(srv.unix_path);
        free(srv.unix_path);
        srv.unix_path = NULL;
    }
    for (int i = 0; i < 2; i++) {
        if (srv.wake[i] >= 0) {
            close(srv.wake[i]);
            srv.wake[i] = -1;
        }
    }
}

/* Listens on opts->addr: every address an inet host resolves to, as
 * QEMU's listener does. */
static bool open_listener(const SocketAddress *addr, Error **errp)
{
    int n = socket_address_listen(addr, 128, SOCK_NONBLOCK, srv.listen_fds,
                                  MAX_LISTENERS, errp);
    if (n < 0) {
        return false;
    }
    srv.nlisten = n;
    if (addr->type == SOCKET_ADDRESS_UNIX) {
        srv.unix_path = strdup(addr->path);
    }
    return true;
}

void nbd_server_hold_accept(void)
{
    LOCK_GUARD(&server_lock);
    srv.accept_held = true;
}

void nbd_server_release_accept(void)
{
    LOCK_GUARD(&server_lock);
    srv.accept_held = false;
    pthread_cond_broadcast(&server_cond);
}

bool nbd_server_options_decode(json_t *args, NbdServerOptions *o,
                               Error **errp)
{
    uint64_t max_conn = 0, handshake_max = 0;

    memset(o, 0, sizeof(*o));
    if (!json_is_object(args)) {
        error_setg(errp, "Invalid parameter type, expected: object");
        return false;
    }
    const char *key;
    json_t *val;
    json_object_foreach(args, key, val) {
        if (strcmp(key, "addr") != 0 && strcmp(key, "max-connections") != 0 &&
            strcmp(key, "handshake-max-seconds") != 0 &&
            strcmp(key, "tls-creds") != 0 && strcmp(key, "tls-authz") != 0) {
            error_setg(errp, "Parameter '%s' is unexpected", key);
            return false;
        }
    }
    json_t *addr = json_object_get(args, "addr");
    if (!addr) {
        error_setg(errp, "Parameter 'addr' is missing");
        return false;
    }
    const char *creds, *authz;
    if (!opt_get_str(args, "tls-creds", NULL, &creds, errp) ||
        !opt_get_str(args, "tls-authz", NULL, &authz, errp)) {
        return false;
    }
    o->tls_creds = creds ? strdup(creds) : NULL;
    o->tls_authz = authz ? strdup(authz) : NULL;
    if ((creds && !o->tls_creds) || (authz && !o->tls_authz)) {
        /* Going on without them would serve in plaintext, or to anyone. */
        error_setg(errp, "Out of memory");
        return false;
    }
    if (!opt_get_uint64(args, "max-connections", NBD_DEFAULT_MAX_CONNECTIONS,
                        &max_conn, errp) ||
        !opt_get_uint64(args, "handshake-max-seconds",
                        NBD_DEFAULT_HANDSHAKE_MAX_SECONDS, &handshake_max,
                        errp)) {
        return false;
    }
    if (max_conn > UINT32_MAX) {
        error_setg(errp, "Parameter 'max-connections' expects uint32_t");
        return false;
    }
    if (handshake_max > UINT32_MAX) {
        error_setg(errp, "Parameter 'handshake-max-seconds' expects uint32_t");
        return false;
    }
    o->max_connections = (uint32_t)max_conn;
    o->handshake_max_seconds = (uint32_t)handshake_max;
    /* QMP's nbd-server-start takes SocketAddressLegacy, the command line
     * the flat SocketAddress. */
    bool legacy = json_is_object(addr) && json_object_get(addr, "data");
    return legacy ? socket_address_decode_legacy(addr, "addr.", &o->addr, errp)
                  : socket_address_decode(addr, "addr.", &o->addr, errp);
}

void nbd_server_options_free(NbdServerOptions *o)
{
    socket_address_free(&o->addr);
    free(o->tls_creds);
    free(o->tls_authz);
    o->tls_creds = o->tls_authz = NULL;
}

static void drop_tls_locked(void)
{
    if (srv.tls_creds) {
        object_unref(srv.tls_creds);
    }
    free(srv.tls_authz);
    srv.tls_creds = NULL;
    srv.tls_authz = NULL;
}

bool nbd_server_start(const NbdServerOptions *o, Error **errp)
{
    LOCK_GUARD(&server_lock);
    if (srv.running) {
        error_setg(errp, "NBD server already running");
        return false;
    }
    srv.nlisten = 0;
    if (!open_listener(&o->addr, errp)) {
        close_listeners();
        return false;
    }
    /* As QEMU: the address first, then the credentials.  tls-authz
     * without tls-creds is accepted and has nothing to check. */
    StrataObject *creds = NULL;
    if (o->tls_creds) {
        creds = tls_creds_lookup(o->tls_creds, TLS_ENDPOINT_SERVER, errp);
        if (!creds) {
            close_listeners();
            return false;
        }
    }
    srv.tls_creds = creds;
    srv.tls_authz = o->tls_authz && creds ? strdup(o->tls_authz) : NULL;
    if (o->tls_authz && creds && !srv.tls_authz) {
        error_setg(errp, "Out of memory");
        close_listeners();
        drop_tls_locked();
        return false;
    }
    if (pipe2(srv.wake, O_CLOEXEC) < 0) {
        error_setg_errno(errp, errno, "Failed to create NBD server pipe");
        close_listeners();
        drop_tls_locked();
        return false;
    }
    srv.max_connections = o->max_connections;
    srv.handshake_max_seconds = o->handshake_max_seconds;
    srv.stopping = false;
    srv.nconns = 0;
    int ret = pthread_create(&srv.accept_thread, NULL, accept_main, NULL);
    if (ret != 0) {
        error_setg_errno(errp, ret, "Failed to start the NBD accept thread");
        close_listeners();
        drop_tls_locked();
        return false;
    }
    srv.running = true;
    nbd_exports_server_changed(true, o->max_connections);
    return true;
}

bool nbd_server_stop(Error **errp)
{
    /* Held requests would keep their connections open forever: fail
     * them while their clients can still read the error. */
    nbd_export_fail_held();
    pthread_mutex_lock(&server_lock);
    if (!srv.running || srv.stopping) {
        pthread_mutex_unlock(&server_lock);
        error_setg(errp, "NBD server not running");
        return false;
    }
    srv.stopping = true;
    pthread_cond_broadcast(&server_cond);
    if (write(srv.wake[1], "x", 1) < 0) {
        /* The pipe is only a wake-up; the poll also sees stopping. */
    }
    pthread_mutex_unlock(&server_lock);
    pthread_join(srv.accept_thread, NULL);

    pthread_mutex_lock(&server_lock);
    close_listeners();
    for (NbdConn *c = srv.conns; c; c = c->srv_next) {
        shutdown(c->fd, SHUT_RDWR);
    }
    while (srv.nconns > 0) {
        pthread_cond_wait(&server_cond, &server_lock);
    }
    srv.running = false;
    srv.stopping = false;
    srv.max_connections = 0;
    drop_tls_locked();
    pthread_mutex_unlock(&server_lock);

    nbd_exports_server_changed(false, 0);
    nbd_export_delete_all();
    return true;
}

void nbd_shutdown_all(void)
{
    if (nbd_server_running()) {
        nbd_server_stop(NULL);
    }
    nbd_export_delete_all();
}
