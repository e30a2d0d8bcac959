/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the nbd protocol driver: a node whose data lives on an NBD
 * server (qemu-nbd, nbdkit, another stratad), with libnbd as the
 * client.  This is how a template on another host becomes the backing
 * file of a local overlay.
 *
 * Options are QEMU's BlockdevOptionsNbd: "server" (a SocketAddress:
 * {"type": "unix", "path"} or {"type": "inet", "host", "port"}),
 * "export", "reconnect-delay", "open-timeout"; a filename in QEMU's URI
 * forms (nbd+unix:///EXPORT?socket=PATH, nbd://HOST[:PORT]/EXPORT) or
 * legacy forms (nbd:unix:PATH[:exportname=E], nbd:HOST:PORT[:...])
 * gives the same.
 *
 * Threads: a libnbd handle runs one synchronous command at a time, so
 * the node keeps a small pool of connections (several only when the
 * server says they see the same data: multi-conn) and a request takes
 * one for its duration.  A connection that breaks is reopened by the
 * request that found it broken, for up to reconnect-delay seconds;
 * requests fail with EIO after that (QEMU's semantics).
 */
#include <errno.h>
#include <inttypes.h>
#include <libnbd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/block_core.h"
#include "crypto/tls-creds.h"
#include "util/cleanup.h"
#include "util/keyval.h"
#include "util/log.h"
#include "util/socket-address.h"

#define NBD_MAX_CONNS 4
#define NBD_DEFAULT_PORT "10809"
/* libnbd refuses requests above 64 MiB; stay well below. */
#define NBD_MAX_TRANSFER (32u * 1024 * 1024)

typedef struct NbdTarget {
    bool is_unix;
    char *path;               /* unix */
    char *host, *port;        /* inet */
    InetResolve resolve;      /* inet: ipv4, ipv6, numeric */
    bool keep_alive;          /* inet */
    char *export;             /* "" when not given */
    /* TLS (tls-creds): libnbd loads the files itself from the
     * credentials' directory. */
    bool tls;
    TlsCredsKind tls_kind;
    char *tls_dir;
    bool tls_verify;
    char *tls_username;       /* PSK */
    char *tls_hostname;       /* x509: the name the certificate must have */
    /* x-dirty-bitmap: the metadata context asked for instead of
     * base:allocation, whose flags block status then reads as if they
     * were base:allocation's (QEMU's debugging hook, which iotests use
     * to look at qemu:allocation-depth). */
    char *status_context;
} NbdTarget;

typedef struct NbdClientState {
    NbdTarget t;
    uint32_t reconnect_delay; /* seconds */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct nbd_handle *conns[NBD_MAX_CONNS];
    bool busy[NBD_MAX_CONNS];
    int nconns;
    bool can_fua, can_trim, can_zero, can_fast_zero, can_flush, can_status;
} NbdClientState;

static void target_free(NbdTarget *t)
{
    free(t->path);
    free(t->host);
    free(t->port);
    free(t->export);
    free(t->tls_dir);
    free(t->tls_username);
    free(t->tls_hostname);
    free(t->status_context);
    memset(t, 0, sizeof(*t));
}

/* ---- options and filenames ---- */

/* "nbd+unix:///exp?socket=/p", "nbd://host:port/exp", "nbd+tcp://...",
 * "nbd:unix:/p[:exportname=e]", "nbd:host:port[:exportname=e]". */
static bool parse_filename(const char *name, NbdTarget *t, Error **errp)
{
    const char *rest;
    if (!strncmp(name, "nbd+unix://", 11)) {
        rest = name + 11;
        const char *q = strchr(rest, '?');
        const char *path = rest;
        if (*path && *path != '/' && *path != '?') {
            error_setg(errp, "NBD URI '%s': a unix socket URI takes no host",
                       name);
            return false;
        }
        if (*path == '/') {
            path++;
        }
        t->export = strndup(path, q ? (size_t)(q - path) : strlen(path));
        if (!q || strncmp(q, "?socket=", 8) != 0 || q[8] == '\0') {
            error_setg(errp, "NBD URI '%s' needs ?socket=PATH", name);
            return false;
        }
        t->is_unix = true;
        t->path = strdup(q + 8);
        return t->export && t->path;
    }
    if (!strncmp(name, "nbd://", 6) || !strncmp(name, "nbd+tcp://", 10)) {
        rest = strstr(name, "://") + 3;
        const char *slash = strchr(rest, '/');
        size_t hl = slash ? (size_t)(slash - rest) : strlen(rest);
        CLEANUP_FREE char *hostport = strndup(rest, hl);
        if (!hostport || hl == 0) {
            error_setg(errp, "NBD URI '%s' has no host", name);
            return false;
        }
        char *colon = strrchr(hostport, ':');
        if (colon && !strchr(colon, ']')) {
            *colon = '\0';
            t->port = strdup(colon + 1);
        } else {
            t->port = strdup(NBD_DEFAULT_PORT);
        }
        char *h = hostport;
        if (h[0] == '[') {       /* [ipv6] */
            h++;
            h[strcspn(h, "]")] = '\0';
        }
        t->host = strdup(h);
        t->export = strdup(slash ? slash + 1 : "");
        return t->host && t->port && t->export;
    }
    if (!strncmp(name, "nbd:", 4)) {
        CLEANUP_FREE char *copy = strdup(name + 4);
        if (!copy) {
            return false;
        }
        char *exp = strstr(copy, ":exportname=");
        if (exp) {
            *exp = '\0';
            t->export = strdup(exp + 12);
        } else {
            t->export = strdup("");
        }
        if (!strncmp(copy, "unix:", 5)) {
            t->is_unix = true;
            t->path = strdup(copy + 5);
            return t->export && t->path;
        }
        char *colon = strrchr(copy, ':');
        if (!colon) {
            error_setg(errp, "NBD filename '%s' needs HOST:PORT", name);
            return false;
        }
        *colon = '\0';
        t->host = strdup(copy);
        t->port = strdup(colon + 1);
        return t->export && t->host && t->port;
    }
    /* QEMU's words: scripts that probe for NBD support read them. */
    if (strstr(name, "://")) {
        error_setg(errp, "No valid URL specified");
    } else {
        error_setg(errp, "File name string for NBD must start with 'nbd:'");
    }
    return false;
}

/* QEMU's "server" SocketAddress, from typed JSON or keyval strings. */
static bool parse_server(json_t *opts, NbdTarget *t, Error **errp)
{
    json_t *server = json_object_get(opts, "server");
    if (!server) {
        error_setg(errp, "Parameter 'server' is missing");
        return false;
    }
    SocketAddress sa;
    bool ok = socket_address_decode(server, "server.", &sa, errp);
    if (ok) {
        t->is_unix = sa.type == SOCKET_ADDRESS_UNIX;
        t->path = sa.path;
        t->host = sa.host;
        t->port = sa.port;
        t->resolve = sa.resolve;
        t->keep_alive = sa.keep_alive;
        sa.path = sa.host = sa.port = NULL;
    }
    socket_address_free(&sa);
    return ok;
}

/* ---- connections ---- */

static struct nbd_handle *connect_one(const NbdTarget *t, Error **errp)
{
    struct nbd_handle *h = nbd_create();
    if (!h) {
        error_setg(errp, "Failed to create an NBD client: %s",
                   nbd_get_error());
        return NULL;
    }
    int ret = nbd_set_export_name(h, t->export);
    if (ret == 0) {
        ret = nbd_add_meta_context(h, t->status_context);
    }
    if (ret == 0 && t->tls) {
        ret = nbd_set_tls(h, LIBNBD_TLS_REQUIRE);
        if (ret == 0 && t->tls_kind == TLS_CREDS_PSK) {
            CLEANUP_FREE char *keys = NULL;
            ret = asprintf(&keys, "%s/keys.psk", t->tls_dir) < 0 ? -1 : 0;
            if (ret == 0) {
                ret = nbd_set_tls_psk_file(h, keys);
            }
            if (ret == 0) {
                ret = nbd_set_tls_username(h, t->tls_username);
            }
        } else if (ret == 0) {
            ret = nbd_set_tls_certificates(h, t->tls_dir);
            if (ret == 0) {
                ret = nbd_set_tls_verify_peer(h, t->tls_verify);
            }
#ifdef HAVE_NBD_SET_TLS_HOSTNAME
            if (ret == 0 && t->tls_hostname) {
                ret = nbd_set_tls_hostname(h, t->tls_hostname);
            }
#endif
        }
    }
    /* strata connects the socket itself, with QEMU's messages ("Failed to
     * connect to 'host:port': Connection refused", "address resolution
     * failed for ..."), and libnbd does the handshake on it.  Except
     * where an older libnbd checks the server's certificate against the
     * host it connected to itself. */
    bool own_socket = !t->tls || t->is_unix;
#ifdef HAVE_NBD_SET_TLS_HOSTNAME
    own_socket = true;
#endif
    if (ret == 0 && own_socket) {
        SocketAddress sa = {
            .type = t->is_unix ? SOCKET_ADDRESS_UNIX : SOCKET_ADDRESS_INET,
            .path = t->path, .host = t->host, .port = t->port,
            .resolve = t->resolve, .keep_alive = t->keep_alive,
        };
        int fd = socket_address_connect(&sa, 0, errp);
        if (fd < 0) {
            nbd_close(h);
            return NULL;
        }
        ret = nbd_connect_socket(h, fd);
    } else if (ret == 0) {
        ret = t->is_unix ? nbd_connect_unix(h, t->path)
                         : nbd_connect_tcp(h, t->host, t->port);
    }
    if (ret < 0) {
        error_setg(errp, "Failed to connect to '%s%s%s': %s",
                   t->is_unix ? t->path : t->host, t->is_unix ? "" : ":",
                   t->is_unix ? "" : t->port, nbd_get_error());
        nbd_close(h);
        return NULL;
    }
    return h;
}

static int take_conn(NbdClientState *s)
{
    LOCK_GUARD(&s->lock);
    for (;;) {
        for (int i = 0; i < s->nconns; i++) {
            if (!s->busy[i]) {
                s->busy[i] = true;
                return i;
            }
        }
        pthread_cond_wait(&s->cond, &s->lock);
    }
}

static void put_conn(NbdClientState *s, int i)
{
    LOCK_GUARD(&s->lock);
    s->busy[i] = false;
    pthread_cond_signal(&s->cond);
}

static bool conn_broken(struct nbd_handle *h, int err)
{
    return !h || nbd_aio_is_dead(h) || nbd_aio_is_closed(h) ||
           err == ENOTCONN || err == ESHUTDOWN || err == EPIPE ||
           err == ECONNRESET;
}

/* Replaces the broken connection i, trying until reconnect-delay has
 * passed.  False when the server did not come back in time. */
static bool reconnect(NbdClientState *s, int i)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    if (s->conns[i]) {
        nbd_close(s->conns[i]);
        s->conns[i] = NULL;
    }
    for (;;) {
        Error *err = NULL;
        s->conns[i] = connect_one(&s->t, &err);
        if (s->conns[i]) {
            log_info("nbd: reconnected to the server");
            return true;
        }
        error_free(err);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= (time_t)s->reconnect_delay) {
            return false;
        }
        struct timespec pause = { 0, 100 * 1000 * 1000 };
        nanosleep(&pause, NULL);
    }
}

typedef enum { OP_READ, OP_WRITE, OP_ZERO, OP_TRIM, OP_FLUSH } NbdOp;

typedef struct OpArgs {
    NbdOp op;
    uint64_t offset, bytes;
    void *buf;
    const void *cbuf;
    uint32_t flags;
} OpArgs;

static int run_once(struct nbd_handle *h, const OpArgs *a)
{
    switch (a->op) {
    case OP_READ:
        return nbd_pread(h, a->buf, a->bytes, a->offset, 0);
    case OP_WRITE:
        return nbd_pwrite(h, a->cbuf, a->bytes, a->offset, a->flags);
    case OP_ZERO:
        return nbd_zero(h, a->bytes, a->offset, a->flags);
    case OP_TRIM:
        return nbd_trim(h, a->bytes, a->offset, a->flags);
    case OP_FLUSH:
        return nbd_flush(h, 0);
    }
    return -1;
}

static int run_op(BlockNode *bs, const OpArgs *a)
{
    NbdClientState *s = bs->opaque;
    int i = take_conn(s);
    int ret = -EIO;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (s->conns[i] && run_once(s->conns[i], a) == 0) {
            ret = 0;
            break;
        }
        int err = s->conns[i] ? nbd_get_errno() : ENOTCONN;
        ret = -(err ? err : EIO);
        if (!conn_broken(s->conns[i], err) || attempt == 1 ||
            s->reconnect_delay == 0 || !reconnect(s, i)) {
            break;
        }
    }
    if (ret < 0 && conn_broken(s->conns[i], -ret)) {
        ret = -EIO;
    }
    put_conn(s, i);
    return ret;
}

/* ---- driver ---- */

static void nbd_close_node(BlockNode *bs);

/* The credentials object's settings, copied into the target so that
 * reconnects use them even if the object is deleted meanwhile.  As
 * QEMU: an inet server's host is the default name to check the server's
 * certificate against; over a unix socket an x509 client that verifies
 * its peer needs tls-hostname. */
static bool nbd_tls_setup(NbdTarget *t, const char *creds_id,
                          const char *hostname, Error **errp)
{
    CLEANUP_OBJECT StrataObject *obj =
        tls_creds_lookup(creds_id, TLS_ENDPOINT_CLIENT, errp);
    if (!obj) {
        return false;
    }
    const TlsCreds *c = tls_creds_of(obj);
    t->tls = true;
    t->tls_kind = tls_creds_kind(c);
    t->tls_verify = tls_creds_verify_peer(c);
    t->tls_dir = strdup(tls_creds_dir(c));
    t->tls_username = strdup(tls_creds_username(c));
    if (!hostname && !t->is_unix) {
        hostname = t->host;
    }
    t->tls_hostname = hostname ? strdup(hostname) : NULL;
    if (!t->tls_dir || !t->tls_username || (hostname && !t->tls_hostname)) {
        error_setg(errp, "Out of memory");
        return false;
    }
    if (t->tls_kind == TLS_CREDS_X509 && t->tls_verify && !t->tls_hostname) {
        error_setg(errp, "No hostname for certificate validation");
        return false;
    }
#ifndef HAVE_NBD_SET_TLS_HOSTNAME
    /* An older libnbd checks the certificate against the host it
     * connects to (inet) and checks only the chain over a unix socket. */
    if (t->tls_kind == TLS_CREDS_X509 && t->tls_verify && !t->is_unix &&
        strcmp(t->tls_hostname, t->host) != 0) {
        error_setg(errp, "tls-hostname '%s' differs from the server's host "
                   "'%s', which this libnbd cannot check against; connect "
                   "to '%s' instead", t->tls_hostname, t->host,
                   t->tls_hostname);
        return false;
    }
    if (t->tls_kind == TLS_CREDS_X509 && t->tls_verify && t->is_unix) {
        log_warn("nbd: the server certificate's chain is verified, but "
                 "this libnbd cannot check its name ('%s') over a unix "
                 "socket", t->tls_hostname);
    }
#endif
    return true;
}

static bool nbd_do_open(BlockNode *bs, json_t *opts, int flags, Error **errp)
{
    NbdClientState *s = bs->opaque;
    const char *filename = NULL, *export = NULL;
    uint64_t delay = 0, open_timeout = 0;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);

    if (!opt_get_str(opts, "filename", NULL, &filename, errp) ||
        !opt_get_str(opts, "export", NULL, &export, errp) ||
        !opt_get_uint64(opts, "reconnect-delay", 0, &delay, errp) ||
        !opt_get_uint64(opts, "open-timeout", 0, &open_timeout, errp)) {
        return false;
    }
    const char *creds_id = NULL, *hostname = NULL, *context = NULL;
    if (!opt_get_str(opts, "tls-creds", NULL, &creds_id, errp) ||
        !opt_get_str(opts, "tls-hostname", NULL, &hostname, errp) ||
        !opt_get_str(opts, "x-dirty-bitmap", NULL, &context, errp)) {
        return false;
    }
    if (filename) {
        if (json_object_get(opts, "server") || export) {
            error_setg(errp, "No 'server' or 'export' options may be given "
                       "with an NBD filename");
            return false;
        }
        if (!parse_filename(filename, &s->t, errp)) {
            return false;
        }
    } else if (!parse_server(opts, &s->t, errp) ||
               !(s->t.export = strdup(export ? export : ""))) {
        return false;
    }
    if (creds_id && !nbd_tls_setup(&s->t, creds_id, hostname, errp)) {
        return false;
    }
    s->t.status_context = strdup(context ? context
                                         : LIBNBD_CONTEXT_BASE_ALLOCATION);
    if (!s->t.status_context) {
        error_setg(errp, "Out of memory");
        return false;
    }
    s->reconnect_delay = delay > UINT32_MAX ? UINT32_MAX : (uint32_t)delay;
    const char *known[] = { "filename", "server", "export", "reconnect-delay",
                            "open-timeout", "tls-creds", "tls-hostname",
                            "x-dirty-bitmap" };
    for (size_t i = 0; i < ARRAY_SIZE(known); i++) {
        json_object_del(opts, known[i]);
    }

    /* open-timeout: keep trying to reach the server that long. */
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        Error *err = NULL;
        s->conns[0] = connect_one(&s->t, &err);
        if (s->conns[0]) {
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= (time_t)open_timeout) {
            error_propagate(errp, err);
            return false;
        }
        error_free(err);
        struct timespec pause = { 0, 100 * 1000 * 1000 };
        nanosleep(&pause, NULL);
    }
    s->nconns = 1;
    struct nbd_handle *h = s->conns[0];
    int64_t size = nbd_get_size(h);
    if (size < 0) {
        error_setg(errp, "Failed to get the size of the NBD export: %s",
                   nbd_get_error());
        return false;
    }
    if (!bs->read_only && nbd_is_read_only(h) == 1) {
        if (!(flags & BLOCK_O_AUTO_READ_ONLY)) {
            error_setg(errp, "Cannot open a read-only NBD export read-write");
            return false;
        }
        bs->read_only = true;
    }
    s->can_fua = nbd_can_fua(h) == 1;
    s->can_trim = nbd_can_trim(h) == 1;
    s->can_zero = nbd_can_zero(h) == 1;
    s->can_fast_zero = nbd_can_fast_zero(h) == 1;
    s->can_flush = nbd_can_flush(h) == 1;
    s->can_status = nbd_can_meta_context(h, s->t.status_context) == 1;
    if (!s->can_status &&
        strcmp(s->t.status_context, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0) {
        /* QEMU 7.2 reports this case with its generic open failure. */
        error_setg_errno(errp, EINVAL, "Could not open image");
        return false;
    }
    if (nbd_can_multi_conn(h) == 1) {
        /* The server promises every connection sees the same data:
         * requests from several threads can run at once. */
        for (int i = 1; i < NBD_MAX_CONNS; i++) {
            Error *err = NULL;
            s->conns[i] = connect_one(&s->t, &err);
            if (!s->conns[i]) {
                error_free(err);
                break;
            }
            s->nconns++;
        }
    }
    int64_t max = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
    bs->max_transfer = max > 0 && max < NBD_MAX_TRANSFER ? (uint32_t)max
                                                         : NBD_MAX_TRANSFER;
    bs->total_size = (uint64_t)size;
    return true;
}

/* The core calls close only for nodes that opened, so a failed open
 * releases what it had set up itself. */
static bool nbd_open(BlockNode *bs, json_t *opts, int flags, Error **errp)
{
    if (nbd_do_open(bs, opts, flags, errp)) {
        return true;
    }
    nbd_close_node(bs);
    return false;
}

static void nbd_close_node(BlockNode *bs)
{
    NbdClientState *s = bs->opaque;
    for (int i = 0; i < NBD_MAX_CONNS; i++) {
        if (s->conns[i]) {
            nbd_shutdown(s->conns[i], 0);
            nbd_close(s->conns[i]);
            s->conns[i] = NULL;
        }
    }
    target_free(&s->t);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
}

static int nbd_node_pread(BlockNode *bs, uint64_t offset, uint64_t bytes,
                          void *buf, int flags)
{
    OpArgs a = { .op = OP_READ, .offset = offset, .bytes = bytes, .buf = buf };
    return run_op(bs, &a);
}

static int nbd_node_pwrite(BlockNode *bs, uint64_t offset, uint64_t bytes,
                           const void *buf, int flags)
{
    NbdClientState *s = bs->opaque;
    OpArgs a = { .op = OP_WRITE, .offset = offset, .bytes = bytes,
                 .cbuf = buf };
    if (flags & BLOCK_REQ_FUA) {
        if (s->can_fua) {
            a.flags = LIBNBD_CMD_FLAG_FUA;
        } else {
            int ret = run_op(bs, &a);
            if (ret < 0) {
                return ret;
            }
            OpArgs f = { .op = OP_FLUSH };
            return s->can_flush ? run_op(bs, &f) : 0;
        }
    }
    return run_op(bs, &a);
}

static int nbd_node_pwrite_zeroes(BlockNode *bs, uint64_t offset,
                                  uint64_t bytes, int flags)
{
    NbdClientState *s = bs->opaque;
    if (!s->can_zero || ((flags & BLOCK_REQ_NO_FALLBACK) && !s->can_fast_zero)) {
        return -ENOTSUP;
    }
    OpArgs a = { .op = OP_ZERO, .offset = offset, .bytes = bytes };
    if (!(flags & BLOCK_REQ_MAY_UNMAP)) {
        a.flags |= LIBNBD_CMD_FLAG_NO_HOLE;
    }
    if (flags & BLOCK_REQ_NO_FALLBACK) {
        a.flags |= LIBNBD_CMD_FLAG_FAST_ZERO;
    }
    if ((flags & BLOCK_REQ_FUA) && s->can_fua) {
        a.flags |= LIBNBD_CMD_FLAG_FUA;
    }
    return run_op(bs, &a);
}

static int nbd_node_pdiscard(BlockNode *bs, uint64_t offset, uint64_t bytes)
{
    NbdClientState *s = bs->opaque;
    if (!s->can_trim) {
        return 0;     /* advisory */
    }
    OpArgs a = { .op = OP_TRIM, .offset = offset, .bytes = bytes };
    return run_op(bs, &a);
}

static int nbd_node_flush(BlockNode *bs)
{
    NbdClientState *s = bs->opaque;
    if (!s->can_flush) {
        return 0;
    }
    OpArgs a = { .op = OP_FLUSH };
    return run_op(bs, &a);
}

typedef struct StatusResult {
    const char *context;
    uint64_t length;
    uint32_t flags;
    bool got;
} StatusResult;

static int status_cb(void *opaque, const char *context, uint64_t offset,
                     uint32_t *entries, size_t n, int *error)
{
    StatusResult *r = opaque;
    if (strcmp(context, r->context) == 0 && n >= 2 && !r->got) {
        r->length = entries[0];
        r->flags = entries[1];
        r->got = true;
    }
    return 0;
}

/* As QEMU's NBD client: what the server does not call a hole is data,
 * and its zero flag is passed on. */
static int nbd_node_block_status(BlockNode *bs, uint64_t offset,
                                 uint64_t bytes, uint64_t *pnum,
                                 uint64_t *map, BlockNode **file)
{
    NbdClientState *s = bs->opaque;
    *map = offset;
    *file = bs;
    *pnum = bytes;
    if (!s->can_status) {
        return BLOCK_STATUS_DATA | BLOCK_STATUS_OFFSET_VALID;
    }
    uint64_t len = MIN(bytes, (uint64_t)UINT32_MAX & ~(uint64_t)4095);
    StatusResult r = { .context = s->t.status_context };
    int i = take_conn(s);
    int ret = s->conns[i]
        ? nbd_block_status(s->conns[i], len, offset,
                           (nbd_extent_callback){ .callback = status_cb,
                                                  .user_data = &r },
                           LIBNBD_CMD_FLAG_REQ_ONE)
        : -1;
    put_conn(s, i);
    if (ret < 0 || !r.got || r.length == 0) {
        return BLOCK_STATUS_DATA | BLOCK_STATUS_OFFSET_VALID;
    }
    *pnum = MIN(bytes, r.length);
    int st = BLOCK_STATUS_OFFSET_VALID;
    if (!(r.flags & LIBNBD_STATE_HOLE)) {
        st |= BLOCK_STATUS_DATA;
    }
    if (r.flags & LIBNBD_STATE_ZERO) {
        st |= BLOCK_STATUS_ZERO;
    }
    return st;
}

static int64_t nbd_refresh_size(BlockNode *bs)
{
    return (int64_t)block_node_size(bs);
}

/* QEMU's names: nbd+unix:///EXPORT?socket=PATH, nbd://HOST:PORT/EXPORT. */
static char *nbd_exact_filename(BlockNode *bs, const json_t *full)
{
    NbdClientState *s = bs->opaque;
    char *out = NULL;
    int n;
    if (s->t.is_unix) {
        n = asprintf(&out, "nbd+unix://%s%s?socket=%s",
                     *s->t.export ? "/" : "", s->t.export, s->t.path);
    } else {
        n = asprintf(&out, "nbd://%s:%s%s%s", s->t.host, s->t.port,
                     *s->t.export ? "/" : "", s->t.export);
    }
    return n < 0 ? NULL : out;
}

static const char *const nbd_protocols[] = { "nbd", "nbd+unix", "nbd+tcp",
                                             NULL };
static const char *const nbd_strong_options[] = { "server.", "export",
                                                  NULL };

const BlockDriver bdrv_nbd = {
    .format_name = "nbd",
    .state_size = sizeof(NbdClientState),
    .is_protocol = true,
    .protocol_prefixes = nbd_protocols,
    .strong_options = nbd_strong_options,
    .exact_filename = nbd_exact_filename,
    .open = nbd_open,
    .close = nbd_close_node,
    .pread = nbd_node_pread,
    .pwrite = nbd_node_pwrite,
    .pwrite_zeroes = nbd_node_pwrite_zeroes,
    .pdiscard = nbd_node_pdiscard,
    .flush = nbd_node_flush,
    .block_status = nbd_node_block_status,
    .refresh_size = nbd_refresh_size,
};
