/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - NBD transmission phase: one receiving thread per connection
 * reads requests (and write payloads) and hands them to a small pool of
 * worker threads that call the export and send the reply under the
 * connection's send lock.  Replies may go out of order.
 *
 * Back-pressure: a connection has NBD_MAX_INFLIGHT request slots; when
 * all are busy the receiver stops reading, so a client that floods
 * requests (or never reads replies) cannot make the server queue without
 * bound.  Slots keep their buffers between requests, so the hot path
 * does not allocate.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "crypto/object.h"
#include "crypto/tls-session.h"
#include "nbd/nbd-int.h"
#include "nbd/protocol.h"
#include "util/cleanup.h"
#include "util/log.h"

#define NBD_MAX_INFLIGHT 64
#define NBD_MAX_WORKERS  16
/* Input buffer per connection: room for a burst of requests with small
 * write payloads. */
#define NBD_INBUF_SIZE   (128 * 1024)
#define NBD_SNDBUF_SIZE  (2 * 1024 * 1024)
/* Longest request the receiving thread may run itself (run_inline). */
#define NBD_INLINE_MAX   (64 * 1024)
/* Workers per connection: 2 per CPU, at least 4, at most 16.  On a small
 * host more threads only add context switches (measured: 4 workers beat
 * 16 by ~1.3x on 2 CPUs for 4k random reads). */
static int max_workers(void)
{
    static _Atomic int cached;
    if (!cached) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cached = n < 2 ? 4 : (int)MIN(MAX(2 * n, 4), NBD_MAX_WORKERS);
    }
    return cached;
}

struct NbdWorkers {
    NbdConn *conn;
    pthread_mutex_t lock;
    pthread_cond_t work_cond;     /* workers: queue not empty or stop */
    pthread_cond_t slot_cond;     /* receiver: a slot came back */
    NbdRequest slots[NBD_MAX_INFLIGHT];
    NbdRequest *free_list;
    NbdRequest *queue_head, *queue_tail;
    int inflight;
    int nworkers;
    int idle;
    bool stop;
    bool dead;                    /* a send failed: stop serving */
    pthread_t threads[NBD_MAX_WORKERS];
};

/* ---- replies ---- */

static void put_chunk_header(uint8_t *p, uint16_t flags, uint16_t type,
                             uint64_t cookie, uint32_t len)
{
    nbd_put32(p, NBD_STRUCTURED_REPLY_MAGIC);
    nbd_put16(p + 4, flags);
    nbd_put16(p + 6, type);
    nbd_put64(p + 8, cookie);
    nbd_put32(p + 16, len);
}

static int send_simple(NbdConn *conn, NbdRequest *req, uint32_t err,
                       const void *data, size_t len)
{
    uint8_t hdr[NBD_SIMPLE_REPLY_SIZE];
    nbd_put32(hdr, NBD_SIMPLE_REPLY_MAGIC);
    nbd_put32(hdr + 4, err);
    nbd_put64(hdr + 8, req->cookie);
    struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)data, len } };
    return nbd_writev_full(conn, iov, len ? 2 : 1, false);
}

static int send_error(NbdConn *conn, NbdRequest *req, int err)
{
    uint32_t wire = nbd_errno_to_wire(err);

    if (!req->structured) {
        return send_simple(conn, req, wire, NULL, 0);
    }
    const char *msg = req->errmsg ? req->errmsg : "";
    size_t mlen = strlen(msg);
    uint8_t hdr[NBD_CHUNK_HEADER_SIZE + 6];
    put_chunk_header(hdr, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR,
                     req->cookie, 6 + mlen);
    nbd_put32(hdr + NBD_CHUNK_HEADER_SIZE, wire);
    nbd_put16(hdr + NBD_CHUNK_HEADER_SIZE + 4, mlen);
    struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)msg, mlen } };
    return nbd_writev_full(conn, iov, 2, false);
}

/* Structured READ: one chunk per segment, batched into few sendmsg()s. */
static int send_read_chunks(NbdConn *conn, NbdRequest *req)
{
    enum { BATCH = 32 };
    uint8_t hdrs[BATCH][NBD_CHUNK_HEADER_SIZE + 12];
    struct iovec iov[BATCH * 2];

    if (req->nsegs == 0) {
        put_chunk_header(hdrs[0], NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE,
                         req->cookie, 0);
        return nbd_write_full(conn, hdrs[0], NBD_CHUNK_HEADER_SIZE);
    }
    for (size_t first = 0; first < req->nsegs; first += BATCH) {
        size_t n = MIN((size_t)BATCH, req->nsegs - first);
        int iovcnt = 0;
        for (size_t i = 0; i < n; i++) {
            NbdSegment *s = &req->segs[first + i];
            uint8_t *h = hdrs[i];
            uint16_t flags = first + i == req->nsegs - 1 ? NBD_REPLY_FLAG_DONE : 0;
            if (s->hole) {
                put_chunk_header(h, flags, NBD_REPLY_TYPE_OFFSET_HOLE,
                                 req->cookie, 12);
                nbd_put64(h + NBD_CHUNK_HEADER_SIZE, s->offset);
                nbd_put32(h + NBD_CHUNK_HEADER_SIZE + 8, s->length);
                iov[iovcnt++] = (struct iovec){ h, NBD_CHUNK_HEADER_SIZE + 12 };
            } else {
                put_chunk_header(h, flags, NBD_REPLY_TYPE_OFFSET_DATA,
                                 req->cookie, 8 + s->length);
                nbd_put64(h + NBD_CHUNK_HEADER_SIZE, s->offset);
                iov[iovcnt++] = (struct iovec){ h, NBD_CHUNK_HEADER_SIZE + 8 };
                iov[iovcnt++] = (struct iovec){
                    req->buf + (s->offset - req->offset), s->length };
            }
        }
        bool more = first + n < req->nsegs;
        int ret = nbd_writev_full(conn, iov, iovcnt, more);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static int send_block_status(NbdConn *conn, NbdRequest *req)
{
    int ids[2], n = 0;

    if (req->ctx_base) {
        ids[n++] = NBD_META_ID_BASE_ALLOCATION;
    }
    if (req->ctx_depth) {
        ids[n++] = NBD_META_ID_ALLOCATION_DEPTH;
    }
    for (int i = 0; i < n; i++) {
        NbdExtentList *l = &req->extents[ids[i]];
        uint8_t hdr[NBD_CHUNK_HEADER_SIZE + 4];
        /* Convert the extents to wire order in place. */
        for (size_t e = 0; e < l->count; e++) {
            NbdExtent x = l->ext[e];
            nbd_put32((uint8_t *)&l->ext[e].length, x.length);
            nbd_put32((uint8_t *)&l->ext[e].flags, x.flags);
        }
        put_chunk_header(hdr, i == n - 1 ? NBD_REPLY_FLAG_DONE : 0,
                         NBD_REPLY_TYPE_BLOCK_STATUS, req->cookie,
                         4 + l->count * sizeof(NbdExtent));
        nbd_put32(hdr + NBD_CHUNK_HEADER_SIZE, ids[i]);
        struct iovec iov[2] = {
            { hdr, sizeof(hdr) },
            { l->ext, l->count * sizeof(NbdExtent) },
        };
        int ret = nbd_writev_full(conn, iov, 2, i < n - 1);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static int send_reply(NbdConn *conn, NbdRequest *req, int ret)
{
    LOCK_GUARD(&conn->send_lock);

    if (ret < 0) {
        return send_error(conn, req, ret);
    }
    switch (req->type) {
    case NBD_CMD_READ:
        if (req->structured) {
            return send_read_chunks(conn, req);
        }
        return send_simple(conn, req, 0, req->buf, req->len);
    case NBD_CMD_BLOCK_STATUS:
        return send_block_status(conn, req);
    default:
        return send_simple(conn, req, 0, NULL, 0);
    }
}

/* Runs a request and replies; on a dead socket, wakes the receiver. */
static void process(NbdWorkers *w, NbdRequest *req)
{
    NbdConn *conn = w->conn;
    int ret = nbd_export_do_request(conn->exp, req);

    if (send_reply(conn, req, ret) < 0) {
        pthread_mutex_lock(&w->lock);
        w->dead = true;
        pthread_mutex_unlock(&w->lock);
        shutdown(conn->fd, SHUT_RDWR);
    }
}

/* ---- worker pool ---- */

static void release_slot_locked(NbdWorkers *w, NbdRequest *req)
{
    nbd_request_trim(req);
    req->next = w->free_list;
    w->free_list = req;
    w->inflight--;
    pthread_cond_signal(&w->slot_cond);
}

static void *worker_main(void *opaque)
{
    NbdWorkers *w = opaque;

    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->queue_head && !w->stop) {
            w->idle++;
            pthread_cond_wait(&w->work_cond, &w->lock);
            w->idle--;
        }
        NbdRequest *req = w->queue_head;
        if (!req) {
            break;
        }
        w->queue_head = req->next;
        if (!w->queue_head) {
            w->queue_tail = NULL;
        }
        pthread_mutex_unlock(&w->lock);

        process(w, req);

        pthread_mutex_lock(&w->lock);
        release_slot_locked(w, req);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* A run of received requests not yet handed to the workers: the
 * receiver collects what one recv() brought in and queues it at once, so
 * the queue lock is taken and workers are woken once per burst. */
typedef struct Batch {
    NbdRequest *head, *tail;
    int count;
} Batch;

static void batch_add(Batch *b, NbdRequest *req)
{
    req->next = NULL;
    if (b->tail) {
        b->tail->next = req;
    } else {
        b->head = req;
    }
    b->tail = req;
    b->count++;
}

/* Queues the batch for the workers, waking idle ones and starting more
 * (up to the limit) when the batch is larger than the idle set.  Runs
 * the requests on the receiving thread only when no worker thread
 * exists and none can be started. */
static void dispatch(NbdWorkers *w, Batch *b)
{
    if (!b->head) {
        return;
    }
    pthread_mutex_lock(&w->lock);
    if (w->queue_tail) {
        w->queue_tail->next = b->head;
    } else {
        w->queue_head = b->head;
    }
    w->queue_tail = b->tail;
    int wake = MIN(b->count, w->idle);
    int want = b->count - w->idle;
    while (want-- > 0 && w->nworkers < max_workers() &&
           pthread_create(&w->threads[w->nworkers], NULL, worker_main,
                          w) == 0) {
        w->nworkers++;
    }
    *b = (Batch){ NULL, NULL, 0 };
    if (w->nworkers == 0) {
        while (w->queue_head) {
            NbdRequest *req = w->queue_head;
            w->queue_head = req->next;
            pthread_mutex_unlock(&w->lock);
            process(w, req);
            pthread_mutex_lock(&w->lock);
            release_slot_locked(w, req);
        }
        w->queue_tail = NULL;
    } else {
        /* One wake-up per queued request, not a stampede of all idle
         * workers for one request. */
        while (wake-- > 0) {
            pthread_cond_signal(&w->work_cond);
        }
    }
    pthread_mutex_unlock(&w->lock);
}

/* A free slot, waiting for one when wait is set; NULL when none (or the
 * connection is dead). */
static NbdRequest *get_slot(NbdWorkers *w, bool wait)
{
    LOCK_GUARD(&w->lock);
    while (wait && !w->free_list && !w->dead) {
        pthread_cond_wait(&w->slot_cond, &w->lock);
    }
    if (w->dead || !w->free_list) {
        return NULL;
    }
    NbdRequest *req = w->free_list;
    w->free_list = req->next;
    w->inflight++;
    return req;
}

static void put_slot(NbdWorkers *w, NbdRequest *req)
{
    LOCK_GUARD(&w->lock);
    release_slot_locked(w, req);
}

/* Handles one request header from the input buffer.  Returns 1 to
 * continue, 0 to stop reading (DISC, EOF, framing error or dead
 * socket).  Before anything that may block (waiting for a slot, reading
 * a payload that has not fully arrived) the batch is dispatched, so
 * requests already received never wait behind the socket. */
static int receive_one(NbdConn *conn, NbdWorkers *w, NbdInbuf *in,
                       Batch *batch, NbdRequest **out)
{
    uint8_t hdr[NBD_REQUEST_SIZE];

    nbd_inbuf_read(in, hdr, sizeof(hdr));
    if (nbd_get32(hdr) != NBD_REQUEST_MAGIC) {
        log_debug("nbd: invalid request magic 0x%x", nbd_get32(hdr));
        return 0;
    }
    uint16_t type = nbd_get16(hdr + 6);
    if (type == NBD_CMD_DISC) {
        return 0;
    }
    NbdRequest *req = get_slot(w, false);
    if (!req) {
        dispatch(w, batch);
        req = get_slot(w, true);
        if (!req) {
            return 0;
        }
    }
    req->flags = nbd_get16(hdr + 4);
    req->type = type;
    req->cookie = nbd_get64(hdr + 8);
    req->offset = nbd_get64(hdr + 16);
    req->len = nbd_get32(hdr + 24);
    req->structured = conn->structured;
    req->ctx_base = conn->ctx_base;
    req->ctx_depth = conn->ctx_depth;
    req->errmsg = NULL;

    bool has_buffer = type == NBD_CMD_READ || type == NBD_CMD_WRITE;
    if ((has_buffer || type == NBD_CMD_CACHE) &&
        req->len > NBD_MAX_BUFFER_SIZE) {
        /* The stray space is qsd 7.2's text, kept byte for byte. */
        snprintf(req->msgbuf, sizeof(req->msgbuf),
                 "len (%u ) is larger than max len (%u)", req->len,
                 NBD_MAX_BUFFER_SIZE);
        req->errmsg = req->msgbuf;
        int sent = send_reply(conn, req, -EINVAL);
        put_slot(w, req);
        /* The payload of an oversized write cannot be trusted to be
         * there: the stream is out of step, so hang up (as qsd does). */
        return sent == 0 && type != NBD_CMD_WRITE;
    }
    if (has_buffer && nbd_request_reserve(req, req->len) < 0) {
        req->errmsg = "No memory";
        int sent = send_reply(conn, req, -ENOMEM);
        put_slot(w, req);
        if (type == NBD_CMD_WRITE) {
            dispatch(w, batch);
            return nbd_inbuf_discard(in, req->len) == 0 && sent == 0;
        }
        return sent == 0;
    }
    if (type == NBD_CMD_WRITE) {
        if (req->len > nbd_inbuf_avail(in)) {
            dispatch(w, batch);
        }
        if (nbd_inbuf_read(in, req->buf, req->len) < 0) {
            put_slot(w, req);
            return 0;
        }
    }
    *out = req;
    return 1;
}

/* Whether the receiver runs req itself rather than hand it over.  When
 * nothing else has arrived, handing a short read or write to a worker
 * only adds two thread switches (measured: most of the server's CPU at
 * 4 KiB and queue depth 32 on 2 CPUs went to futex wake-ups); running
 * it here delays reading the next requests by one short request, and
 * whatever arrives meanwhile is read in one go and goes to the workers.
 * Flushes, FUA writes and long requests, which may wait on the disk,
 * always go to a worker. */
static bool run_inline(const NbdConn *conn, const NbdRequest *req,
                       const NbdInbuf *in)
{
    /* Never while the export holds requests (paused on ENOSPC, or
     * requests queued behind held ones): the request would wait on this
     * thread, and the client's later requests, a disconnect included,
     * would go unread until the export resumes. */
    return nbd_inbuf_avail(in) < NBD_REQUEST_SIZE &&
           (req->type == NBD_CMD_READ || req->type == NBD_CMD_WRITE) &&
           !(req->flags & NBD_CMD_FLAG_FUA) && req->len <= NBD_INLINE_MAX &&
           !block_user_would_wait(conn->exp->user);
}

static void receive_loop(NbdConn *conn, NbdWorkers *w)
{
    NbdInbuf in;
    Batch batch = { NULL, NULL, 0 };

    if (nbd_inbuf_init(&in, conn, NBD_INBUF_SIZE) < 0) {
        return;
    }
    for (;;) {
        if (nbd_inbuf_avail(&in) < NBD_REQUEST_SIZE) {
            dispatch(w, &batch);
            if (nbd_inbuf_fill(&in) < 0) {
                break;
            }
            continue;
        }
        NbdRequest *req = NULL;
        if (!receive_one(conn, w, &in, &batch, &req)) {
            break;
        }
        if (!req) {
            continue;
        }
        if (run_inline(conn, req, &in)) {
            dispatch(w, &batch);
            process(w, req);
            put_slot(w, req);
        } else {
            batch_add(&batch, req);
        }
    }
    dispatch(w, &batch);
    nbd_inbuf_destroy(&in);
}

void nbd_transmission(NbdConn *conn)
{
    NbdWorkers *w = calloc(1, sizeof(*w));
    if (!w) {
        return;
    }
    w->conn = conn;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->work_cond, NULL);
    pthread_cond_init(&w->slot_cond, NULL);
    for (int i = NBD_MAX_INFLIGHT - 1; i >= 0; i--) {
        w->slots[i].next = w->free_list;
        w->free_list = &w->slots[i];
    }
    conn->workers = w;
    /* Room for a whole large reply in the socket: with the default
     * (about 200 KiB) a 1 MiB READ reply goes out in five rounds of
     * sender wake-ups while holding the send lock.  The kernel caps the
     * value at net.core.wmem_max; a failure only costs speed. */
    int sndbuf = NBD_SNDBUF_SIZE;
    setsockopt(conn->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));

    receive_loop(conn, w);

    /* Finish what is in flight (its replies still go out unless the
     * socket is gone), then stop the workers. */
    pthread_mutex_lock(&w->lock);
    while (w->inflight > 0) {
        pthread_cond_wait(&w->slot_cond, &w->lock);
    }
    w->stop = true;
    pthread_cond_broadcast(&w->work_cond);
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < w->nworkers; i++) {
        pthread_join(w->threads[i], NULL);
    }
    for (int i = 0; i < NBD_MAX_INFLIGHT; i++) {
        nbd_request_free_buffers(&w->slots[i]);
    }
    pthread_cond_destroy(&w->slot_cond);
    pthread_cond_destroy(&w->work_cond);
    pthread_mutex_destroy(&w->lock);
    conn->workers = NULL;
    free(w);
}

void nbd_conn_init(NbdConn *conn, int fd)
{
    memset(conn, 0, sizeof(*conn));
    conn->fd = fd;
    pthread_mutex_init(&conn->send_lock, NULL);
}

void nbd_conn_destroy(NbdConn *conn)
{
    tls_session_free(conn->tls);
    conn->tls = NULL;
    if (conn->tls_creds) {
        object_unref(conn->tls_creds);
        conn->tls_creds = NULL;
    }
    conn->tls_authz = NULL;
    pthread_mutex_destroy(&conn->send_lock);
}

void nbd_conn_serve(NbdConn *conn)
{
    nbd_deadline_arm(conn, conn->handshake_max_seconds);
    int ret = nbd_handshake(conn);
    nbd_deadline_disarm(conn);
    if (ret == 1) {
        nbd_transmission(conn);
    }
    if (conn->exp) {
        nbd_export_detach(conn->exp, conn);
        nbd_export_put(conn->exp);
        conn->exp = NULL;
    }
}
