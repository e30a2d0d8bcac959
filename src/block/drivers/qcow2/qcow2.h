/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the qcow2 driver: state shared by the I/O engine (qcow2.c,
 * qcow2-cluster.c, qcow2-refcount.c, qcow2-cache.c, qcow2-compress.c,
 * and qcow2-subcluster*.c for images with extended L2 entries) and by
 * creation and check/repair (qcow2-create.c, qcow2-check.c).
 *
 * Locking: BDRVQcow2State.lock guards every field below that changes
 * after open (tables, caches, allocation cursor, in-flight allocations).
 * It is held across metadata I/O to bs->file but never across guest data
 * I/O.  Functions named *_locked must be called with it held; every other
 * function declared here takes it itself and must be called without it.
 *
 * Allocation: data clusters freed this session (discard, zeroing,
 * rewrites) are taken first, once the L2 tables that dropped them are on
 * disk; otherwise clusters are appended at the end of the image
 * (s->next_alloc).  Metadata always goes at the end.  So on a thin
 * volume the highest host offset is still the allocation, and a guest
 * that discards and rewrites does not grow the image.  Holes that were
 * already free when the image was opened are not searched for.
 */
#ifndef STRATA_QCOW2_H
#define STRATA_QCOW2_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "block/block_int.h"
#include "block/drivers/qcow2/qcow2-format.h"

extern const BlockDriver bdrv_qcow2;

/* ---- from qcow2-create.c / qcow2-check.c (the "qcow2meta" engineer) ---- */
bool qcow2_create(const char *filename, json_t *opts, Error **errp);
bool qcow2_create_on_node(BlockNode *file, json_t *opts, Error **errp);
extern const BlockCreateOpt qcow2_create_opts[];
/* fix is BLOCK_FIX_*.  Called on an open node with no I/O in flight
 * (from open when the image is dirty, or from strata-img check). */
int qcow2_check(BlockNode *bs, BlockCheckResult *res, int fix);
/* Bytes a qcow2 image with cluster_size clusters needs to hold bs's
 * persistent dirty bitmaps (qemu-img measure); 0 without any, -errno
 * when the directory cannot be read or is damaged. */
int64_t qcow2_bitmaps_copy_size(BlockNode *bs, uint64_t cluster_size);
/* The header's bitmaps extension when QEMU would load the bitmaps it
 * describes, else NULL (qcow2-bitmaps.c). */
const Qcow2Extension *qcow2_bitmaps_extension(const Qcow2Header *h);
/* qemu-img amend (qcow2-amend.c). */
extern const BlockCreateOpt qcow2_amend_opts[];
bool qcow2_amend(BlockNode *bs, json_t *opts, bool force,
                 BlockAmendProgress *progress, void *opaque, Error **errp);
/* Amends the data file name (NULL: unchanged, "": none) and the raw
 * flag (-1: unchanged) in the header (qcow2-data-file.c). */
bool qcow2_amend_data_file(BlockNode *bs, const char *name, int raw,
                           Error **errp);
/* Rewrites the refcount structures with entries of 1 << order bits. */
bool qcow2_change_refcount_order(BlockNode *bs, unsigned order,
                                 Error **errp);

/* ---- L2 entries ---- */
typedef enum Qcow2ClusterType {
    QCOW2_CLUSTER_UNALLOCATED, /* 0: read from backing */
    QCOW2_CLUSTER_ZERO_PLAIN,  /* zero flag, no host cluster */
    QCOW2_CLUSTER_ZERO_ALLOC,  /* zero flag, host cluster kept */
    QCOW2_CLUSTER_NORMAL,      /* data at host offset */
    QCOW2_CLUSTER_COMPRESSED,  /* compressed descriptor */
} Qcow2ClusterType;

/* Inline: every request decodes at least one entry. */
static inline Qcow2ClusterType qcow2_l2e_type(uint64_t l2e)
{
    if (l2e & QCOW2_OFLAG_COMPRESSED) {
        return QCOW2_CLUSTER_COMPRESSED;
    }
    if (l2e & QCOW2_OFLAG_ZERO) {
        return (l2e & QCOW2_L2E_OFFSET_MASK) ? QCOW2_CLUSTER_ZERO_ALLOC
                                             : QCOW2_CLUSTER_ZERO_PLAIN;
    }
    if (l2e & QCOW2_L2E_OFFSET_MASK) {
        return QCOW2_CLUSTER_NORMAL;
    }
    return QCOW2_CLUSTER_UNALLOCATED;
}

/* What one subcluster of an image with extended L2 entries holds (the
 * 64-bit entry and its bitmap together decide).  A cluster of an image
 * without them is one subcluster: see qcow2_sc_type. */
typedef enum Qcow2SubclusterType {
    QCOW2_SC_UNALLOCATED_PLAIN, /* no host cluster: backing or zeroes */
    QCOW2_SC_UNALLOCATED_ALLOC, /* host cluster, but this part unused */
    QCOW2_SC_ZERO_PLAIN,
    QCOW2_SC_ZERO_ALLOC,
    QCOW2_SC_NORMAL,
    QCOW2_SC_COMPRESSED,
    QCOW2_SC_INVALID,           /* bitmap contradicts itself or the entry */
} Qcow2SubclusterType;

/* The cluster type of an entry of an extended L2 table: bit 0 (the zero
 * flag of standard entries) means nothing there and is ignored. */
static inline Qcow2ClusterType qcow2_l2e_type_ext(uint64_t l2e)
{
    if (l2e & QCOW2_OFLAG_COMPRESSED) {
        return QCOW2_CLUSTER_COMPRESSED;
    }
    return (l2e & QCOW2_L2E_OFFSET_MASK) ? QCOW2_CLUSTER_NORMAL
                                         : QCOW2_CLUSTER_UNALLOCATED;
}

/* Type of subcluster sc (0..31) of an extended L2 entry of cluster type
 * ct (qcow2_l2e_type_ext or qcow2_cluster_type_ext) and bitmap. */
static inline Qcow2SubclusterType qcow2_sc_type_of(Qcow2ClusterType ct,
                                                   uint64_t bitmap,
                                                   unsigned sc)
{
    switch (ct) {
    case QCOW2_CLUSTER_COMPRESSED:
        return QCOW2_SC_COMPRESSED;
    case QCOW2_CLUSTER_NORMAL:
        if ((bitmap >> 32) & bitmap) {
            return QCOW2_SC_INVALID;
        }
        if (bitmap & (1ull << (32 + sc))) {
            return QCOW2_SC_ZERO_ALLOC;
        }
        return (bitmap & (1ull << sc)) ? QCOW2_SC_NORMAL
                                       : QCOW2_SC_UNALLOCATED_ALLOC;
    default:
        if (bitmap & QCOW2_L2_BITMAP_ALL_ALLOC) {
            return QCOW2_SC_INVALID;
        }
        return (bitmap & (1ull << (32 + sc))) ? QCOW2_SC_ZERO_PLAIN
                                              : QCOW2_SC_UNALLOCATED_PLAIN;
    }
}

/* Type of subcluster sc (0..31) of an extended L2 entry and bitmap. */
static inline Qcow2SubclusterType qcow2_sc_type(uint64_t l2e, uint64_t bitmap,
                                                unsigned sc)
{
    return qcow2_sc_type_of(qcow2_l2e_type_ext(l2e), bitmap, sc);
}

/* Compressed cluster descriptor (L2 entry bits 0..61) for cluster_bits. */
typedef struct Qcow2CompressedDesc {
    uint64_t host_offset; /* byte offset of the compressed data */
    uint64_t nb_sectors;  /* 512-byte sectors the data may touch */
    uint64_t size;        /* bytes from host_offset to the end of the
                             last sector: an upper bound of the data */
} Qcow2CompressedDesc;
void qcow2_compressed_decode(uint64_t l2e, unsigned cluster_bits,
                             Qcow2CompressedDesc *d);
/* Builds the L2 entry (with QCOW2_OFLAG_COMPRESSED) for size bytes of
 * compressed data at host_offset.  Returns 0 if it cannot be described
 * (offset too large for the descriptor). */
uint64_t qcow2_compressed_encode(uint64_t host_offset, uint64_t size,
                                 unsigned cluster_bits);

/* ---- refcount block entries of width 1 << order bits (order 0..6) ---- */
uint64_t qcow2_refblock_get(const void *block, uint64_t index, unsigned order);
void qcow2_refblock_set(void *block, uint64_t index, unsigned order,
                        uint64_t value);
static inline uint64_t qcow2_refcount_max(unsigned order)
{
    return order >= 6 ? UINT64_MAX : (1ull << (1u << order)) - 1;
}

/* ---- table cache (qcow2-cache.c): LRU of cluster-sized tables ---- */
typedef struct Qcow2Cache Qcow2Cache;

/* ---- in-flight allocations ---- */
typedef struct Qcow2InflightAlloc {
    uint64_t first_cluster; /* guest cluster index */
    uint64_t nb_clusters;
    struct Qcow2InflightAlloc *next;
} Qcow2InflightAlloc;

/* ---- internal snapshots (qcow2-snapshot-table.c, qcow2-snapshot.c) ---- */
typedef struct Qcow2Snapshot {
    uint64_t l1_table_offset;
    uint32_t l1_size;
    char *id_str;
    char *name;
    uint64_t disk_size;       /* the virtual size when it was taken */
    uint64_t vm_state_size;
    uint32_t date_sec;
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t icount;          /* UINT64_MAX: not recorded */
    uint32_t extra_data_size; /* as read (what follows the fixed part) */
    uint8_t *unknown_extra;   /* extra data past the fields we know */
} Qcow2Snapshot;

typedef struct BDRVQcow2State {
    Qcow2Header header;       /* as on disk (kept current) */

    unsigned cluster_bits;
    uint64_t cluster_size;
    unsigned l2_bits;         /* log2 of entries per L2 table */
    uint64_t l2_entries;
    /* Extended L2 entries: 16-byte L2 entries (entry + subcluster
     * bitmap), 32 subclusters per cluster (qcow2-subcluster.c). */
    bool extended_l2;
    unsigned l2e_shift;       /* log2 of an L2 entry's bytes: 3 or 4 */
    unsigned subcluster_bits;
    uint64_t subcluster_size; /* cluster_size without extended L2 */
    unsigned refcount_order;  /* refcount width is 1 << order bits */
    unsigned refblock_bits;   /* log2 of entries per refcount block */
    uint64_t refblock_entries;

    /* Active L1 table, host-endian, header.l1_size entries. */
    uint64_t *l1_table;
    uint32_t l1_size;
    uint64_t l1_table_offset;

    /* Refcount table, host-endian, reftable_entries entries (the whole
     * header.refcount_table_clusters area). */
    uint64_t *reftable;
    uint64_t reftable_entries;
    uint64_t reftable_offset;

    Qcow2Cache *l2_cache;
    Qcow2Cache *refblock_cache;
    uint64_t l2_cache_bytes;
    uint64_t refblock_cache_bytes;

    pthread_mutex_t lock;
    pthread_cond_t alloc_cond;       /* an in-flight allocation ended */
    Qcow2InflightAlloc *inflight;

    /* Next free host offset (cluster aligned) at the end of the image. */
    uint64_t next_alloc;
    /* Where the next compressed cluster may be packed (0 = none). */
    uint64_t compressed_next;

    /* Set of host clusters holding metadata, for the overlap check. */
    uint64_t *meta_set;
    uint64_t meta_set_cap;    /* power of two */
    uint64_t meta_set_count;

    bool writable;
    bool metadata_only;       /* BLOCK_O_METADATA_ONLY: no data writes */
    bool lazy_refcounts;      /* open option (or header default) */
    bool dirty_set_by_us;     /* we set the dirty bit; clear on close */
    bool discard_no_unref;
    bool pass_discard_request;
    bool punch_freed;         /* a shrink runs: freed clusters are punched */
    uint64_t cache_clean_interval;
    atomic_bool broken;       /* marked corrupt: all I/O fails -EIO */
    atomic_bool signaled;     /* corruption reported (reported once) */
    /* Whether the image looks preallocated (more clusters in use than
     * the file has blocks): block status then asks the file whether
     * data clusters are holes, as QEMU does.  -1: not yet judged. */
    int metadata_prealloc;
    int compression_type;

    /* L2 entries whose references are dropped at the next cache flush,
     * after the L2 tables no longer pointing at them are on disk: only
     * then may the clusters be handed out again (reuse below). */
    uint64_t *pending_free;
    size_t pending_free_count;
    size_t pending_free_cap;

    /* Data clusters freed this session whose last reference is gone
     * from the image on disk: allocation takes them before appending,
     * so a guest that discards and rewrites does not grow its image
     * without bound (qcow2-refcount.c).  One bit per host cluster. */
    uint64_t *reuse;
    uint64_t reuse_bits;      /* clusters the bitmap covers */
    uint64_t reuse_low;       /* no set bit below this cluster */
    uint64_t reuse_count;     /* set bits */
    uint64_t reuse_no_run;    /* no free run this long (0: unknown);
                                 forgotten when a cluster is freed */

    /* The snapshot table (header.nb_snapshots entries), read at open
     * except by check, which reads it itself; snapshots_size is the
     * bytes it takes on disk. */
    Qcow2Snapshot *snapshots;
    uint64_t snapshots_size;

    /* Where guest data lives: bs->file, or the external data file of an
     * image with the data-file incompatible bit (qcow2-data-file.c).
     * NULL for such an image opened without its data (qemu-img info). */
    BlockNode *data_file;
} BDRVQcow2State;

/* ---- external data files (incompatible bit 2) ----
 * Guest data is in another file, always at its guest offset: no
 * refcounts cover it, and the image file holds only metadata.  So a
 * cluster of guest offset 0 has host offset 0, which is told apart from
 * an unallocated cluster by its COPIED flag (always set there). */
static inline bool qcow2_has_data_file(const BDRVQcow2State *s)
{
    return (s->header.incompatible_features & QCOW2_INCOMPAT_DATA_FILE) != 0;
}

/* The data file is kept a valid raw image of the disk (autoclear bit). */
static inline bool qcow2_data_file_raw(const BDRVQcow2State *s)
{
    return (s->header.autoclear_features & QCOW2_AUTOCLEAR_DATA_RAW) != 0;
}

static inline bool qcow2_data_at_zero(const BDRVQcow2State *s, uint64_t l2e)
{
    return qcow2_has_data_file(s) &&
           (l2e & (QCOW2_OFLAG_COPIED | QCOW2_OFLAG_COMPRESSED |
                   QCOW2_L2E_OFFSET_MASK)) == QCOW2_OFLAG_COPIED;
}

/* qcow2_l2e_type and friends for this image's entries. */
static inline Qcow2ClusterType qcow2_cluster_type(const BDRVQcow2State *s,
                                                  uint64_t l2e)
{
    if (!(l2e & QCOW2_OFLAG_ZERO) && qcow2_data_at_zero(s, l2e)) {
        return QCOW2_CLUSTER_NORMAL;
    }
    return qcow2_l2e_type(l2e);
}

static inline Qcow2ClusterType qcow2_cluster_type_ext(const BDRVQcow2State *s,
                                                      uint64_t l2e)
{
    return qcow2_data_at_zero(s, l2e) ? QCOW2_CLUSTER_NORMAL
                                      : qcow2_l2e_type_ext(l2e);
}

static inline Qcow2SubclusterType qcow2_subcluster_type(
    const BDRVQcow2State *s, uint64_t l2e, uint64_t bitmap, unsigned sc)
{
    return qcow2_sc_type_of(qcow2_cluster_type_ext(s, l2e), bitmap, sc);
}

/* ---- services for check/repair and image tools ---- */

/* Writes back dirty cached refcount blocks, then (after flushing the
 * file) the L2 tables, then drops the references queued by frees and
 * writes those refcount blocks too.  Ends without a final flush of
 * bs->file.  0 or -errno. */
int qcow2_flush_caches(BlockNode *bs);

/* Drops the caches without writing them back and re-reads the header,
 * L1 table and refcount table from disk (after a repair rewrote them
 * directly through bs->file).  Also recomputes the allocation cursor
 * and the metadata overlap set. */
bool qcow2_reload_metadata(BlockNode *bs, Error **errp);

/* One refcount of host cluster index cluster (offset >> cluster_bits).
 * Get returns 0 with *refcount = 0 for clusters no refcount block
 * covers.  Set allocates refcount blocks (and grows the refcount table)
 * at the end of the image as needed; -ERANGE if value does not fit the
 * refcount width.  Both go through the refcount cache: call
 * qcow2_flush_caches to write it back. */
int qcow2_get_refcount(BlockNode *bs, uint64_t cluster, uint64_t *refcount);
int qcow2_set_refcount(BlockNode *bs, uint64_t cluster, uint64_t refcount);

/* Appends nb clusters at the end of the image with refcount 1 and
 * returns their host offset in *offset.  0 or -errno. */
int qcow2_alloc_clusters(BlockNode *bs, uint64_t nb, uint64_t *offset);

/* Encodes s->header (with its extensions) and writes it over the first
 * cluster of the image.  0 or -errno. */
int qcow2_update_header(BlockNode *bs);

/* qcow2-snapshot-table.c: reads the snapshot table into s->snapshots
 * with QEMU's checks and texts ("Too much extra metadata in snapshot
 * table entry 0", "Snapshot table is too big"). */
bool qcow2_read_snapshots(BlockNode *bs, Error **errp);
void qcow2_free_snapshots(BDRVQcow2State *s);
/* Writes list (nb entries) as a new snapshot table in new clusters,
 * points the header at it once it and its refcounts are on disk, then
 * frees the old table's clusters.  Updates the header fields and
 * s->snapshots_size; s->snapshots is the caller's to replace.  0 or
 * -errno (-EFBIG when the table would pass QEMU's size limit). */
int qcow2_write_snapshots_locked(BlockNode *bs, Qcow2Snapshot *list,
                                 uint32_t nb);
/* qcow2-snapshot.c: qemu-img snapshot. */
int qcow2_snapshot_list(BlockNode *bs, BlockSnapshotInfo **list);
int qcow2_snapshot_create(BlockNode *bs, const BlockSnapshotInfo *sn);
int qcow2_snapshot_goto(BlockNode *bs, const char *id_or_name);
int qcow2_snapshot_delete(BlockNode *bs, const char *id, const char *name,
                          Error **errp);
int qcow2_snapshot_load_tmp(BlockNode *bs, const char *id, const char *name,
                            Error **errp);

/* ---- internal: engine functions across the driver's own files ---- */

/* qcow2-cache.c */
Qcow2Cache *qcow2_cache_new(unsigned nb_entries, uint64_t table_size);
void qcow2_cache_free(Qcow2Cache *c);
/* Returns a pinned table for host offset (read from disk on a miss,
 * or zero-filled without reading when fresh is true).  Unpin with put. */
int qcow2_cache_get_locked(BlockNode *bs, Qcow2Cache *c, uint64_t offset,
                           bool fresh, void **table);
/* The cached table at offset, pinned, or NULL on a miss (no I/O). */
void *qcow2_cache_lookup_locked(Qcow2Cache *c, uint64_t offset);
void qcow2_cache_put(Qcow2Cache *c, void *table);
void qcow2_cache_mark_dirty(Qcow2Cache *c, void *table);
/* Writes back all dirty tables of c (respecting the L2-after-refcount
 * order when c is the L2 cache). */
int qcow2_cache_flush_locked(BlockNode *bs, Qcow2Cache *c);
/* Writes back the refcount cache and flushes the file: what a header or
 * table update that points at new metadata must wait for. */
int qcow2_refcounts_durable_locked(BlockNode *bs);
/* Writes back one table now (keeps it cached). */
int qcow2_cache_write_table_locked(BlockNode *bs, Qcow2Cache *c,
                                   void *table);
/* Forgets an entry (table freed) or everything (no write-back). */
void qcow2_cache_discard(Qcow2Cache *c, uint64_t offset);
void qcow2_cache_clear(Qcow2Cache *c);
/* True if the table at offset is cached (tests). */
bool qcow2_cache_contains(Qcow2Cache *c, uint64_t offset);
unsigned qcow2_cache_entries_for(uint64_t bytes, uint64_t table_size);

/* qcow2-refcount.c */
int qcow2_get_refcount_locked(BlockNode *bs, uint64_t cluster,
                              uint64_t *refcount);
/* Adds delta (+1/-1...) to the refcount of every cluster touched by
 * [offset, offset+length). */
int qcow2_update_refcount_locked(BlockNode *bs, uint64_t offset,
                                 uint64_t length, int64_t delta);
int qcow2_set_refcount_locked(BlockNode *bs, uint64_t cluster,
                              uint64_t refcount);
/* Points the header at a new, durable refcount table of entries
 * entries at offset and puts table (taken over on success) in use;
 * returns where the old one was, for the caller to free. */
int qcow2_switch_reftable_locked(BlockNode *bs, uint64_t *table,
                                 uint64_t entries, uint64_t offset,
                                 uint64_t *old_offset, uint64_t *old_bytes);
/* Drops one reference to every cluster of [offset, offset+length) that
 * something referenced until now, announcing cluster_free first, and
 * prints QEMU's line on stderr when that fails (the caller's error
 * handling is unchanged: a failure leaks the clusters). */
int qcow2_free_clusters_locked(BlockNode *bs, uint64_t offset,
                               uint64_t length);
int qcow2_alloc_clusters_locked(BlockNode *bs, uint64_t nb, uint64_t *offset);
/* Gives back nb clusters at offset that qcow2_alloc_clusters_locked
 * returned and that nothing references yet (their data write failed):
 * drops their refcounts and, when they are still the last clusters of
 * the image, moves the allocation cursor back over them. */
int qcow2_free_new_clusters_locked(BlockNode *bs, uint64_t offset,
                                   uint64_t nb);
/* Allocates size bytes of compressed data space, packing clusters. */
int qcow2_alloc_bytes_locked(BlockNode *bs, uint64_t size, uint64_t *offset);
/* Drops one reference of whatever the L2 entry points to. */
int qcow2_free_l2e_locked(BlockNode *bs, uint64_t l2e);
/* After the freeing of l2e is durable (its L2 table on disk no longer
 * points at it): makes the cluster reusable if nothing references it. */
void qcow2_reuse_freed_locked(BlockNode *bs, uint64_t l2e);
void qcow2_reuse_clear(BDRVQcow2State *s);
/* Queues that for the next qcow2_flush_caches (flushing early when the
 * queue is long). */
int qcow2_defer_free_locked(BlockNode *bs, uint64_t l2e);
int qcow2_flush_caches_locked(BlockNode *bs);

/* qcow2-overlap.c: the set of host clusters holding metadata. */
typedef enum Qcow2MetaType {
    QCOW2_META_NONE = 0,
    QCOW2_META_HEADER,
    QCOW2_META_L1,
    QCOW2_META_L2,
    QCOW2_META_REFTABLE,
    QCOW2_META_REFBLOCK,
    QCOW2_META_SNAPSHOTS,
} Qcow2MetaType;
/* QEMU's names ("refcount table", "active L2 table", ...). */
const char *qcow2_meta_type_name(Qcow2MetaType type);
/* Marks [offset, offset+len) as metadata of type for the overlap check. */
int qcow2_meta_add(BDRVQcow2State *s, uint64_t offset, uint64_t len,
                   Qcow2MetaType type);
void qcow2_meta_remove(BDRVQcow2State *s, uint64_t offset, uint64_t len);
void qcow2_meta_clear(BDRVQcow2State *s);
/* Rebuilds the set from the header, L1 and refcount table. */
int qcow2_meta_rebuild_locked(BlockNode *bs);
/* Returns the type of the first metadata cluster other than ignore that
 * the range overlaps, or QCOW2_META_NONE. */
Qcow2MetaType qcow2_meta_overlap(BDRVQcow2State *s, uint64_t offset,
                                 uint64_t len, Qcow2MetaType ignore);

/* qcow2.c */
/* Marks the image corrupt on disk, emits BLOCK_IMAGE_CORRUPTED and
 * makes the node fail all later I/O.  Returns -EIO. */
/* offset and size are -1 when not known. */
int qcow2_signal_corruption_locked(BlockNode *bs, bool fatal, int64_t offset,
                                   int64_t size, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Writes metadata to bs->file after the overlap check (ignoring
 * overlap with the structure being written). */
int qcow2_write_meta_locked(BlockNode *bs, uint64_t offset, uint64_t len,
                            const void *buf, Qcow2MetaType ignore);
/* Checks a guest data write to host [offset, offset+len) against the
 * metadata; on overlap signals corruption and returns -EIO. */
int qcow2_check_data_write_locked(BlockNode *bs, uint64_t offset,
                                  uint64_t len);
/* Sets the dirty bit on disk (lazy refcounts) before the first write. */
int qcow2_mark_dirty_locked(BlockNode *bs);

/* qcow2-cluster.c */
/* Looks up guest offset: *l2e is the L2 entry (0 when no L2 table),
 * *nb_clusters the number of contiguous clusters from offset's cluster
 * (at most max_clusters, within one L2 table) with the same type and,
 * for NORMAL/ZERO_ALLOC, contiguous host offsets. */
int qcow2_get_cluster_locked(BlockNode *bs, uint64_t offset,
                             uint64_t max_clusters, uint64_t *l2e,
                             uint64_t *nb_clusters);
int qcow2_co_pread(BlockNode *bs, uint64_t offset, uint64_t bytes, void *buf,
                   int flags);
int qcow2_co_pwrite(BlockNode *bs, uint64_t offset, uint64_t bytes,
                    const void *buf, int flags);
int qcow2_co_pwrite_zeroes(BlockNode *bs, uint64_t offset, uint64_t bytes,
                           int flags);
int qcow2_co_pdiscard(BlockNode *bs, uint64_t offset, uint64_t bytes);
int qcow2_co_block_status(BlockNode *bs, uint64_t offset, uint64_t bytes,
                          uint64_t *pnum, uint64_t *map, BlockNode **file);
int qcow2_co_pwrite_compressed(BlockNode *bs, uint64_t offset, uint64_t bytes,
                               const void *buf);
int qcow2_make_empty(BlockNode *bs);
/* Deallocates everything from guest offset new_size (for a shrink): the
 * clusters after it, and zeroes the rest of the cluster it falls in. */
int qcow2_discard_beyond(BlockNode *bs, uint64_t new_size);
/* qcow2-shrink.c: discards everything from new_size on and gives the
 * space back (unused tables freed, freed clusters punched out of the
 * file, the file cut after its last cluster in use). */
int qcow2_shrink_release(BlockNode *bs, uint64_t new_size);
/* Whether qcow2_make_completely_empty may be used on the image, and
 * that: the image reads as unallocated everywhere, its file holds only
 * fresh metadata. */
bool qcow2_can_empty_completely(BlockNode *bs);
/* Between the two, every host cluster whose refcount drops to 0 is
 * discarded in the file (begin returns the mode end restores). */
BlockDiscardMode qcow2_punch_begin(BlockNode *bs);
void qcow2_punch_end(BlockNode *bs, BlockDiscardMode saved);
int qcow2_make_completely_empty(BlockNode *bs);
/* Grows the L1 table to at least min_size entries. */
int qcow2_grow_l1_locked(BlockNode *bs, uint64_t min_size);

/* qcow2-compress.c: whole clusters.  compress returns the compressed
 * size, or 0 when it would not be smaller than max_out (then the caller
 * writes the cluster uncompressed), or -errno. */
int64_t qcow2_compress(int type, const void *in, size_t in_len, void *out,
                       size_t max_out);
/* Decompresses exactly out_len bytes; -EIO on malformed input. */
int qcow2_decompress(int type, const void *in, size_t in_len, void *out,
                     size_t out_len);

/* Per-thread scratch buffers (kept between calls, so the data path does
 * not allocate per cluster; qcow2-compress.c).  Get returns a 4 KiB
 * aligned buffer of at least size bytes (NULL when out of memory); hand
 * it back with put, which frees it if it was allocated for this call
 * only (too big, or the slot was already taken by an outer caller). */
enum {
    QCOW2_SCRATCH_CLUSTER,    /* one uncompressed cluster */
    QCOW2_SCRATCH_COMPRESSED, /* compressed bytes read or to be written */
    QCOW2_SCRATCH_BOUNCE,     /* guest data merged with copy-on-write */
    QCOW2_SCRATCH_COUNT
};
void *qcow2_scratch_get(unsigned slot, size_t size);
void qcow2_scratch_put(unsigned slot, void *buf);

#endif
