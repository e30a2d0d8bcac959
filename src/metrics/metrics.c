/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the /metrics HTTP server and the collector registry.
 *
 * We bind the listening socket ourselves (unix or inet) and hand it to
 * libmicrohttpd with MHD_OPTION_LISTEN_SOCKET: that is the only way to
 * serve on a unix socket, and it gives the same error messages for both.
 */
#include "metrics/metrics.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "util/cleanup.h"
#include "util/log.h"
#include "util/socket-address.h"

typedef struct Collector {
    MetricsCollectFn *fn;
    void *opaque;
} Collector;

/* Guards the collector list; held across a whole scrape, which is what
 * lets metrics_unregister() promise the collector is no longer running. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static Collector *collectors;
static size_t n_collectors, cap_collectors;

/* Guards start/stop. */
static pthread_mutex_t server_lock = PTHREAD_MUTEX_INITIALIZER;
static struct MHD_Daemon *daemon_handle;
static int listen_fd = -1;
static char *unix_path;
static int inet_port = -1;

bool metrics_register(MetricsCollectFn *collect, void *opaque)
{
    LOCK_GUARD(&registry_lock);
    if (n_collectors == cap_collectors) {
        size_t cap = cap_collectors ? cap_collectors * 2 : 16;
        Collector *c = realloc(collectors, cap * sizeof(*c));
        if (!c) {
            return false;
        }
        collectors = c;
        cap_collectors = cap;
    }
    collectors[n_collectors++] = (Collector){ collect, opaque };
    return true;
}

void metrics_unregister(MetricsCollectFn *collect, void *opaque)
{
    LOCK_GUARD(&registry_lock);
    for (size_t i = 0; i < n_collectors; i++) {
        if (collectors[i].fn == collect && collectors[i].opaque == opaque) {
            memmove(&collectors[i], &collectors[i + 1],
                    (n_collectors - i - 1) * sizeof(*collectors));
            n_collectors--;
            return;
        }
    }
}

char *metrics_collect_text(size_t *len)
{
    MetricsWriter *w = metrics_writer_new();
    if (!w) {
        return NULL;
    }
    {
        LOCK_GUARD(&registry_lock);
        for (size_t i = 0; i < n_collectors; i++) {
            collectors[i].fn(w, collectors[i].opaque);
        }
    }
    return metrics_writer_finish(w, len);
}

/* ---- HTTP ---- */

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status,
                                 char *text, size_t len, const char *ctype)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    }
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_message(struct MHD_Connection *conn,
                                    unsigned status, const char *msg)
{
    char *text = strdup(msg);
    if (!text) {
        return MHD_NO;
    }
    return send_text(conn, status, text, strlen(text),
                     "text/plain; charset=utf-8");
}

static enum MHD_Result handle_request(void *cls, struct MHD_Connection *conn,
                                      const char *url, const char *method,
                                      const char *version,
                                      const char *upload_data,
                                      size_t *upload_data_size, void **req_cls)
{
    static int first_call_marker;

    /* The first call only announces the request; answer on the second,
     * after any body has been offered (and ignored). */
    if (*req_cls == NULL) {
        *req_cls = &first_call_marker;
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(url, "/metrics") != 0) {
        return send_message(conn, MHD_HTTP_NOT_FOUND, "404 page not found\n");
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        return send_message(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                            "405 method not allowed\n");
    }
    size_t len = 0;
    char *text = metrics_collect_text(&len);
    if (!text) {
        return send_message(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                            "out of memory while collecting metrics\n");
    }
    return send_text(conn, MHD_HTTP_OK, text, len,
                     "text/plain; version=0.0.4; charset=utf-8");
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[256];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n') {
        msg[--n] = '\0';
    }
    log_warn("metrics: %s", msg);
}

/* ---- listening socket ---- */

static int local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        return -1;
    }
    if (ss.ss_family == AF_INET) {
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return -1;
}

/* Binds the SocketAddress addr (members named without a prefix in
 * messages: "Parameter 'path' is missing"). */
static int open_listener(json_t *addr, char **path_out, Error **errp)
{
    SocketAddress sa;
    int fd = -1;
    if (socket_address_decode(addr, "", &sa, errp) &&
        socket_address_listen(&sa, 64, 0, &fd, 1, errp) == 1 &&
        sa.type == SOCKET_ADDRESS_UNIX) {
        *path_out = strdup(sa.path);
    }
    socket_address_free(&sa);
    return fd;
}

bool metrics_start(json_t *addr, Error **errp)
{
    LOCK_GUARD(&server_lock);
    if (daemon_handle) {
        error_setg(errp, "the metrics server is already running");
        return false;
    }
    char *path = NULL;
    int fd = open_listener(addr, &path, errp);
    if (fd < 0) {
        return false;
    }
    /* ITC lets metrics_stop() take the socket back with quiesce. */
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
            MHD_USE_ERROR_LOG,
        0, NULL, NULL, handle_request, NULL,
        /* The logger first, or MHD warns about the order on stderr. */
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30,
        MHD_OPTION_END);
    if (!d) {
        error_setg(errp, "Failed to start the metrics HTTP server");
        close(fd);
        if (path) {
            unlink(path);
            free(path);
        }
        return false;
    }
    daemon_handle = d;
    listen_fd = fd;
    unix_path = path;
    inet_port = path ? -1 : local_port(fd);
    return true;
}

void metrics_stop(void)
{
    LOCK_GUARD(&server_lock);
    if (!daemon_handle) {
        return;
    }
    /* Quiesce hands the listening socket back, so we close it ourselves
     * whatever MHD's version does on stop. */
    MHD_socket fd = MHD_quiesce_daemon(daemon_handle);
    MHD_stop_daemon(daemon_handle);
    daemon_handle = NULL;
    if (fd != MHD_INVALID_SOCKET) {
        close(fd);
    }
    listen_fd = -1;
    inet_port = -1;
    if (unix_path) {
        unlink(unix_path);
        free(unix_path);
        unix_path = NULL;
    }
}

int metrics_port(void)
{
    LOCK_GUARD(&server_lock);
    return inet_port;
}
