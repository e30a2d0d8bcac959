/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 table cache: an LRU of cluster-sized tables (L2 tables
 * or refcount blocks) kept in their on-disk (big-endian) form, looked up
 * through a hash of host offsets.  All calls happen under the image lock.
 *
 * Write-back order keeps a crash from exposing inconsistent metadata:
 * before an L2 table is written, the refcount blocks are written (so no
 * L2 entry on disk points at a cluster whose refcount is 0 on disk) and
 * the file is flushed (so guest data reaches the disk before the L2 entry
 * that makes it visible).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2.h"
#include "util/log.h"

typedef struct Qcow2CacheEntry {
    uint64_t offset;  /* host offset of the table; 0 = empty slot */
    void *table;
    uint64_t lru;     /* last use stamp */
    int pin;          /* users holding the table */
    bool dirty;
    int hash_next;    /* next entry in the bucket, or -1 */
} Qcow2CacheEntry;

struct Qcow2Cache {
    /* All tables in one allocation (large enough to be mmapped, so pages
     * of unused entries never become resident); entry i owns
     * arena + i * table_size, which makes pointer -> entry O(1). */
    uint8_t *arena;
    Qcow2CacheEntry *entries;
    unsigned nb_entries;
    int *buckets;
    unsigned nb_buckets; /* power of two */
    uint64_t table_size;
    unsigned table_bits;  /* log2 of table_size */
    uint64_t lru_clock;
    unsigned nb_dirty;
};

unsigned qcow2_cache_entries_for(uint64_t bytes, uint64_t table_size)
{
    uint64_t n = bytes / table_size;
    /* A request may pin a few tables at once (an L2 table being updated
     * while another is read); keep a small floor. */
    if (n < 4) {
        n = 4;
    }
    if (n > (1u << 20)) {
        n = 1u << 20;
    }
    return (unsigned)n;
}

Qcow2Cache *qcow2_cache_new(unsigned nb_entries, uint64_t table_size)
{
    Qcow2Cache *c = calloc(1, sizeof(*c));
    if (!c) {
        return NULL;
    }
    c->nb_entries = nb_entries;
    c->table_size = table_size;
    while ((1ull << c->table_bits) < table_size) {
        c->table_bits++;
    }
    c->nb_buckets = 1;
    while (c->nb_buckets < nb_entries * 2) {
        c->nb_buckets <<= 1;
    }
    c->entries = calloc(nb_entries, sizeof(*c->entries));
    c->buckets = malloc(c->nb_buckets * sizeof(int));
    void *arena = NULL;
    if (posix_memalign(&arena, 4096, (size_t)nb_entries * table_size) != 0) {
        arena = NULL;
    }
    c->arena = arena;
    if (!c->entries || !c->buckets || !c->arena) {
        qcow2_cache_free(c);
        return NULL;
    }
    for (unsigned i = 0; i < c->nb_buckets; i++) {
        c->buckets[i] = -1;
    }
    for (unsigned i = 0; i < nb_entries; i++) {
        c->entries[i].hash_next = -1;
        c->entries[i].table = c->arena + (size_t)i * table_size;
    }
    return c;
}

void qcow2_cache_free(Qcow2Cache *c)
{
    if (!c) {
        return;
    }
    free(c->arena);
    free(c->entries);
    free(c->buckets);
    free(c);
}

static unsigned bucket_of(const Qcow2Cache *c, uint64_t offset)
{
    uint64_t h = offset * 0x9e3779b97f4a7c15ull;
    return (unsigned)(h >> 32) & (c->nb_buckets - 1);
}

static int find_entry(const Qcow2Cache *c, uint64_t offset)
{
    for (int i = c->buckets[bucket_of(c, offset)]; i >= 0;
         i = c->entries[i].hash_next) {
        if (c->entries[i].offset == offset) {
            return i;
        }
    }
    return -1;
}

static void unhash_entry(Qcow2Cache *c, int idx)
{
    int *link = &c->buckets[bucket_of(c, c->entries[idx].offset)];
    while (*link >= 0) {
        if (*link == idx) {
            *link = c->entries[idx].hash_next;
            break;
        }
        link = &c->entries[*link].hash_next;
    }
    c->entries[idx].hash_next = -1;
    c->entries[idx].offset = 0;
}

static void hash_entry(Qcow2Cache *c, int idx, uint64_t offset)
{
    unsigned b = bucket_of(c, offset);
    c->entries[idx].offset = offset;
    c->entries[idx].hash_next = c->buckets[b];
    c->buckets[b] = idx;
}

static int find_by_table(const Qcow2Cache *c, const void *table)
{
    const uint8_t *p = table;
    if (p < c->arena) {
        return -1;
    }
    size_t idx = (size_t)(p - c->arena) >> c->table_bits;
    return idx < c->nb_entries ? (int)idx : -1;
}

/* What must reach the disk before tables of c are written: for L2
 * tables, the refcounts of what they point at (unless lazy) and the
 * guest data written into newly allocated clusters. */
static int order_before_write_locked(BlockNode *bs, Qcow2Cache *c)
{
    BDRVQcow2State *s = bs->opaque;
    if (c != s->l2_cache) {
        return 0;
    }
    if (!s->lazy_refcounts) {
        int ret = qcow2_cache_flush_locked(bs, s->refblock_cache);
        if (ret < 0) {
            return ret;
        }
    }
    return block_flush(bs->file);
}

/* Writes one dirty entry of c, once order_before_write_locked is done. */
static int store_entry_locked(BlockNode *bs, Qcow2Cache *c,
                              Qcow2CacheEntry *e)
{
    BDRVQcow2State *s = bs->opaque;
    bool l2 = c == s->l2_cache;
    block_debug_event(bs->file, l2 ? BLKDBG_L2_UPDATE
                                   : BLKDBG_REFBLOCK_UPDATE_PART);
    int ret = qcow2_write_meta_locked(bs, e->offset, c->table_size, e->table,
                                      l2 ? QCOW2_META_L2
                                         : QCOW2_META_REFBLOCK);
    if (ret < 0) {
        return ret;
    }
    e->dirty = false;
    c->nb_dirty--;
    return 0;
}

static int write_entry_locked(BlockNode *bs, Qcow2Cache *c, int idx)
{
    Qcow2CacheEntry *e = &c->entries[idx];
    if (!e->dirty) {
        return 0;
    }
    int ret = order_before_write_locked(bs, c);
    return ret < 0 ? ret : store_entry_locked(bs, c, e);
}

int qcow2_cache_get_locked(BlockNode *bs, Qcow2Cache *c, uint64_t offset,
                           bool fresh, void **table)
{
    int idx = find_entry(c, offset);
    if (idx >= 0) {
        Qcow2CacheEntry *e = &c->entries[idx];
        if (fresh) {
            memset(e->table, 0, c->table_size);
        }
        e->pin++;
        e->lru = ++c->lru_clock;
        *table = e->table;
        return 0;
    }

    /* Victim: an empty slot, else the least recently used unpinned one. */
    int victim = -1;
    for (unsigned i = 0; i < c->nb_entries; i++) {
        Qcow2CacheEntry *e = &c->entries[i];
        if (e->pin) {
            continue;
        }
        if (e->offset == 0) {
            victim = (int)i;
            break;
        }
        if (victim < 0 || e->lru < c->entries[victim].lru) {
            victim = (int)i;
        }
    }
    if (victim < 0) {
        log_error("qcow2: table cache exhausted (all %u entries in use)",
                  c->nb_entries);
        return -ENOMEM;
    }
    Qcow2CacheEntry *e = &c->entries[victim];
    if (e->offset) {
        int ret = write_entry_locked(bs, c, victim);
        if (ret < 0) {
            return ret;
        }
        unhash_entry(c, victim);
    }
    if (fresh) {
        memset(e->table, 0, c->table_size);
    } else {
        BDRVQcow2State *s = bs->opaque;
        if (c == s->l2_cache) {
            block_debug_event(bs->file, BLKDBG_L2_LOAD);
        }
        int ret = block_read(bs->file, offset, c->table_size, e->table,
                             BLOCK_REQ_METADATA);
        if (ret < 0) {
            return ret;
        }
    }
    hash_entry(c, victim, offset);
    e->dirty = false;
    e->pin = 1;
    e->lru = ++c->lru_clock;
    *table = e->table;
    return 0;
}

void *qcow2_cache_lookup_locked(Qcow2Cache *c, uint64_t offset)
{
    int idx = find_entry(c, offset);
    if (idx < 0) {
        return NULL;
    }
    Qcow2CacheEntry *e = &c->entries[idx];
    e->pin++;
    e->lru = ++c->lru_clock;
    return e->table;
}

void qcow2_cache_put(Qcow2Cache *c, void *table)
{
    int idx = find_by_table(c, table);
    if (idx >= 0 && c->entries[idx].pin > 0) {
        c->entries[idx].pin--;
    }
}

void qcow2_cache_mark_dirty(Qcow2Cache *c, void *table)
{
    int idx = find_by_table(c, table);
    if (idx >= 0 && !c->entries[idx].dirty) {
        c->entries[idx].dirty = true;
        c->nb_dirty++;
    }
}

int qcow2_cache_write_table_locked(BlockNode *bs, Qcow2Cache *c, void *table)
{
    int idx = find_by_table(c, table);
    if (idx < 0) {
        return -EINVAL;
    }
    if (!c->entries[idx].dirty) {
        c->entries[idx].dirty = true;
        c->nb_dirty++;
    }
    return write_entry_locked(bs, c, idx);
}

int qcow2_cache_flush_locked(BlockNode *bs, Qcow2Cache *c)
{
    if (!c || c->nb_dirty == 0) {
        return 0;
    }
    /* One refcount write-back and one file flush for all tables. */
    int result = order_before_write_locked(bs, c);
    if (result < 0) {
        return result;
    }
    for (unsigned i = 0; i < c->nb_entries && c->nb_dirty; i++) {
        Qcow2CacheEntry *e = &c->entries[i];
        if (e->dirty) {
            int ret = store_entry_locked(bs, c, e);
            result = ret < 0 ? ret : result;
        }
    }
    return result;
}

void qcow2_cache_discard(Qcow2Cache *c, uint64_t offset)
{
    int idx = find_entry(c, offset);
    if (idx < 0) {
        return;
    }
    if (c->entries[idx].dirty) {
        c->entries[idx].dirty = false;
        c->nb_dirty--;
    }
    unhash_entry(c, idx);
}

void qcow2_cache_clear(Qcow2Cache *c)
{
    if (!c) {
        return;
    }
    for (unsigned i = 0; i < c->nb_entries; i++) {
        Qcow2CacheEntry *e = &c->entries[i];
        if (e->offset) {
            unhash_entry(c, (int)i);
        }
        e->dirty = false;
        e->pin = 0;
    }
    c->nb_dirty = 0;
}

bool qcow2_cache_contains(Qcow2Cache *c, uint64_t offset)
{
    return find_entry(c, offset) >= 0;
}
