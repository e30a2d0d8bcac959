/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - NBD fixed-newstyle handshake (option haggling).
 *
 * Behaviour and reply texts match qemu-storage-daemon 7.2: the option
 * payload is consumed as it is parsed (optlen counts what is left), a
 * malformed option gets NBD_REP_ERR_INVALID and the haggling continues,
 * and only framing errors (bad magic, absurd lengths) end the
 * connection.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "crypto/tls-session.h"
#include "nbd/nbd-int.h"
#include "nbd/protocol.h"
#include "util/cleanup.h"
#include "util/log.h"

typedef struct Opt {
    NbdConn *conn;
    uint32_t opt;
    uint32_t optlen;          /* payload bytes not yet read */
} Opt;

/* What a meta context option selected. */
typedef struct MetaSel {
    bool base;
    bool depth;
} MetaSel;

static const char *opt_name(uint32_t opt)
{
    switch (opt) {
    case NBD_OPT_EXPORT_NAME: return "export name";
    case NBD_OPT_ABORT: return "abort";
    case NBD_OPT_LIST: return "list";
    case NBD_OPT_PEEK_EXPORT: return "peek export";
    case NBD_OPT_STARTTLS: return "starttls";
    case NBD_OPT_INFO: return "info";
    case NBD_OPT_GO: return "go";
    case NBD_OPT_STRUCTURED_REPLY: return "structured reply";
    case NBD_OPT_LIST_META_CONTEXT: return "list meta context";
    case NBD_OPT_SET_META_CONTEXT: return "set meta context";
    default: return "<unknown>";
    }
}

static int send_rep_iov(Opt *o, uint32_t type, struct iovec *data, int n)
{
    uint8_t hdr[20];
    struct iovec iov[4];
    size_t len = 0;

    for (int i = 0; i < n; i++) {
        len += data[i].iov_len;
        iov[i + 1] = data[i];
    }
    nbd_put64(hdr, NBD_REP_MAGIC);
    nbd_put32(hdr + 8, o->opt);
    nbd_put32(hdr + 12, type);
    nbd_put32(hdr + 16, len);
    iov[0] = (struct iovec){ hdr, sizeof(hdr) };
    return nbd_writev_full(o->conn, iov, n + 1, false);
}

static int send_rep(Opt *o, uint32_t type, const void *data, size_t len)
{
    struct iovec iov = { (void *)data, len };
    return send_rep_iov(o, type, &iov, len ? 1 : 0);
}

/* Discards what is left of the payload and sends an error reply.
 * Returns 0 (option handled, carry on) or -errno. */
static int opt_drop(Opt *o, uint32_t type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int opt_drop(Opt *o, uint32_t type, const char *fmt, ...)
{
    char msg[NBD_MAX_STRING_SIZE + 128];
    va_list ap;
    int ret = nbd_discard_input(o->conn, o->optlen);

    if (ret < 0) {
        return ret;
    }
    o->optlen = 0;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return send_rep(o, type, msg, MIN((size_t)n, sizeof(msg) - 1));
}

static int reject_length(Opt *o)
{
    return opt_drop(o, NBD_REP_ERR_INVALID, "option '%s' has unexpected length",
                    opt_name(o->opt));
}

/* Reads size bytes of payload.  1 on success, 0 when the payload was too
 * short (an error was sent), -errno on I/O error. */
static int opt_read(Opt *o, void *buf, size_t size, bool check_nul)
{
    if (size > o->optlen) {
        int ret = opt_drop(o, NBD_REP_ERR_INVALID,
                           "Inconsistent lengths in option %s",
                           opt_name(o->opt));
        return ret < 0 ? ret : 0;
    }
    o->optlen -= size;
    int ret = nbd_read_full(o->conn, buf, size);
    if (ret < 0) {
        return ret;
    }
    if (check_nul && memchr(buf, 0, size)) {
        ret = opt_drop(o, NBD_REP_ERR_INVALID,
                       "Unexpected embedded NUL in option %s",
                       opt_name(o->opt));
        return ret < 0 ? ret : 0;
    }
    return 1;
}

/* Reads {u32 len, name}.  *name is malloc'ed (NUL terminated). */
static int opt_read_name(Opt *o, char **name, uint32_t *namelen)
{
    uint8_t lenbuf[4];
    int ret = opt_read(o, lenbuf, 4, false);

    *name = NULL;
    if (ret <= 0) {
        return ret;
    }
    uint32_t len = nbd_get32(lenbuf);
    if (len > NBD_MAX_STRING_SIZE) {
        ret = opt_drop(o, NBD_REP_ERR_INVALID, "Invalid name length: %u", len);
        return ret < 0 ? ret : 0;
    }
    char *s = malloc(len + 1);
    if (!s) {
        return -ENOMEM;
    }
    ret = opt_read(o, s, len, true);
    if (ret <= 0) {
        free(s);
        return ret;
    }
    s[len] = '\0';
    *name = s;
    if (namelen) {
        *namelen = len;
    }
    return 1;
}

/* Long names are cut in error messages, as QEMU does. */
static int send_unknown_export(Opt *o, const char *name)
{
    if (strnlen(name, 80) < 80) {
        return opt_drop(o, NBD_REP_ERR_UNKNOWN, "export '%s' not present", name);
    }
    return opt_drop(o, NBD_REP_ERR_UNKNOWN, "export '%.80s...' not present",
                    name);
}

static int handle_list(Opt *o)
{
    size_t n;
    NbdExport **list = nbd_export_list(&n);
    int ret = 0;

    if (!list) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n && ret == 0; i++) {
        uint8_t lenbuf[4];
        const char *desc = list[i]->description ? list[i]->description : "";
        nbd_put32(lenbuf, strlen(list[i]->name));
        struct iovec iov[3] = {
            { lenbuf, 4 },
            { list[i]->name, strlen(list[i]->name) },
            { (void *)desc, strlen(desc) },
        };
        ret = send_rep_iov(o, NBD_REP_SERVER, iov, 3);
    }
    nbd_export_list_free(list, n);
    return ret < 0 ? ret : send_rep(o, NBD_REP_ACK, NULL, 0);
}

/* Forgets the selected contexts when the client picks another export. */
static void check_meta_export(NbdConn *conn, NbdExport *exp)
{
    if (conn->meta_exp != exp) {
        conn->ctx_base = conn->ctx_depth = false;
    }
}

static uint16_t export_flags(NbdConn *conn, NbdExport *exp)
{
    return exp->flags | (conn->structured ? NBD_FLAG_SEND_DF : 0);
}

static int send_info(Opt *o, uint16_t info, const void *data, size_t len)
{
    uint8_t type[2];
    nbd_put16(type, info);
    struct iovec iov[2] = { { type, 2 }, { (void *)data, len } };
    return send_rep_iov(o, NBD_REP_INFO, iov, 2);
}

/* NBD_OPT_INFO and NBD_OPT_GO.  Returns 1 when GO succeeded. */
static int handle_info(Opt *o)
{
    NbdConn *conn = o->conn;
    CLEANUP_FREE char *name = NULL;
    uint32_t namelen = 0;
    uint8_t buf[12];
    bool sendname = false;
    int ret = opt_read_name(o, &name, &namelen);

    if (ret <= 0) {
        return ret;
    }
    ret = opt_read(o, buf, 2, false);
    if (ret <= 0) {
        return ret;
    }
    for (uint16_t requests = nbd_get16(buf); requests > 0; requests--) {
        ret = opt_read(o, buf, 2, false);
        if (ret <= 0) {
            return ret;
        }
        /* Only NAME is optional; the rest is sent regardless. */
        if (nbd_get16(buf) == NBD_INFO_NAME) {
            sendname = true;
        }
    }
    if (o->optlen) {
        return reject_length(o);
    }

    NbdExport *exp = nbd_export_get(name);
    if (!exp) {
        return send_unknown_export(o, name);
    }
    if (o->opt == NBD_OPT_GO) {
        if (!nbd_export_attach(exp, conn)) {
            nbd_export_put(exp);
            return send_unknown_export(o, name);
        }
        /* From here the connection owns the reference. */
        conn->exp = exp;
        check_meta_export(conn, exp);
    }

    if (sendname) {
        ret = send_info(o, NBD_INFO_NAME, name, namelen);
    }
    if (ret >= 0 && exp->description) {
        ret = send_info(o, NBD_INFO_DESCRIPTION, exp->description,
                        strlen(exp->description));
    }
    if (ret >= 0) {
        /* Minimum 1: the block layer is byte granular. */
        nbd_put32(buf, 1);
        nbd_put32(buf + 4, NBD_PREFERRED_BLOCK_SIZE);
        nbd_put32(buf + 8, NBD_MAX_BUFFER_SIZE);
        ret = send_info(o, NBD_INFO_BLOCK_SIZE, buf, 12);
    }
    if (ret >= 0) {
        nbd_put64(buf, exp->size);
        nbd_put16(buf + 8, export_flags(conn, exp));
        ret = send_info(o, NBD_INFO_EXPORT, buf, 10);
    }
    if (ret >= 0) {
        ret = send_rep(o, NBD_REP_ACK, NULL, 0);
    }
    if (o->opt != NBD_OPT_GO) {
        nbd_export_put(exp);
    }
    if (ret < 0) {
        return ret;
    }
    return o->opt == NBD_OPT_GO ? 1 : 0;
}

static int handle_export_name(Opt *o, bool no_zeroes)
{
    NbdConn *conn = o->conn;
    uint8_t buf[10 + 124] = { 0 };

    if (o->optlen > NBD_MAX_STRING_SIZE) {
        log_debug("nbd: export name too long (%u bytes)", o->optlen);
        return -EINVAL;
    }
    CLEANUP_FREE char *name = malloc(o->optlen + 1);
    if (!name) {
        return -ENOMEM;
    }
    int ret = nbd_read_full(conn, name, o->optlen);
    if (ret < 0) {
        return ret;
    }
    name[o->optlen] = '\0';
    o->optlen = 0;

    /* No way to send an error here: the connection is dropped. */
    NbdExport *exp = nbd_export_get(name);
    if (!exp) {
        log_debug("nbd: export '%s' not found", name);
        return -ENOENT;
    }
    if (!nbd_export_attach(exp, conn)) {
        nbd_export_put(exp);
        return -ENOENT;
    }
    conn->exp = exp;
    check_meta_export(conn, exp);
    nbd_put64(buf, exp->size);
    nbd_put16(buf + 8, export_flags(conn, exp));
    ret = nbd_write_full(conn, buf, no_zeroes ? 10 : sizeof(buf));
    return ret < 0 ? ret : 1;
}

static bool strshift(const char **s, const char *prefix)
{
    size_t len = strlen(prefix);
    if (strncmp(*s, prefix, len) == 0) {
        *s += len;
        return true;
    }
    return false;
}

static void meta_query(Opt *o, NbdExport *exp, MetaSel *sel, const char *q)
{
    bool list = o->opt == NBD_OPT_LIST_META_CONTEXT;

    if (strshift(&q, "base:")) {
        if ((!*q && list) || strcmp(q, "allocation") == 0) {
            sel->base = true;
        }
    } else if (strshift(&q, "qemu:")) {
        /* "qemu:" lists the whole namespace; dirty bitmaps are not
         * exported by strata, so "qemu:dirty-bitmap:..." matches none. */
        if ((!*q && list) || strcmp(q, "allocation-depth") == 0) {
            sel->depth |= exp->allocation_depth;
        }
    }
}

static int send_meta_context(Opt *o, const char *ctx, uint32_t id)
{
    uint8_t idbuf[4];
    nbd_put32(idbuf, o->opt == NBD_OPT_LIST_META_CONTEXT ? 0 : id);
    struct iovec iov[2] = { { idbuf, 4 }, { (void *)ctx, strlen(ctx) } };
    return send_rep_iov(o, NBD_REP_META_CONTEXT, iov, 2);
}

static int handle_meta(Opt *o)
{
    NbdConn *conn = o->conn;
    CLEANUP_FREE char *name = NULL;
    MetaSel sel = { false, false };
    uint8_t buf[4];
    bool set = o->opt == NBD_OPT_SET_META_CONTEXT;
    int ret;

    if (set && !conn->structured) {
        return opt_drop(o, NBD_REP_ERR_INVALID,
                        "request option '%s' when structured reply is not "
                        "negotiated", opt_name(o->opt));
    }
    if (set) {
        conn->ctx_base = conn->ctx_depth = false;
        conn->meta_exp = NULL;
    }
    ret = opt_read_name(o, &name, NULL);
    if (ret <= 0) {
        return ret;
    }
    NbdExport *exp = nbd_export_get(name);
    if (!exp) {
        return send_unknown_export(o, name);
    }
    ret = opt_read(o, buf, 4, false);
    uint32_t nq = ret > 0 ? nbd_get32(buf) : 0;
    if (ret > 0 && !set && nq == 0) {
        sel.base = true;
        sel.depth = exp->allocation_depth;
    }
    for (uint32_t i = 0; ret > 0 && i < nq; i++) {
        ret = opt_read(o, buf, 4, false);
        if (ret <= 0) {
            break;
        }
        uint32_t len = nbd_get32(buf);
        if (len > NBD_MAX_STRING_SIZE) {
            /* Too long to be a context we know: skip it. */
            if (len > o->optlen) {
                ret = opt_drop(o, NBD_REP_ERR_INVALID,
                               "Inconsistent lengths in option %s",
                               opt_name(o->opt));
                ret = ret < 0 ? ret : 0;
                break;
            }
            o->optlen -= len;
            ret = nbd_discard_input(conn, len);
            ret = ret < 0 ? ret : 1;
            continue;
        }
        char q[NBD_MAX_STRING_SIZE + 1];
        ret = opt_read(o, q, len, true);
        if (ret > 0) {
            q[len] = '\0';
            meta_query(o, exp, &sel, q);
        }
    }
    if (ret > 0 && sel.base) {
        ret = send_meta_context(o, "base:allocation",
                                NBD_META_ID_BASE_ALLOCATION);
        ret = ret < 0 ? ret : 1;
    }
    if (ret > 0 && sel.depth) {
        ret = send_meta_context(o, "qemu:allocation-depth",
                                NBD_META_ID_ALLOCATION_DEPTH);
        ret = ret < 0 ? ret : 1;
    }
    if (ret > 0) {
        ret = send_rep(o, NBD_REP_ACK, NULL, 0);
        if (ret == 0 && set) {
            conn->ctx_base = sel.base;
            conn->ctx_depth = sel.depth;
            conn->meta_exp = exp;
        }
    }
    nbd_export_put(exp);
    return ret < 0 ? ret : 0;
}

/* NBD_OPT_STARTTLS while TLS is required: ACK in plaintext, then the
 * TLS handshake and the peer checks.  0, or -1 to drop the client. */
static int start_tls(Opt *o)
{
    NbdConn *conn = o->conn;
    Error *err = NULL;

    if (send_rep(o, NBD_REP_ACK, NULL, 0) < 0) {
        return -1;
    }
    TlsSession *s = tls_session_new_server(conn->tls_creds, conn->tls_authz,
                                           conn->fd, &err);
    if (s && tls_session_handshake(s, &err)) {
        conn->tls = s;
        return 0;
    }
    log_warn("nbd: TLS: %s", error_get_pretty(err));
    error_free(err);
    tls_session_free(s);
    return -1;
}

/* An option while TLS is required and not yet running: only STARTTLS
 * goes on; EXPORT_NAME cannot be answered, so the client is dropped;
 * anything else gets NBD_REP_ERR_TLS_REQD (QEMU's text).  0 to carry on,
 * 1 when the client ended the session (ABORT), -1 to drop it. */
static int option_before_tls(Opt *o)
{
    int ret;
    switch (o->opt) {
    case NBD_OPT_STARTTLS:
        if (o->optlen) {
            /* A client that cannot start TLS properly is not trusted
             * with another try. */
            reject_length(o);
            return -1;
        }
        return start_tls(o);
    case NBD_OPT_EXPORT_NAME:
        log_debug("nbd: option 0x%x not permitted before TLS", o->opt);
        return -1;
    default:
        ret = opt_drop(o, NBD_REP_ERR_TLS_REQD,
                       "Option 0x%" PRIx32 " not permitted before TLS",
                       o->opt);
        if (o->opt == NBD_OPT_ABORT) {
            return 1;
        }
        return ret < 0 ? -1 : 0;
    }
}

int nbd_handshake(NbdConn *conn)
{
    uint8_t buf[18];
    Opt o = { .conn = conn };

    nbd_put64(buf, NBD_MAGIC);
    nbd_put64(buf + 8, NBD_IHAVEOPT);
    nbd_put16(buf + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    if (nbd_write_full(conn, buf, 18) < 0 ||
        nbd_read_full(conn, buf, 4) < 0) {
        return 0;       /* a port probe, not an error */
    }
    uint32_t cflags = nbd_get32(buf);
    bool fixed = cflags & NBD_FLAG_C_FIXED_NEWSTYLE;
    bool no_zeroes = cflags & NBD_FLAG_C_NO_ZEROES;
    if (cflags & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
        log_debug("nbd: unknown client flags 0x%x", cflags);
        return -1;
    }

    for (;;) {
        int ret;

        if (nbd_read_full(conn, buf, 16) < 0) {
            return -1;
        }
        if (nbd_get64(buf) != NBD_IHAVEOPT) {
            log_debug("nbd: bad option magic");
            return -1;
        }
        o.opt = nbd_get32(buf + 8);
        o.optlen = nbd_get32(buf + 12);
        if (o.optlen > NBD_MAX_BUFFER_SIZE) {
            log_debug("nbd: option length %u is larger than max len %u",
                      o.optlen, NBD_MAX_BUFFER_SIZE);
            return -1;
        }
        if (conn->tls_creds && !conn->tls) {
            if (!fixed) {
                return -1;
            }
            ret = option_before_tls(&o);
            if (ret != 0) {
                return ret > 0 ? 0 : -1;
            }
            continue;
        }
        if (!fixed) {
            if (o.opt != NBD_OPT_EXPORT_NAME) {
                return -1;
            }
            return handle_export_name(&o, no_zeroes) == 1 ? 1 : -1;
        }
        switch (o.opt) {
        case NBD_OPT_LIST:
            ret = o.optlen ? reject_length(&o) : handle_list(&o);
            break;
        case NBD_OPT_ABORT:
            /* The client may hang up without reading the ACK. */
            nbd_discard_input(conn, o.optlen);
            o.optlen = 0;
            send_rep(&o, NBD_REP_ACK, NULL, 0);
            return 0;
        case NBD_OPT_EXPORT_NAME:
            return handle_export_name(&o, no_zeroes) == 1 ? 1 : -1;
        case NBD_OPT_INFO:
        case NBD_OPT_GO:
            ret = handle_info(&o);
            if (ret == 1) {
                return 1;
            }
            break;
        case NBD_OPT_STARTTLS:
            if (o.optlen) {
                ret = reject_length(&o);
            } else if (conn->tls) {
                ret = opt_drop(&o, NBD_REP_ERR_INVALID, "TLS already enabled");
            } else {
                ret = opt_drop(&o, NBD_REP_ERR_POLICY, "TLS not configured");
            }
            break;
        case NBD_OPT_STRUCTURED_REPLY:
            if (o.optlen) {
                ret = reject_length(&o);
            } else if (conn->structured) {
                ret = opt_drop(&o, NBD_REP_ERR_INVALID,
                               "structured reply already negotiated");
            } else {
                ret = send_rep(&o, NBD_REP_ACK, NULL, 0);
                conn->structured = true;
            }
            break;
        case NBD_OPT_LIST_META_CONTEXT:
        case NBD_OPT_SET_META_CONTEXT:
            ret = handle_meta(&o);
            break;
        default:
            ret = opt_drop(&o, NBD_REP_ERR_UNSUP, "Unsupported option %u (%s)",
                           o.opt, opt_name(o.opt));
            break;
        }
        if (ret < 0) {
            return -1;
        }
        /* Payload the handler did not look at (it never leaves any on
         * success, but be sure the stream stays in step). */
        if (o.optlen) {
            if (nbd_discard_input(conn, o.optlen) < 0) {
                return -1;
            }
            o.optlen = 0;
        }
    }
}
