/* SPDX-License-Identifier: BSD-3-Clause */
/* In-memory block node (see memnode.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_core.h"
#include "memnode.h"
#include "util/cleanup.h"

typedef struct MemState {
    pthread_mutex_t lock;
    uint8_t *data;
    bool *allocated;          /* one per chunk */
    uint64_t size;
} MemState;

static void mark(MemState *s, uint64_t off, uint64_t len, bool alloc)
{
    for (uint64_t c = off / MEMNODE_CHUNK; c * MEMNODE_CHUNK < off + len; c++) {
        s->allocated[c] = alloc;
    }
}

static int mem_pread(BlockNode *bs, uint64_t off, uint64_t len, void *buf,
                     int flags)
{
    MemState *s = bs->opaque;
    LOCK_GUARD(&s->lock);
    memcpy(buf, s->data + off, len);
    return 0;
}

static int mem_pwrite(BlockNode *bs, uint64_t off, uint64_t len,
                      const void *buf, int flags)
{
    MemState *s = bs->opaque;
    LOCK_GUARD(&s->lock);
    memcpy(s->data + off, buf, len);
    mark(s, off, len, true);
    return 0;
}

static int mem_pwrite_zeroes(BlockNode *bs, uint64_t off, uint64_t len,
                             int flags)
{
    MemState *s = bs->opaque;
    LOCK_GUARD(&s->lock);
    memset(s->data + off, 0, len);
    /* Whole chunks may be deallocated when unmapping is allowed. */
    if (flags & BLOCK_REQ_MAY_UNMAP) {
        uint64_t start = ALIGN_UP(off, (uint64_t)MEMNODE_CHUNK);
        uint64_t end = ALIGN_DOWN(off + len, (uint64_t)MEMNODE_CHUNK);
        if (end > start) {
            mark(s, start, end - start, false);
        }
    }
    return 0;
}

static int mem_pdiscard(BlockNode *bs, uint64_t off, uint64_t len)
{
    return mem_pwrite_zeroes(bs, off, len, BLOCK_REQ_MAY_UNMAP);
}

static int mem_flush(BlockNode *bs)
{
    return 0;
}

static int mem_block_status(BlockNode *bs, uint64_t off, uint64_t len,
                            uint64_t *pnum, uint64_t *map, BlockNode **file)
{
    MemState *s = bs->opaque;
    LOCK_GUARD(&s->lock);
    bool alloc = s->allocated[off / MEMNODE_CHUNK];
    uint64_t end = off;
    while (end < off + len && s->allocated[end / MEMNODE_CHUNK] == alloc) {
        end = MIN(ALIGN_DOWN(end, (uint64_t)MEMNODE_CHUNK) + MEMNODE_CHUNK,
                  off + len);
    }
    *pnum = end - off;
    return alloc ? BLOCK_STATUS_DATA | BLOCK_STATUS_ALLOCATED
                 : BLOCK_STATUS_ZERO;
}

static void mem_close(BlockNode *bs)
{
    MemState *s = bs->opaque;
    free(s->data);
    free(s->allocated);
    pthread_mutex_destroy(&s->lock);
}

static const BlockDriver bdrv_mem = {
    .format_name = "memory",
    .state_size = sizeof(MemState),
    .is_protocol = true,
    .close = mem_close,
    .pread = mem_pread,
    .pwrite = mem_pwrite,
    .pwrite_zeroes = mem_pwrite_zeroes,
    .pdiscard = mem_pdiscard,
    .flush = mem_flush,
    .block_status = mem_block_status,
};

BlockNode *memnode_create(const char *node_name, uint64_t size, bool read_only)
{
    BlockNode *bs = block_node_alloc(&bdrv_mem);
    if (!bs) {
        return NULL;
    }
    MemState *s = bs->opaque;
    pthread_mutex_init(&s->lock, NULL);
    s->size = size;
    s->data = calloc(1, size ? size : 1);
    s->allocated = calloc(size / MEMNODE_CHUNK + 1, sizeof(bool));
    bs->total_size = size;
    bs->read_only = read_only;
    bs->discard = BLOCK_DISCARD_UNMAP;
    if (!s->data || !s->allocated ||
        !block_graph_insert(bs, node_name, NULL)) {
        free(s->data);
        free(s->allocated);
        pthread_mutex_destroy(&s->lock);
        block_node_free_unregistered(bs);
        return NULL;
    }
    return bs;
}
