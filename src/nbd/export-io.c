/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - running one NBD request on an export's node.
 *
 * nbd_export_do_request() is the single path every transmission request
 * takes to the block layer, so per-export accounting and error policies
 * have one place to live.  Checks and messages follow qemu-storage-daemon
 * (nbd/server.c): what a client sees in an error chunk is the same text.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "block/user.h"
#include "nbd/nbd-int.h"
#include "nbd/protocol.h"
#include "util/cleanup.h"

/* Buffers up to this size stay attached to a request slot for reuse. */
#define NBD_KEEP_BUFFER (2u * 1024 * 1024)
#define NBD_KEEP_ENTRIES 4096
/* A READ is split into at most this many chunks; past it the rest of
 * the range is sent as data. */
#define NBD_MAX_READ_SEGMENTS 4096
#define NBD_CACHE_STEP (1024u * 1024)
/* Structured READs at least this long are sent as data and hole chunks;
 * shorter ones as one data chunk.  qsd looks up block status for every
 * read, which for a raw file costs two lseek()s and for a qcow2 overlay
 * a walk down the backing chain: measured, that is a sixth of the
 * server's time at 4 KiB random reads, to save at most a few KiB of
 * zeroes on the wire.  Clients cannot tell (the protocol lets a server
 * send zeroes as data), and from 64 KiB up the layout is qsd's. */
#define NBD_SPARSE_READ_MIN (64u * 1024)

int nbd_request_reserve(NbdRequest *req, size_t len)
{
    if (req->buf_cap >= len && req->buf) {
        return 0;
    }
    free(req->buf);
    req->buf = NULL;
    req->buf_cap = 0;
    size_t cap = ALIGN_UP(MAX(len, (size_t)4096), (size_t)4096);
    void *p;
    if (posix_memalign(&p, 4096, cap) != 0) {
        return -ENOMEM;
    }
    req->buf = p;
    req->buf_cap = cap;
    return 0;
}

void nbd_request_trim(NbdRequest *req)
{
    if (req->buf_cap > NBD_KEEP_BUFFER) {
        free(req->buf);
        req->buf = NULL;
        req->buf_cap = 0;
    }
    if (req->segs_cap > NBD_KEEP_ENTRIES) {
        free(req->segs);
        req->segs = NULL;
        req->segs_cap = 0;
    }
    for (int i = 0; i < 2; i++) {
        if (req->extents[i].cap > NBD_KEEP_ENTRIES) {
            free(req->extents[i].ext);
            req->extents[i].ext = NULL;
            req->extents[i].cap = 0;
        }
    }
}

void nbd_request_free_buffers(NbdRequest *req)
{
    free(req->buf);
    free(req->segs);
    free(req->extents[0].ext);
    free(req->extents[1].ext);
    req->buf = NULL;
    req->segs = NULL;
    req->extents[0].ext = req->extents[1].ext = NULL;
    req->buf_cap = req->segs_cap = 0;
    req->extents[0].cap = req->extents[1].cap = 0;
}

static const char *cmd_name(uint16_t type)
{
    static const char *const names[] = {
        [NBD_CMD_READ] = "read", [NBD_CMD_WRITE] = "write",
        [NBD_CMD_DISC] = "disconnect", [NBD_CMD_FLUSH] = "flush",
        [NBD_CMD_TRIM] = "trim", [NBD_CMD_CACHE] = "cache",
        [NBD_CMD_WRITE_ZEROES] = "write zeroes",
        [NBD_CMD_BLOCK_STATUS] = "block status",
    };
    return type < ARRAY_SIZE(names) ? names[type] : "<unknown>";
}

static int fail(NbdRequest *req, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(NbdRequest *req, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(req->msgbuf, sizeof(req->msgbuf), fmt, ap);
    va_end(ap);
    req->errmsg = req->msgbuf;
    return err;
}

/* Adds a run, merging it into the previous one when the flags match
 * (as QEMU does).  Returns false when the list is full. */
static bool extent_add(NbdExtentList *l, size_t max, uint64_t len,
                       uint32_t flags)
{
    if (l->count && l->ext[l->count - 1].flags == flags) {
        l->ext[l->count - 1].length += len;
        return true;
    }
    if (l->count == max) {
        return false;
    }
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        NbdExtent *n = realloc(l->ext, cap * sizeof(*n));
        if (!n) {
            return false;
        }
        l->ext = n;
        l->cap = cap;
    }
    l->ext[l->count++] = (NbdExtent){ .length = len, .flags = flags };
    return true;
}

static int collect_status(NbdExport *exp, NbdRequest *req, int ctx)
{
    NbdExtentList *l = &req->extents[ctx];
    size_t max = (req->flags & NBD_CMD_FLAG_REQ_ONE)
                 ? 1 : NBD_MAX_BLOCK_STATUS_EXTENTS;
    uint64_t off = req->offset, end = req->offset + req->len;

    l->count = 0;
    while (off < end) {
        uint64_t pnum = 0;
        int depth = 0;
        int ret = block_status_above(nbd_export_node(exp), NULL, off, end - off, &pnum,
                                     NULL, NULL, &depth);
        if (ret < 0) {
            return fail(req, ret, "can't get block status");
        }
        if (pnum == 0 || pnum > end - off) {
            pnum = end - off;
        }
        uint32_t flags;
        if (ctx == NBD_META_ID_BASE_ALLOCATION) {
            flags = ((ret & BLOCK_STATUS_DATA) ? 0 : NBD_STATE_HOLE) |
                    ((ret & BLOCK_STATUS_ZERO) ? NBD_STATE_ZERO : 0);
        } else {
            flags = depth < 0 ? 0 : (uint32_t)depth;
        }
        if (!extent_add(l, max, pnum, flags)) {
            break;
        }
        off += pnum;
    }
    return 0;
}

/* Appends a run; false when the list is full.  Runs are not merged: as
 * QEMU, each block status run becomes its own chunk. */
static bool seg_add(NbdRequest *req, uint64_t offset, uint64_t len, bool hole)
{
    if (req->nsegs == req->segs_cap) {
        size_t cap = req->segs_cap ? req->segs_cap * 2 : 8;
        if (cap > NBD_MAX_READ_SEGMENTS) {
            return false;
        }
        NbdSegment *n = realloc(req->segs, cap * sizeof(*n));
        if (!n) {
            return false;
        }
        req->segs = n;
        req->segs_cap = cap;
    }
    req->segs[req->nsegs++] = (NbdSegment){ offset, (uint32_t)len, hole };
    return true;
}

/* Structured READ without DF: holes (runs that read as zeroes) become
 * OFFSET_HOLE chunks and are not read at all. */
static int do_sparse_read(NbdExport *exp, NbdRequest *req)
{
    uint64_t off = req->offset, end = req->offset + req->len;

    while (off < end) {
        uint64_t pnum = 0;
        int st = block_status_above(nbd_export_node(exp), NULL, off, end - off, &pnum,
                                    NULL, NULL, NULL);
        if (st < 0 || pnum == 0 || pnum > end - off) {
            /* No status: read the rest as data. */
            st = BLOCK_STATUS_DATA;
            pnum = end - off;
        }
        if (!seg_add(req, off, pnum, st & BLOCK_STATUS_ZERO)) {
            /* Out of room (or memory): the last run absorbs the rest of
             * the range as data, so it is read rather than described. */
            pnum = end - off;
            if (req->nsegs == 0) {
                return fail(req, -ENOMEM, "reading from file failed");
            }
            NbdSegment *last = &req->segs[req->nsegs - 1];
            last->hole = false;
            last->length += pnum;
        }
        off += pnum;
    }
    for (size_t i = 0; i < req->nsegs; i++) {
        NbdSegment *s = &req->segs[i];
        if (s->hole) {
            continue;
        }
        int ret = block_read(nbd_export_node(exp), s->offset, s->length,
                             req->buf + (s->offset - req->offset), 0);
        if (ret < 0) {
            return fail(req, ret, "reading from file failed");
        }
    }
    return 0;
}

static int do_read(NbdExport *exp, NbdRequest *req)
{
    int ret;

    req->nsegs = 0;
    /* The protocol documents FUA for writes only; QEMU flushes first. */
    if (req->flags & NBD_CMD_FLAG_FUA) {
        ret = block_flush(nbd_export_node(exp));
        if (ret < 0) {
            return fail(req, ret, "flush failed");
        }
    }
    if (req->len == 0) {
        return 0;
    }
    if (req->structured && !(req->flags & NBD_CMD_FLAG_DF) &&
        req->len >= NBD_SPARSE_READ_MIN) {
        return do_sparse_read(exp, req);
    }
    ret = block_read(nbd_export_node(exp), req->offset, req->len, req->buf, 0);
    if (ret < 0) {
        return fail(req, ret, "reading from file failed");
    }
    seg_add(req, req->offset, req->len, false);
    return 0;
}

static int do_cache(NbdExport *exp, NbdRequest *req)
{
    uint64_t off = req->offset, end = req->offset + req->len;
    int ret = nbd_request_reserve(req, MIN(req->len, NBD_CACHE_STEP));
    if (ret < 0) {
        return fail(req, ret, "caching data failed");
    }
    while (off < end) {
        uint64_t n = MIN(end - off, (uint64_t)NBD_CACHE_STEP);
        ret = block_read(nbd_export_node(exp), off, n, req->buf, 0);
        if (ret < 0) {
            return fail(req, ret, "caching data failed");
        }
        off += n;
    }
    return 0;
}

static int validate(NbdExport *exp, NbdRequest *req)
{
    bool check_rofs = false;
    uint16_t valid_flags = NBD_CMD_FLAG_FUA;

    switch (req->type) {
    case NBD_CMD_READ:
        if (req->structured) {
            valid_flags |= NBD_CMD_FLAG_DF;
        }
        break;
    case NBD_CMD_WRITE:
    case NBD_CMD_TRIM:
        check_rofs = true;
        break;
    case NBD_CMD_WRITE_ZEROES:
        valid_flags |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
        check_rofs = true;
        break;
    case NBD_CMD_BLOCK_STATUS:
        valid_flags |= NBD_CMD_FLAG_REQ_ONE;
        break;
    default:
        break;
    }
    if (check_rofs && !exp->writable) {
        /* qsd 7.2 sends EINVAL here (not EPERM); clients see the same. */
        return fail(req, -EINVAL, "Export is read-only");
    }
    if (req->offset > exp->size || req->len > exp->size - req->offset) {
        /* qsd 7.2 answers EINVAL for writes past the end too. */
        return fail(req, -EINVAL,
                    "operation past EOF; From: %" PRIu64 ", Len: %" PRIu32
                    ", Size: %" PRIu64, req->offset, req->len, exp->size);
    }
    if (req->flags & ~valid_flags) {
        return fail(req, -EINVAL, "unsupported flags for command %s (got 0x%x)",
                    cmd_name(req->type), req->flags);
    }
    return 0;
}

/* What an NBD command is to the block layer's request policy and
 * accounting.  Per-export accounting counts what the client asked for, as
 * QEMU's device models do: BLOCK_STATUS and CACHE move no data for the
 * client and are not counted; a fast zero the storage cannot do is an
 * answer, not an error. */
static BlockReqType req_type(uint16_t type)
{
    switch (type) {
    case NBD_CMD_READ:
        return BLOCK_REQ_READ;
    case NBD_CMD_WRITE:
        return BLOCK_REQ_WRITE;
    case NBD_CMD_WRITE_ZEROES:
        return BLOCK_REQ_WRITE_ZEROES;
    case NBD_CMD_TRIM:
        return BLOCK_REQ_DISCARD;
    case NBD_CMD_FLUSH:
        return BLOCK_REQ_FLUSH;
    case NBD_CMD_CACHE:
        return BLOCK_REQ_CACHE;
    default:
        return BLOCK_REQ_STATUS;
    }
}

static int run_request(NbdExport *exp, NbdRequest *req);

typedef struct RunCtx {
    NbdExport *exp;
    NbdRequest *req;
} RunCtx;

/* A retry after resume runs the whole request again, with a fresh
 * error message. */
static int run_ctx(void *opaque)
{
    RunCtx *c = opaque;
    c->req->errmsg = NULL;
    return run_request(c->exp, c->req);
}

int nbd_export_do_request(NbdExport *exp, NbdRequest *req)
{
    BlockReqType type = req_type(req->type);

    req->errmsg = NULL;
    int ret = validate(exp, req);
    if (ret < 0) {
        /* Rejected before any I/O: out of range, read-only, bad flags. */
        block_user_invalid(exp->user, type);
        return ret;
    }
    int flags = (req->flags & NBD_CMD_FLAG_FAST_ZERO) ? BLOCK_REQ_NO_FALLBACK
                                                      : 0;
    RunCtx c = { exp, req };
    return block_user_run(exp->user, type, flags, req->len, run_ctx, &c);
}

static int run_request(NbdExport *exp, NbdRequest *req)
{
    int ret, flags;

    switch (req->type) {
    case NBD_CMD_READ:
        return do_read(exp, req);

    case NBD_CMD_WRITE:
        flags = (req->flags & NBD_CMD_FLAG_FUA) || exp->writethrough
                ? BLOCK_REQ_FUA : 0;
        ret = block_write(nbd_export_node(exp), req->offset, req->len, req->buf, flags);
        return ret < 0 ? fail(req, ret, "writing to file failed") : 0;

    case NBD_CMD_WRITE_ZEROES:
        flags = 0;
        if ((req->flags & NBD_CMD_FLAG_FUA) || exp->writethrough) {
            flags |= BLOCK_REQ_FUA;
        }
        if (!(req->flags & NBD_CMD_FLAG_NO_HOLE)) {
            flags |= BLOCK_REQ_MAY_UNMAP;
        }
        if (req->flags & NBD_CMD_FLAG_FAST_ZERO) {
            flags |= BLOCK_REQ_NO_FALLBACK;
        }
        ret = block_write_zeroes(nbd_export_node(exp), req->offset, req->len, flags);
        return ret < 0 ? fail(req, ret, "writing to file failed") : 0;

    case NBD_CMD_FLUSH:
        ret = block_flush(nbd_export_node(exp));
        return ret < 0 ? fail(req, ret, "flush failed") : 0;

    case NBD_CMD_TRIM:
        ret = block_discard(nbd_export_node(exp), req->offset, req->len);
        if (ret >= 0 && ((req->flags & NBD_CMD_FLAG_FUA) || exp->writethrough)) {
            ret = block_flush(nbd_export_node(exp));
        }
        return ret < 0 ? fail(req, ret, "discard failed") : 0;

    case NBD_CMD_CACHE:
        return do_cache(exp, req);

    case NBD_CMD_BLOCK_STATUS:
        req->extents[0].count = req->extents[1].count = 0;
        if (!req->ctx_base && !req->ctx_depth) {
            return fail(req, -EINVAL, "CMD_BLOCK_STATUS not negotiated");
        }
        if (req->len == 0) {
            return fail(req, -EINVAL, "need non-zero length");
        }
        if (req->ctx_base) {
            ret = collect_status(exp, req, NBD_META_ID_BASE_ALLOCATION);
            if (ret < 0) {
                return ret;
            }
        }
        if (req->ctx_depth) {
            ret = collect_status(exp, req, NBD_META_ID_ALLOCATION_DEPTH);
            if (ret < 0) {
                return ret;
            }
        }
        return 0;

    default:
        return fail(req, -EINVAL, "invalid request type (%u) received",
                    req->type);
    }
}
