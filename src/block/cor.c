/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - copy-on-read: copying data from a node's backing chain into
 * the node itself, as a stream job and the copy-on-read filter do.
 *
 * The danger is a lost write.  A copy reads old data from the backing
 * chain and writes it into the node; a client write to the same range
 * that lands between the two would be overwritten with stale data.  So
 * while copy-on-read is enabled on a node, every modifying request on
 * it takes an entry in the node's write tracker (io.c), and a copy holds
 * its range exclusively from before it looks at the allocation until
 * its write is done.  A client write either completes before the copy
 * looks (the range is then allocated and not copied) or waits until the
 * copy is done (and then overwrites the copied data, as it should).
 *
 * Enabling drains the node first, so no write that skipped the tracker
 * is still in flight when the first copy starts.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_core.h"
#include "util/cleanup.h"
#include "util/log.h"

/* Largest piece copied with one bounce buffer. */
#define COR_CHUNK (1024 * 1024)
/* Copies are aligned to this when the format has no cluster size. */
#define COR_DEFAULT_ALIGN 65536

void block_cor_enable(BlockNode *bs)
{
    block_drain_begin(bs);
    atomic_fetch_add_explicit(&bs->serialise_writes, 1, memory_order_release);
    block_drain_end(bs);
}

void block_cor_disable(BlockNode *bs)
{
    atomic_fetch_sub_explicit(&bs->serialise_writes, 1, memory_order_release);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Whether [offset, offset + *pnum) must be copied: not allocated in bs
 * itself but in a node of its chain above base.  Shrinks *pnum to the
 * run that has the same answer.  Returns 1 (copy), 0 (skip) or -errno. */
static int needs_copy(BlockNode *bs, BlockNode *base, uint64_t offset,
                      uint64_t *pnum)
{
    /* One walk from bs (it reads the backing links safely): depth 1 is
     * bs itself, 0 is nowhere above base. */
    uint64_t n = 0;
    int depth = 0;
    int ret = block_status_above(bs, base, offset, *pnum, &n, NULL, NULL,
                                 &depth);
    if (ret < 0) {
        return ret;
    }
    *pnum = n;
    return depth > 1;
}

/* Copies one run through the node: the read comes from the backing
 * chain, the write allocates in bs.  Zeroes become a zero write (a zero
 * cluster in qcow2), not data, as QEMU's copy-on-read does. */
static int copy_run(BlockNode *bs, uint64_t offset, uint64_t bytes,
                    uint8_t *buf)
{
    while (bytes > 0) {
        uint64_t n = MIN(bytes, (uint64_t)COR_CHUNK);
        int ret = block_read(bs, offset, n, buf, BLOCK_REQ_NO_COPY);
        if (ret < 0) {
            return ret;
        }
        if (all_zero(buf, n)) {
            ret = block_write_zeroes(bs, offset, n, 0);
        } else {
            ret = block_write(bs, offset, n, buf, 0);
        }
        if (ret < 0) {
            return ret;
        }
        offset += n;
        bytes -= n;
    }
    return 0;
}

int block_copy_on_read(BlockNode *bs, BlockNode *base, uint64_t offset,
                       uint64_t bytes, uint64_t *copied)
{
    if (copied) {
        *copied = 0;
    }
    if (!atomic_load_explicit(&bs->serialise_writes, memory_order_acquire)) {
        return -EINVAL;   /* a copy without the tracker could lose writes */
    }
    uint64_t size = block_node_size(bs);
    if (offset >= size || bytes == 0) {
        return 0;
    }
    bytes = MIN(bytes, size - offset);

    /* Whole clusters: a partial one would make the format copy the rest
     * of the cluster from the backing chain anyway. */
    uint64_t align = block_node_cluster_size(bs);
    if (align == 0 || (align & (align - 1)) != 0) {
        align = COR_DEFAULT_ALIGN;
    }
    TrackedWrite w = {
        .start = ALIGN_DOWN(offset, align),
        .end = MIN(ALIGN_UP(offset + bytes, align), size),
        .rmw = true,
    };
    CLEANUP_FREE uint8_t *buf = malloc(MIN(w.end - w.start,
                                           (uint64_t)COR_CHUNK));
    if (!buf) {
        return -ENOMEM;
    }

    block_tracker_enter(bs, &w);
    block_tracker_hold(bs, &w);
    int ret = 0;
    for (uint64_t off = w.start; off < w.end && ret >= 0;) {
        uint64_t n = w.end - off;
        ret = needs_copy(bs, base, off, &n);
        if (ret > 0) {
            ret = copy_run(bs, off, n, buf);
            if (ret == 0 && copied) {
                *copied += n;
            }
        }
        off += n;
    }
    block_tracker_unhold();
    block_tracker_leave(bs, &w);
    return ret < 0 ? ret : 0;
}

bool block_node_set_copy_on_read(BlockNode *bs, bool on, Error **errp)
{
    if (on && bs->read_only) {
        error_setg(errp, "Cannot copy on read into read-only node '%s'",
                   block_node_name(bs));
        return false;
    }
    /* Main thread only, so the flag and the count change together. */
    if (on == atomic_load(&bs->copy_on_read)) {
        return true;
    }
    if (on) {
        block_cor_enable(bs);
        atomic_store(&bs->copy_on_read, true);
    } else {
        atomic_store(&bs->copy_on_read, false);
        /* A read that saw the flag may still be copying: let it end
         * before writes stop taking the tracker. */
        block_drain_begin(bs);
        block_cor_disable(bs);
        block_drain_end(bs);
    }
    return true;
}

bool block_node_copy_on_read(const BlockNode *bs)
{
    return atomic_load(&bs->copy_on_read);
}

int block_read_copy_first(BlockNode *bs, uint64_t offset, uint64_t bytes)
{
    int ret = block_copy_on_read(bs, NULL, offset, bytes, NULL);
    if (ret < 0 && ret != -EINVAL) {
        /* (-EINVAL: copy-on-read was just turned off.)  The copy is an
         * optimisation: the read goes on from the chain.
         * (ENOSPC on a thin volume must not fail a guest's read.) */
        static atomic_bool warned;
        if (!atomic_exchange(&warned, true)) {
            log_warn("copy-on-read into '%s' failed (%s); reads go on "
                     "from the backing chain", block_node_name(bs),
                     strerror(-ret));
        }
    }
    return ret;
}
