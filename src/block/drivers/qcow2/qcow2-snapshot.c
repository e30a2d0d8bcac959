/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 internal snapshots: create, apply (goto), delete, list.
 *
 * A snapshot is a copy of the active L1 table.  The L2 tables and data
 * clusters stay where they are and are shared: each reference from
 * another table adds one to their refcount, and OFLAG_COPIED (which
 * says "refcount is exactly 1, write in place") is cleared on every
 * entry that becomes shared and set again when sharing ends.
 *
 * Crash safety follows QEMU's order: refcounts are raised and on disk
 * before anything points at the clusters, and lowered only after
 * nothing on disk points at them any more, so an interrupted operation
 * leaves at worst leaked clusters.  Within one pass the refcount blocks
 * are written before the L2 tables (qcow2_flush_caches_locked), so
 * OFLAG_COPIED never reaches the disk ahead of the refcount of 1 that
 * justifies it.
 *
 * Messages and error codes are QEMU's, since qemu-img prints them.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-io.h"
#include "util/cleanup.h"

#define QCOW2_MAX_SNAPSHOTS 65536

/* QEMU's refcount update fails with EINVAL where ours says ERANGE. */
static int change_refcount(BlockNode *bs, uint64_t offset, uint64_t length,
                           int addend)
{
    BDRVQcow2State *s = bs->opaque;
    /* A cluster no refcount table QEMU allows could cover: QEMU gives
     * up with EFBIG when it tries to grow the table that far. */
    uint64_t last = (offset + length - 1) >> s->cluster_bits;
    if (addend > 0 &&
        (last >> s->refblock_bits) >= QCOW2_MAX_REFTABLE_BYTES / 8) {
        return -EFBIG;
    }
    /* A cluster a table references always has a refcount block; when it
     * has none, the reference is garbage (a corrupt entry), and QEMU
     * fails with EAGAIN where it would have to allocate the block.  No
     * refcount block is made up for it. */
    for (uint64_t c = offset >> s->cluster_bits; addend > 0 && c <= last;
         c += s->refblock_entries - (c & (s->refblock_entries - 1))) {
        uint64_t idx = c >> s->refblock_bits;
        if (idx >= s->reftable_entries ||
            !(s->reftable[idx] & QCOW2_REFT_OFFSET_MASK)) {
            return -EAGAIN;
        }
    }
    int ret = qcow2_update_refcount_locked(bs, offset, length, addend);
    return ret == -ERANGE ? -EINVAL : ret;
}

/* Adds addend (-1, 0 or +1) to the refcount of every cluster that the
 * L1 table l1 (l1_size entries, at l1_offset on disk) references, L2
 * tables and data, and sets OFLAG_COPIED on the entries exactly where
 * the refcount is then 1.  The L1 table is rewritten at l1_offset when
 * that changed it, unless addend is -1 (it is being dropped).  l1 is
 * updated in memory either way. */
static int update_refcounts_locked(BlockNode *bs, uint64_t *l1,
                                   uint32_t l1_size, uint64_t l1_offset,
                                   int addend)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    bool l1_modified = false;
    int ret = 0;

    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t old_l1e = l1[i];
        uint64_t l2_offset = old_l1e & QCOW2_L1E_OFFSET_MASK;
        if (!l2_offset) {
            continue;
        }
        if (l2_offset & (cs - 1)) {
            return qcow2_signal_corruption_locked(
                bs, true, -1, -1, "L2 table offset %#" PRIx64 " unaligned "
                "(L1 index: %#" PRIx32 ")", l2_offset, i);
        }
        void *l2;
        ret = qcow2_cache_get_locked(bs, s->l2_cache, l2_offset, false, &l2);
        if (ret < 0) {
            return ret;
        }
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            uint64_t old = qcow2_l2_get(s, l2, j);
            uint64_t e = old & ~QCOW2_OFLAG_COPIED;
            uint64_t off = e & QCOW2_L2E_OFFSET_MASK;
            uint64_t refcount = 0;
            switch (qcow2_cluster_type(s, e)) {
            case QCOW2_CLUSTER_COMPRESSED:
                if (addend) {
                    Qcow2CompressedDesc d;
                    qcow2_compressed_decode(e, s->cluster_bits, &d);
                    ret = change_refcount(bs, d.host_offset, d.size, addend);
                }
                refcount = 2; /* never written in place */
                break;
            case QCOW2_CLUSTER_NORMAL:
            case QCOW2_CLUSTER_ZERO_ALLOC:
                if (off & (cs - 1)) {
                    qcow2_cache_put(s->l2_cache, l2);
                    return qcow2_signal_corruption_locked(
                        bs, true, -1, -1, "Cluster allocation offset %#"
                        PRIx64 " unaligned (L2 offset: %#" PRIx64 ", L2 "
                        "index: %#" PRIx64 ")", off, l2_offset, j);
                }
                if (addend) {
                    ret = change_refcount(bs, off, cs, addend);
                }
                if (ret == 0) {
                    ret = qcow2_get_refcount_locked(bs, off >> s->cluster_bits,
                                                    &refcount);
                }
                break;
            default:
                break;
            }
            if (ret < 0) {
                qcow2_cache_put(s->l2_cache, l2);
                return ret;
            }
            if (refcount == 1) {
                e |= QCOW2_OFLAG_COPIED;
            }
            if (e != old) {
                qcow2_l2_set(s, l2, j, e);
                qcow2_cache_mark_dirty(s->l2_cache, l2);
            }
        }
        qcow2_cache_put(s->l2_cache, l2);

        uint64_t refcount;
        if (addend) {
            ret = change_refcount(bs, l2_offset, cs, addend);
            if (ret < 0) {
                return ret;
            }
        }
        ret = qcow2_get_refcount_locked(bs, l2_offset >> s->cluster_bits,
                                        &refcount);
        if (ret < 0) {
            return ret;
        }
        if (refcount == 0) {
            /* Freed: a dirty copy must never be written over whatever
             * takes the cluster next. */
            qcow2_cache_discard(s->l2_cache, l2_offset);
        }
        uint64_t l1e = refcount == 1 ? l2_offset | QCOW2_OFLAG_COPIED
                                     : l2_offset;
        if (l1e != old_l1e) {
            l1[i] = l1e;
            l1_modified = true;
        }
    }

    ret = qcow2_flush_caches_locked(bs);
    if (ret == 0) {
        ret = block_flush(bs->file);
    }
    if (ret == 0 && addend >= 0 && l1_modified) {
        CLEANUP_FREE uint64_t *be = malloc(MAX((uint64_t)l1_size, 1) * 8);
        if (!be) {
            return -ENOMEM;
        }
        for (uint32_t i = 0; i < l1_size; i++) {
            be[i] = htobe64(l1[i]);
        }
        ret = qcow2_write_meta_locked(bs, l1_offset, (uint64_t)l1_size * 8,
                                      be, QCOW2_META_L1);
        if (ret == 0) {
            ret = block_flush(bs->file);
        }
    }
    return ret;
}

/* Reads a snapshot's L1 table into a host-endian array of at least
 * alloc entries (zero padded). */
static int read_l1_locked(BlockNode *bs, uint64_t offset, uint32_t size,
                          uint64_t alloc, uint64_t **out)
{
    uint64_t *t = calloc(MAX(MAX(alloc, (uint64_t)size), 1), 8);
    if (!t) {
        return -ENOMEM;
    }
    int ret = size ? block_read(bs->file, offset, (uint64_t)size * 8, t,
                                BLOCK_REQ_METADATA) : 0;
    if (ret < 0) {
        free(t);
        return ret;
    }
    for (uint32_t i = 0; i < size; i++) {
        t[i] = be64toh(t[i]);
    }
    *out = t;
    return 0;
}

/* QEMU's qcow2_validate_table for a snapshot's L1 table. */
static int validate_l1(BDRVQcow2State *s, const Qcow2Snapshot *sn,
                       Error **errp)
{
    if (sn->l1_size > QCOW2_MAX_L1_BYTES / 8) {
        error_setg(errp, "Snapshot L1 table too large");
        return -EFBIG;
    }
    if ((uint64_t)INT64_MAX - (uint64_t)sn->l1_size * 8 <
            sn->l1_table_offset ||
        (sn->l1_table_offset & (s->cluster_size - 1))) {
        error_setg(errp, "Snapshot L1 table offset invalid");
        return -EINVAL;
    }
    return 0;
}

static int find_by_id_and_name(BDRVQcow2State *s, const char *id,
                               const char *name)
{
    for (uint32_t i = 0; i < s->header.nb_snapshots; i++) {
        if ((!id || !strcmp(s->snapshots[i].id_str, id)) &&
            (!name || !strcmp(s->snapshots[i].name, name))) {
            return (int)i;
        }
    }
    return -1;
}

/* The metadata set knows the snapshot table; after the active L1
 * changed, its L2 tables change too. */
static int reindex_locked(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = qcow2_meta_rebuild_locked(bs);
    if (ret == 0 && s->header.nb_snapshots && s->snapshots_size) {
        ret = qcow2_meta_add(s, s->header.snapshots_offset,
                             ALIGN_UP(s->snapshots_size, s->cluster_size),
                             QCOW2_META_SNAPSHOTS);
    }
    return ret;
}

int qcow2_snapshot_list(BlockNode *bs, BlockSnapshotInfo **list)
{
    BDRVQcow2State *s = bs->opaque;
    LOCK_GUARD(&s->lock);
    uint32_t nb = s->header.nb_snapshots;
    *list = NULL;
    if (nb == 0) {
        return 0;
    }
    if (!s->snapshots) {
        return -EIO; /* opened for check: the table was not read */
    }
    BlockSnapshotInfo *l = calloc(nb, sizeof(*l));
    if (!l) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < nb; i++) {
        const Qcow2Snapshot *sn = &s->snapshots[i];
        /* QEMU copies ids and names into fixed buffers of 128 and 256
         * bytes: longer ones come out cut, and are matched cut. */
        l[i].id = strndup(sn->id_str, 127);
        l[i].name = strndup(sn->name, 255);
        if (!l[i].id || !l[i].name) {
            block_snapshot_list_free(l, (int)nb);
            return -ENOMEM;
        }
        l[i].vm_state_size = sn->vm_state_size;
        l[i].date_sec = sn->date_sec;
        l[i].date_nsec = sn->date_nsec;
        l[i].vm_clock_nsec = sn->vm_clock_nsec;
        l[i].icount = sn->icount;
    }
    *list = l;
    return (int)nb;
}

int qcow2_snapshot_create(BlockNode *bs, const BlockSnapshotInfo *info)
{
    BDRVQcow2State *s = bs->opaque;
    LOCK_GUARD(&s->lock);
    uint32_t nb = s->header.nb_snapshots;
    /* As QEMU: a snapshot would share data clusters, which an external
     * data file (one place per guest cluster) cannot. */
    if (qcow2_has_data_file(s)) {
        return -ENOTSUP;
    }
    if (!s->writable) {
        return -EROFS;
    }
    if (nb >= QCOW2_MAX_SNAPSHOTS) {
        return -EFBIG;
    }
    if (nb && !s->snapshots) {
        return -EIO;
    }
    unsigned long id_max = 0;
    for (uint32_t i = 0; i < nb; i++) {
        unsigned long id = strtoul(s->snapshots[i].id_str, NULL, 10);
        id_max = MAX(id_max, id);
    }
    Qcow2Snapshot sn = {
        .disk_size = s->header.size,
        .vm_state_size = info->vm_state_size,
        .date_sec = info->date_sec,
        .date_nsec = info->date_nsec,
        .vm_clock_nsec = info->vm_clock_nsec,
        .icount = info->icount,
        .extra_data_size = 24,
        .l1_size = s->l1_size,
    };
    if (asprintf(&sn.id_str, "%lu", id_max + 1) < 0) {
        return -ENOMEM;
    }
    sn.name = strdup(info->name);
    uint64_t l1_bytes = (uint64_t)s->l1_size * 8;
    CLEANUP_FREE uint64_t *be = malloc(MAX(l1_bytes, 8));
    Qcow2Snapshot *list = calloc(nb + 1, sizeof(*list));
    int ret = sn.name && be && list ? 0 : -ENOMEM;

    /* Room for the copy of the active L1 table. */
    if (ret == 0 && l1_bytes) {
        ret = qcow2_alloc_clusters_locked(
            bs, DIV_ROUND_UP(l1_bytes, s->cluster_size), &sn.l1_table_offset);
    }
    /* Every cluster the table references gains a reference, on disk
     * before the snapshot table names the copy. */
    if (ret == 0) {
        ret = update_refcounts_locked(bs, s->l1_table, s->l1_size,
                                      s->l1_table_offset, 1);
    }
    /* The copy is taken after that pass, so it does not claim its L2
     * tables are unshared (QEMU copies first; nothing reads the flags of
     * a snapshot's table, but applying it copies them). */
    if (ret == 0 && l1_bytes) {
        for (uint32_t i = 0; i < s->l1_size; i++) {
            be[i] = htobe64(s->l1_table[i]);
        }
        ret = qcow2_write_meta_locked(bs, sn.l1_table_offset, l1_bytes, be,
                                      QCOW2_META_NONE);
    }
    if (ret == 0) {
        if (nb) {
            memcpy(list, s->snapshots, nb * sizeof(*list));
        }
        list[nb] = sn;
        ret = qcow2_write_snapshots_locked(bs, list, nb + 1);
    }
    if (ret < 0) {
        /* As in QEMU, what was counted stays counted: leaked, never
         * lost. */
        free(list);
        free(sn.id_str);
        free(sn.name);
        return ret;
    }
    free(s->snapshots);
    s->snapshots = list;
    return 0;
}

int qcow2_snapshot_goto(BlockNode *bs, const char *id_or_name)
{
    BDRVQcow2State *s = bs->opaque;
    LOCK_GUARD(&s->lock);
    if (qcow2_has_data_file(s)) {
        return -ENOTSUP;
    }
    if (s->header.nb_snapshots && !s->snapshots) {
        return -EIO;
    }
    if (!s->writable) {
        return -EROFS;
    }
    int idx = find_by_id_and_name(s, id_or_name, NULL);
    if (idx < 0) {
        idx = find_by_id_and_name(s, NULL, id_or_name);
    }
    if (idx < 0) {
        return -ENOENT;
    }
    const Qcow2Snapshot *sn = &s->snapshots[idx];
    Error *err = NULL;
    int ret = validate_l1(s, sn, &err);
    if (ret < 0) {
        error_report_err(err);
        return ret;
    }

    if (sn->disk_size != s->header.size) {
        if (s->header.version < 3) {
            error_report("Can't resize a v2 image which has snapshots");
            return -ENOTSUP;
        }
        uint64_t l2_span = s->cluster_size << s->l2_bits;
        ret = qcow2_grow_l1_locked(bs, DIV_ROUND_UP(sn->disk_size, l2_span));
        if (ret < 0) {
            return ret;
        }
        uint64_t be_size = htobe64(sn->disk_size);
        ret = qcow2_write_meta_locked(bs, 24, 8, &be_size, QCOW2_META_HEADER);
        if (ret == 0) {
            ret = block_flush(bs->file);
        }
        if (ret < 0) {
            return ret;
        }
        s->header.size = sn->disk_size;
        bs->total_size = sn->disk_size;
    }

    /* The active table must hold the whole snapshot table; entries past
     * the snapshot's end become zero. */
    ret = qcow2_grow_l1_locked(bs, sn->l1_size);
    if (ret < 0) {
        return ret;
    }
    /* References for the clusters the snapshot's table holds first... */
    CLEANUP_FREE uint64_t *sn_l1 = NULL;
    ret = read_l1_locked(bs, sn->l1_table_offset, sn->l1_size, s->l1_size,
                         &sn_l1);
    if (ret == 0) {
        ret = update_refcounts_locked(bs, sn_l1, sn->l1_size,
                                      sn->l1_table_offset, 1);
    }
    if (ret < 0) {
        return ret;
    }
    /* ...then the switch, to the table as that pass left it: its L2
     * tables are shared now, and OFLAG_COPIED must not say otherwise
     * even if the process dies before the flags are recomputed (QEMU
     * copies the table as it was before the pass). */
    const uint64_t *new_l1 = sn_l1;
    uint64_t l1_bytes = (uint64_t)s->l1_size * 8;
    CLEANUP_FREE uint64_t *be = malloc(MAX(l1_bytes, 8));
    if (!be) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < s->l1_size; i++) {
        be[i] = htobe64(new_l1[i]);
    }
    ret = qcow2_write_meta_locked(bs, s->l1_table_offset, l1_bytes, be,
                                  QCOW2_META_L1);
    if (ret == 0) {
        ret = block_flush(bs->file);
    }
    if (ret < 0) {
        return ret;
    }
    /* ...then the old state's references go (from the table in memory:
     * the one on disk is the new one already). */
    ret = update_refcounts_locked(bs, s->l1_table, s->l1_size,
                                  s->l1_table_offset, -1);
    memcpy(s->l1_table, new_l1, l1_bytes);
    if (ret < 0) {
        reindex_locked(bs);
        return ret;
    }
    /* Sharing may have ended for what the old state held. */
    ret = update_refcounts_locked(bs, s->l1_table, s->l1_size,
                                  s->l1_table_offset, 0);
    int ret2 = reindex_locked(bs);
    return ret < 0 ? ret : ret2;
}

int qcow2_snapshot_delete(BlockNode *bs, const char *id, const char *name,
                          Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    LOCK_GUARD(&s->lock);
    uint32_t nb = s->header.nb_snapshots;
    if (nb && !s->snapshots) {
        error_setg(errp, "Can't find the snapshot");
        return -ENOENT;
    }
    int idx = find_by_id_and_name(s, id, name);
    if (idx < 0) {
        error_setg(errp, "Can't find the snapshot");
        return -ENOENT;
    }
    if (!s->writable) {
        error_setg_errno(errp, EROFS, "Failed to remove snapshot from "
                         "snapshot list");
        return -EROFS;
    }
    Qcow2Snapshot sn = s->snapshots[idx];
    int ret = validate_l1(s, &sn, errp);
    if (ret < 0) {
        return ret;
    }
    Qcow2Snapshot *list = calloc(MAX(nb - 1, 1u), sizeof(*list));
    if (!list) {
        error_setg_errno(errp, ENOMEM, "Failed to remove snapshot from "
                         "snapshot list");
        return -ENOMEM;
    }
    memcpy(list, s->snapshots, (size_t)idx * sizeof(*list));
    memcpy(list + idx, s->snapshots + idx + 1,
           (nb - (uint32_t)idx - 1) * sizeof(*list));
    ret = qcow2_write_snapshots_locked(bs, list, nb - 1);
    if (ret < 0) {
        free(list);
        error_setg_errno(errp, -ret, "Failed to remove snapshot from "
                         "snapshot list");
        return ret;
    }
    free(s->snapshots);
    s->snapshots = list;
    free(sn.id_str);
    free(sn.name);
    free(sn.unknown_extra);

    /* Nothing names the snapshot's table any more: from here a failure
     * leaks clusters, nothing worse. */
    CLEANUP_FREE uint64_t *sn_l1 = NULL;
    ret = read_l1_locked(bs, sn.l1_table_offset, sn.l1_size, 0, &sn_l1);
    if (ret == 0) {
        ret = update_refcounts_locked(bs, sn_l1, sn.l1_size,
                                      sn.l1_table_offset, -1);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to free the cluster and L1 "
                         "table");
        return ret;
    }
    if (sn.l1_size) {
        qcow2_free_clusters_locked(bs, sn.l1_table_offset,
                                   (uint64_t)sn.l1_size * 8);
    }
    ret = update_refcounts_locked(bs, s->l1_table, s->l1_size,
                                  s->l1_table_offset, 0);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to update snapshot status in "
                         "disk");
        return ret;
    }
    ret = qcow2_flush_caches_locked(bs);
    if (ret == 0) {
        ret = block_flush(bs->file);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to update snapshot status in "
                         "disk");
    }
    return ret;
}

int qcow2_snapshot_load_tmp(BlockNode *bs, const char *id, const char *name,
                            Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    LOCK_GUARD(&s->lock);
    int idx = s->snapshots ? find_by_id_and_name(s, id, name) : -1;
    if (idx < 0) {
        error_setg(errp, "Can't find snapshot");
        return -ENOENT;
    }
    const Qcow2Snapshot *sn = &s->snapshots[idx];
    int ret = validate_l1(s, sn, errp);
    if (ret < 0) {
        return ret;
    }
    uint64_t *l1 = NULL;
    ret = read_l1_locked(bs, sn->l1_table_offset, sn->l1_size, 0, &l1);
    if (ret < 0) {
        error_setg(errp, "Failed to read l1 table for snapshot");
        return ret;
    }
    /* Reads now go through the snapshot's table; the L2 tables cached
     * so far stay valid (a table's content is its offset's). */
    free(s->l1_table);
    s->l1_table = l1;
    s->l1_size = sn->l1_size;
    s->l1_table_offset = sn->l1_table_offset;
    return 0;
}
