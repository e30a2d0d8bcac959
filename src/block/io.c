/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the I/O entry points.
 *
 * Every request, whoever makes it, passes through here once:
 *   1. in-flight count + drain gate   (block_io_begin/end)
 *   2. bounds: overflow -> -EINVAL, out of range -> -EIO
 *   3. read-only -> -EPERM for anything that modifies
 *   4. write threshold (QEMU semantics, one-shot, per node)
 *   5. accounting hook (see ACCOUNTING below)
 *   6. alignment: read-modify-write when request_alignment > 1, with
 *      overlapping writes serialised so none is lost
 *   7. splitting at max_transfer, zero fallback, FUA handling
 *   8. the driver
 * The hot path takes only the node's drain mutex (twice) and, for nodes
 * that need alignment, the node's write tracker mutex; it allocates only
 * RMW bounce buffers.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "block/accounting.h"
#include "block/block_core.h"
#include "util/cleanup.h"

/* Memory alignment of bounce buffers: enough for O_DIRECT everywhere. */
#define BOUNCE_ALIGN 4096
/* Size of the shared zero buffer used when a driver cannot write zeroes. */
#define ZERO_BUF_SIZE (1024 * 1024)

/* ---- drain gate ---- */

/* Drains this thread holds: its own requests pass the gate, so a
 * drained section can still update metadata (e.g. a job rewriting a
 * backing link while the node is quiesced).  Per thread, not per node:
 * a thread holding a drain passes every node's gate. */
static __thread int drains_held;

void block_io_begin(BlockNode *bs)
{
    LOCK_GUARD(&bs->drain_lock);
    while (bs->quiesce_counter > 0 && drains_held == 0) {
        pthread_cond_wait(&bs->drain_cond, &bs->drain_lock);
    }
    bs->in_flight++;
}

void block_io_end(BlockNode *bs)
{
    LOCK_GUARD(&bs->drain_lock);
    if (--bs->in_flight == 0 && bs->quiesce_counter > 0) {
        pthread_cond_broadcast(&bs->drain_cond);
    }
}

void block_drain_begin(BlockNode *bs)
{
    LOCK_GUARD(&bs->drain_lock);
    bs->quiesce_counter++;
    drains_held++;
    while (bs->in_flight > 0) {
        pthread_cond_wait(&bs->drain_cond, &bs->drain_lock);
    }
}

void block_drain_end(BlockNode *bs)
{
    LOCK_GUARD(&bs->drain_lock);
    if (bs->quiesce_counter > 0) {
        bs->quiesce_counter--;
        /* Ending another thread's drain must not let this thread's
         * requests bypass gates. */
        if (drains_held > 0) {
            drains_held--;
        }
    }
    if (bs->quiesce_counter == 0) {
        pthread_cond_broadcast(&bs->drain_cond);
    }
}

/* ---- overlapping-write tracker ----
 * Used when request_alignment > 1 (read-modify-write must not lose a
 * concurrent write) and while a copy-on-read is enabled on the node (a
 * copy must not write stale backing data over a client's write). */

struct BlockWriteTracker {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    TrackedWrite *head;
};

bool block_io_node_init(BlockNode *bs)
{
    if (!block_acct_benchmark_off()) {
        BlockAcctOptions o;
        block_acct_options_init(&o);
        bs->acct = block_acct_new(&o, NULL);
        if (!bs->acct) {
            return false;
        }
    }
    struct BlockWriteTracker *t = calloc(1, sizeof(*t));
    if (!t) {
        block_acct_free(bs->acct);
        bs->acct = NULL;
        return false;
    }
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    bs->write_tracker = t;
    return true;
}

void block_io_node_cleanup(BlockNode *bs)
{
    struct BlockWriteTracker *t = bs->write_tracker;
    if (t) {
        pthread_mutex_destroy(&t->lock);
        pthread_cond_destroy(&t->cond);
        free(t);
        bs->write_tracker = NULL;
    }
    block_acct_free(bs->acct);
    bs->acct = NULL;
}

/* The range this thread holds exclusively (a copy-on-read in progress):
 * its own writes inside it must not wait for themselves. */
static __thread const TrackedWrite *held_range;
static __thread const BlockNode *held_node;

/* A read-modify-write must not overlap any other write (it would write
 * back stale bytes); plain aligned writes only wait for RMWs. */
void block_tracker_enter(BlockNode *bs, TrackedWrite *w)
{
    struct BlockWriteTracker *t = bs->write_tracker;
    w->nested = held_node == bs && held_range->start <= w->start &&
                w->end <= held_range->end;
    if (w->nested) {
        return;
    }
    LOCK_GUARD(&t->lock);
    for (;;) {
        bool conflict = false;
        for (TrackedWrite *o = t->head; o; o = o->next) {
            if (o->start < w->end && w->start < o->end && (o->rmw || w->rmw)) {
                conflict = true;
                break;
            }
        }
        if (!conflict) {
            break;
        }
        pthread_cond_wait(&t->cond, &t->lock);
    }
    w->next = t->head;
    t->head = w;
}

void block_tracker_leave(BlockNode *bs, TrackedWrite *w)
{
    struct BlockWriteTracker *t = bs->write_tracker;
    if (w->nested) {
        return;
    }
    LOCK_GUARD(&t->lock);
    for (TrackedWrite **pp = &t->head; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    }
    pthread_cond_broadcast(&t->cond);
}

void block_tracker_hold(BlockNode *bs, const TrackedWrite *w)
{
    held_node = bs;
    held_range = w;
}

void block_tracker_unhold(void)
{
    held_node = NULL;
    held_range = NULL;
}

/* Whether a modifying request must take a tracker entry. */
static inline bool must_track(BlockNode *bs)
{
    return bs->request_alignment > 1 ||
           atomic_load_explicit(&bs->serialise_writes, memory_order_acquire);
}

/* ---- helpers ---- */

static pthread_once_t zero_buf_once = PTHREAD_ONCE_INIT;
static void *zero_buf;

static void zero_buf_init(void)
{
    void *p = NULL;
    if (posix_memalign(&p, BOUNCE_ALIGN, ZERO_BUF_SIZE) == 0) {
        memset(p, 0, ZERO_BUF_SIZE);
        zero_buf = p;
    }
}

static void *bounce_alloc(uint64_t bytes)
{
    void *p = NULL;
    if (bytes > SIZE_MAX || posix_memalign(&p, BOUNCE_ALIGN, (size_t)bytes) != 0) {
        return NULL;
    }
    return p;
}

/* A filter over a file that grows on write grows with it: a format
 * appending clusters through blkdebug must reach the file's end as it
 * would without the filter. */
static bool grows_on_write(const BlockNode *bs)
{
    while (bs->drv->is_filter && bs->file && !bs->drv->grows_on_write) {
        bs = bs->file;
    }
    return bs->drv->grows_on_write;
}

/* Overflow and range checks.  Nodes that grow on write take requests
 * past their end (a format driver appending clusters) and read zeroes
 * there. */
static int check_request(BlockNode *bs, uint64_t offset, uint64_t bytes,
                         bool is_write)
{
    if (offset > INT64_MAX || bytes > INT64_MAX || offset + bytes > INT64_MAX) {
        return -EINVAL;
    }
    if (grows_on_write(bs)) {
        return 0;
    }
    uint64_t size = block_node_size(bs);
    if (offset > size || bytes > size - offset) {
        return -EIO;
    }
    (void)is_write;
    return 0;
}

/* QEMU's write threshold: fires once when a modifying request ends
 * strictly past the armed threshold, then disarms.  The CAS makes the
 * disarm atomic so concurrent writers emit exactly one event. */
static void check_write_threshold(BlockNode *bs, uint64_t offset, uint64_t bytes)
{
    uint64_t end = offset + bytes;
    uint64_t t = atomic_load(&bs->write_threshold);
    while (t != 0 && end > t) {
        if (atomic_compare_exchange_weak(&bs->write_threshold, &t, 0)) {
            json_t *data = json_pack("{s:s, s:I, s:I}",
                                     "node-name", block_node_name(bs),
                                     "amount-exceeded", (json_int_t)(end - t),
                                     "write-threshold", (json_int_t)t);
            if (data) {
                block_emit_event("BLOCK_WRITE_THRESHOLD", data);
            }
            return;
        }
    }
}

static void write_done(BlockNode *bs, uint64_t offset, uint64_t bytes)
{
    uint64_t end = offset + bytes;
    block_atomic_max(&bs->wr_highest_offset, end);
    if (grows_on_write(bs)) {
        block_atomic_max(&bs->total_size, end);
    }
}

/* ACCOUNTING: every entry point calls io_acct_start() after the checks
 * above and io_acct_done() with the result; requests that fail the checks
 * are counted with io_acct_invalid().  QEMU's rules (accounting.h):
 * write-zeroes counts as a write, discard as unmap.  A request that waits
 * (drain, write tracker) is timed from its start, so what is reported is
 * the latency its caller saw.  Each request is also counted under the
 * origin this thread runs as (block_origin_set), or METADATA when the
 * driver marked it so. */
typedef struct IoAcct {
    BlockAcctCookie cookie;
    BlockOrigin saved_origin;
} IoAcct;

static __thread BlockOrigin cur_origin;

BlockOrigin block_origin_set(BlockOrigin origin)
{
    BlockOrigin prev = cur_origin;
    cur_origin = origin < BLOCK_ORIGIN__MAX ? origin : BLOCK_ORIGIN_CLIENT;
    return prev;
}

bool block_req_is_read(BlockReqType type)
{
    return type == BLOCK_REQ_READ || type == BLOCK_REQ_CACHE;
}

BlockOrigin block_origin_current(void)
{
    return cur_origin;
}

const char *block_origin_name(BlockOrigin origin)
{
    static const char *const names[BLOCK_ORIGIN__MAX] = {
        [BLOCK_ORIGIN_CLIENT] = "client",
        [BLOCK_ORIGIN_JOB] = "job",
        [BLOCK_ORIGIN_METADATA] = "metadata",
    };
    return origin < BLOCK_ORIGIN__MAX ? names[origin] : "client";
}

/* Metadata requests switch the thread's origin for as long as they run,
 * so what the driver does below them is metadata too. */
static inline void io_acct_start(BlockNode *bs, IoAcct *a, BlockReqType type,
                                 uint64_t bytes, int flags)
{
    a->saved_origin = cur_origin;
    if (flags & BLOCK_REQ_METADATA) {
        cur_origin = BLOCK_ORIGIN_METADATA;
    }
    if (bs->acct) {
        block_acct_start_origin(bs->acct, &a->cookie,
                                block_req_acct_type(type), bytes, cur_origin);
    } else {
        a->cookie.type = BLOCK_ACCT_NONE;
    }
}

static inline void io_acct_done(BlockNode *bs, IoAcct *a, int ret)
{
    cur_origin = a->saved_origin;
    if (!bs->acct) {
        return;
    }
    if (ret < 0) {
        block_acct_failed(bs->acct, &a->cookie);
    } else {
        block_acct_done(bs->acct, &a->cookie);
    }
}

static inline void io_acct_invalid(BlockNode *bs, BlockReqType type)
{
    if (bs->acct) {
        block_acct_invalid(bs->acct, block_req_acct_type(type));
    }
}

static uint64_t max_chunk(BlockNode *bs)
{
    uint64_t align = bs->request_alignment ? bs->request_alignment : 1;
    uint64_t mt = bs->max_transfer;
    if (mt == 0) {
        return UINT64_MAX;
    }
    mt = mt / align * align;
    return mt ? mt : align;
}

/* ---- driver calls with splitting ---- */

static int drv_read(BlockNode *bs, uint64_t offset, uint64_t bytes, void *buf,
                    int flags)
{
    /* Past the end of a node that grows on write reads zeroes (see
     * check_request). */
    if (grows_on_write(bs)) {
        uint64_t size = block_node_size(bs);
        if (offset >= size) {
            memset(buf, 0, bytes);
            return 0;
        }
        if (bytes > size - offset) {
            memset((char *)buf + (size - offset), 0, bytes - (size - offset));
            bytes = size - offset;
        }
    }
    uint64_t chunk = max_chunk(bs);
    while (bytes > 0) {
        uint64_t n = MIN(bytes, chunk);
        int ret = bs->drv->pread(bs, offset, n, buf, flags);
        if (ret < 0) {
            return ret;
        }
        offset += n;
        bytes -= n;
        buf = (char *)buf + n;
    }
    return 0;
}

static int drv_write(BlockNode *bs, uint64_t offset, uint64_t bytes,
                     const void *buf, int flags)
{
    if (!bs->drv->pwrite) {
        return -EPERM;
    }
    uint64_t chunk = max_chunk(bs);
    while (bytes > 0) {
        uint64_t n = MIN(bytes, chunk);
        /* FUA stays on every chunk: each must be durable on return. */
        int ret = bs->drv->pwrite(bs, offset, n, buf, flags);
        if (ret < 0) {
            return ret;
        }
        offset += n;
        bytes -= n;
        buf = (const char *)buf + n;
    }
    return 0;
}

/* Writes zeroes to an aligned range: the driver's fast path, or a buffer
 * of zeroes unless the caller asked for no fallback. */
static int drv_write_zeroes(BlockNode *bs, uint64_t offset, uint64_t bytes,
                            int flags)
{
    int ret = -ENOTSUP;
    if (bs->drv->pwrite_zeroes) {
        uint64_t chunk = max_chunk(bs);
        uint64_t off = offset, left = bytes;
        ret = 0;
        while (left > 0) {
            uint64_t n = MIN(left, chunk);
            ret = bs->drv->pwrite_zeroes(bs, off, n, flags);
            if (ret < 0) {
                break;
            }
            off += n;
            left -= n;
        }
        if (ret != -ENOTSUP) {
            return ret;
        }
        /* The driver wrote nothing useful for the rest; redo the rest
         * from where it stopped with the fallback. */
        bytes -= off - offset;
        offset = off;
    }
    if (flags & BLOCK_REQ_NO_FALLBACK) {
        return -ENOTSUP;
    }
    pthread_once(&zero_buf_once, zero_buf_init);
    if (!zero_buf) {
        return -ENOMEM;
    }
    uint64_t align = bs->request_alignment ? bs->request_alignment : 1;
    uint64_t chunk = MIN(max_chunk(bs), (uint64_t)ZERO_BUF_SIZE / align * align);
    while (bytes > 0) {
        uint64_t n = MIN(bytes, chunk);
        ret = drv_write(bs, offset, n, zero_buf, flags & BLOCK_REQ_FUA);
        if (ret < 0) {
            return ret;
        }
        offset += n;
        bytes -= n;
    }
    return 0;
}

/* Read-modify-write of [offset, offset + bytes) on a node that needs
 * alignment; buf NULL writes zeroes.  The caller holds a tracker entry
 * with rmw set over the aligned range. */
static int rmw_write(BlockNode *bs, uint64_t offset, uint64_t bytes,
                     const void *buf, int flags, uint64_t limit)
{
    uint64_t align = bs->request_alignment;
    uint64_t end = offset + bytes;
    uint64_t astart = ALIGN_DOWN(offset, align);
    uint64_t aend = MIN(ALIGN_UP(end, align), MAX(limit, end));
    CLEANUP_FREE void *bounce = bounce_alloc(aend - astart);
    if (!bounce) {
        return -ENOMEM;
    }
    int ret;
    char *b = bounce;
    if (aend - astart <= 2 * align) {
        ret = drv_read(bs, astart, aend - astart, b, 0);
    } else {
        uint64_t head_end = astart + align;
        uint64_t tail_start = ALIGN_DOWN(aend - 1, align);
        ret = 0;
        if (offset != astart) {
            ret = drv_read(bs, astart, head_end - astart, b, 0);
        }
        if (ret == 0 && end != aend) {
            ret = drv_read(bs, tail_start, aend - tail_start,
                           b + (tail_start - astart), 0);
        }
    }
    if (ret < 0) {
        return ret;
    }
    if (buf) {
        memcpy(b + (offset - astart), buf, bytes);
    } else {
        memset(b + (offset - astart), 0, bytes);
    }
    return drv_write(bs, astart, aend - astart, b, flags);
}

/* Upper bound for aligned ranges: nodes that grow on write have none,
 * the others stop at their size. */
static uint64_t align_limit(BlockNode *bs)
{
    return grows_on_write(bs) ? UINT64_MAX : block_node_size(bs);
}

static bool needs_rmw(BlockNode *bs, uint64_t offset, uint64_t bytes)
{
    uint64_t align = bs->request_alignment;
    if (align <= 1) {
        return false;
    }
    uint64_t end = offset + bytes;
    /* An unaligned end is fine where it is also the end of the node. */
    bool end_ok = IS_ALIGNED(end, align) ||
                  (!grows_on_write(bs) && end == block_node_size(bs));
    return !IS_ALIGNED(offset, align) || !end_ok;
}

static void tracked_range(BlockNode *bs, uint64_t offset, uint64_t bytes,
                          TrackedWrite *w)
{
    uint64_t align = bs->request_alignment ? bs->request_alignment : 1;
    w->start = ALIGN_DOWN(offset, align);
    w->end = ALIGN_UP(offset + bytes, align);
    w->rmw = needs_rmw(bs, offset, bytes);
    w->nested = false;
    w->next = NULL;
}

/* ---- entry points ---- */

int block_read(BlockNode *bs, uint64_t offset, uint64_t bytes, void *buf,
               int flags)
{
    int ret = check_request(bs, offset, bytes, false);
    if (ret < 0) {
        io_acct_invalid(bs, BLOCK_REQ_READ);
        return ret;
    }
    if (bytes == 0) {
        return 0;
    }
    block_io_begin(bs);
    if (atomic_load_explicit(&bs->copy_on_read, memory_order_relaxed) &&
        !(flags & (BLOCK_REQ_NO_COPY | BLOCK_REQ_METADATA)) &&
        block_origin_current() == BLOCK_ORIGIN_CLIENT) {
        /* In flight already, so turning copy-on-read off waits for it. */
        block_read_copy_first(bs, offset, bytes);
    }
    IoAcct acct;
    io_acct_start(bs, &acct, BLOCK_REQ_READ, bytes, flags);
    flags &= ~(BLOCK_REQ_METADATA | BLOCK_REQ_NO_COPY);

    uint64_t align = bs->request_alignment;
    if (align > 1 && needs_rmw(bs, offset, bytes)) {
        uint64_t end = offset + bytes;
        uint64_t astart = ALIGN_DOWN(offset, align);
        uint64_t aend = MIN(ALIGN_UP(end, align), MAX(align_limit(bs), end));
        void *bounce = bounce_alloc(aend - astart);
        if (!bounce) {
            ret = -ENOMEM;
        } else {
            ret = drv_read(bs, astart, aend - astart, bounce, flags);
            if (ret == 0) {
                memcpy(buf, (char *)bounce + (offset - astart), bytes);
            }
            free(bounce);
        }
    } else {
        ret = drv_read(bs, offset, bytes, buf, flags);
    }

    io_acct_done(bs, &acct, ret);
    block_io_end(bs);
    return ret;
}

/* Common front half of modifying requests. */
static int write_prepare(BlockNode *bs, uint64_t offset, uint64_t bytes,
                         BlockReqType type)
{
    int ret = check_request(bs, offset, bytes, true);
    if (ret < 0) {
        io_acct_invalid(bs, type);
        return ret;
    }
    if (bs->read_only) {
        io_acct_invalid(bs, type);
        return -EPERM;
    }
    return 0;
}

static int write_flags(BlockNode *bs, int flags)
{
    /* cache.no-flush: durability requests are dropped, as QEMU's
     * cache=unsafe does. */
    if (bs->no_flush) {
        flags &= ~BLOCK_REQ_FUA;
    }
    return flags;
}

int block_write(BlockNode *bs, uint64_t offset, uint64_t bytes,
                const void *buf, int flags)
{
    int ret = write_prepare(bs, offset, bytes, BLOCK_REQ_WRITE);
    if (ret < 0 || bytes == 0) {
        return ret;
    }
    block_io_begin(bs);
    check_write_threshold(bs, offset, bytes);
    IoAcct acct;
    io_acct_start(bs, &acct, BLOCK_REQ_WRITE, bytes, flags);
    flags &= ~BLOCK_REQ_METADATA;
    flags = write_flags(bs, flags);

    if (must_track(bs)) {
        TrackedWrite w;
        tracked_range(bs, offset, bytes, &w);
        block_tracker_enter(bs, &w);
        if (w.rmw) {
            ret = rmw_write(bs, offset, bytes, buf, flags, align_limit(bs));
        } else {
            ret = drv_write(bs, offset, bytes, buf, flags);
        }
        block_tracker_leave(bs, &w);
    } else {
        ret = drv_write(bs, offset, bytes, buf, flags);
    }
    if (ret == 0) {
        write_done(bs, offset, bytes);
    }

    io_acct_done(bs, &acct, ret);
    block_io_end(bs);
    return ret;
}

int block_write_zeroes(BlockNode *bs, uint64_t offset, uint64_t bytes,
                       int flags)
{
    int ret = write_prepare(bs, offset, bytes, BLOCK_REQ_WRITE_ZEROES);
    if (ret < 0 || bytes == 0) {
        return ret;
    }
    block_io_begin(bs);
    check_write_threshold(bs, offset, bytes);
    IoAcct acct;
    io_acct_start(bs, &acct, BLOCK_REQ_WRITE_ZEROES, bytes, flags);
    flags &= ~BLOCK_REQ_METADATA;
    flags = write_flags(bs, flags);
    /* As QEMU: a node opened with discard=ignore never deallocates. */
    if (bs->discard != BLOCK_DISCARD_UNMAP) {
        flags &= ~BLOCK_REQ_MAY_UNMAP;
    }

    uint64_t align = bs->request_alignment ? bs->request_alignment : 1;
    if (must_track(bs)) {
        TrackedWrite w;
        tracked_range(bs, offset, bytes, &w);
        block_tracker_enter(bs, &w);
        uint64_t end = offset + bytes;
        uint64_t mid_start = ALIGN_UP(offset, align);
        uint64_t mid_end = ALIGN_DOWN(end, align);
        if (!w.rmw) {
            ret = drv_write_zeroes(bs, offset, bytes, flags);
        } else if (mid_start >= mid_end) {
            /* Within one or two partial blocks: plain RMW of zeroes. */
            ret = (flags & BLOCK_REQ_NO_FALLBACK) ? -ENOTSUP
                  : rmw_write(bs, offset, bytes, NULL, flags, align_limit(bs));
        } else if (flags & BLOCK_REQ_NO_FALLBACK) {
            /* Partial blocks can only be zeroed by writing them. */
            ret = -ENOTSUP;
        } else {
            int wflags = flags & BLOCK_REQ_FUA;
            ret = 0;
            if (offset < mid_start) {
                ret = rmw_write(bs, offset, mid_start - offset, NULL, wflags,
                                align_limit(bs));
            }
            if (ret == 0) {
                ret = drv_write_zeroes(bs, mid_start, mid_end - mid_start, flags);
            }
            if (ret == 0 && mid_end < end) {
                ret = rmw_write(bs, mid_end, end - mid_end, NULL, wflags,
                                align_limit(bs));
            }
        }
        block_tracker_leave(bs, &w);
    } else {
        ret = drv_write_zeroes(bs, offset, bytes, flags);
    }
    if (ret == 0) {
        write_done(bs, offset, bytes);
    }

    io_acct_done(bs, &acct, ret);
    block_io_end(bs);
    return ret;
}

int block_discard(BlockNode *bs, uint64_t offset, uint64_t bytes)
{
    int ret = write_prepare(bs, offset, bytes, BLOCK_REQ_DISCARD);
    if (ret < 0 || bytes == 0) {
        return ret;
    }
    /* discard=ignore (the default) returns before anything else, so it
     * neither reaches the driver nor fires the threshold (QEMU). */
    if (bs->discard != BLOCK_DISCARD_UNMAP) {
        return 0;
    }
    block_io_begin(bs);
    check_write_threshold(bs, offset, bytes);
    IoAcct acct;
    io_acct_start(bs, &acct, BLOCK_REQ_DISCARD, bytes, 0);

    ret = 0;
    if (bs->drv->pdiscard) {
        /* Discard is advisory: only whole aligned blocks are passed on. */
        uint64_t align = bs->request_alignment ? bs->request_alignment : 1;
        uint64_t start = ALIGN_UP(offset, align);
        uint64_t end = offset + bytes;
        if (align > 1 && !(!grows_on_write(bs) && end == block_node_size(bs))) {
            end = ALIGN_DOWN(end, align);
        }
        if (start < end) {
            TrackedWrite w = { .start = start, .end = ALIGN_UP(end, align) };
            bool track = must_track(bs);
            if (track) {
                block_tracker_enter(bs, &w);
            }
            uint64_t chunk = max_chunk(bs);
            for (uint64_t off = start; off < end && ret == 0;) {
                uint64_t n = MIN(end - off, chunk);
                ret = bs->drv->pdiscard(bs, off, n);
                off += n;
            }
            if (track) {
                block_tracker_leave(bs, &w);
            }
            if (ret == -ENOTSUP) {
                ret = 0;
            }
        }
    }
    if (ret == 0) {
        block_atomic_max(&bs->wr_highest_offset, offset + bytes);
    }

    io_acct_done(bs, &acct, ret);
    block_io_end(bs);
    return ret;
}

int block_flush_nogate(BlockNode *bs)
{
    int ret = 0;
    if (bs->no_flush) {
        return 0;
    }
    if (bs->drv->flush) {
        ret = bs->drv->flush(bs);
    }
    /* What the driver wrote to its children must reach the disk too. */
    if (ret == 0 && bs->file && !bs->file->read_only) {
        ret = block_flush(bs->file);
    }
    if (ret == 0 && bs->backing && !bs->backing->read_only) {
        ret = block_flush(bs->backing);
    }
    return ret;
}

int block_flush(BlockNode *bs)
{
    block_io_begin(bs);
    IoAcct acct;
    io_acct_start(bs, &acct, BLOCK_REQ_FLUSH, 0, 0);
    int ret = block_flush_nogate(bs);
    io_acct_done(bs, &acct, ret);
    block_io_end(bs);
    return ret;
}

int block_write_compressed(BlockNode *bs, uint64_t offset, uint64_t bytes,
                           const void *buf)
{
    int ret = write_prepare(bs, offset, bytes, BLOCK_REQ_WRITE);
    if (ret < 0 || bytes == 0) {
        return ret;
    }
    if (!bs->drv->pwrite_compressed) {
        return -ENOTSUP;
    }
    block_io_begin(bs);
    check_write_threshold(bs, offset, bytes);
    IoAcct acct;
    io_acct_start(bs, &acct, BLOCK_REQ_WRITE, bytes, 0);
    ret = bs->drv->pwrite_compressed(bs, offset, bytes, buf);
    if (ret == 0) {
        write_done(bs, offset, bytes);
    }
    io_acct_done(bs, &acct, ret);
    block_io_end(bs);
    return ret;
}
