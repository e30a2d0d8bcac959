/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - what the NBD server's files share: exports, connections and
 * the request that travels from the receiving thread to a worker.
 */
#ifndef STRATA_NBD_NBD_INT_H
#define STRATA_NBD_NBD_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "block/block.h"
#include "block/user.h"
#include "nbd/nbd.h"

typedef struct NbdConn NbdConn;

typedef struct NbdExport {
    char *id;
    char *name;
    char *description;        /* NULL when not set */
    /* The export's use of its node: permissions, werror/rerror with the
     * hold queue, and what the client sees (query-blockstats, /metrics;
     * no accounting only when it is off for the benchmark). */
    struct BlockUser *user;
    uint64_t size;
    uint16_t flags;           /* transmission flags, without DF */
    bool writable;
    bool writethrough;        /* every write is FUA */
    bool allocation_depth;    /* offers qemu:allocation-depth */

    /* Guarded by the registry lock (export.c). */
    int refcnt;               /* registry + one per attached client */
    bool shutting_down;       /* deleted; waits for clients to leave */
    NbdConn *clients;         /* linked through conn->exp_next */
    struct NbdExport *next;
} NbdExport;

/* The export's node: the user's, which a graph change (a filter
 * inserted above it) may move.  Stable inside a request's run. */
static inline BlockNode *nbd_export_node(const NbdExport *exp)
{
    return block_user_node(exp->user);
}

/* ---- export.c ---- */
/* Finds a live export by name and returns it with a reference. */
NbdExport *nbd_export_get(const char *name);
void nbd_export_put(NbdExport *exp);
/* Adds conn to the export's clients (so delete can disconnect it).
 * False if the export is being deleted. */
bool nbd_export_attach(NbdExport *exp, NbdConn *conn);
void nbd_export_detach(NbdExport *exp, NbdConn *conn);
/* A referenced snapshot of the live exports, for NBD_OPT_LIST; free with
 * nbd_export_list_free. */
NbdExport **nbd_export_list(size_t *count);
void nbd_export_list_free(NbdExport **list, size_t count);
/* Deletes every export (nbd-server-stop, shutdown): clients have
 * already been disconnected by the server. */
void nbd_export_delete_all(void);
/* Forced stop of every export's error policy, then waits until their
 * waiting requests have left the hold queues and had a moment to send
 * their replies, so clients see the errors before the connections
 * close. */
void nbd_export_fail_held(void);
/* The server tells the exports when it starts and stops: exports are
 * added only while it runs, and advertise MULTI_CONN unless it allows a
 * single connection.  (The exports never call into the server.) */
void nbd_exports_server_changed(bool running, uint32_t max_connections);

/* ---- one request, from the receiver to a worker (export-io.c) ---- */
typedef struct NbdExtent {
    uint32_t length;
    uint32_t flags;
} NbdExtent;

typedef struct NbdExtentList {
    NbdExtent *ext;
    size_t count;
    size_t cap;
} NbdExtentList;

/* Runs of a structured READ: data is in req->buf at the same relative
 * offset; holes are sent as OFFSET_HOLE chunks. */
typedef struct NbdSegment {
    uint64_t offset;
    uint32_t length;
    bool hole;
} NbdSegment;

typedef struct NbdRequest {
    /* From the wire. */
    uint16_t flags;
    uint16_t type;
    uint64_t cookie;
    uint64_t offset;
    uint32_t len;

    /* What the connection negotiated. */
    bool structured;
    bool ctx_base;            /* base:allocation selected */
    bool ctx_depth;           /* qemu:allocation-depth selected */

    /* Payload of WRITE / data of READ: buf_cap bytes, page aligned. */
    uint8_t *buf;
    size_t buf_cap;

    /* Results. */
    NbdSegment *segs;
    size_t nsegs;
    size_t segs_cap;
    NbdExtentList extents[2]; /* by meta context id */
    const char *errmsg;       /* message for a structured error */
    char msgbuf[160];

    struct NbdRequest *next;  /* free list / work queue */
} NbdRequest;

/* The one place every transmission request passes through: validates it
 * against the export (read-only, bounds, flags) and runs it on the block
 * layer.  Returns 0 or -errno with req->errmsg set. */
int nbd_export_do_request(NbdExport *exp, NbdRequest *req);
/* Makes req->buf hold at least len bytes.  -ENOMEM on failure. */
int nbd_request_reserve(NbdRequest *req, size_t len);
/* Releases cached memory beyond what is worth keeping between requests. */
void nbd_request_trim(NbdRequest *req);
void nbd_request_free_buffers(NbdRequest *req);

/* ---- wire.c: whole-buffer I/O on a connection (socket or TLS) ---- */
/* 0 on success, -EPIPE/-errno on error, -ECONNRESET on EOF. */
int nbd_read_full(NbdConn *conn, void *buf, size_t len);
int nbd_writev_full(NbdConn *conn, struct iovec *iov, int iovcnt, bool more);
int nbd_write_full(NbdConn *conn, const void *buf, size_t len);
/* Reads and discards len bytes. */
int nbd_discard_input(NbdConn *conn, uint64_t len);

/* Buffered input for the transmission phase: one recv() usually brings
 * in many requests (a client at queue depth 32 sends them in bursts),
 * so the receiving thread makes one system call per burst, not two per
 * request. */
typedef struct NbdInbuf {
    NbdConn *conn;
    uint8_t *data;
    size_t cap;
    size_t start, end;        /* buffered bytes are data[start, end) */
} NbdInbuf;

static inline size_t nbd_inbuf_avail(const NbdInbuf *b)
{
    return b->end - b->start;
}
/* 0 or -ENOMEM. */
int nbd_inbuf_init(NbdInbuf *b, NbdConn *conn, size_t cap);
void nbd_inbuf_destroy(NbdInbuf *b);
/* Waits for more input and buffers as much as has arrived.  0, or
 * -ECONNRESET on EOF, or -errno. */
int nbd_inbuf_fill(NbdInbuf *b);
/* Copies len bytes out, from the buffer first and then straight from the
 * socket (large write payloads are not copied twice). */
int nbd_inbuf_read(NbdInbuf *b, void *dst, size_t len);
int nbd_inbuf_discard(NbdInbuf *b, uint64_t len);
/* Maps a block layer -errno to an NBD error value. */
uint32_t nbd_errno_to_wire(int err);

/* ---- connections (handshake.c, transmission.c, server.c) ---- */
typedef struct NbdWorkers NbdWorkers;

struct NbdConn {
    int fd;
    /* TLS: the server's credentials (a reference) and authz id (the
     * server's, which outlives its connections) when it requires TLS;
     * the session once STARTTLS has run. */
    struct StrataObject *tls_creds;
    const char *tls_authz;
    struct TlsSession *tls;
    NbdExport *exp;           /* after GO / EXPORT_NAME, one reference */
    bool structured;
    /* Selected meta contexts and the export they were selected for. */
    NbdExport *meta_exp;      /* compared only, no reference */
    bool ctx_base;
    bool ctx_depth;

    pthread_mutex_t send_lock;
    NbdWorkers *workers;      /* transmission.c */

    /* Handshake deadline while armed (deadline.c), else NULL; set by the
     * server before the handshake. */
    struct Armed *deadline;
    uint32_t handshake_max_seconds;   /* 0 = no deadline */

    NbdConn *exp_next;        /* export's client list */
    NbdConn *srv_next;        /* server's connection list */
    pthread_t thread;
};

/* ---- deadline.c: the handshake deadline ---- */
/* Shuts conn's socket down unless nbd_deadline_disarm is called within
 * seconds (0: no deadline). */
void nbd_deadline_arm(NbdConn *conn, uint32_t seconds);
void nbd_deadline_disarm(NbdConn *conn);
/* Connections dropped so far (tests and logs). */
uint64_t nbd_deadline_dropped(void);

/* Runs the fixed-newstyle handshake.  Returns 1 when the connection
 * entered transmission (conn->exp set), 0 when the client ended it
 * cleanly (ABORT), -1 on a protocol or I/O error. */
int nbd_handshake(NbdConn *conn);
/* Serves requests until the client disconnects or the socket is shut
 * down; waits for in-flight requests before returning. */
void nbd_transmission(NbdConn *conn);
/* Runs one whole connection on the calling thread: handshake, then
 * transmission, then releases the export.  Does not close fd.  Used by
 * the server's connection threads and by the fuzz target. */
void nbd_conn_serve(NbdConn *conn);
void nbd_conn_init(NbdConn *conn, int fd);
void nbd_conn_destroy(NbdConn *conn);

#endif
