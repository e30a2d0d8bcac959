/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 check/repair internals shared by qcow2-check.c (driver
 * entry, refcount comparison, OFLAG_COPIED), qcow2-check-walk.c (counting
 * references), qcow2-check-snapshots.c (snapshot table, bitmaps) and
 * qcow2-check-rebuild.c (in-memory refcount table and refcount
 * structure rebuild).
 *
 * The algorithm, counts and messages follow qemu-img check so scripts and
 * tests that compare the two see the same verdict.
 */
#ifndef STRATA_QCOW2_CHECK_INT_H
#define STRATA_QCOW2_CHECK_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "block/drivers/qcow2/qcow2.h"

/* Walk the active L1 table with fragmentation statistics. */
#define QCOW2_CHECK_FRAG_INFO 0x1

typedef struct Qcow2CheckSnapshot {
    uint64_t l1_offset;
    uint32_t l1_size;
    char *id;
    char *name;
} Qcow2CheckSnapshot;

typedef struct Qcow2Check {
    BlockNode *bs;
    BDRVQcow2State *s;
    /* In-memory refcount table: the references counted so far, one entry
     * per host cluster, encoded exactly as refcount blocks are on disk
     * (so a rebuild writes slices of it as refcount blocks).  The buffer
     * is a whole number of clusters long. */
    uint8_t *imrt;
    uint64_t imrt_nb;        /* clusters covered */
    uint64_t imrt_bytes;     /* allocated bytes */

    Qcow2CheckSnapshot *snapshots;
    uint32_t nb_snapshots;
    uint64_t snapshots_size; /* bytes of the snapshot table */

    bool warned_bad_refblock;
} Qcow2Check;

/* ---- qcow2-check-rebuild.c ---- */
/* Grows (or sets) the in-memory refcount table to cover nb clusters;
 * new entries are zero.  0 or -ENOMEM. */
int qcow2_imrt_resize(Qcow2Check *c, uint64_t nb);
uint64_t qcow2_imrt_get(const Qcow2Check *c, uint64_t cluster);
void qcow2_imrt_set(Qcow2Check *c, uint64_t cluster, uint64_t value);
/* Counts one reference to every cluster touched by [offset, +size). */
int qcow2_imrt_inc(Qcow2Check *c, BlockCheckResult *res, uint64_t offset,
                   uint64_t size);
/* Writes new refcount blocks and a new refcount table built from the
 * in-memory refcount table, placing them in its free clusters (growing
 * the image as needed), then points the header at them and reloads the
 * driver's metadata. */
int qcow2_check_rebuild_refcounts(Qcow2Check *c, BlockCheckResult *res,
                                  Error **errp);
/* The first half of a rebuild: writes the refcount blocks and table for
 * the in-memory counts (in the width s->refcount_order says) and flushes,
 * but leaves the header pointing at the old ones; *rt_offset and
 * *rt_clusters locate the new table.  Amend switches the width with it
 * (one header write). */
int qcow2_check_write_refcount_structures(Qcow2Check *c,
                                          BlockCheckResult *res,
                                          uint64_t *rt_offset,
                                          uint64_t *rt_clusters,
                                          Error **errp);

/* ---- qcow2-check-snapshots.c ---- */
/* Reads the snapshot table into c->snapshots.  Problems are counted in
 * res; -errno when it cannot be read at all. */
int qcow2_check_read_snapshots(Qcow2Check *c, BlockCheckResult *res);
void qcow2_check_free_snapshots(Qcow2Check *c);
/* Counts the references of persistent bitmaps (when the image's bitmaps
 * are marked consistent, as QEMU only reads them then). */
int qcow2_check_count_bitmaps(Qcow2Check *c, BlockCheckResult *res);

/* ---- qcow2-check-walk.c ---- */
/* Reads a table of big-endian 64-bit entries as host-endian values
 * (free with free()). */
int qcow2_check_read_table(Qcow2Check *c, uint64_t offset, uint64_t entries,
                           uint64_t **out);
/* Counts every reference to every host cluster into the in-memory
 * refcount table (header, L1/L2 tables and data, snapshots, refcount
 * table and blocks, bitmaps).  Sets *rebuild when the refcount
 * structures themselves are broken. */
int qcow2_check_count_refs(Qcow2Check *c, BlockCheckResult *res, int fix,
                           bool *rebuild);

/* ---- qcow2-check.c ---- */
/* The refcount stored on disk for a host cluster, read as QEMU does:
 * clusters no refcount block covers (and blocks past the end of the
 * file) read 0; a misaligned refcount table entry is -EIO. */
int qcow2_check_stored_refcount(Qcow2Check *c, uint64_t cluster,
                                uint64_t *refcount);

#endif
