/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 check: counting the references to every host cluster.
 *
 * Walks the header, the active L1 table and its L2 tables (with the
 * allocation/fragmentation statistics qemu-img prints), the snapshot
 * table and the snapshots' L1/L2 tables, the refcount table and blocks
 * and the persistent bitmaps, adding one reference per use into the
 * in-memory refcount table.  Structural errors found on the way are
 * reported with QEMU's wording.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-check-int.h"
#include "util/cleanup.h"

#define L1E_RESERVED_MASK   0x7f000000000001ffull
#define L2E_STD_RESERVED    0x3f000000000001feull
#define REFT_RESERVED_MASK  0x1ffull

int qcow2_check_read_table(Qcow2Check *c, uint64_t offset, uint64_t entries,
                      uint64_t **out)
{
    uint64_t *t = malloc(MAX(entries, 1) * 8);
    if (!t) {
        return -ENOMEM;
    }
    int ret = entries ? block_read(c->bs->file, offset, entries * 8, t, 0) : 0;
    if (ret < 0) {
        free(t);
        return ret;
    }
    for (uint64_t i = 0; i < entries; i++) {
        t[i] = be64toh(t[i]);
    }
    *out = t;
    return 0;
}

/* Replaces a misaligned preallocated-zero L2 entry by a plain zero
 * entry (no host cluster); with extended L2 entries the allocated
 * subclusters become zero ones and the entry unallocated. */
static int fix_l2_entry_by_zero(Qcow2Check *c, BlockCheckResult *res,
                                uint64_t l2_offset, uint64_t *l2,
                                uint64_t index, bool active, bool *overlap)
{
    BDRVQcow2State *s = c->s;
    uint64_t width = 1ull << s->l2e_shift;
    uint64_t entry_offset = l2_offset + index * width;
    uint64_t *e = &l2[index << (s->l2e_shift - 3)];
    uint64_t be[2];
    if (s->extended_l2) {
        uint64_t bitmap = e[1];
        bitmap |= bitmap << 32;
        e[0] = 0;
        e[1] = bitmap & QCOW2_L2_BITMAP_ALL_ZEROES;
    } else {
        e[0] = QCOW2_OFLAG_ZERO;
    }
    be[0] = htobe64(e[0]);
    be[1] = s->extended_l2 ? htobe64(e[1]) : 0;
    *overlap = qcow2_meta_overlap(c->s, entry_offset, width,
                                  active ? QCOW2_META_L2 : QCOW2_META_NONE) !=
               QCOW2_META_NONE;
    if (*overlap) {
        fprintf(stderr, "ERROR: Overlap check failed\n");
        res->check_errors++;
        return -EIO;
    }
    int ret = block_write(c->bs->file, entry_offset, width, be, 0);
    if (ret == 0) {
        ret = block_flush(c->bs->file);
    }
    if (ret < 0) {
        fprintf(stderr, "ERROR: Failed to overwrite L2 table entry: %s\n",
                strerror(-ret));
        res->check_errors++;
        return ret;
    }
    res->corruptions--;
    res->corruptions_fixed++;
    return 0;
}

static int count_l2(Qcow2Check *c, BlockCheckResult *res, uint64_t l2_offset,
                    int flags, int fix, bool active)
{
    BDRVQcow2State *s = c->s;
    uint64_t next_contiguous = 0;
    CLEANUP_FREE uint64_t *l2 = NULL;
    /* Entries and, with extended L2 entries, their bitmaps. */
    int ret = qcow2_check_read_table(c, l2_offset, s->cluster_size / 8, &l2);
    if (ret < 0) {
        fprintf(stderr, "ERROR: I/O error in check_refcounts_l2\n");
        res->check_errors++;
        return ret;
    }

    for (uint64_t i = 0; i < s->l2_entries; i++) {
        uint64_t e = l2[i << (s->l2e_shift - 3)];
        uint64_t bitmap = s->extended_l2 ? l2[2 * i + 1] : 0;
        Qcow2ClusterType type = s->extended_l2 ? qcow2_cluster_type_ext(s, e)
                                               : qcow2_cluster_type(s, e);

        if (type != QCOW2_CLUSTER_COMPRESSED && (e & L2E_STD_RESERVED)) {
            fprintf(stderr, "ERROR found l2 entry with reserved bits set: "
                    "%" PRIx64 "\n", e);
            res->corruptions++;
        }

        switch (type) {
        case QCOW2_CLUSTER_COMPRESSED: {
            if (e & QCOW2_OFLAG_COPIED) {
                Qcow2CompressedDesc d0;
                qcow2_compressed_decode(e, s->cluster_bits, &d0);
                fprintf(stderr, "ERROR: coffset=0x%" PRIx64 ": copied flag "
                        "must never be set for compressed clusters\n",
                        d0.host_offset);
                e &= ~QCOW2_OFLAG_COPIED;
                res->corruptions++;
            }
            if (qcow2_has_data_file(s)) {
                fprintf(stderr, "ERROR compressed cluster %" PRIu64 " with "
                        "data file, entry=0x%" PRIx64 "\n", i, e);
                res->corruptions++;
                break;
            }
            if (bitmap) {
                fprintf(stderr, "ERROR compressed cluster %" PRIu64 " with "
                        "non-zero subcluster allocation bitmap, entry=0x%"
                        PRIx64 "\n", i, e);
                res->corruptions++;
                break;
            }
            Qcow2CompressedDesc d;
            qcow2_compressed_decode(e, s->cluster_bits, &d);
            ret = qcow2_imrt_inc(c, res, d.host_offset, d.size);
            if (ret < 0) {
                return ret;
            }
            if (flags & QCOW2_CHECK_FRAG_INFO) {
                res->bfi.allocated_clusters++;
                res->bfi.compressed_clusters++;
                /* Compressed clusters share sectors, so reading adjacent
                 * ones re-reads data: QEMU counts each as fragmented. */
                res->bfi.fragmented_clusters++;
            }
            break;
        }
        case QCOW2_CLUSTER_ZERO_ALLOC:
        case QCOW2_CLUSTER_NORMAL: {
            uint64_t offset = e & QCOW2_L2E_OFFSET_MASK;
            if ((bitmap >> 32) & bitmap) {
                res->corruptions++;
                fprintf(stderr, "ERROR offset=%" PRIx64 ": Allocated "
                        "cluster has corrupted subcluster allocation "
                        "bitmap\n", offset);
            }
            if (offset & (s->cluster_size - 1)) {
                res->corruptions++;
                bool no_data = s->extended_l2
                               ? !(bitmap & QCOW2_L2_BITMAP_ALL_ALLOC)
                               : (e & QCOW2_OFLAG_ZERO) != 0;
                if (no_data) {
                    bool repair = fix & BLOCK_FIX_ERRORS;
                    fprintf(stderr, "%s offset=%" PRIx64 ": Preallocated "
                            "cluster is not properly aligned; L2 entry "
                            "corrupted.\n", repair ? "Repairing" : "ERROR",
                            offset);
                    if (repair) {
                        bool overlap = false;
                        ret = fix_l2_entry_by_zero(c, res, l2_offset, l2, i,
                                                   active, &overlap);
                        if (overlap) {
                            return -EIO;
                        }
                        if (ret == 0) {
                            continue; /* no cluster is used any more */
                        }
                    }
                } else {
                    fprintf(stderr, "ERROR offset=%" PRIx64 ": Data cluster "
                            "is not properly aligned; L2 entry corrupted.\n",
                            offset);
                }
            }
            if (flags & QCOW2_CHECK_FRAG_INFO) {
                res->bfi.allocated_clusters++;
                if (next_contiguous && offset != next_contiguous) {
                    res->bfi.fragmented_clusters++;
                }
                next_contiguous = offset + s->cluster_size;
            }
            /* Data in an external data file has no refcounts. */
            if (qcow2_has_data_file(s)) {
                break;
            }
            ret = qcow2_imrt_inc(c, res, offset, s->cluster_size);
            if (ret < 0) {
                return ret;
            }
            break;
        }
        case QCOW2_CLUSTER_UNALLOCATED:
            if (bitmap & QCOW2_L2_BITMAP_ALL_ALLOC) {
                res->corruptions++;
                fprintf(stderr, "ERROR: Unallocated cluster has non-zero "
                        "subcluster allocation map\n");
            }
            break;
        default:
            break;
        }
    }
    return 0;
}

static int count_l1(Qcow2Check *c, BlockCheckResult *res, uint64_t l1_offset,
                    uint64_t l1_size, int flags, int fix, bool active)
{
    if (l1_size == 0) {
        return 0;
    }
    int ret = qcow2_imrt_inc(c, res, l1_offset, l1_size * 8);
    if (ret < 0) {
        return ret;
    }
    CLEANUP_FREE uint64_t *l1 = NULL;
    ret = qcow2_check_read_table(c, l1_offset, l1_size, &l1);
    if (ret < 0) {
        fprintf(stderr, "ERROR: I/O error in check_refcounts_l1\n");
        res->check_errors++;
        return ret;
    }
    for (uint64_t i = 0; i < l1_size; i++) {
        if (!l1[i]) {
            continue;
        }
        if (l1[i] & L1E_RESERVED_MASK) {
            fprintf(stderr, "ERROR found L1 entry with reserved bits set: "
                    "%" PRIx64 "\n", l1[i]);
            res->corruptions++;
        }
        uint64_t l2_offset = l1[i] & QCOW2_L1E_OFFSET_MASK;
        ret = qcow2_imrt_inc(c, res, l2_offset, c->s->cluster_size);
        if (ret < 0) {
            return ret;
        }
        if (l2_offset & (c->s->cluster_size - 1)) {
            fprintf(stderr, "ERROR l2_offset=%" PRIx64 ": Table is not "
                    "cluster aligned; L1 entry corrupted\n", l2_offset);
            res->corruptions++;
        }
        ret = count_l2(c, res, l2_offset, flags, fix, active);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}
static int count_refblocks(Qcow2Check *c, BlockCheckResult *res, int fix,
                           bool *rebuild)
{
    BDRVQcow2State *s = c->s;
    for (uint64_t i = 0; i < s->reftable_entries; i++) {
        uint64_t offset = s->reftable[i] & QCOW2_REFT_OFFSET_MASK;
        uint64_t cluster = offset >> s->cluster_bits;

        if (s->reftable[i] & REFT_RESERVED_MASK) {
            fprintf(stderr, "ERROR refcount table entry %" PRIu64 " has "
                    "reserved bits set\n", i);
            res->corruptions++;
            *rebuild = true;
            continue;
        }
        if (offset & (s->cluster_size - 1)) {
            fprintf(stderr, "ERROR refcount block %" PRIu64 " is not "
                    "cluster aligned; refcount table entry corrupted\n", i);
            res->corruptions++;
            *rebuild = true;
            continue;
        }
        if (cluster >= c->imrt_nb) {
            bool repair = fix & BLOCK_FIX_ERRORS;
            res->corruptions++;
            fprintf(stderr, "%s refcount block %" PRIu64 " is outside "
                    "image\n", repair ? "Repairing" : "ERROR", i);
            if (!repair) {
                continue;
            }
            /* Grow the file to hold the block: its refcounts then read
             * as zero and the rebuild or comparison settles them. */
            Error *err = NULL;
            if (!block_truncate(c->bs->file, offset + s->cluster_size, false,
                                PREALLOC_OFF, &err)) {
                int errnum = err->errnum ? err->errnum : EIO;
                error_report_err(err);
                *rebuild = true;
                fprintf(stderr, "ERROR could not resize image: %s\n",
                        strerror(errnum));
                continue;
            }
            uint64_t nb = DIV_ROUND_UP(block_node_size(c->bs->file),
                                       s->cluster_size);
            if (nb > c->imrt_nb) {
                int ret = qcow2_imrt_resize(c, nb);
                if (ret < 0) {
                    res->check_errors++;
                    return ret;
                }
            }
            if (cluster >= c->imrt_nb) {
                *rebuild = true;
                fprintf(stderr, "ERROR could not resize image: %s\n",
                        strerror(EINVAL));
                continue;
            }
            res->corruptions--;
            res->corruptions_fixed++;
            int ret = qcow2_imrt_inc(c, res, offset, s->cluster_size);
            if (ret < 0) {
                return ret;
            }
            continue;
        }
        if (offset) {
            int ret = qcow2_imrt_inc(c, res, offset, s->cluster_size);
            if (ret < 0) {
                return ret;
            }
            uint64_t refs = qcow2_imrt_get(c, cluster);
            if (refs != 1) {
                fprintf(stderr, "ERROR refcount block %" PRIu64
                        " refcount=%" PRIu64 "\n", i, refs);
                res->corruptions++;
                *rebuild = true;
            }
        }
    }
    return 0;
}

int qcow2_check_count_refs(Qcow2Check *c, BlockCheckResult *res, int fix,
                           bool *rebuild)
{
    BDRVQcow2State *s = c->s;
    const Qcow2Header *h = &s->header;
    int ret;

    ret = qcow2_imrt_inc(c, res, 0, s->cluster_size);
    if (ret < 0) {
        return ret;
    }
    ret = count_l1(c, res, s->l1_table_offset, s->l1_size,
                   QCOW2_CHECK_FRAG_INFO, fix, true);
    if (ret < 0) {
        return ret;
    }
    for (uint32_t i = 0; i < c->nb_snapshots; i++) {
        const Qcow2CheckSnapshot *sn = &c->snapshots[i];
        if (sn->l1_offset & (s->cluster_size - 1)) {
            fprintf(stderr, "ERROR snapshot %s (%s) l1_offset=%#" PRIx64 ": "
                    "L1 table is not cluster aligned; snapshot table entry "
                    "corrupted\n", sn->id, sn->name, sn->l1_offset);
            res->corruptions++;
            continue;
        }
        if (sn->l1_size > QCOW2_MAX_L1_BYTES / 8) {
            fprintf(stderr, "ERROR snapshot %s (%s) l1_size=%#" PRIx32 ": "
                    "L1 table is too large; snapshot table entry corrupted\n",
                    sn->id, sn->name, sn->l1_size);
            res->corruptions++;
            continue;
        }
        ret = count_l1(c, res, sn->l1_offset, sn->l1_size, 0, fix, false);
        if (ret < 0) {
            return ret;
        }
    }
    ret = qcow2_imrt_inc(c, res, h->snapshots_offset, c->snapshots_size);
    if (ret < 0) {
        return ret;
    }
    ret = qcow2_imrt_inc(c, res, s->reftable_offset, s->reftable_entries * 8);
    if (ret < 0) {
        return ret;
    }
    ret = qcow2_check_count_bitmaps(c, res);
    if (ret < 0) {
        return ret;
    }
    return count_refblocks(c, res, fix, rebuild);
}
