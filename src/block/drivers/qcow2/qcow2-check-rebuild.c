/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 check: the in-memory refcount table and the rebuild of
 * the refcount structures from it ("Rebuilding refcount structure").
 *
 * The rebuild places new refcount blocks and the new refcount table in
 * the first free clusters the references leave (first fit, like QEMU),
 * so after `check -r all` the image has the same layout, the same leaks
 * to drop and the same end offset as one repaired by qemu-img.  The old
 * structures are not freed here: the caller's leak pass drops them.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-check-int.h"
#include "util/cleanup.h"

static uint64_t imrt_bytes_for(const BDRVQcow2State *s, uint64_t nb)
{
    uint64_t bytes = DIV_ROUND_UP(nb << s->refcount_order, 8);
    return DIV_ROUND_UP(bytes, s->cluster_size) * s->cluster_size;
}

/* The in-memory refcount table of a check never grows past this: 512 MiB
 * of refcounts covers 32 PiB of 16-bit, 64 KiB-cluster image.  A damaged
 * header or table entry can name an offset far beyond any real image;
 * the check then fails with ENOMEM (as QEMU's does when its allocation
 * fails) instead of trying to allocate terabytes. */
#define IMRT_MAX_BYTES (512ULL * 1024 * 1024)

int qcow2_imrt_resize(Qcow2Check *c, uint64_t nb)
{
    if (nb > (UINT64_MAX >> 8)) {
        return -ENOMEM;
    }
    uint64_t bytes = imrt_bytes_for(c->s, nb);
    if (bytes > IMRT_MAX_BYTES) {
        return -ENOMEM;
    }
    if (bytes > c->imrt_bytes) {
        uint8_t *p = realloc(c->imrt, bytes);
        if (!p) {
            return -ENOMEM;
        }
        memset(p + c->imrt_bytes, 0, bytes - c->imrt_bytes);
        c->imrt = p;
        c->imrt_bytes = bytes;
    }
    c->imrt_nb = nb;
    return 0;
}

uint64_t qcow2_imrt_get(const Qcow2Check *c, uint64_t cluster)
{
    return cluster < c->imrt_nb
           ? qcow2_refblock_get(c->imrt, cluster, c->s->refcount_order) : 0;
}

void qcow2_imrt_set(Qcow2Check *c, uint64_t cluster, uint64_t value)
{
    qcow2_refblock_set(c->imrt, cluster, c->s->refcount_order, value);
}

int qcow2_imrt_inc(Qcow2Check *c, BlockCheckResult *res, uint64_t offset,
                   uint64_t size)
{
    BDRVQcow2State *s = c->s;
    if (size == 0) {
        return 0;
    }
    /* The last cluster may be partly past the end of the file; a region
     * reaching a whole cluster beyond it is a corruption. */
    uint64_t file_len = block_node_size(c->bs->file);
    if (offset + size >= file_len + s->cluster_size ||
        offset + size < offset) {
        fprintf(stderr, "ERROR: counting reference for region exceeding the "
                "end of the file by one cluster or more: offset 0x%" PRIx64
                " size 0x%" PRIx64 "\n", offset, size);
        res->corruptions++;
        return 0;
    }
    uint64_t max = qcow2_refcount_max(s->refcount_order);
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + size - 1) >> s->cluster_bits;
    for (uint64_t k = first; k <= last; k++) {
        if (k >= c->imrt_nb) {
            int ret = qcow2_imrt_resize(c, k + 1);
            if (ret < 0) {
                res->check_errors++;
                return ret;
            }
        }
        uint64_t refcount = qcow2_imrt_get(c, k);
        if (refcount == max) {
            fprintf(stderr, "ERROR: overflow cluster offset=0x%" PRIx64 "\n",
                    k << s->cluster_bits);
            fprintf(stderr, "Use qemu-img amend to increase the refcount entry "
                    "width or qemu-img convert to create a clean copy if the "
                    "image cannot be opened for writing\n");
            res->corruptions++;
            continue;
        }
        qcow2_imrt_set(c, k, refcount + 1);
    }
    return 0;
}

/* Finds count contiguous clusters free in the in-memory refcount table
 * from *first_free on (growing the table past its end if needed), marks
 * them used and returns the offset of the first. */
static int alloc_clusters_imrt(Qcow2Check *c, uint64_t count,
                               uint64_t *first_free, uint64_t *offset)
{
    uint64_t cluster = *first_free;
    uint64_t contiguous = 0;
    bool first_gap = true;

    for (; cluster < c->imrt_nb && contiguous < count; cluster++) {
        if (!qcow2_imrt_get(c, cluster)) {
            contiguous++;
            if (first_gap) {
                *first_free = cluster;
                first_gap = false;
            }
        } else {
            contiguous = 0;
        }
    }
    if (contiguous < count) {
        int ret = qcow2_imrt_resize(c, cluster + count - contiguous);
        if (ret < 0) {
            return ret;
        }
    }
    cluster -= contiguous;
    for (uint64_t i = 0; i < count; i++) {
        qcow2_imrt_set(c, cluster + i, 1);
    }
    *offset = cluster << c->s->cluster_bits;
    return 0;
}

static int write_checked(Qcow2Check *c, uint64_t offset, uint64_t len,
                         const void *buf)
{
    Qcow2MetaType hit = qcow2_meta_overlap(c->s, offset, len,
                                           QCOW2_META_NONE);
    if (hit != QCOW2_META_NONE) {
        /* The references and the driver's view of the metadata disagree:
         * stop, and mark the image as QEMU does. */
        LOCK_GUARD(&c->s->lock);
        return qcow2_signal_corruption_locked(
            c->bs, true, (int64_t)offset, (int64_t)len,
            "Preventing invalid write on metadata (overlaps with %s)",
            qcow2_meta_type_name(hit));
    }
    return block_write(c->bs->file, offset, len, buf, 0);
}

typedef struct RebuildTable {
    uint64_t *entries;       /* host-endian refcount block offsets */
    uint64_t nb;
} RebuildTable;

/* Writes a refcount block for every block-sized range of clusters in
 * [first, end) with a non-zero count, allocating those not yet in rt.
 * Returns 1 if rt grew, 0 if not, or -errno. */
static int write_refblocks(Qcow2Check *c, uint64_t first, uint64_t end,
                           RebuildTable *rt, Error **errp)
{
    BDRVQcow2State *s = c->s;
    uint64_t first_free = 0;
    bool grown = false;

    for (uint64_t cluster = first; cluster < end; cluster++) {
        if (!qcow2_imrt_get(c, cluster)) {
            continue;
        }
        uint64_t index = cluster >> s->refblock_bits;
        uint64_t start = index << s->refblock_bits;
        uint64_t rb_offset;

        if (index < rt->nb && rt->entries[index]) {
            rb_offset = rt->entries[index];
        } else {
            /* Never place a refcount block inside a range already
             * written out: its own count would be missing there. */
            if (first_free < start) {
                first_free = start;
            }
            int ret = alloc_clusters_imrt(c, 1, &first_free, &rb_offset);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "ERROR allocating refblock");
                return ret;
            }
            if ((rb_offset >> s->cluster_bits) >= end) {
                end = (rb_offset >> s->cluster_bits) + 1;
            }
            if (index >= rt->nb) {
                uint64_t nb = ALIGN_UP((index + 1) * 8, s->cluster_size) / 8;
                uint64_t *p = realloc(rt->entries, nb * 8);
                if (!p) {
                    error_setg(errp, "ERROR allocating reftable memory");
                    return -ENOMEM;
                }
                memset(p + rt->nb, 0, (nb - rt->nb) * 8);
                rt->entries = p;
                rt->nb = nb;
                grown = true;
            }
            rt->entries[index] = rb_offset;
        }

        int ret = write_checked(c, rb_offset, s->cluster_size,
                                c->imrt + index * s->cluster_size);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "ERROR writing refblock");
            return ret;
        }
        cluster = start + s->refblock_entries - 1;
    }
    return grown;
}

int qcow2_check_write_refcount_structures(Qcow2Check *c,
                                          BlockCheckResult *res,
                                          uint64_t *rt_offset_out,
                                          uint64_t *rt_clusters_out,
                                          Error **errp)
{
    BDRVQcow2State *s = c->s;
    RebuildTable rt = { 0 };
    uint64_t rt_offset = 0, rt_clusters = 0;
    int ret;

    /* Everything the driver cached is on disk already (the check flushed
     * first); the rebuilt blocks replace what it would read. */
    ret = write_refblocks(c, 0, c->imrt_nb, &rt, errp);
    if (ret < 0) {
        res->check_errors++;
        goto out;
    }
    /* Allocating the table changes counts in blocks already written and
     * may need a bigger table: repeat until it fits. */
    do {
        uint64_t first_free = 0;
        rt_clusters = DIV_ROUND_UP(rt.nb * 8, s->cluster_size);
        ret = alloc_clusters_imrt(c, rt_clusters, &first_free, &rt_offset);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "ERROR allocating reftable");
            res->check_errors++;
            goto out;
        }
        uint64_t start = rt_offset >> s->cluster_bits;
        ret = write_refblocks(c, start, start + rt_clusters, &rt, errp);
        if (ret < 0) {
            res->check_errors++;
            goto out;
        }
    } while (ret > 0);

    if (rt.nb * 8 > QCOW2_MAX_REFTABLE_BYTES) {
        error_setg(errp, "ERROR the rebuilt refcount table would be too "
                   "large (%" PRIu64 " bytes)", rt.nb * 8);
        ret = -EFBIG;
        goto out;
    }
    for (uint64_t i = 0; i < rt.nb; i++) {
        rt.entries[i] = htobe64(rt.entries[i]);
    }
    ret = write_checked(c, rt_offset, rt.nb * 8, rt.entries);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "ERROR writing reftable");
        goto out;
    }
    ret = block_flush(c->bs->file);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "ERROR writing reftable");
        goto out;
    }
    *rt_offset_out = rt_offset;
    *rt_clusters_out = rt_clusters;
out:
    free(rt.entries);
    return ret;
}

int qcow2_check_rebuild_refcounts(Qcow2Check *c, BlockCheckResult *res,
                                  Error **errp)
{
    uint64_t rt_offset = 0, rt_clusters = 0;
    int ret = qcow2_check_write_refcount_structures(c, res, &rt_offset,
                                                    &rt_clusters, errp);
    if (ret < 0) {
        return ret;
    }
    uint8_t hdr[12];
    uint64_t be_off = htobe64(rt_offset);
    uint32_t be_clusters = htobe32((uint32_t)rt_clusters);
    memcpy(hdr, &be_off, 8);
    memcpy(hdr + 8, &be_clusters, 4);
    ret = block_write(c->bs->file, 48, sizeof(hdr), hdr, 0);
    if (ret == 0) {
        ret = block_flush(c->bs->file);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "ERROR setting reftable");
        return ret;
    }
    if (!qcow2_reload_metadata(c->bs, errp)) {
        return -EIO;
    }
    return 0;
}
