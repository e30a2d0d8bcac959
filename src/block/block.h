/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the block layer: a graph of named nodes and one I/O entry
 * point per operation.
 *
 * Every request from any user (NBD export, job, image tool, or a format
 * driver reading its own `file` child) goes through the functions below.
 * They do the generic work once -- bounds, alignment (read-modify-write
 * for drivers that need it), in-flight counting for drain, write
 * threshold, accounting -- and then call the node's driver.
 *
 * Data paths return 0 or -errno and are safe to call from any thread.
 * Control paths return bool/pointer and fill an Error.
 */
#ifndef STRATA_BLOCK_BLOCK_H
#define STRATA_BLOCK_BLOCK_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

typedef struct BlockNode BlockNode;

/* ---- request flags ---- */
#define BLOCK_REQ_FUA         0x1 /* write/zeroes: durable when it returns */
#define BLOCK_REQ_MAY_UNMAP   0x2 /* zeroes: may deallocate the range */
#define BLOCK_REQ_NO_FALLBACK 0x4 /* zeroes: -ENOTSUP rather than writing
                                     a buffer of zeroes (NBD FAST_ZERO) */
#define BLOCK_REQ_METADATA    0x8 /* a format driver's own metadata I/O:
                                     accounted as BLOCK_ORIGIN_METADATA,
                                     with every request it makes below */
#define BLOCK_REQ_NO_COPY     0x10 /* read: never copy-on-read (the reads
                                      a copy itself makes) */

/* ---- what a request is and who sent it ---- */

/* The generic request types a user runs.  Error policy (user.h) and
 * accounting are keyed on these, never on a protocol's commands. */
typedef enum BlockReqType {
    BLOCK_REQ_READ,
    BLOCK_REQ_WRITE,
    BLOCK_REQ_WRITE_ZEROES,
    BLOCK_REQ_DISCARD,
    BLOCK_REQ_FLUSH,
    BLOCK_REQ_CACHE,          /* read ahead; moves no data to the user */
    BLOCK_REQ_STATUS,         /* block status; never an I/O error */
    BLOCK_REQ__MAX,
} BlockReqType;

/* True for the types whose failures fall under the read error policy. */
bool block_req_is_read(BlockReqType type);

/* Who a request is for.  Node accounting keeps the origins apart, so a
 * job's copying can be told from its clients' I/O on the same node and a
 * rate controller can read the clients' latency without its own. */
typedef enum BlockOrigin {
    BLOCK_ORIGIN_CLIENT,      /* an export's client, or a tool's own I/O */
    BLOCK_ORIGIN_JOB,         /* a block job */
    BLOCK_ORIGIN_METADATA,    /* a format driver's metadata */
    BLOCK_ORIGIN__MAX,
} BlockOrigin;

/* "client", "job", "metadata". */
const char *block_origin_name(BlockOrigin origin);

/* The origin of the requests this thread makes from now on; returns the
 * previous one so callers can restore it.  Requests a driver makes on
 * its children while serving one inherit it (unless they carry
 * BLOCK_REQ_METADATA).  The default is BLOCK_ORIGIN_CLIENT. */
BlockOrigin block_origin_set(BlockOrigin origin);
BlockOrigin block_origin_current(void);

/* ---- block status flags (same values and meaning as QEMU's) ---- */
#define BLOCK_STATUS_DATA         0x01 /* reads come from this node's file */
#define BLOCK_STATUS_ZERO         0x02 /* reads return zeroes */
#define BLOCK_STATUS_OFFSET_VALID 0x04 /* *map is the offset in *file */
#define BLOCK_STATUS_ALLOCATED    0x10 /* the content is defined by this
                                          layer (not by a backing node) */
#define BLOCK_STATUS_EOF          0x20 /* range reaches the end of node */
#define BLOCK_STATUS_COMPRESSED   0x40 /* stored compressed (qcow2) */

/* ---- open flags for block_open_image ---- */
#define BLOCK_O_RDWR        0x1 /* open read-write (default read-only) */
#define BLOCK_O_NO_BACKING  0x2 /* do not open the backing chain */
#define BLOCK_O_FORCE_SHARE 0x4 /* -U: take no locks that exclude writers;
                                   read-only only */
#define BLOCK_O_NOCACHE     0x8 /* cache.direct=on on the protocol node */
#define BLOCK_O_NO_REPAIR   0x10 /* do not auto-repair a dirty image on
                                    open (used by check) */
#define BLOCK_O_METADATA_ONLY 0x20 /* read-write for changes of the image's
                                      metadata only (amend, snapshot):
                                      data writes fail with EROFS */
#define BLOCK_O_NO_IO       0x40 /* only the metadata is looked at (info):
                                    a qcow2 image's external data file is
                                    not opened */

typedef enum PreallocMode {
    PREALLOC_OFF = 0,
    PREALLOC_METADATA,
    PREALLOC_FALLOC,
    PREALLOC_FULL,
} PreallocMode;
extern const char *const prealloc_mode_names[]; /* NULL-terminated */

/* ---- graph ---- */

/* Opens a node (and any children given inline) from blockdev-add style
 * options: {"driver", "node-name"?, "read-only"?, "force-share"?,
 * "discard"?, "cache"?: {"direct"?, "no-flush"?}, "file"?, "backing"?,
 * driver options...}.  A child given as a string is an existing node
 * name; as an object it is opened recursively with an implicit name
 * ("#blockNNN").  A format node whose image names a backing file opens
 * the chain read-only unless "backing" is given (null = none).
 * Does not take ownership of opts.  Returns a new reference. */
BlockNode *block_node_open(json_t *opts, Error **errp);

/* Opens an image as qemu-img does: {"driver": fmt or probed, "file":
 * {"driver": "file", "filename": filename}} with BLOCK_O_* flags.
 * A filename beginning with "json:" is parsed as options. */
BlockNode *block_open_image(const char *filename, const char *fmt, int flags,
                            Error **errp);

/* Probes the format of a file ("qcow2" or "raw"). */
/* The blockdev options that open filename as block_open_image would
 * (json: parsed, prefixes applied, the format probed when fmt is NULL),
 * for callers that assemble a graph themselves; NULL with errp set. */
json_t *block_image_options(const char *filename, const char *fmt,
                            Error **errp);
/* Creates the object a --object argument describes (keyval with
 * implied "qom-type", or JSON), as qemu-img and qemu-storage-daemon do. */
bool block_object_add_cmdline(const char *arg, Error **errp);
/* As block_open_image for qemu-img's --image-opts: flat (keys may be
 * dotted, "file.filename") holds the options as text. */
BlockNode *block_open_image_opts(const json_t *flat, int flags, Error **errp);
const char *block_probe_format(const char *filename, Error **errp);

BlockNode *block_node_find(const char *node_name);
void block_node_ref(BlockNode *bs);
/* Drops a reference; the last one drains, flushes, closes the driver and
 * drops the references held on the children. */
void block_node_unref(BlockNode *bs);
/* A flush that fails when the last reference goes is logged as a
 * warning; a program that must print what qemu-img prints (which closes
 * without a word) turns it into an info line. */
void block_set_quiet_close(bool quiet);
/* True when anything besides the caller's one reference holds bs: a
 * parent, an export, a job. */
bool block_node_in_use(const BlockNode *bs);
const char *block_node_name(const BlockNode *bs);
/* The driver's name, for display ("qcow2", "file", ...).  To decide
 * what a node can do, ask for a trait below instead. */
const char *block_node_driver_name(const BlockNode *bs);

/* Calls fn for every node in the graph (in creation order) under the
 * graph read lock; stops early when fn returns false. */
void block_graph_foreach(bool (*fn)(BlockNode *bs, void *opaque), void *opaque);

/* Makes backing (NULL: none) bs's backing child, in the open graph only
 * (the image header is not rewritten: see block_change_backing_file).
 * In-flight I/O on bs is drained first, so no request or status walk
 * sees the link change under it.  The old backing node loses bs's
 * reference and is closed if that was the last.  Refuses a driver
 * without backing files and a change that would close a cycle. */
bool block_node_set_backing(BlockNode *bs, BlockNode *backing, Error **errp);
/* Moves every parent of old -- its users (exports, jobs) and the nodes
 * that link to it, except new itself -- to new, each with the same
 * permissions; all or nothing.  Inserts a filter whose child is old
 * above it, or takes one out (new = the filter's child).  Main thread. */
bool block_node_replace(BlockNode *old, BlockNode *new, Error **errp);

/* ---- live overlays (append.c) ---- */
/* Holds every user (export, job, tool) still: running requests finish,
 * new ones wait until block_unquiesce_all_users.  A transaction of graph
 * changes runs inside, as QEMU's runs drained.  Main thread. */
typedef struct BlockQuiesce BlockQuiesce;
BlockQuiesce *block_quiesce_all_users(void);
void block_unquiesce_all_users(BlockQuiesce *q);
/* Whether a parent reads bs: another node links to it, or a user holds
 * CONSISTENT_READ on it (QEMU's "The overlay is already in use"). */
bool block_node_has_readers(BlockNode *bs);
/* bs is written no more (the old top after a snapshot, QEMU's reopen
 * read-only): a format writes back its caches and marks its image
 * clean, the node becomes read-only, and the write locks on its file
 * go, so other processes may read the image.  Main thread; nothing may
 * write bs any more. */
void block_node_make_read_only(BlockNode *bs);
/* Whether bs's driver can have a backing node (qcow2; not raw). */
bool block_node_supports_backing(const BlockNode *bs);
/* Makes base the backing node of overlay and moves every other parent
 * of base -- exports, jobs' users, nodes linking to it -- to overlay
 * (QEMU's bdrv_append); all or nothing.  Each parent is drained while
 * it is moved, so no request sees the change half done. */
bool block_node_append(BlockNode *overlay, BlockNode *base, Error **errp);
/* Undoes block_node_append: base's parents go back and overlay loses
 * its backing node. */
void block_node_unappend(BlockNode *overlay, BlockNode *base);

/* Waits until no request is in flight on bs and holds new ones back
 * until block_drain_end.  Nests. */
void block_drain_begin(BlockNode *bs);
void block_drain_end(BlockNode *bs);

/* ---- I/O (data path: 0 or -errno) ---- */
int block_read(BlockNode *bs, uint64_t offset, uint64_t bytes, void *buf,
               int flags);
int block_write(BlockNode *bs, uint64_t offset, uint64_t bytes,
                const void *buf, int flags);
int block_write_zeroes(BlockNode *bs, uint64_t offset, uint64_t bytes,
                       int flags);
int block_discard(BlockNode *bs, uint64_t offset, uint64_t bytes);
int block_flush(BlockNode *bs);
/* Writes one whole cluster compressed (qcow2; convert -c).  offset must
 * be cluster aligned; bytes is the cluster size, or less at the end of
 * the image.  -ENOTSUP if the format cannot. */
int block_write_compressed(BlockNode *bs, uint64_t offset, uint64_t bytes,
                           const void *buf);

/* Status of bs alone (its backing chain is not consulted): returns
 * BLOCK_STATUS_* flags for the run starting at offset and sets *pnum to
 * its length (1 <= *pnum <= bytes).  *map and *file are set when
 * OFFSET_VALID.  map and file may be NULL. */
int block_status(BlockNode *bs, uint64_t offset, uint64_t bytes,
                 uint64_t *pnum, uint64_t *map, BlockNode **file);

/* Status through the backing chain down to (not including) base, or the
 * whole chain when base is NULL.  *depth (may be NULL) is 1 when the
 * run is allocated in bs, 2 in its backing node, ..., 0 when it is
 * allocated nowhere in the searched chain (NBD qemu:allocation-depth).
 * The flags are those of the layer that defines the content; ZERO is set
 * for unallocated runs and for runs past the end of a shorter backing
 * node.  As QEMU, a run past the end of a shorter backing node is
 * ZERO|ALLOCATED in that node (its depth; *file is that node). */
int block_status_above(BlockNode *bs, BlockNode *base, uint64_t offset,
                       uint64_t bytes, uint64_t *pnum, uint64_t *map,
                       BlockNode **file, int *depth);

/* Reads from bs->backing, returning zeroes where the backing node is
 * shorter than the range, or everywhere when there is no backing. */
int block_read_backing(BlockNode *bs, uint64_t offset, uint64_t bytes,
                       void *buf);

/* ---- what a node is (node.c) ---- */
/* The name info shows: a path, or "json:{...}" when only options can
 * rebuild the node.  NULL until the node has one. */
const char *block_node_filename(const BlockNode *bs);
bool block_node_read_only(const BlockNode *bs);
bool block_node_cache_direct(const BlockNode *bs);
bool block_node_no_flush(const BlockNode *bs);
/* The child holding a format's or filter's data, or NULL (protocol
 * nodes).  Walking it down reaches the protocol node. */
BlockNode *block_node_file(const BlockNode *bs);
/* The backing node, or NULL. */
BlockNode *block_node_backing(const BlockNode *bs);
/* The backing file name and format the image header records, or NULL. */
const char *block_node_backing_file(const BlockNode *bs);
const char *block_node_backing_format(const BlockNode *bs);

/* Traits of the node's driver. */
/* Talks to storage directly: the bottom of a chain, whose size may grow
 * under it (block_refresh_size). */
bool block_node_is_protocol(const BlockNode *bs);
/* Passes every request unchanged to its file child (blkdebug). */
bool block_node_is_filter(const BlockNode *bs);
/* Keeps metadata in its file child, which nobody else may write or
 * resize (qcow2). */
bool block_node_has_metadata(const BlockNode *bs);
/* The node's storage is a block device: its size is the volume's, not
 * the image's. */
bool block_node_is_block_device(BlockNode *bs);
/* The node's format is the one probing falls back to when nothing else
 * matches (raw): writing another format's header into it is dangerous. */
bool block_node_is_probe_fallback(const BlockNode *bs);

/* What info shows. */
/* Cluster size, or 0 when the format has none. */
uint32_t block_node_cluster_size(BlockNode *bs);
/* qemu-img info's "format-specific" ({"type", "data"}), or NULL; the
 * caller owns the reference. */
json_t *block_node_specific_info(BlockNode *bs);
/* qemu-img measure's "bitmaps size": bytes a qcow2 image with clusters
 * of cluster_size needs for bs's persistent dirty bitmaps (0 without
 * any), or -errno; -ENOTSUP when bs's format stores none. */
int64_t block_node_bitmaps_copy_size(BlockNode *bs, uint64_t cluster_size);
/* The image is marked dirty (qcow2 lazy refcounts). */
bool block_node_is_dirty(BlockNode *bs);
/* False when QEMU could not get image info (bdrv_get_info) for bs: its
 * bottom protocol keeps nothing (null-co); qemu-img info then leaves
 * out "dirty-flag". */
bool block_node_has_image_info(BlockNode *bs);
/* query-blockstats' "driver-specific" for the node, or NULL; the caller
 * owns the reference. */
json_t *block_node_specific_stats(BlockNode *bs);
/* The node's own I/O accounting (block/accounting.h), or NULL when it is
 * switched off. */
struct BlockAcct *block_node_acct(BlockNode *bs);

/* ---- thin provisioning ---- */
/* QEMU's write threshold (0 = off): BLOCK_WRITE_THRESHOLD fires once
 * when a write ends past it, and it disarms. */
uint64_t block_node_write_threshold(const BlockNode *bs);
void block_node_set_write_threshold(BlockNode *bs, uint64_t threshold);
/* End of the highest write that reached the node (QEMU's
 * wr_highest_offset). */
uint64_t block_node_wr_highest_offset(const BlockNode *bs);
/* The highest host offset in use under bs (allocation.c): the larger of
 * the highest write that reached its protocol node and the image end
 * the formats above that node found at open.  What query-block-
 * allocation and /metrics report; cheap (no I/O). */
uint64_t block_node_allocation(BlockNode *bs);
typedef struct BlockStorageInfo {
    uint64_t allocation;  /* block_node_allocation() */
    int64_t physical;     /* size of the file or device; -errno if unknown */
    bool block_device;    /* the storage is a block device */
} BlockStorageInfo;
/* Space use of the storage under bs (its protocol node), without reading
 * the disk.  A block device's node takes the device's current size (a
 * volume extended under it). */
void block_node_storage_info(BlockNode *bs, BlockStorageInfo *info);

/* ---- image parameters (image.c, image-params.h) ---- */

typedef struct ImageParams ImageParams;

/* Whether the format of bs stores image parameters. */
bool block_node_has_image_params(const BlockNode *bs);
/* Reads the parameters the image stores into ip (initialised here; an
 * image that stores none gives the empty set).  Fails, with a message
 * naming the image, on a format that stores none or a payload this
 * strata cannot read. */
bool block_get_image_params(BlockNode *bs, ImageParams *ip, Error **errp);
/* Stores ip in the image: one header write, so a crash leaves the old
 * set or the new one. */
bool block_set_image_params(BlockNode *bs, const ImageParams *ip,
                            Error **errp);

/* ---- copy-on-read (cor.c) ---- */

/* While enabled (calls nest), copies into bs cannot lose a concurrent
 * write: every modifying request on bs is serialised against the range
 * a copy holds.  Enabling drains bs.  A stream job or a copy-on-read
 * filter enables it for as long as it runs. */
void block_cor_enable(BlockNode *bs);
void block_cor_disable(BlockNode *bs);

/* Copies into bs, in whole clusters around [offset, offset + bytes),
 * the data that bs does not hold itself and that a node of its backing
 * chain above base holds (base NULL: the whole chain).  Runs of zeroes
 * are written as zeroes.  *copied (may be NULL) gets the bytes written.
 * -EINVAL unless copy-on-read is enabled on bs; else 0 or -errno. */
int block_copy_on_read(BlockNode *bs, BlockNode *base, uint64_t offset,
                       uint64_t bytes, uint64_t *copied);

/* Copy-on-read on the node itself, as an image parameter asks
 * (docs/image-params.md): client reads of bs then copy what they read
 * from its backing chain into bs first, as through a copy-on-read
 * filter, without changing the graph.  A failed copy does not fail the
 * read.  Turning it on drains bs.  Fails on a read-only node. */
bool block_node_set_copy_on_read(BlockNode *bs, bool on, Error **errp);
bool block_node_copy_on_read(const BlockNode *bs);

/* Whether a copy-on-read filter copies what its clients read (it does
 * from open).  An adaptive stream turns this off for its filter, so no
 * client read waits for a copy: the job copies at the rate its
 * controller sets.  No effect on other nodes. */
void block_cor_filter_set_copying(BlockNode *filter, bool copying);

/* ---- sizes ---- */
/* Virtual size in bytes. */
uint64_t block_node_size(const BlockNode *bs);
/* Re-reads the size of the storage under a protocol node (a file or
 * device that may have grown); returns the size or -errno. */
int64_t block_refresh_size(BlockNode *bs);
/* Bytes the image occupies on its storage (st_blocks), or -errno. */
int64_t block_allocated_file_size(BlockNode *bs);
bool block_truncate(BlockNode *bs, uint64_t size, bool exact,
                    PreallocMode prealloc, Error **errp);

/* ---- permissions ---- */
/* QEMU's permission bits.  On a file they become OFD lock bytes (100 +
 * bit: held; 200 + bit: not shared), which is how QEMU and strata
 * processes see each other. */
#define BLOCK_PERM_CONSISTENT_READ 0x1
#define BLOCK_PERM_WRITE           0x2
#define BLOCK_PERM_WRITE_UNCHANGED 0x4
#define BLOCK_PERM_RESIZE          0x8
#define BLOCK_PERM_ALL             0xf
/* A user of bs (an export, a job, a tool) takes perm and shares only
 * shared, as a QEMU BlockBackend: e.g. an NBD export takes
 * CONSISTENT_READ (+ WRITE when writable) and shares ALL & ~RESIZE.  The
 * permissions pass through raw and filter nodes to the file below (a
 * format with metadata, such as qcow2, already locks what it needs).
 * Fails, taking nothing, when another process conflicts. */
bool block_node_add_perm(BlockNode *bs, uint64_t perm, uint64_t shared,
                         Error **errp);
/* Gives back what one block_node_add_perm took. */
void block_node_del_perm(BlockNode *bs, uint64_t perm, uint64_t shared);
/* A named parent's hold on bs, as QEMU's block_job_add_bdrv: it takes
 * perm and shares only shared, inside the process; conflicts name it
 * "PARENT_DESC (uses node 'bs' as 'ROLE' child)".  Released before bs
 * loses the holder's reference. */
typedef struct PermRecord BlockPermHold;
BlockPermHold *block_perm_hold(BlockNode *bs, uint64_t perm, uint64_t shared,
                               const char *parent_desc, const char *role,
                               Error **errp);
void block_perm_release(BlockPermHold *h);

/* ---- names ---- */
/* Recomputes bs->filename (and its children's) as QEMU does: a plain
 * name when opening it rebuilds the node, else "json:{...}" in QEMU's
 * text.  Call after changing bs's backing link. */
void block_refresh_filename(BlockNode *bs);
/* bs->backing_file made absolute against the directory of bs's file, as
 * QEMU's full-backing-filename; NULL without error when there is none. */
char *block_full_backing_filename(BlockNode *bs, Error **errp);

/* ---- drivers ---- */
/* True if a driver is called name. */
bool block_driver_known(const char *name);
/* The names of every driver, in byte order (qemu-img's "Supported
 * formats" line).  Returns how many there are; fills at most max. */
size_t block_driver_names(const char **names, size_t max);
/* True if images of format fmt can take compressed writes
 * (block_write_compressed). */
bool block_format_can_compress(const char *fmt);

/* ---- image creation (strata-img create) ---- */
typedef enum BlockCreateOptType {
    BLOCK_OPT_STRING,
    BLOCK_OPT_BOOL,
    BLOCK_OPT_NUMBER,
    BLOCK_OPT_SIZE,
} BlockCreateOptType;

/* One option a driver's create accepts, as qemu-img presents it. */
typedef struct BlockCreateOpt {
    const char *name;
    BlockCreateOptType type;
    const char *help;
    const char *def_value;    /* printed in "Formatting ..." when not given */
} BlockCreateOpt;

/* The create options of driver fmt, in the order qemu-img prints set
 * options in its "Formatting" line, ended by name NULL; NULL when fmt
 * cannot create images. */
const BlockCreateOpt *block_create_opts(const char *fmt);
/* The create options of the protocol driver formats create their image
 * file with; a format accepts them too (qemu-img's protocol level). */
const BlockCreateOpt *block_protocol_create_opts(void);

/* Whether bs may be resized by a user (block_resize), with QEMU's
 * checks and texts in its order: a backing node is "in use", a
 * read-only node refused, and a metadata format (qcow2) on the file the
 * resize reaches refuses it ("Permission conflict on node ..."), since
 * resizing a file under its format corrupts the format's view. */
bool block_node_check_resize(BlockNode *bs, Error **errp);

/* ---- internal snapshots (qemu-img snapshot; snapshot.c) ---- */

/* One internal snapshot as a format stores it. */
typedef struct BlockSnapshotInfo {
    char *id;                 /* "1", "2", ... as the format numbers them */
    char *name;
    uint64_t vm_state_size;   /* bytes of saved VM state (0: disk only) */
    uint32_t date_sec;        /* creation time */
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;   /* guest clock when taken */
    uint64_t icount;          /* instruction count, UINT64_MAX: none */
} BlockSnapshotInfo;

/* The snapshots of bs (or of the node its data sits on, for raw and
 * filters): their number, with *list malloc'd (NULL when 0); -ENOTSUP
 * when no node of the format stores snapshots. */
int block_snapshot_list(BlockNode *bs, BlockSnapshotInfo **list);
void block_snapshot_list_free(BlockSnapshotInfo *list, int count);
/* Takes a snapshot of the image's current state named sn->name with
 * sn's dates and clocks; the format picks the id.  0 or -errno
 * (-ENOTSUP: the format cannot). */
int block_snapshot_create(BlockNode *bs, const BlockSnapshotInfo *sn);
/* Makes the image's current state the snapshot's (matched by id, then
 * by name).  -errno with errp set as QEMU words it. */
int block_snapshot_goto(BlockNode *bs, const char *id_or_name, Error **errp);
/* Deletes the first snapshot matching id and name (either may be NULL,
 * not both).  -errno with errp set. */
int block_snapshot_delete(BlockNode *bs, const char *id, const char *name,
                          Error **errp);
/* Makes a read-only node read the snapshot matching id and name
 * (either may be NULL, not both) instead of the current state, until it
 * is closed (qemu-img convert -l).  The size stays the node's.  -errno
 * with errp set. */
int block_snapshot_load_tmp(BlockNode *bs, const char *id, const char *name,
                            Error **errp);
/* qemu-img info's and QMP ImageInfo's "snapshots" list (members in
 * QEMU's printed order), or NULL when there are none; the caller owns
 * the reference. */
json_t *block_snapshot_info_json(BlockNode *bs);
/* The same with one string: an id first, then a name. */
int block_snapshot_load_tmp_by_id_or_name(BlockNode *bs,
                                          const char *id_or_name,
                                          Error **errp);

/* ---- amend (qemu-img amend; image.c) ---- */

/* Progress of a long amend step: done of total. */
typedef void BlockAmendProgress(void *opaque, uint64_t done, uint64_t total);

/* The options amend takes for bs's format (-o help), or NULL. */
const BlockCreateOpt *block_node_amend_opts(const BlockNode *bs);
/* The same for a format by name, or NULL (unknown, or no amend). */
const BlockCreateOpt *block_format_amend_opts(const char *fmt);
/* Changes the image's format options (qemu-img amend -o): opts holds the
 * names of block_node_amend_opts with sizes and numbers as JSON integers
 * and the rest as strings.  Fails with QEMU's texts; a format without
 * amend gives "Format driver 'x' does not support option amendment". */
bool block_amend(BlockNode *bs, json_t *opts, bool force,
                 BlockAmendProgress *progress, void *opaque, Error **errp);

/* Creates an image of format fmt ("qcow2", "raw", "file").  opts holds
 * qemu-img -o style options ("size" is a number, the rest strings or
 * JSON values).  Unknown options fail with "Invalid parameter 'x'". */
bool block_create(const char *fmt, const char *filename, json_t *opts,
                  Error **errp);
/* Creates an image of format fmt on file, an open protocol node
 * (blockdev-create), with the same options as block_create.  Formats
 * that cannot fail with "Driver does not support blockdev-create". */
bool block_create_on_node(const char *fmt, BlockNode *file, json_t *opts,
                          Error **errp);

/* ---- image maintenance (strata-img check, commit, rebase) ---- */
/* Result of an image consistency check (qemu-img check semantics). */
typedef struct BlockCheckResult {
    int corruptions;          /* errors found and not fixed */
    int leaks;                /* leaked clusters not fixed */
    int check_errors;         /* the check itself failed (I/O error ...) */
    int corruptions_fixed;
    int leaks_fixed;
    int64_t image_end_offset; /* highest host offset in use, or 0 */
    struct {
        uint64_t total_clusters;
        uint64_t allocated_clusters;
        uint64_t fragmented_clusters;
        uint64_t compressed_clusters;
    } bfi;
} BlockCheckResult;

#define BLOCK_FIX_LEAKS   0x1
#define BLOCK_FIX_ERRORS  0x2

/* Checks (and with fix = BLOCK_FIX_* repairs) the image.  Returns 0, or
 * -errno if the check could not run: -ENOTSUP when the format has no
 * check. */
int block_check(BlockNode *bs, BlockCheckResult *res, int fix);
/* Deallocates everything in bs's own layer so reads fall through to its
 * backing node (qemu-img commit).  0, -ENOTSUP when the format cannot,
 * or -errno. */
int block_make_empty(BlockNode *bs);
/* True if block_change_backing_file can work on bs's format. */
bool block_node_can_change_backing_file(const BlockNode *bs);
/* Rewrites the backing file name and format the image records (NULL
 * backing_file = none) without changing the open graph.  An image
 * header too small for the name fails with errnum ENOSPC. */
bool block_change_backing_file(BlockNode *bs, const char *backing_file,
                               const char *backing_fmt, Error **errp);

/* ---- events ---- */
/* The daemon installs a sink that broadcasts QMP events; it may be
 * called from any thread and takes ownership of data. */
typedef void BlockEventSink(const char *event, json_t *data);
void block_set_event_sink(BlockEventSink *sink);
void block_emit_event(const char *event, json_t *data);

#endif
