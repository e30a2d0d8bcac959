/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - block-layer internals shared by graph.c, open.c, io.c,
 * status.c and the built-in drivers.  Not for users of the block layer
 * (they use block.h) nor for format drivers (block_int.h). */
#ifndef STRATA_BLOCK_BLOCK_CORE_H
#define STRATA_BLOCK_BLOCK_CORE_H

#include "block/block_int.h"

/* Extra drv->open flag: the user asked for auto-read-only, so a
 * protocol driver that cannot open read-write falls back to read-only
 * (and sets bs->read_only). */
#define BLOCK_O_AUTO_READ_ONLY 0x1000

/* Maximum backing chain length block_node_open follows. */
#define BLOCK_MAX_BACKING_DEPTH 256

/* ---- graph.c ---- */
/* Checks QEMU's node-name rules (letter first, [A-Za-z0-9-_.], at most
 * 31 characters). */
bool block_node_name_valid(const char *name, Error **errp);
/* Allocates an unregistered node with refcnt 1 and drv's zeroed state. */
BlockNode *block_node_alloc(const BlockDriver *drv);
/* Frees a node that was never registered (open failed).  Releases the
 * children it already holds. */
void block_node_free_unregistered(BlockNode *bs);
/* Gives bs its name (node_name, or a generated "#blockNNN" when NULL)
 * and adds it to the graph.  Fails on duplicates. */
bool block_graph_insert(BlockNode *bs, const char *node_name, Error **errp);
/* The graph lock, for changes to links (graph-change.c); node lists take
 * it themselves. */
void block_graph_wrlock(void);
void block_graph_unlock(void);
/* Takes a reference to child on behalf of a parent link. */
void block_node_attach_child(BlockNode *child);
/* Drops a parent link taken with block_node_attach_child. */
void block_node_detach_child(BlockNode *child);

/* ---- perm-conflict.c ---- */
/* The next number of the clock that orders parents (nodes and users). */
uint64_t block_perm_next_seq(void);
/* Whether linking child under parent (a node being opened: its file or
 * image child, or its backing when backing) conflicts with the child's
 * other parents' permissions, anywhere below; QEMU's message if so. */
bool block_perm_check_link(BlockNode *parent, BlockNode *child, bool backing,
                           Error **errp);
/* The same for linking child as the list child role ("children.0") of
 * parent, whose drv->list_child_perm says what the link asks. */
bool block_perm_check_list_link(BlockNode *parent, BlockNode *child,
                                const char *role, Error **errp);
/* The same for the graph as it is, from bs down (after a graph change). */
bool block_perm_check(BlockNode *bs, Error **errp);
/* Records a user's permissions on bs, or fails with QEMU's message on a
 * conflict with bs's other parents (or below); del gives one back. */
bool block_perm_record_add(BlockNode *bs, uint64_t perm, uint64_t shared,
                           Error **errp);
void block_perm_record_del(BlockNode *bs, uint64_t perm, uint64_t shared);
/* Drops every record on bs (the node is being freed). */
void block_perm_forget_node(BlockNode *bs);

/* ---- open.c ---- */
/* block_node_open with an explicit driver (tests use drivers that are not
 * registered) and BLOCK_O_* flags.  A "driver" key in opts is ignored. */
BlockNode *block_node_open_driver(const BlockDriver *drv, json_t *opts,
                                  int flags, Error **errp);

/* ---- probe-foreign.c ---- */
/* The best-scoring format among those QEMU probes and strata does not
 * read ("vmdk", "vhdx", ...), with its score in *score; NULL (score 0)
 * when none matches. */
/* The format the first bytes of an image (n of them) say it has, as
 * block_probe_format does for a file. */
const char *block_probe_buffer(const uint8_t *buf, size_t n,
                               const char *filename, Error **errp);
/* The options of the protocol node a plain name opens, as QEMU's
 * bdrv_fill_options: drv, or the driver the name's "proto:" prefix
 * selects ("Unknown protocol 'x'" when none does; the file driver
 * without a prefix), with the driver's parse_filename applied. */
json_t *block_protocol_options(const char *filename, const BlockDriver *drv,
                               Error **errp);
const char *block_probe_unsupported(const uint8_t *buf, size_t len,
                                    const char *filename, int *score);

/* ---- filename.c (QEMU's bdrv_refresh_filename) ---- */
typedef struct BlockNodeNaming BlockNodeNaming;
/* Records, before drv->open, what names the node: its driver, the
 * "filename" option and the driver's strong options found in opts.
 * typed: opts came from blockdev-add/--blockdev, where QAPI would have
 * typed numbers and booleans given as text.  False when out of memory. */
bool block_naming_init(BlockNode *bs, const json_t *opts, bool typed);
/* The backing file the image header asks for (resolved to the backing
 * node's name when the core opened it from the header); backing_ignored
 * when the node was opened without its chain on purpose (qemu-img). */
void block_naming_set_auto_backing(BlockNode *bs, const char *name,
                                   bool backing_ignored);
void block_naming_free(BlockNode *bs);
/* The plain name that reopens bs, or NULL when only "json:" does. */
const char *block_naming_exact_filename(const BlockNode *bs);

/* ---- allocation.c ---- */
/* Records on the protocol node under bs the image end bs's format found
 * at open; called once bs is open. */
void block_allocation_note_open(BlockNode *bs);
/* bs was resized to size: an image end recorded past it is gone. */
void block_allocation_note_truncate(BlockNode *bs, uint64_t size);

/* Raises *p to v unless it is already larger, atomically. */
static inline void block_atomic_max(_Atomic uint64_t *p, uint64_t v)
{
    uint64_t cur = atomic_load(p);
    while (cur < v && !atomic_compare_exchange_weak(p, &cur, v)) {
    }
}

/* ---- io.c ---- */
/* A range of a node that a modifying request (or a copy-on-read) holds
 * in the node's write tracker. */
typedef struct TrackedWrite {
    uint64_t start, end;      /* aligned range the request may touch */
    bool rmw;                 /* excludes every overlapping write (a
                                 read-modify-write, a copy-on-read) */
    bool nested;              /* inside this thread's held range: not
                                 registered */
    struct TrackedWrite *next;
} TrackedWrite;
/* Waits until w conflicts with no registered entry, then registers it;
 * leave unregisters it and wakes waiters. */
void block_tracker_enter(BlockNode *bs, TrackedWrite *w);
void block_tracker_leave(BlockNode *bs, TrackedWrite *w);
/* Marks w (registered by this thread) as held: this thread's own writes
 * inside it pass without waiting.  One held range per thread. */
void block_tracker_hold(BlockNode *bs, const TrackedWrite *w);
void block_tracker_unhold(void);
bool block_io_node_init(BlockNode *bs);
void block_io_node_cleanup(BlockNode *bs);
/* Counts a request in flight, waiting while bs is drained by another
 * thread; block_io_end undoes it. */
void block_io_begin(BlockNode *bs);
void block_io_end(BlockNode *bs);
/* Flush without the in-flight gate (used while closing a drained node). */
int block_flush_nogate(BlockNode *bs);

/* ---- drivers ---- */
extern const BlockDriver bdrv_file;
extern const BlockDriver bdrv_host_device;
extern const BlockDriver bdrv_raw;
/* Fault injection (QEMU's blkdebug error rules); drivers/inject.c. */
extern const BlockDriver bdrv_blkdebug;
/* QEMU's copy-on-read filter; drivers/copy-on-read.c. */
extern const BlockDriver bdrv_copy_on_read;
/* Voting over several children; drivers/quorum.c. */
extern const BlockDriver bdrv_quorum;
/* The NBD client on libnbd; drivers/nbd.c. */
extern const BlockDriver bdrv_nbd;
/* QEMU's null-co / null-aio (a sizeable disk that stores nothing);
 * drivers/null.c. */
extern const BlockDriver bdrv_null_co;
extern const BlockDriver bdrv_null_aio;

#endif
