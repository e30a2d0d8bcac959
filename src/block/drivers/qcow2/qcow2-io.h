/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - helpers private to the qcow2 I/O engine's own files. */
#ifndef STRATA_QCOW2_IO_H
#define STRATA_QCOW2_IO_H

#include <endian.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2.h"

/* L2 tables stay big-endian in the cache.  An entry is 8 bytes, or 16
 * with extended L2 entries (the subcluster bitmap follows it). */
static inline uint64_t qcow2_l2_get(const BDRVQcow2State *s,
                                    const void *table, uint64_t index)
{
    uint64_t v;
    memcpy(&v, (const uint8_t *)table + (index << s->l2e_shift), 8);
    return be64toh(v);
}

static inline void qcow2_l2_set(const BDRVQcow2State *s, void *table,
                                uint64_t index, uint64_t value)
{
    uint64_t v = htobe64(value);
    memcpy((uint8_t *)table + (index << s->l2e_shift), &v, 8);
}

/* The subcluster bitmap of an entry (extended L2 entries only). */
static inline uint64_t qcow2_l2_bitmap_get(const void *table, uint64_t index)
{
    uint64_t v;
    memcpy(&v, (const uint8_t *)table + index * 16 + 8, 8);
    return be64toh(v);
}

static inline void qcow2_l2_bitmap_set(void *table, uint64_t index,
                                       uint64_t value)
{
    uint64_t v = htobe64(value);
    memcpy((uint8_t *)table + index * 16 + 8, &v, 8);
}

/* Pins the L2 table of l1_index (NULL when there is none). */
int qcow2_get_l2_table_locked(BlockNode *bs, uint64_t l1_index, void **table);
/* Same, allocating the table (and growing L1) when there is none. */
int qcow2_get_l2_for_write_locked(BlockNode *bs, uint64_t l1_index,
                                  void **table);
/* Puts a new, zeroed L2 table for l1_index (which has none) at
 * new_offset, a cluster just allocated for it (refcount 1, referenced by
 * nothing), and returns it pinned; on failure the cluster is given
 * back. */
int qcow2_install_l2_locked(BlockNode *bs, uint64_t l1_index,
                            uint64_t new_offset, void **table);

/* In-flight allocations: a request that changes the L2 entries of guest
 * clusters [first, first+nb) registers them so no other request acts on
 * the same clusters until it has updated the L2 table. */
void qcow2_inflight_wait_locked(BDRVQcow2State *s, uint64_t first,
                                uint64_t nb);
int qcow2_inflight_add_locked(BDRVQcow2State *s, uint64_t first, uint64_t nb,
                              Qcow2InflightAlloc *slot);
void qcow2_inflight_remove_locked(BDRVQcow2State *s, Qcow2InflightAlloc *slot);

/* Reads and decompresses the cluster described by l2e into out (one
 * cluster). */
int qcow2_read_compressed(BlockNode *bs, uint64_t l2e, void *out);
/* Reads [offset, offset+len) of that cluster (offset from its start). */
int qcow2_read_compressed_part(BlockNode *bs, uint64_t l2e, uint64_t offset,
                               uint64_t len, uint8_t *buf);

/* qcow2-zero.c: true if [offset, offset+bytes) of node reads as zeroes
 * through its chain, judged by block status as QEMU does (data that
 * happens to be zero does not count); past node's end reads zeroes; an
 * error counts as "not known to be zero". */
bool qcow2_reads_zero(BlockNode *node, uint64_t offset, uint64_t bytes);

/* qcow2-prealloc.c: maps the unmapped clusters of guest [offset, end)
 * to new host clusters without writing data (resize with
 * preallocation=metadata).  0 or -errno. */
int qcow2_prealloc_metadata(BlockNode *bs, uint64_t offset, uint64_t end);
/* Resize with preallocation=falloc or full: maps guest [old_size, end)
 * (from the start of the cluster old_size falls in) to one new run of
 * host clusters that the file gets with mode; alloc_sc marks their
 * subclusters allocated (a backing file reaches into the new area). */
bool qcow2_prealloc_data(BlockNode *bs, uint64_t old_size, uint64_t end,
                         PreallocMode mode, bool alloc_sc, Error **errp);

/* qcow2-data-file.c: external data files. */
/* Host offset for nb new data clusters of guest cluster index cluster:
 * the guest offset in an external data file, else clusters appended to
 * the image; *fresh says they must be given back if never linked. */
int qcow2_alloc_data_locked(BlockNode *bs, uint64_t cluster, uint64_t nb,
                            uint64_t *host, bool *fresh);
/* Drops a data cluster of an external data file (no refcounts). */
int qcow2_data_file_free_locked(BlockNode *bs, uint64_t l2e);
/* With an external data file: signals corruption (QEMU's texts) for a
 * compressed entry, or one whose host offset is not its guest offset
 * (has_host: the entry's type has a host cluster).  0 otherwise. */
int qcow2_check_data_file_entry_locked(BlockNode *bs, uint64_t l2e,
                                       bool has_host, uint64_t guest,
                                       uint64_t l2_offset, uint64_t l2_index);
/* Flushes an external data file (0 without one). */
int qcow2_flush_data_file(BlockNode *bs);
/* With data-file-raw, writes zeroes over guest [offset, +bytes) of the
 * data file (0 otherwise). */
int qcow2_data_file_zero_raw(BlockNode *bs, uint64_t offset, uint64_t bytes,
                             int flags);
/* Sets s->data_file at open: the "data-file" option, or the file the
 * header names, or bs->file; QEMU's checks and messages. */
bool qcow2_open_data_file(BlockNode *bs, json_t *opts, int flags,
                          Error **errp);
void qcow2_close_data_file(BlockNode *bs);
int64_t qcow2_get_allocated_file_size(BlockNode *bs);

/* qcow2-load.c */
/* Reads and decodes the header (into s->header) and the L1 and refcount
 * tables, and derives the geometry; *raw is the first cluster as read. */
bool qcow2_load_metadata(BlockNode *bs, uint8_t **raw, size_t *raw_len,
                         Error **errp);
/* Refuses what the engine cannot handle (see DESIGN.md, images).
 * for_check: opened by check/repair (BLOCK_O_NO_REPAIR), which may open
 * an image marked corrupt read/write. */
bool qcow2_check_open_policy(BlockNode *bs, const uint8_t *raw, size_t len,
                             bool writable, bool for_check, Error **errp);
/* Consumes the qcow2 options from opts (QEMU's names and meanings). */
bool qcow2_parse_options(BlockNode *bs, json_t *opts, Error **errp);
bool qcow2_create_caches(BlockNode *bs, Error **errp);
void qcow2_free_state(BDRVQcow2State *s);

#endif
