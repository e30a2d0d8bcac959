/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - whole-buffer I/O on an NBD connection: the socket, or the
 * TLS session once STARTTLS has run (one branch per call, so plaintext
 * connections pay nothing for TLS).
 *
 * Sends use MSG_NOSIGNAL so a client that vanished gives -EPIPE instead
 * of killing the daemon with SIGPIPE.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "crypto/tls-session.h"
#include "nbd/nbd-int.h"
#include "nbd/protocol.h"
#include "util/cleanup.h"

/* One recv(2) (or TLS record read): bytes, or -errno, or 0 at EOF. */
static ssize_t conn_recv(NbdConn *conn, void *buf, size_t len)
{
    if (conn->tls) {
        return tls_session_recv(conn->tls, buf, len);
    }
    for (;;) {
        ssize_t n = recv(conn->fd, buf, len, 0);
        if (n >= 0 || errno != EINTR) {
            return n < 0 ? -errno : n;
        }
    }
}

int nbd_read_full(NbdConn *conn, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = conn_recv(conn, p, len);
        if (n < 0) {
            return n;
        }
        if (n == 0) {
            return -ECONNRESET;
        }
        p += n;
        len -= n;
    }
    return 0;
}

int nbd_writev_full(NbdConn *conn, struct iovec *iov, int iovcnt, bool more)
{
    if (conn->tls) {
        return tls_session_sendv(conn->tls, iov, iovcnt);
    }
    while (iovcnt > 0) {
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = iovcnt };
        ssize_t n = sendmsg(conn->fd, &msg,
                            MSG_NOSIGNAL | (more ? MSG_MORE : 0));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
            n -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + n;
            iov->iov_len -= n;
        }
    }
    return 0;
}

int nbd_write_full(NbdConn *conn, const void *buf, size_t len)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    return nbd_writev_full(conn, &iov, 1, false);
}

int nbd_discard_input(NbdConn *conn, uint64_t len)
{
    uint8_t scratch[16384];

    while (len > 0) {
        size_t n = MIN(len, sizeof(scratch));
        int ret = nbd_read_full(conn, scratch, n);
        if (ret < 0) {
            return ret;
        }
        len -= n;
    }
    return 0;
}

uint32_t nbd_errno_to_wire(int err)
{
    switch (err < 0 ? -err : err) {
    case 0:
        return 0;
    case EPERM:
    case EROFS:
        return NBD_EPERM;
    case EIO:
        return NBD_EIO;
    case ENOMEM:
        return NBD_ENOMEM;
#ifdef EDQUOT
    case EDQUOT:
#endif
    case EFBIG:
    case ENOSPC:
        return NBD_ENOSPC;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
    case EOPNOTSUPP:
#endif
        return NBD_ENOTSUP;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    case EINVAL:
    default:
        return NBD_EINVAL;
    }
}

int nbd_inbuf_init(NbdInbuf *b, NbdConn *conn, size_t cap)
{
    memset(b, 0, sizeof(*b));
    b->conn = conn;
    b->data = malloc(cap);
    if (!b->data) {
        return -ENOMEM;
    }
    b->cap = cap;
    return 0;
}

void nbd_inbuf_destroy(NbdInbuf *b)
{
    free(b->data);
    b->data = NULL;
}

int nbd_inbuf_fill(NbdInbuf *b)
{
    if (b->start == b->end) {
        b->start = b->end = 0;
    } else if (b->cap - b->end < NBD_REQUEST_SIZE) {
        /* Keep room for at least a whole request header. */
        memmove(b->data, b->data + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
    }
    ssize_t n = conn_recv(b->conn, b->data + b->end, b->cap - b->end);
    if (n < 0) {
        return n;
    }
    if (n == 0) {
        return -ECONNRESET;
    }
    b->end += n;
    return 0;
}

int nbd_inbuf_read(NbdInbuf *b, void *dst, size_t len)
{
    size_t n = MIN(len, nbd_inbuf_avail(b));

    memcpy(dst, b->data + b->start, n);
    b->start += n;
    return n == len ? 0 : nbd_read_full(b->conn, (uint8_t *)dst + n, len - n);
}

int nbd_inbuf_discard(NbdInbuf *b, uint64_t len)
{
    size_t n = MIN(len, (uint64_t)nbd_inbuf_avail(b));

    b->start += n;
    return n == len ? 0 : nbd_discard_input(b->conn, len - n);
}
