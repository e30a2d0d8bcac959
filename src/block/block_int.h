/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - what block drivers and the block layer core share.
 *
 * A driver is a `const BlockDriver` with designated initializers,
 * registered in src/block/drivers.c.  Drivers do no generic work: the
 * entry points in io.c have already checked bounds, aligned the request
 * to bs->request_alignment, counted it in flight and accounted it.
 * Drivers are synchronous and must be thread-safe: several threads may
 * call any data callback of the same node at once.
 */
#ifndef STRATA_BLOCK_BLOCK_INT_H
#define STRATA_BLOCK_BLOCK_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "block/block.h"
#include "block/debug-event.h"

typedef struct BlockDriver BlockDriver;

typedef enum BlockDiscardMode { BLOCK_DISCARD_IGNORE, BLOCK_DISCARD_UNMAP } BlockDiscardMode;

/* Which link of its parent a node fills. */
typedef enum BlockChildKind {
    BLOCK_CHILD_NONE,     /* opened on its own: a user's node, or a backing
                             file named by an image header */
    BLOCK_CHILD_FILE,     /* the parent's bs->file */
    BLOCK_CHILD_BACKING,  /* the parent's bs->backing */
} BlockChildKind;

/* What the parent that links a node needs from it.  The core sets
 * bs->role before drv->open for a child given inline, and passes it to
 * drv->attach_parent for an existing node given by name, so a protocol
 * driver takes QEMU's lock bytes for that parent. */
typedef struct BlockChildRole {
    BlockChildKind kind;
    bool parent_has_metadata; /* the parent's driver has_metadata */
    /* The parent lets nobody else write or resize the child, whatever
     * it does itself (quorum: its children must stay equal). */
    bool parent_unshares_changes;
} BlockChildRole;

struct BlockNode {
    char *node_name;          /* user given or "#blockNNN" */
    bool implicit_name;       /* name was generated */
    const BlockDriver *drv;
    void *opaque;             /* drv->state_size bytes, zeroed */
    char *filename;           /* what info shows: file path or json: */

    BlockChildRole role;      /* how the parent that opened it uses it */
    BlockNode *file;          /* protocol child of a format node */
    BlockNode *backing;       /* backing node, or NULL */
    /* As recorded in the image header (set by the format driver's open). */
    char *backing_file;
    char *backing_format;

    bool read_only;
    bool force_share;
    bool cache_direct;
    bool no_flush;
    BlockDiscardMode discard;

    /* Set by the driver's open; updated by truncate/refresh. */
    _Atomic uint64_t total_size;
    uint32_t request_alignment; /* 1 unless the driver needs more */
    uint32_t max_transfer;      /* 0 = unlimited; io.c splits above it */

    /* Lifetime: one reference per parent link, export, job, monitor. */
    atomic_int refcnt;
    int parents;              /* number of parent child links */

    /* In flight and drain (io.c). */
    pthread_mutex_t drain_lock;
    pthread_cond_t drain_cond;
    int in_flight;            /* guarded by drain_lock */
    int quiesce_counter;      /* guarded by drain_lock */

    /* Thin provisioning: armed write threshold (0 = off) and the end of
     * the highest write that reached this node. */
    _Atomic uint64_t write_threshold;
    _Atomic uint64_t wr_highest_offset;
    /* Protocol nodes: the largest image end the formats above found in
     * their metadata at open (allocation.c). */
    _Atomic uint64_t image_end;

    BlockNode *graph_next;    /* graph list, guarded by the graph lock */
    /* When the node was made, on the clock of perm-conflict.c: among a
     * node's parents the newest is looked at first, as in QEMU. */
    uint64_t perm_seq;

    /* io.c: serialises overlapping writes when request_alignment > 1 so
     * read-modify-write never loses a concurrent write. */
    struct BlockWriteTracker *write_tracker;
    /* io.c: while non-zero, every modifying request on this node takes a
     * tracker entry even without alignment needs, so a copy-on-read of a
     * range (cor.c) excludes client writes to it.  Changed only with
     * the node drained. */
    atomic_int serialise_writes;
    /* cor.c: client reads copy from the backing chain first (an image
     * parameter); holds a serialise_writes count while set. */
    atomic_bool copy_on_read;

    /* io.c: what this node's requests cost (query-blockstats with
     * query-nodes, /metrics).  NULL only when accounting is switched off
     * for the overhead benchmark (STRATA_X_NO_ACCOUNTING). */
    struct BlockAcct *acct;

    /* filename.c: what QEMU's bdrv_refresh_filename keeps per node to
     * build `filename` (strong options, full open options, exact name). */
    struct BlockNodeNaming *naming;
};

struct BlockDriver {
    const char *format_name;  /* "qcow2", "raw", "file", ... */
    size_t state_size;        /* bytes of bs->opaque to allocate */

    /* ---- traits: what the core and users may assume about every node
     * of this driver, so that nobody outside the driver compares its
     * name ---- */

    /* Interprets the bytes of a `file` child; can be probed. */
    bool is_format;
    /* Talks to storage directly and has no `file` child: the bottom of
     * every chain, where host space is used and locks are taken. */
    bool is_protocol;
    /* Passes every request unchanged to its one child, bs->file (QEMU's
     * filters: blkdebug).  Users see through it: query-blockstats lists
     * the child where QEMU lists a filtered child. */
    bool is_filter;
    /* Keeps metadata in its `file` child: it takes what its own writes
     * need there and lets nobody else write or resize the child, and the
     * permissions of its users stop at it (qcow2; not raw). */
    bool has_metadata;
    /* Requests past the end of the node reach the driver instead of
     * failing: writes there extend it (a format appending clusters),
     * reads there return zeroes.  The node's size follows its highest
     * write.  On a block device the driver itself refuses what does not
     * fit (ENOSPC), which is how a thin volume reports it is full. */
    bool grows_on_write;
    /* May have a `backing` child. */
    bool supports_backing;
    /* Permissions a filter asks of its child on top of what its parents
     * ask (copy-on-read writes back what it reads: write-unchanged). */
    uint64_t filter_extra_perm;
    /* Filename prefixes ("nbd+unix" for "nbd+unix:///e?socket=p") that
     * open a node of this protocol driver with the whole name as its
     * "filename" option; NULL-terminated, optional.  A protocol driver's
     * own name is always one. */
    const char *const *protocol_prefixes;
    /* Has no image info for qemu-img info (QEMU's driver lacks
     * bdrv_get_info): no "dirty-flag" is shown. */
    bool no_image_info;
    /* QEMU's bdrv_parse_filename: turns a name that selected this driver
     * by its prefix ("file:x", "null-co://", "blkdebug:CONF:IMG") into
     * options, rewriting or deleting "filename" in opts.  Optional;
     * drivers that have it are probed through for the format above. */
    bool (*parse_filename)(const char *filename, json_t *opts, Error **errp);
    /* Has no signature: probing picks it only when no other format
     * matches, so a guest writing another format's header into it would
     * change how the image is opened next time (raw). */
    bool probe_fallback;
    /* The options create accepts, as qemu-img lists them (name NULL
     * ends it); every driver with a create callback has one. */
    const BlockCreateOpt *create_opts;

    /* ---- how the node is named (filename.c, QEMU's
     * bdrv_refresh_filename) ---- */

    /* The option that gives bs->file; NULL means "file" (blkdebug:
     * "image"). */
    const char *file_child_option;
    /* Options that change what the node reads (raw's offset and size):
     * given, they make the node's filename "json:{...}".  A trailing '.'
     * names a whole group.  NULL-terminated; optional. */
    const char *const *strong_options;
    /* The node's plain name from its full options (flat, in QEMU's
     * order), or NULL when only "json:" names it; malloc'd.  Replaces
     * the core's rule (a protocol node keeps the name it was opened with,
     * a format node takes its file's).  Optional. */
    char *(*exact_filename)(BlockNode *bs, const json_t *full_options);

    /* Drivers whose children are not bs->file or bs->backing but a list
     * they own (quorum): the i-th of them, NULL past the last, and in
     * *role the name of its link ("children.0").  The core refreshes
     * their names, puts their options in the node's "json:" filename as
     * a list under children_option, and checks the permissions that
     * list_child_perm gives them.  Optional, together. */
    BlockNode *(*list_child)(BlockNode *bs, int i, const char **role);
    const char *children_option;
    /* What bs asks of each list child, given what bs's parents ask of
     * bs (perm) and let others do (shared); as QEMU's bdrv_child_perm. */
    void (*list_child_perm)(BlockNode *bs, uint64_t perm, uint64_t shared,
                            uint64_t *nperm, uint64_t *nshared);

    /* Scores how well the first bytes of a file match this format:
     * 0 = not at all, 100 = certain.  Optional. */
    int (*probe)(const uint8_t *buf, size_t len, const char *filename);

    /* Opens bs.  opts holds the driver-specific options only: open must
     * json_object_del() every key it recognises (the core rejects what
     * is left).  A format driver opens its file child with
     * block_open_child(bs, opts, "file", errp).  Must set
     * bs->total_size, and bs->backing_file/backing_format when the image
     * names a backing file (the core opens the chain afterwards).
     * flags are BLOCK_O_*.  Returns false with errp set. */
    bool (*open)(BlockNode *bs, json_t *opts, int flags, Error **errp);

    /* Releases driver state.  In-flight I/O is already drained and the
     * node flushed; children are released by the core afterwards. */
    void (*close)(BlockNode *bs);

    /* Data callbacks: offset and bytes are multiples of
     * bs->request_alignment (except possibly at the end of the node), the
     * range lies inside the node and bytes <= max_transfer.  Return 0 or
     * -errno.  Must be thread-safe. */
    int (*pread)(BlockNode *bs, uint64_t offset, uint64_t bytes, void *buf,
                 int flags);
    /* flags may contain BLOCK_REQ_FUA. */
    int (*pwrite)(BlockNode *bs, uint64_t offset, uint64_t bytes,
                  const void *buf, int flags);
    /* flags: FUA, MAY_UNMAP, NO_FALLBACK.  -ENOTSUP makes the core write
     * a zero buffer instead (unless NO_FALLBACK).  Optional. */
    int (*pwrite_zeroes)(BlockNode *bs, uint64_t offset, uint64_t bytes,
                         int flags);
    /* Called only when bs->discard is UNMAP; advisory.  Optional. */
    int (*pdiscard)(BlockNode *bs, uint64_t offset, uint64_t bytes);
    /* Writes one cluster compressed (see block_write_compressed); never
     * called on a range that is being written concurrently.  Optional. */
    int (*pwrite_compressed)(BlockNode *bs, uint64_t offset, uint64_t bytes,
                             const void *buf);
    /* Makes every completed write durable.  Optional. */
    int (*flush)(BlockNode *bs);

    /* Describes the run at offset in this node alone; see block_status().
     * Optional: without it the whole range is DATA|ALLOCATED, and for a
     * format node with a file child also OFFSET_VALID at the same
     * offset. */
    int (*block_status)(BlockNode *bs, uint64_t offset, uint64_t bytes,
                        uint64_t *pnum, uint64_t *map, BlockNode **file);
    /* Filters only, optional: called when a block-status walk over the
     * chain looks through this filter to its child (the walk does not
     * call block_status on filters); a negative errno fails the walk
     * (blkdebug's injected block-status errors). */
    int (*filter_status_check)(BlockNode *bs, uint64_t offset,
                               uint64_t bytes);

    /* True when the node's storage is a block device (or another
     * device), whose size is the volume's, not the image's.  Cheap (no
     * I/O).  Optional: false without it. */
    bool (*is_block_device)(BlockNode *bs);
    /* Re-reads the storage size (protocol drivers); returns it or -errno. */
    int64_t (*refresh_size)(BlockNode *bs);
    /* st_blocks * 512 of the storage, or -errno.  Format drivers may
     * leave it NULL: the core asks bs->file. */
    int64_t (*get_allocated_file_size)(BlockNode *bs);
    /* Changes the virtual size.  Optional. */
    bool (*truncate)(BlockNode *bs, uint64_t size, bool exact,
                     PreallocMode prealloc, Error **errp);

    /* Creates an image file (see block_create).  Optional. */
    bool (*create)(const char *filename, json_t *opts, Error **errp);

    /* Returns qemu-img info's "format-specific" object ({"type": ...,
     * "data": {...}}) or NULL.  Optional. */
    json_t *(*get_specific_info)(BlockNode *bs);
    /* Bytes a qcow2 copy with clusters of cluster_size needs for the
     * node's persistent dirty bitmaps, or -errno.  Optional: set by
     * formats that can store such bitmaps. */
    int64_t (*bitmaps_copy_size)(BlockNode *bs, uint64_t cluster_size);
    /* QEMU's query-blockstats "driver-specific" object for this node, or
     * NULL.  Optional. */
    json_t *(*get_specific_stats)(BlockNode *bs);
    /* Cluster size for info, or 0.  Optional. */
    uint32_t (*get_cluster_size)(BlockNode *bs);
    /* True if the image is marked dirty (lazy refcounts).  Optional. */
    bool (*is_dirty)(BlockNode *bs);

    /* Checks (and with fix = BLOCK_FIX_* repairs) the image.  Returns 0,
     * or -errno if the check could not run.  Optional. */
    int (*check)(BlockNode *bs, BlockCheckResult *res, int fix);

    /* Rewrites the backing file name and format recorded in the image
     * (NULL file = no backing).  Does not change the open graph.
     * Optional. */
    bool (*change_backing_file)(BlockNode *bs, const char *backing_file,
                                const char *backing_fmt, Error **errp);

    /* qemu-img amend: the options (-o help) and the change itself (see
     * block_amend).  Optional, together. */
    const BlockCreateOpt *amend_opts;
    bool (*amend)(BlockNode *bs, json_t *opts, bool force,
                  BlockAmendProgress *progress, void *opaque, Error **errp);

    /* Internal snapshots (see block_snapshot_*).  Optional, together:
     * a node without them passes the call to its file child. */
    int (*snapshot_list)(BlockNode *bs, BlockSnapshotInfo **list);
    int (*snapshot_create)(BlockNode *bs, const BlockSnapshotInfo *sn);
    /* Returns -errno; reports what QEMU reports itself (error_report). */
    int (*snapshot_goto)(BlockNode *bs, const char *id_or_name);
    int (*snapshot_delete)(BlockNode *bs, const char *id, const char *name,
                           Error **errp);
    /* See block_snapshot_load_tmp; only ever on a read-only node.
     * Optional (no fallback to the file child, as in QEMU). */
    int (*snapshot_load_tmp)(BlockNode *bs, const char *id,
                             const char *name, Error **errp);

    /* The image-parameter payload the image stores (image-params.h):
     * *buf malloc'd, or NULL and *len 0 when it stores none.  Optional:
     * without it the format cannot store parameters. */
    bool (*get_params_payload)(BlockNode *bs, uint8_t **buf, size_t *len,
                               Error **errp);
    /* Replaces that payload (NULL: removes it) with a single write of
     * the image's header, so that a crash leaves the old payload or the
     * new one in a valid header.  Needs a writable node.  Optional, with
     * get_params_payload. */
    bool (*set_params_payload)(BlockNode *bs, const uint8_t *buf, size_t len,
                               Error **errp);

    /* Deallocates everything in this layer so reads fall through to the
     * backing node (qemu-img commit).  Optional. */
    int (*make_empty)(BlockNode *bs);

    /* Receives the debug events announced at or above this node (see
     * block_debug_event).  Called with the caller's locks held: must not
     * do I/O.  Optional: without it the event goes on to bs->file. */
    void (*debug_event)(BlockNode *bs, BlockDebugEvent ev);

    /* Format drivers that only append to their file: the offset in
     * bs->file where the image ends (from metadata, so also on a block
     * device, and before any write), which is the allocation on a thin
     * volume.  Cheap (no I/O).  Optional. */
    uint64_t (*get_image_end)(BlockNode *bs);

    /* Adds (count 1) or removes (count -1) the permissions of a user of
     * this node or of a node above that passes them on (see
     * block_node_add_perm).  Fails, taking nothing, on a conflict with
     * another process; removing never fails.  Optional: without it users'
     * permissions are not enforced on this node. */
    bool (*user_perm)(BlockNode *bs, uint64_t perm, uint64_t shared,
                      int count, Error **errp);
    /* This node, already open, becomes the `file` child of another node
     * (a child given by node name): takes what that parent needs, as
     * open does for role.  Fails, changing nothing, on a conflict.
     * Optional. */
    bool (*attach_parent)(BlockNode *bs, const BlockChildRole *role,
                          Error **errp);
    /* The node stops being written (the old top after a snapshot, as
     * QEMU's reopen read-only): writes back what it holds, and a format
     * stops asking write permissions of its file; a protocol node whose
     * parent did so drops the locks of what it no longer needs.  Called
     * drained, before bs->read_only is set.  Optional. */
    void (*make_read_only)(BlockNode *bs);
};

/* Opens the child named key ("file" or "backing") from opts: a string
 * names an existing node, an object is opened with an implicit name.
 * Deletes key from opts.  The child inherits read-only and force-share.
 * Returns a new reference, or NULL with errp set (also when absent and
 * required -- message "A block device must be specified for \"file\""). */
BlockNode *block_open_child(BlockNode *parent, json_t *opts, const char *key,
                            int flags, Error **errp);

const BlockDriver *block_find_driver(const char *name);
/* The protocol driver that a "prefix:" at the start of a filename
 * selects (its name or one of its protocol_prefixes), or NULL. */
const BlockDriver *block_find_protocol(const char *prefix);
/* NULL-terminated list of every driver. */
extern const BlockDriver *const block_drivers[];

/* cor.c: block_read's copy-on-read of a node with copy_on_read set:
 * copies what bs does not hold yet; a failure is logged, not returned to
 * the read.  Returns 0 or -errno for tests. */
int block_read_copy_first(BlockNode *bs, uint64_t offset, uint64_t bytes);

#endif
