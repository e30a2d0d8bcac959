/* SPDX-License-Identifier: BSD-3-Clause */
/* An in-memory block driver for unit tests of the block-layer core.
 *
 * Options: size (bytes), align (request_alignment), max-transfer,
 * fast-zero (bool: pwrite_zeroes works, else -ENOTSUP), map (one char
 * per 64 KiB cluster for block_status: 'D' data, 'Z' zero, '.'
 * unallocated), slow (bool: yield inside memcpy to widen races), cow
 * (bool: a tiny copy-on-write format: reads of '.' clusters come from
 * the backing node, and a write makes its clusters 'D'; needs map).
 * Calls are counted so tests can see what reached the driver. */
#ifndef STRATA_TESTS_MEMDRV_H
#define STRATA_TESTS_MEMDRV_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_core.h"
#include "util/cleanup.h"
#include "util/keyval.h"

#define MEM_CLUSTER 65536

typedef struct MemState {
    uint8_t *data;
    char *map;
    bool fast_zero;
    bool slow;
    bool cow;
    pthread_mutex_t lock;
    atomic_int n_read, n_write, n_zero, n_discard, n_flush, n_fua;
    atomic_uint_fast64_t max_req;
    /* When gate is set, data callbacks wait until it is cleared. */
    atomic_bool gate;
    atomic_int in_driver;
    /* When non-zero, writes fail with -fail_write (e.g. ENOSPC). */
    atomic_int fail_write;
} MemState;

static bool mem_open(BlockNode *bs, json_t *opts, int flags, Error **errp)
{
    MemState *s = bs->opaque;
    uint64_t size, align, mt;
    const char *map;
    if (!opt_get_uint64(opts, "size", 1 << 20, &size, errp) ||
        !opt_get_uint64(opts, "align", 1, &align, errp) ||
        !opt_get_uint64(opts, "max-transfer", 0, &mt, errp) ||
        !opt_get_bool(opts, "fast-zero", true, &s->fast_zero, errp) ||
        !opt_get_bool(opts, "slow", false, &s->slow, errp) ||
        !opt_get_bool(opts, "cow", false, &s->cow, errp) ||
        !opt_get_str(opts, "map", NULL, &map, errp)) {
        return false;
    }
    s->map = map ? strdup(map) : NULL;
    const char *keys[] = { "size", "align", "max-transfer", "fast-zero",
                           "slow", "map", "cow" };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_object_del(opts, keys[i]);
    }
    s->data = calloc(1, size ? size : 1);
    pthread_mutex_init(&s->lock, NULL);
    bs->total_size = size;
    bs->request_alignment = (uint32_t)align;
    bs->max_transfer = (uint32_t)mt;
    return true;
}

static void mem_close(BlockNode *bs)
{
    MemState *s = bs->opaque;
    free(s->data);
    free(s->map);
    pthread_mutex_destroy(&s->lock);
}

static void mem_enter(BlockNode *bs, uint64_t offset, uint64_t bytes)
{
    MemState *s = bs->opaque;
    atomic_fetch_add(&s->in_driver, 1);
    while (atomic_load(&s->gate)) {
        sched_yield();
    }
    uint64_t cur = atomic_load(&s->max_req);
    while (bytes > cur && !atomic_compare_exchange_weak(&s->max_req, &cur, bytes)) {
    }
    /* The core guarantees alignment and bounds; check them here. */
    uint32_t a = bs->request_alignment;
    if (offset % a || (bytes % a && offset + bytes != bs->total_size)) {
        abort();
    }
    if (offset + bytes > bs->total_size) {
        abort();
    }
}

static void mem_copy(MemState *s, void *dst, const void *src, uint64_t n)
{
    if (!s->slow) {
        memcpy(dst, src, n);
        return;
    }
    /* Copy in pieces, yielding, so concurrent requests interleave. */
    for (uint64_t i = 0; i < n; i += 512) {
        uint64_t k = n - i < 512 ? n - i : 512;
        memcpy((char *)dst + i, (const char *)src + i, k);
        sched_yield();
    }
}

static int mem_pread(BlockNode *bs, uint64_t offset, uint64_t bytes, void *buf,
                     int flags)
{
    MemState *s = bs->opaque;
    mem_enter(bs, offset, bytes);
    atomic_fetch_add(&s->n_read, 1);
    if (s->cow && s->map) {
        /* Cluster by cluster: unallocated ones come from the backing. */
        for (uint64_t done = 0; done < bytes;) {
            uint64_t off = offset + done;
            uint64_t c = off / MEM_CLUSTER;
            uint64_t n = MIN(bytes - done, MEM_CLUSTER - off % MEM_CLUSTER);
            pthread_mutex_lock(&s->lock);
            char kind = c < strlen(s->map) ? s->map[c] : '.';
            pthread_mutex_unlock(&s->lock);
            if (kind == 'D') {
                mem_copy(s, (char *)buf + done, s->data + off, n);
            } else if (kind == 'Z' || !bs->backing) {
                memset((char *)buf + done, 0, n);
            } else {
                int ret = block_read_backing(bs, off, n, (char *)buf + done);
                if (ret < 0) {
                    atomic_fetch_sub(&s->in_driver, 1);
                    return ret;
                }
            }
            done += n;
        }
        atomic_fetch_sub(&s->in_driver, 1);
        return 0;
    }
    mem_copy(s, buf, s->data + offset, bytes);
    atomic_fetch_sub(&s->in_driver, 1);
    return 0;
}

/* cow: the clusters a write covers become allocated (partly written
 * clusters keep the rest of their bytes as they were in data, which is
 * enough for tests that write whole clusters or check only what they
 * wrote). */
static void mem_mark_written(MemState *s, uint64_t offset, uint64_t bytes)
{
    if (!s->cow || !s->map || bytes == 0) {
        return;
    }
    pthread_mutex_lock(&s->lock);
    size_t len = strlen(s->map);
    for (uint64_t c = offset / MEM_CLUSTER;
         c <= (offset + bytes - 1) / MEM_CLUSTER && c < len; c++) {
        s->map[c] = 'D';
    }
    pthread_mutex_unlock(&s->lock);
}

static int mem_pwrite(BlockNode *bs, uint64_t offset, uint64_t bytes,
                      const void *buf, int flags)
{
    MemState *s = bs->opaque;
    int fail = atomic_load(&s->fail_write);
    if (fail) {
        return -fail;
    }
    mem_enter(bs, offset, bytes);
    atomic_fetch_add(&s->n_write, 1);
    if (flags & BLOCK_REQ_FUA) {
        atomic_fetch_add(&s->n_fua, 1);
    }
    mem_copy(s, s->data + offset, buf, bytes);
    mem_mark_written(s, offset, bytes);
    atomic_fetch_sub(&s->in_driver, 1);
    return 0;
}

static int mem_pwrite_zeroes(BlockNode *bs, uint64_t offset, uint64_t bytes,
                             int flags)
{
    MemState *s = bs->opaque;
    if (!s->fast_zero) {
        return -ENOTSUP;
    }
    mem_enter(bs, offset, bytes);
    atomic_fetch_add(&s->n_zero, 1);
    memset(s->data + offset, 0, bytes);
    mem_mark_written(s, offset, bytes);
    atomic_fetch_sub(&s->in_driver, 1);
    return 0;
}

static int mem_pdiscard(BlockNode *bs, uint64_t offset, uint64_t bytes)
{
    MemState *s = bs->opaque;
    atomic_fetch_add(&s->n_discard, 1);
    return 0;
}

static int mem_flush(BlockNode *bs)
{
    MemState *s = bs->opaque;
    atomic_fetch_add(&s->n_flush, 1);
    return 0;
}

static int mem_block_status(BlockNode *bs, uint64_t offset, uint64_t bytes,
                            uint64_t *pnum, uint64_t *map, BlockNode **file)
{
    MemState *s = bs->opaque;
    if (!s->map) {
        *pnum = bytes;
        return BLOCK_STATUS_DATA;
    }
    uint64_t c = offset / MEM_CLUSTER;
    char kind = c < strlen(s->map) ? s->map[c] : '.';
    uint64_t n = 0;
    while (n < bytes) {
        uint64_t cc = (offset + n) / MEM_CLUSTER;
        char k = cc < strlen(s->map) ? s->map[cc] : '.';
        if (k != kind) {
            break;
        }
        n += MEM_CLUSTER - (offset + n) % MEM_CLUSTER;
    }
    *pnum = n < bytes ? n : bytes;
    return kind == 'D' ? BLOCK_STATUS_DATA : kind == 'Z' ? BLOCK_STATUS_ZERO : 0;
}

static const BlockDriver mem_driver = {
    .format_name = "test-mem",
    .state_size = sizeof(MemState),
    .supports_backing = true,
    .open = mem_open,
    .close = mem_close,
    .pread = mem_pread,
    .pwrite = mem_pwrite,
    .pwrite_zeroes = mem_pwrite_zeroes,
    .pdiscard = mem_pdiscard,
    .flush = mem_flush,
    .block_status = mem_block_status,
};

/* Opens a test node from keyval text, failing the test on error. */
static inline BlockNode *mem_open_node(const char *kv, int flags)
{
    Error *err = NULL;
    json_t *opts = keyval_parse(kv, NULL, &err);
    BlockNode *bs = opts ? block_node_open_driver(&mem_driver, opts, flags, &err)
                         : NULL;
    json_decref(opts);
    if (!bs) {
        fprintf(stderr, "mem_open_node(%s): %s\n", kv, error_get_pretty(err));
        abort();
    }
    return bs;
}

#endif
