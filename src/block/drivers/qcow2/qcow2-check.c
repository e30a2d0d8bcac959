/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 consistency check and repair (qemu-img check semantics).
 *
 * The references counted by qcow2-check-walk.c are compared with the
 * refcounts stored on disk; differences are reported to stderr with
 * QEMU's wording (so scripts that parse `qemu-img check` keep working)
 * and, when asked, repaired: leaked counts are dropped, low counts
 * raised, and a count of zero for a used cluster (refcount structures
 * that cannot be trusted) rebuilds the refcount structures from the
 * references.  Then OFLAG_COPIED is checked against the refcounts, and a
 * clean result clears the dirty and corrupt bits.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-check-int.h"
#include "util/cleanup.h"

int qcow2_check_stored_refcount(Qcow2Check *c, uint64_t cluster,
                                uint64_t *refcount)
{
    BDRVQcow2State *s = c->s;
    uint64_t index = cluster >> s->refblock_bits;

    *refcount = 0;
    if (index >= s->reftable_entries) {
        return 0;
    }
    uint64_t rb = s->reftable[index] & QCOW2_REFT_OFFSET_MASK;
    if (!rb) {
        return 0;
    }
    if (rb & (s->cluster_size - 1)) {
        if (s->writable) {
            /* Repairing: fatal, as in QEMU (the image is marked corrupt
             * and only a successful rebuild would clear that). */
            LOCK_GUARD(&s->lock);
            return qcow2_signal_corruption_locked(
                c->bs, true, -1, -1, "Refblock offset %#" PRIx64 " unaligned "
                "(reftable index: %#" PRIx64 ")", rb, index);
        }
        if (!c->warned_bad_refblock) {
            c->warned_bad_refblock = true;
            fprintf(stderr, "qcow2: Image is corrupt: Refblock offset %#"
                    PRIx64 " unaligned (reftable index: %#" PRIx64 "); "
                    "further non-fatal corruption events will be "
                    "suppressed\n", rb, index);
        }
        return -EIO;
    }
    /* A block past the end of the file reads as zeroes. */
    if (rb >= block_node_size(c->bs->file)) {
        return 0;
    }
    return qcow2_get_refcount(c->bs, cluster, refcount);
}

/* Compares stored refcounts with the references.  With fix, leaks
 * (BLOCK_FIX_LEAKS) and counts too low but not zero (BLOCK_FIX_ERRORS)
 * are corrected; a stored zero for a used cluster sets *rebuild. */
static void compare_refcounts(Qcow2Check *c, BlockCheckResult *res, int fix,
                              bool *rebuild, uint64_t *highest)
{
    *highest = 0;
    for (uint64_t i = 0; i < c->imrt_nb; i++) {
        uint64_t stored, want = qcow2_imrt_get(c, i);
        int ret = qcow2_check_stored_refcount(c, i, &stored);
        if (ret < 0) {
            fprintf(stderr, "Can't get refcount for cluster %" PRIu64 ": %s\n",
                    i, strerror(-ret));
            res->check_errors++;
            continue;
        }
        if (stored || want) {
            *highest = i;
        }
        if (stored == want) {
            continue;
        }
        int *num_fixed = NULL;
        if (stored == 0) {
            *rebuild = true;
        } else if (stored > want && (fix & BLOCK_FIX_LEAKS)) {
            num_fixed = &res->leaks_fixed;
        } else if (stored < want && (fix & BLOCK_FIX_ERRORS)) {
            num_fixed = &res->corruptions_fixed;
        }
        fprintf(stderr, "%s cluster %" PRIu64 " refcount=%" PRIu64
                " reference=%" PRIu64 "\n",
                num_fixed ? "Repairing" : stored < want ? "ERROR" : "Leaked",
                i, stored, want);
        if (num_fixed && qcow2_set_refcount(c->bs, i, want) == 0) {
            (*num_fixed)++;
            if (want == 0) {
                /* Nothing references the cluster: QEMU discards it, so
                 * the repaired files stay byte-identical.  A failure
                 * loses nothing. */
                uint64_t at = i << c->s->cluster_bits;
                uint64_t fsize = block_node_size(c->bs->file);
                /* A discard never grows the file (the last cluster of
                 * an image with subclusters may end early). */
                if (at < fsize) {
                    block_write_zeroes(c->bs->file, at,
                                       MIN(c->s->cluster_size, fsize - at),
                                       BLOCK_REQ_MAY_UNMAP);
                }
            }
            continue;
        }
        if (stored < want) {
            res->corruptions++;
        } else {
            res->leaks++;
        }
    }
}

static int write_be64(Qcow2Check *c, uint64_t offset, uint64_t value)
{
    uint64_t be = htobe64(value);
    return block_write(c->bs->file, offset, 8, &be, 0);
}

/* OFLAG_COPIED must be set exactly on L1 and L2 entries whose cluster
 * has refcount 1.  Runs after the refcounts were settled. */
static int check_oflag_copied(Qcow2Check *c, BlockCheckResult *res, int fix)
{
    BDRVQcow2State *s = c->s;
    bool repair;

    if (fix & BLOCK_FIX_ERRORS) {
        repair = true;
    } else if (fix & BLOCK_FIX_LEAKS) {
        /* Only safe when the refcounts are known to be right now. */
        repair = !res->check_errors && !res->corruptions && !res->leaks;
    } else {
        repair = false;
    }

    CLEANUP_FREE uint64_t *l2 = malloc(s->cluster_size);
    if (!l2) {
        res->check_errors++;
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < s->l1_size; i++) {
        uint64_t l1e = s->l1_table[i];
        uint64_t l2_offset = l1e & QCOW2_L1E_OFFSET_MASK;
        uint64_t refcount;
        int ret;

        if (!l2_offset) {
            continue;
        }
        if (qcow2_check_stored_refcount(c, l2_offset >> s->cluster_bits,
                                        &refcount) < 0) {
            continue;
        }
        if ((refcount == 1) != !!(l1e & QCOW2_OFLAG_COPIED)) {
            res->corruptions++;
            fprintf(stderr, "%s OFLAG_COPIED L2 cluster: l1_index=%" PRIu64
                    " l1_entry=%" PRIx64 " refcount=%" PRIu64 "\n",
                    repair ? "Repairing" : "ERROR", i, l1e, refcount);
            if (repair) {
                uint64_t fixed = refcount == 1 ? l1e | QCOW2_OFLAG_COPIED
                                               : l1e & ~QCOW2_OFLAG_COPIED;
                if (qcow2_meta_overlap(s, s->l1_table_offset + i * 8, 8,
                                       QCOW2_META_L1) != QCOW2_META_NONE) {
                    ret = -EIO;
                } else {
                    ret = write_be64(c, s->l1_table_offset + i * 8, fixed);
                }
                if (ret < 0) {
                    res->check_errors++;
                    return ret;
                }
                s->l1_table[i] = fixed;
                res->corruptions--;
                res->corruptions_fixed++;
            }
        }

        ret = block_read(c->bs->file, l2_offset, s->cluster_size, l2, 0);
        if (ret < 0) {
            fprintf(stderr, "ERROR: Could not read L2 table: %s\n",
                    strerror(-ret));
            res->check_errors++;
            return ret;
        }
        int dirty = 0;
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            uint64_t *slot = &l2[j << (s->l2e_shift - 3)];
            uint64_t l2e = be64toh(*slot);
            Qcow2ClusterType type = s->extended_l2 ? qcow2_cluster_type_ext(s, l2e)
                                                   : qcow2_cluster_type(s, l2e);
            if (type != QCOW2_CLUSTER_NORMAL &&
                type != QCOW2_CLUSTER_ZERO_ALLOC) {
                continue;
            }
            uint64_t data = l2e & QCOW2_L2E_OFFSET_MASK;
            if (qcow2_has_data_file(s)) {
                refcount = 1; /* one place per guest cluster */
            } else if (qcow2_check_stored_refcount(c, data >> s->cluster_bits,
                                                   &refcount) < 0) {
                continue;
            }
            if ((refcount == 1) != !!(l2e & QCOW2_OFLAG_COPIED)) {
                res->corruptions++;
                fprintf(stderr, "%s OFLAG_COPIED data cluster: l2_entry=%"
                        PRIx64 " refcount=%" PRIu64 "\n",
                        repair ? "Repairing" : "ERROR", l2e, refcount);
                if (repair) {
                    l2e = refcount == 1 ? l2e | QCOW2_OFLAG_COPIED
                                        : l2e & ~QCOW2_OFLAG_COPIED;
                    *slot = htobe64(l2e);
                    dirty++;
                }
            }
        }
        if (dirty) {
            if (qcow2_meta_overlap(s, l2_offset, s->cluster_size,
                                   QCOW2_META_L2) != QCOW2_META_NONE) {
                fprintf(stderr, "ERROR: Could not write L2 table; metadata "
                        "overlap check failed: %s\n", strerror(EIO));
                res->check_errors++;
                return -EIO;
            }
            /* The driver may hold this table in its cache. */
            {
                LOCK_GUARD(&s->lock);
                qcow2_cache_discard(s->l2_cache, l2_offset);
            }
            ret = block_write(c->bs->file, l2_offset, s->cluster_size, l2, 0);
            if (ret < 0) {
                fprintf(stderr, "ERROR: Could not write L2 table: %s\n",
                        strerror(-ret));
                res->check_errors++;
                return ret;
            }
            res->corruptions -= dirty;
            res->corruptions_fixed += dirty;
        }
    }
    return 0;
}

/* The refcount part of the check (QEMU's qcow2_check_refcounts). */
static int check_refcounts(Qcow2Check *c, BlockCheckResult *res, int fix)
{
    BDRVQcow2State *s = c->s;
    uint64_t highest = 0;
    bool rebuild = false;
    int ret;

    uint64_t nb_clusters = DIV_ROUND_UP(block_node_size(c->bs->file),
                                        s->cluster_size);
    res->bfi.total_clusters = DIV_ROUND_UP(s->header.size & ~511ull,
                                           s->cluster_size);
    ret = qcow2_imrt_resize(c, nb_clusters);
    if (ret < 0) {
        res->check_errors++;
        return ret;
    }
    ret = qcow2_check_count_refs(c, res, fix, &rebuild);
    if (ret < 0) {
        return ret;
    }

    /* When only fixes without a rebuild are wanted, the comparison runs
     * again with fix from this state. */
    BlockCheckResult pre_compare = *res;
    compare_refcounts(c, res, 0, &rebuild, &highest);

    if (rebuild && (fix & BLOCK_FIX_ERRORS)) {
        BlockCheckResult old = *res;
        int fresh_leaks = 0;
        Error *err = NULL;

        fprintf(stderr, "Rebuilding refcount structure\n");
        ret = qcow2_check_rebuild_refcounts(c, res, &err);
        if (ret < 0) {
            error_report_err(err);
            return ret;
        }
        res->corruptions = 0;
        res->leaks = 0;

        /* Count again against the new refcount table. */
        rebuild = false;
        memset(c->imrt, 0, c->imrt_bytes);
        ret = qcow2_check_count_refs(c, res, 0, &rebuild);
        if (ret < 0) {
            return ret;
        }
        if (fix & BLOCK_FIX_LEAKS) {
            /* The old structures are leaked now; drop them.  Leaks left
             * after that were made by the rebuild itself. */
            BlockCheckResult saved = *res;
            memset(res, 0, sizeof(*res));
            compare_refcounts(c, res, BLOCK_FIX_LEAKS, &rebuild, &highest);
            if (rebuild) {
                fprintf(stderr, "ERROR rebuilt refcount structure is still "
                        "broken\n");
            }
            fresh_leaks = res->leaks;
            *res = saved;
        }
        if (res->corruptions < old.corruptions) {
            res->corruptions_fixed += old.corruptions - res->corruptions;
        }
        if (res->leaks < old.leaks) {
            res->leaks_fixed += old.leaks - res->leaks;
        }
        res->leaks += fresh_leaks;
    } else if (fix) {
        if (rebuild) {
            fprintf(stderr, "ERROR need to rebuild refcount structures\n");
            res->check_errors++;
            return -EIO;
        }
        if (res->leaks || res->corruptions) {
            *res = pre_compare;
            compare_refcounts(c, res, fix, &rebuild, &highest);
        }
    }
    ret = qcow2_flush_caches(c->bs);
    if (ret < 0) {
        res->check_errors++;
        return ret;
    }

    ret = check_oflag_copied(c, res, fix);
    if (ret < 0) {
        return ret;
    }
    res->image_end_offset = (int64_t)((highest + 1) * s->cluster_size);
    return 0;
}

/* A repaired image loses the dirty and corrupt bits (only v3 images
 * have them). */
static int mark_clean(Qcow2Check *c)
{
    BDRVQcow2State *s = c->s;
    uint64_t bits = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT;
    if (!(s->header.incompatible_features & bits)) {
        return 0;
    }
    int ret = qcow2_flush_caches(c->bs);
    if (ret == 0) {
        ret = block_flush(c->bs->file);
    }
    if (ret < 0) {
        return ret;
    }
    s->header.incompatible_features &= ~bits;
    ret = write_be64(c, 72, s->header.incompatible_features);
    return ret < 0 ? ret : block_flush(c->bs->file);
}

int qcow2_check(BlockNode *bs, BlockCheckResult *res, int fix)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Check c = { .bs = bs, .s = s };
    int ret;

    memset(res, 0, sizeof(*res));
    ret = qcow2_flush_caches(bs);
    if (ret < 0) {
        res->check_errors++;
        return ret;
    }
    ret = qcow2_check_read_snapshots(&c, res);
    if (ret < 0) {
        goto out;
    }
    ret = check_refcounts(&c, res, fix);
    if (ret < 0) {
        goto out;
    }
    if (fix && res->check_errors == 0 && res->corruptions == 0) {
        ret = mark_clean(&c);
        if (ret < 0) {
            goto out;
        }
    }
    if (fix) {
        /* L1/L2 entries were rewritten under the driver: reload. */
        ret = qcow2_flush_caches(bs);
        Error *err = NULL;
        if (ret == 0 && !qcow2_reload_metadata(bs, &err)) {
            fprintf(stderr, "%s\n", error_get_pretty(err));
            error_free(err);
            ret = -EIO;
        }
        if (ret < 0) {
            res->check_errors++;
            goto out;
        }
    }
    ret = 0;
out:
    qcow2_check_free_snapshots(&c);
    free(c.imrt);
    return ret;
}
