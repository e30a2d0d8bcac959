/* strata - qcow2 consistency check and repair (qemu-img check semantics).
 *
 * Counts every reference to every host cluster (header, L1/L2 tables,
 * data and compressed data, refcount table and blocks, snapshot table
 * and snapshot L1 tables), compares with the stored refcounts and
 * reports differences to stderr with QEMU's wording, so scripts that
 * parse `qemu-img check` output work unchanged.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2.h"
#include "util/cleanup.h"

typedef struct CheckCtx {
    BlockNode *bs;
    BDRVQcow2State *s;
    BlockCheckResult *res;
    int fix;
    uint64_t *refs;          /* computed references per host cluster */
    uint64_t nb_refs;
    uint64_t next_contiguous;
    bool rewrote_tables;     /* L1/L2 entries changed on disk */
} CheckCtx;

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = v >> (56 - 8 * i);
    }
}

static int read_table(CheckCtx *c, uint64_t offset, uint64_t entries,
                      uint64_t **out)
{
    uint64_t bytes = entries * 8;
    uint8_t *raw = malloc(bytes ? bytes : 1);
    uint64_t *t = malloc(bytes ? bytes : 1);
    if (!raw || !t) {
        free(raw);
        free(t);
        return -ENOMEM;
    }
    int ret = bytes ? block_read(c->bs->file, offset, bytes, raw, 0) : 0;
    if (ret < 0) {
        free(raw);
        free(t);
        return ret;
    }
    for (uint64_t i = 0; i < entries; i++) {
        t[i] = get_be64(raw + i * 8);
    }
    free(raw);
    *out = t;
    return 0;
}

static int write_entry(CheckCtx *c, uint64_t offset, uint64_t value)
{
    uint8_t buf[8];
    put_be64(buf, value);
    c->rewrote_tables = true;
    return block_write(c->bs->file, offset, 8, buf, 0);
}

/* Counts one reference to every cluster touched by [offset, +size). */
static int inc_refs(CheckCtx *c, uint64_t offset, uint64_t size)
{
    if (size == 0) {
        return 0;
    }
    uint64_t first = offset >> c->s->cluster_bits;
    uint64_t last = (offset + size - 1) >> c->s->cluster_bits;
    if (last >= c->nb_refs) {
        uint64_t n = last + 1;
        uint64_t *r = realloc(c->refs, n * sizeof(*r));
        if (!r) {
            return -ENOMEM;
        }
        memset(r + c->nb_refs, 0, (n - c->nb_refs) * sizeof(*r));
        c->refs = r;
        c->nb_refs = n;
    }
    for (uint64_t k = first; k <= last; k++) {
        if (c->refs[k] == UINT64_MAX) {
            fprintf(stderr, "ERROR: overflow cluster offset=0x%" PRIx64 "\n",
                    k << c->s->cluster_bits);
            c->res->corruptions++;
            continue;
        }
        c->refs[k]++;
    }
    return 0;
}

static int check_l2(CheckCtx *c, uint64_t l2_offset, bool active)
{
    BDRVQcow2State *s = c->s;
    CLEANUP_FREE uint64_t *l2 = NULL;
    int ret = read_table(c, l2_offset, s->l2_entries, &l2);
    if (ret < 0) {
        fprintf(stderr, "ERROR: I/O error in check_refcounts_l2\n");
        c->res->check_errors++;
        return ret;
    }

    for (uint64_t i = 0; i < s->l2_entries; i++) {
        uint64_t e = l2[i];
        switch (qcow2_l2e_type(e)) {
        case QCOW2_CLUSTER_COMPRESSED: {
            if (e & QCOW2_OFLAG_COPIED) {
                fprintf(stderr, "ERROR: coffset=0x%" PRIx64 ": copied flag "
                        "must never be set for compressed clusters\n",
                        (uint64_t)(e & ((1ull << 62) - 1)));
                c->res->corruptions++;
            }
            Qcow2CompressedDesc d;
            qcow2_compressed_decode(e, s->cluster_bits, &d);
            if (active) {
                c->res->bfi.allocated_clusters++;
                c->res->bfi.compressed_clusters++;
                /* Adjacent compressed clusters share sectors: QEMU counts
                 * every one as fragmented. */
                c->res->bfi.fragmented_clusters++;
            }
            ret = inc_refs(c, d.host_offset, d.size);
            break;
        }
        case QCOW2_CLUSTER_ZERO_ALLOC:
        case QCOW2_CLUSTER_NORMAL: {
            uint64_t off = e & QCOW2_L2E_OFFSET_MASK;
            if (off & (s->cluster_size - 1)) {
                fprintf(stderr, "ERROR offset=%" PRIx64 ": Cluster is not "
                        "properly aligned; L2 entry corrupted.\n", off);
                c->res->corruptions++;
                break;
            }
            if (active) {
                c->res->bfi.allocated_clusters++;
                if (c->next_contiguous && off != c->next_contiguous) {
                    c->res->bfi.fragmented_clusters++;
                }
                c->next_contiguous = off + s->cluster_size;
            }
            ret = inc_refs(c, off, s->cluster_size);
            break;
        }
        default:
            break;
        }
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static int check_l1(CheckCtx *c, uint64_t l1_offset, uint64_t l1_size,
                    bool active)
{
    int ret = inc_refs(c, l1_offset, l1_size * 8);
    if (ret < 0 || l1_size == 0) {
        return ret;
    }
    CLEANUP_FREE uint64_t *l1 = NULL;
    ret = read_table(c, l1_offset, l1_size, &l1);
    if (ret < 0) {
        fprintf(stderr, "ERROR: I/O error in check_refcounts_l1\n");
        c->res->check_errors++;
        return ret;
    }
    for (uint64_t i = 0; i < l1_size; i++) {
        uint64_t l2_offset = l1[i] & QCOW2_L1E_OFFSET_MASK;
        if (!l2_offset) {
            continue;
        }
        ret = inc_refs(c, l2_offset, c->s->cluster_size);
        if (ret < 0) {
            return ret;
        }
        if (l2_offset & (c->s->cluster_size - 1)) {
            fprintf(stderr, "ERROR l2_offset=%" PRIx64 ": Table is not "
                    "cluster aligned; L1 entry corrupted\n", l2_offset);
            c->res->corruptions++;
            continue;
        }
        ret = check_l2(c, l2_offset, active);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* Walks the snapshot table: each entry's L1 table and its L2 tables are
 * referenced, as is the table itself. */
static int check_snapshots(CheckCtx *c)
{
    const Qcow2Header *h = &c->s->header;
    uint64_t off = h->snapshots_offset;

    for (uint32_t i = 0; i < h->nb_snapshots; i++) {
        uint8_t e[40];
        int ret = block_read(c->bs->file, off, sizeof(e), e, 0);
        if (ret < 0) {
            c->res->check_errors++;
            return ret;
        }
        uint64_t l1_offset = get_be64(e);
        uint32_t l1_size = (uint32_t)(get_be64(e + 8) >> 32);
        uint16_t id_len = (uint16_t)((e[12] << 8) | e[13]);
        uint16_t name_len = (uint16_t)((e[14] << 8) | e[15]);
        uint32_t extra = ((uint32_t)e[36] << 24) | ((uint32_t)e[37] << 16) |
                         ((uint32_t)e[38] << 8) | e[39];
        if (l1_offset & (c->s->cluster_size - 1) ||
            l1_size > QCOW2_MAX_L1_BYTES / 8) {
            fprintf(stderr, "ERROR snapshot %" PRIu32 " has an invalid L1 "
                    "table (offset 0x%" PRIx64 ", %" PRIu32 " entries)\n",
                    i, l1_offset, l1_size);
            c->res->corruptions++;
        } else {
            ret = check_l1(c, l1_offset, l1_size, false);
            if (ret < 0) {
                return ret;
            }
        }
        off += ALIGN_UP(40ull + extra + id_len + name_len, 8);
    }
    return inc_refs(c, h->snapshots_offset, off - h->snapshots_offset);
}

static int check_refblocks(CheckCtx *c, uint64_t nb_clusters)
{
    BDRVQcow2State *s = c->s;
    for (uint64_t i = 0; i < s->reftable_entries; i++) {
        uint64_t off = s->reftable[i] & QCOW2_REFT_OFFSET_MASK;
        uint64_t cl = off >> s->cluster_bits;
        if (!off) {
            continue;
        }
        if (off & (s->cluster_size - 1)) {
            fprintf(stderr, "ERROR refcount block %" PRIu64 " is not cluster "
                    "aligned; refcount table entry corrupted\n", i);
            c->res->corruptions++;
            continue;
        }
        if (cl >= nb_clusters) {
            fprintf(stderr, "ERROR refcount block %" PRIu64 " is outside "
                    "image\n", i);
            c->res->corruptions++;
            continue;
        }
        int ret = inc_refs(c, off, s->cluster_size);
        if (ret < 0) {
            return ret;
        }
        if (c->refs[cl] != 1) {
            fprintf(stderr, "ERROR refcount block %" PRIu64 " refcount=%"
                    PRIu64 "\n", i, c->refs[cl]);
            c->res->corruptions++;
        }
    }
    return 0;
}

static int compare_refcounts(CheckCtx *c, uint64_t *highest)
{
    for (uint64_t i = 0; i < c->nb_refs; i++) {
        uint64_t stored;
        int ret = qcow2_get_refcount(c->bs, i, &stored);
        if (ret < 0) {
            fprintf(stderr, "Can't get refcount for cluster %" PRIu64 ": %s\n",
                    i, strerror(-ret));
            c->res->check_errors++;
            continue;
        }
        uint64_t want = c->refs[i];
        if (stored || want) {
            *highest = i;
        }
        if (stored == want) {
            continue;
        }
        bool leak = stored > want;
        bool fix = leak ? (c->fix & BLOCK_FIX_LEAKS)
                        : (c->fix & BLOCK_FIX_ERRORS);
        if (fix) {
            ret = qcow2_set_refcount(c->bs, i, want);
            fix = ret == 0;
        }
        fprintf(stderr, "%s cluster %" PRIu64 " refcount=%" PRIu64
                " reference=%" PRIu64 "\n",
                fix ? "Repairing" : leak ? "Leaked" : "ERROR", i, stored,
                want);
        if (leak) {
            fix ? c->res->leaks_fixed++ : c->res->leaks++;
        } else {
            fix ? c->res->corruptions_fixed++ : c->res->corruptions++;
        }
    }
    return 0;
}

/* COPIED must be set exactly when the refcount is 1. */
static int check_oflag_copied(CheckCtx *c)
{
    BDRVQcow2State *s = c->s;
    const Qcow2Header *h = &s->header;
    bool fix = c->fix & BLOCK_FIX_ERRORS;
    CLEANUP_FREE uint64_t *l1 = NULL;
    int ret = read_table(c, h->l1_table_offset, h->l1_size, &l1);
    if (ret < 0) {
        c->res->check_errors++;
        return ret;
    }

    for (uint64_t i = 0; i < h->l1_size; i++) {
        uint64_t l2_offset = l1[i] & QCOW2_L1E_OFFSET_MASK;
        uint64_t rc;
        if (!l2_offset || (l2_offset & (s->cluster_size - 1))) {
            continue;
        }
        ret = qcow2_get_refcount(c->bs, l2_offset >> s->cluster_bits, &rc);
        if (ret < 0) {
            continue;
        }
        if ((rc == 1) != !!(l1[i] & QCOW2_OFLAG_COPIED)) {
            uint64_t fixed = rc == 1 ? l1[i] | QCOW2_OFLAG_COPIED
                                     : l1[i] & ~QCOW2_OFLAG_COPIED;
            bool done = fix && write_entry(c, h->l1_table_offset + i * 8,
                                           fixed) == 0;
            fprintf(stderr, "%s OFLAG_COPIED L2 cluster: l1_index=%" PRIu64
                    " l1_entry=%" PRIx64 " refcount=%" PRIu64 "\n",
                    done ? "Repairing" : "ERROR", i, l1[i], rc);
            done ? c->res->corruptions_fixed++ : c->res->corruptions++;
        }

        CLEANUP_FREE uint64_t *l2 = NULL;
        ret = read_table(c, l2_offset, s->l2_entries, &l2);
        if (ret < 0) {
            c->res->check_errors++;
            continue;
        }
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            Qcow2ClusterType t = qcow2_l2e_type(l2[j]);
            uint64_t off = l2[j] & QCOW2_L2E_OFFSET_MASK;
            if ((t != QCOW2_CLUSTER_NORMAL && t != QCOW2_CLUSTER_ZERO_ALLOC) ||
                (off & (s->cluster_size - 1))) {
                continue;
            }
            ret = qcow2_get_refcount(c->bs, off >> s->cluster_bits, &rc);
            if (ret < 0) {
                continue;
            }
            if ((rc == 1) != !!(l2[j] & QCOW2_OFLAG_COPIED)) {
                uint64_t fixed = rc == 1 ? l2[j] | QCOW2_OFLAG_COPIED
                                         : l2[j] & ~QCOW2_OFLAG_COPIED;
                bool done = fix && write_entry(c, l2_offset + j * 8,
                                               fixed) == 0;
                fprintf(stderr, "%s OFLAG_COPIED data cluster: l2_entry=%"
                        PRIx64 " refcount=%" PRIu64 "\n",
                        done ? "Repairing" : "ERROR", l2[j], rc);
                done ? c->res->corruptions_fixed++ : c->res->corruptions++;
            }
        }
    }
    return 0;
}

int qcow2_check(BlockNode *bs, BlockCheckResult *res, int fix)
{
    BDRVQcow2State *s = bs->opaque;
    CheckCtx c = { .bs = bs, .s = s, .res = res, .fix = fix };
    uint64_t highest = 0;
    int ret;

    memset(res, 0, sizeof(*res));
    ret = qcow2_flush_caches(bs);
    if (ret < 0) {
        res->check_errors++;
        return ret;
    }

    uint64_t file_size = block_node_size(bs->file);
    uint64_t nb_clusters = DIV_ROUND_UP(file_size, s->cluster_size);
    res->bfi.total_clusters = DIV_ROUND_UP(block_node_size(bs),
                                           s->cluster_size);
    c.nb_refs = nb_clusters;
    c.refs = calloc(nb_clusters ? nb_clusters : 1, sizeof(uint64_t));
    if (!c.refs) {
        return -ENOMEM;
    }

    const Qcow2Header *h = &s->header;
    if ((ret = inc_refs(&c, 0, s->cluster_size)) < 0 ||
        (ret = check_l1(&c, h->l1_table_offset, h->l1_size, true)) < 0 ||
        (ret = check_snapshots(&c)) < 0 ||
        (ret = inc_refs(&c, h->refcount_table_offset,
                        (uint64_t)h->refcount_table_clusters *
                        s->cluster_size)) < 0 ||
        (ret = check_refblocks(&c, nb_clusters)) < 0 ||
        (ret = compare_refcounts(&c, &highest)) < 0) {
        goto out;
    }
    if (fix && (res->leaks_fixed || res->corruptions_fixed)) {
        ret = qcow2_flush_caches(bs);
        if (ret < 0) {
            res->check_errors++;
            goto out;
        }
    }
    ret = check_oflag_copied(&c);
    if (ret < 0) {
        goto out;
    }
    res->image_end_offset = (int64_t)((highest + 1) * s->cluster_size);

    if (c.rewrote_tables) {
        Error *err = NULL;
        if (!qcow2_reload_metadata(bs, &err)) {
            fprintf(stderr, "ERROR: could not reload the repaired metadata: "
                    "%s\n", error_get_pretty(err));
            error_free(err);
            res->check_errors++;
            ret = -EIO;
            goto out;
        }
    }
    /* A clean result clears the dirty and corrupt bits, as QEMU does. */
    if (fix && res->check_errors == 0 && res->corruptions == 0 &&
        (s->header.incompatible_features &
         (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT))) {
        s->header.incompatible_features &= ~(QCOW2_INCOMPAT_DIRTY |
                                             QCOW2_INCOMPAT_CORRUPT);
        ret = qcow2_update_header(bs);
        if (ret < 0) {
            res->check_errors++;
            goto out;
        }
    }
    ret = 0;
out:
    free(c.refs);
    return ret;
}
