/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 creation layout (see qcow2-create-layout.h).
 *
 * A small in-memory model of the refcount structures replays the order
 * in which qemu-img allocates clusters while it creates an image, so the
 * structures land at the same offsets.  The model follows the rules of
 * QEMU's allocator: a cursor that only moves forward except when
 * clusters are freed or a refcount block allocation makes the caller
 * restart its search; refcount blocks placed at the first free cluster
 * (describing themselves when they can); a new refcount area (table plus
 * self-describing blocks) at the end when the table is full.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-create-layout.h"
#include "block/drivers/qcow2/qcow2-format.h"
#include "block/drivers/qcow2/qcow2.h"
#include "util/cleanup.h"

typedef struct Sim {
    unsigned cluster_bits;
    uint64_t cs;
    unsigned refcount_order;
    unsigned rb_bits;        /* log2 of refcounts per block */
    uint64_t rb_size;
    uint64_t refcount_max;

    uint64_t *reftable;      /* host offsets of refcount blocks */
    uint64_t rt_size;        /* entries */
    uint64_t rt_offset;
    /* Refcounts of the clusters each reftable index covers (values are
     * tiny during creation). */
    uint8_t **blocks;
    uint64_t blocks_cap;

    uint64_t free_idx;       /* allocation cursor (cluster index) */

    /* Refcount tables replaced during creation: QEMU frees them but their
     * last contents stay on disk, and we reproduce that byte for byte. */
    Qcow2LayoutBuf *stale;
    size_t nb_stale;
} Sim;

static bool sim_reserve_blocks(Sim *s, uint64_t n)
{
    if (n <= s->blocks_cap) {
        return true;
    }
    uint64_t cap = MAX(n, s->blocks_cap * 2);
    uint8_t **b = realloc(s->blocks, cap * sizeof(*b));
    if (!b) {
        return false;
    }
    memset(b + s->blocks_cap, 0, (cap - s->blocks_cap) * sizeof(*b));
    s->blocks = b;
    s->blocks_cap = cap;
    return true;
}

static int sim_new_block(Sim *s, uint64_t ti)
{
    if (!sim_reserve_blocks(s, ti + 1)) {
        return -ENOMEM;
    }
    free(s->blocks[ti]);
    s->blocks[ti] = calloc(s->rb_size, 1);
    return s->blocks[ti] ? 0 : -ENOMEM;
}

static uint64_t sim_get(const Sim *s, uint64_t cluster)
{
    uint64_t ti = cluster >> s->rb_bits;
    if (ti >= s->rt_size || !s->reftable[ti] || ti >= s->blocks_cap ||
        !s->blocks[ti]) {
        return 0;
    }
    return s->blocks[ti][cluster & (s->rb_size - 1)];
}

static int64_t sim_alloc_noref(Sim *s, uint64_t nb)
{
retry:
    for (uint64_t i = 0; i < nb; i++) {
        uint64_t c = s->free_idx++;
        if (sim_get(s, c) != 0) {
            goto retry;
        }
    }
    if ((s->free_idx << s->cluster_bits) > QCOW2_MAX_HOST_OFFSET) {
        return -EFBIG;
    }
    return (int64_t)(s->free_idx - nb);
}

static int sim_update(Sim *s, uint64_t offset, uint64_t length, bool decrease);

/* Fixed point of "every cluster, including the refcount structures
 * themselves, is counted" (QEMU's qcow2_refcount_metadata_size). */
uint64_t qcow2_refblocks_needed(uint64_t clusters, uint64_t cluster_size,
                                uint64_t refblock_entries, bool generous)
{
    uint64_t per_table_cluster = cluster_size / 8;
    uint64_t table = 0, blocks = 0, n = 0, last;

    do {
        last = n;
        blocks = DIV_ROUND_UP(clusters + table + blocks, refblock_entries);
        table = DIV_ROUND_UP(blocks, per_table_cluster);
        n = clusters + blocks + table;
        if (n == last && generous) {
            clusters += DIV_ROUND_UP(table, 2);
            n = 0;
            generous = false;
        }
    } while (n != last);
    return blocks;
}

static uint64_t refblocks_needed(const Sim *s, uint64_t clusters,
                                 bool generous)
{
    return qcow2_refblocks_needed(clusters, s->cs, s->rb_size, generous);
}

/* Writes a new refcount table and the refcount blocks it lacks at
 * start_offset (the end of the image), covering themselves and
 * additional clusters after them; frees the old table.  Returns the end
 * of the new structures (where the additional clusters go). */
static int64_t sim_refcount_area(Sim *s, uint64_t start_offset,
                                 uint64_t additional, bool exact,
                                 uint64_t new_index, uint64_t new_offset)
{
    uint64_t total = refblocks_needed(s, start_offset / s->cs + additional,
                                      !exact);
    if (total > QCOW2_MAX_REFTABLE_BYTES) {
        return -EFBIG;
    }
    uint64_t area_index = (start_offset / s->cs) / s->rb_size;
    uint64_t table_size = exact ? total : total + DIV_ROUND_UP(total, 2);
    table_size = ALIGN_UP(table_size, s->cs / 8);
    uint64_t table_clusters = table_size * 8 / s->cs;
    if (table_size > QCOW2_MAX_REFTABLE_BYTES) {
        return -EFBIG;
    }

    uint64_t *table = calloc(table_size, sizeof(*table));
    if (!table) {
        return -ENOMEM;
    }
    memcpy(table, s->reftable, MIN(table_size, s->rt_size) * sizeof(*table));
    if (new_offset) {
        table[new_index] = new_offset;
    }

    uint64_t missing = 0;
    for (uint64_t i = area_index; i < total; i++) {
        missing += !table[i];
    }
    uint64_t table_offset = start_offset + missing * s->cs;
    uint64_t end_offset = table_offset + table_clusters * s->cs;

    uint64_t block_offset = start_offset;
    for (uint64_t i = area_index; i < total; i++) {
        if (!table[i]) {
            if (sim_new_block(s, i) < 0) {
                free(table);
                return -ENOMEM;
            }
            table[i] = block_offset;
            block_offset += s->cs;
        } else if (!sim_reserve_blocks(s, i + 1) ||
                   (!s->blocks[i] && sim_new_block(s, i) < 0)) {
            free(table);
            return -ENOMEM;
        }
        uint64_t first = i * s->rb_size * s->cs;
        if (first < end_offset) {
            uint64_t j = first < start_offset ? (start_offset - first) / s->cs
                                              : 0;
            uint64_t end = MIN((end_offset - first) / s->cs, s->rb_size);
            for (; j < end; j++) {
                s->blocks[i][j] = 1;
            }
        }
    }

    uint64_t old_offset = s->rt_offset, old_size = s->rt_size;
    Qcow2LayoutBuf *st = realloc(s->stale, (s->nb_stale + 1) * sizeof(*st));
    uint8_t *old = malloc(old_size * 8);
    if (st) {
        s->stale = st;
    }
    if (!st || !old) {
        free(old);
        free(table);
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < old_size; i++) {
        for (int k = 0; k < 8; k++) {
            old[i * 8 + k] = s->reftable[i] >> (56 - 8 * k);
        }
    }
    st[s->nb_stale++] = (Qcow2LayoutBuf){ old_offset, old_size * 8, old };
    free(s->reftable);
    s->reftable = table;
    s->rt_size = table_size;
    s->rt_offset = table_offset;
    int ret = sim_update(s, old_offset, old_size * 8, true);
    return ret < 0 ? ret : (int64_t)end_offset;
}

static int sim_alloc_refblock(Sim *s, uint64_t cluster)
{
    uint64_t ti = cluster >> s->rb_bits;
    if (ti < s->rt_size && s->reftable[ti]) {
        return 0;
    }

    int64_t nb = sim_alloc_noref(s, 1);
    if (nb < 0) {
        return (int)nb;
    }
    if (nb == 0) {
        return -EIO;
    }
    int ret;
    if (((uint64_t)nb >> s->rb_bits) == ti) {
        ret = sim_new_block(s, ti);
        if (ret < 0) {
            return ret;
        }
        s->blocks[ti][nb & (s->rb_size - 1)] = 1;
    } else {
        ret = sim_update(s, (uint64_t)nb << s->cluster_bits, s->cs, false);
        if (ret < 0) {
            return ret;
        }
        ret = sim_new_block(s, ti);
        if (ret < 0) {
            return ret;
        }
    }

    if (ti < s->rt_size) {
        s->reftable[ti] = (uint64_t)nb << s->cluster_bits;
        return -EAGAIN; /* the block may sit where the caller looked */
    }

    uint64_t used = DIV_ROUND_UP(MAX(cluster + 1, (uint64_t)nb + 1),
                                 s->rb_size);
    int64_t r = sim_refcount_area(s, used * s->rb_size * s->cs, 0, false, ti,
                                  (uint64_t)nb << s->cluster_bits);
    return r < 0 ? (int)r : -EAGAIN;
}

static int sim_update(Sim *s, uint64_t offset, uint64_t length, bool decrease)
{
    if (length == 0) {
        return 0;
    }
    uint64_t start = offset >> s->cluster_bits;
    uint64_t last = (offset + length - 1) >> s->cluster_bits;
    uint64_t old_ti = UINT64_MAX;
    uint64_t c;
    int ret = 0;

    for (c = start; c <= last; c++) {
        uint64_t ti = c >> s->rb_bits;
        if (ti != old_ti) {
            ret = sim_alloc_refblock(s, c);
            if (ret == -EAGAIN && s->free_idx > start) {
                s->free_idx = start;
            }
            if (ret < 0) {
                break;
            }
        }
        old_ti = ti;
        uint8_t *r = &s->blocks[ti][c & (s->rb_size - 1)];
        if (decrease ? *r == 0 : *r >= s->refcount_max || *r == UINT8_MAX) {
            ret = -EINVAL;
            break;
        }
        *r = decrease ? *r - 1 : *r + 1;
        if (*r == 0 && c < s->free_idx) {
            s->free_idx = c;
        }
    }
    if (ret < 0) {
        sim_update(s, offset, (c << s->cluster_bits) - offset, !decrease);
    }
    return ret;
}

static int64_t sim_alloc(Sim *s, uint64_t bytes)
{
    uint64_t nb = DIV_ROUND_UP(bytes, s->cs);
    int64_t c;
    int ret;

    do {
        c = sim_alloc_noref(s, nb);
        if (c < 0) {
            return c;
        }
        ret = sim_update(s, (uint64_t)c << s->cluster_bits, bytes, false);
    } while (ret == -EAGAIN);
    return ret < 0 ? ret : c << s->cluster_bits;
}

static void sim_free(Sim *s)
{
    for (uint64_t i = 0; i < s->blocks_cap; i++) {
        free(s->blocks[i]);
    }
    free(s->blocks);
    free(s->reftable);
    for (size_t i = 0; i < s->nb_stale; i++) {
        free(s->stale[i].data);
    }
    free(s->stale);
}

/* ---- building the layout ---- */

typedef struct Builder {
    Sim sim;
    const Qcow2CreateParams *p;
    Qcow2Layout *l;
    uint64_t *l1;
    uint64_t l1_size;
    uint64_t l1_offset;
    uint64_t end;            /* highest byte written so far */
} Builder;

static bool add_buf(Qcow2Layout *l, uint64_t offset, uint64_t len,
                    uint8_t *data)
{
    Qcow2LayoutBuf *b = realloc(l->bufs, (l->nb_bufs + 1) * sizeof(*b));
    if (!b) {
        free(data);
        return false;
    }
    l->bufs = b;
    b[l->nb_bufs++] = (Qcow2LayoutBuf){ offset, len, data };
    return true;
}

static int add_run(Builder *b, uint64_t guest_cluster, uint64_t host,
                   uint64_t nb)
{
    Qcow2Layout *l = b->l;
    Qcow2LayoutRun *r = realloc(l->runs, (l->nb_runs + 1) * sizeof(*r));
    if (!r) {
        return -ENOMEM;
    }
    l->runs = r;
    r[l->nb_runs] = (Qcow2LayoutRun){ guest_cluster, host, nb };

    /* Runs come in guest order, so a table's runs are contiguous. */
    uint64_t t = guest_cluster >> (b->sim.cluster_bits - l->l2e_shift);
    for (size_t i = l->nb_l2; i-- > 0;) {
        if (l->l2[i].l1_index == t) {
            if (!l->l2[i].nb_runs) {
                l->l2[i].first_run = l->nb_runs;
            }
            l->l2[i].nb_runs++;
            break;
        }
    }
    l->nb_runs++;
    return 0;
}

/* Returns the L2 table covering guest_cluster, allocating it the way
 * QEMU's get_cluster_table does. */
static int get_l2(Builder *b, uint64_t guest_cluster)
{
    unsigned l2_bits = b->sim.cluster_bits - b->l->l2e_shift;
    uint64_t t = guest_cluster >> l2_bits;
    if (b->l1[t]) {
        return 0;
    }
    int64_t off = sim_alloc(&b->sim, b->sim.cs);
    if (off < 0) {
        return (int)off;
    }
    b->l1[t] = (uint64_t)off | QCOW2_OFLAG_COPIED;
    Qcow2LayoutL2 *l2 = realloc(b->l->l2, (b->l->nb_l2 + 1) * sizeof(*l2));
    if (!l2) {
        return -ENOMEM;
    }
    b->l->l2 = l2;
    l2[b->l->nb_l2++] = (Qcow2LayoutL2){ .offset = (uint64_t)off,
                                         .l1_index = t };
    b->end = MAX(b->end, (uint64_t)off + b->sim.cs);
    return 0;
}

static int prealloc_metadata(Builder *b)
{
    uint64_t cs = b->sim.cs;
    uint64_t l2_entries = cs >> b->l->l2e_shift;
    uint64_t chunk_max = ALIGN_DOWN((uint64_t)INT_MAX, cs);
    uint64_t offset = 0, bytes = b->p->size, cur = 0, host = 0;

    while (bytes) {
        cur = MIN(bytes, chunk_max);
        uint64_t gc = offset / cs;
        uint64_t nb = MIN(DIV_ROUND_UP(cur, cs),
                          l2_entries - (gc & (l2_entries - 1)));
        cur = MIN(cur, nb * cs);
        int ret = get_l2(b, gc);
        if (ret < 0) {
            return ret;
        }
        int64_t h = b->p->data_file ? (int64_t)(gc * cs)
                                    : sim_alloc(&b->sim, nb * cs);
        if (h < 0) {
            return (int)h;
        }
        host = (uint64_t)h;
        ret = add_run(b, gc, host, nb);
        if (ret < 0) {
            return ret;
        }
        bytes -= cur;
        offset += cur;
    }
    if (cur && !b->p->data_file) {
        b->end = MAX(b->end, host + ALIGN_UP(cur, cs));
    }
    return 0;
}

static int prealloc_falloc(Builder *b)
{
    Sim *s = &b->sim;
    uint64_t cs = s->cs;
    uint64_t l2_entries = cs >> b->l->l2e_shift;

    /* The old end of the image: after the last cluster in use. */
    uint64_t last = 0;
    for (uint64_t ti = 0; ti < s->rt_size && ti < s->blocks_cap; ti++) {
        for (uint64_t j = 0; s->reftable[ti] && j < s->rb_size; j++) {
            if (s->blocks[ti][j]) {
                last = (ti << s->rb_bits) + j + 1;
            }
        }
    }
    uint64_t nb_data = DIV_ROUND_UP(b->p->size, cs);
    /* Like QEMU, size the refcount area for the L2 tables too, so that
     * linking the data in needs no new refcount blocks. */
    uint64_t nb_l2 = DIV_ROUND_UP(nb_data, l2_entries);
    int64_t start = sim_refcount_area(s, last * cs, nb_data + nb_l2, true, 0,
                                      0);
    if (start < 0) {
        return (int)start;
    }
    b->l->data_start = (uint64_t)start;
    b->l->data_end = (uint64_t)start + nb_data * cs;
    b->end = MAX(b->end, b->l->data_end);

    /* Refcounts of the data area (the refcount area covers it). */
    int ret;
    do {
        ret = sim_update(s, (uint64_t)start, nb_data * cs, false);
    } while (ret == -EAGAIN);
    if (ret < 0) {
        return ret;
    }

    uint64_t gc = 0, host = (uint64_t)start;
    while (gc < nb_data) {
        uint64_t nb = MIN(nb_data - gc, l2_entries - (gc & (l2_entries - 1)));
        ret = get_l2(b, gc);
        if (ret < 0) {
            return ret;
        }
        ret = add_run(b, gc, host, nb);
        if (ret < 0) {
            return ret;
        }
        gc += nb;
        host += nb * cs;
    }
    return 0;
}

static int grow_l1(Builder *b)
{
    unsigned shift = 2 * b->sim.cluster_bits - b->l->l2e_shift;
    b->l1_size = (b->p->size + (1ull << shift) - 1) >> shift;
    if (b->l1_size > QCOW2_MAX_L1_BYTES / 8) {
        return -EFBIG;
    }
    b->l1 = calloc(MAX(b->l1_size, 1), sizeof(uint64_t));
    if (!b->l1) {
        return -ENOMEM;
    }
    if (b->l1_size == 0) {
        return 0;
    }
    int64_t off = sim_alloc(&b->sim, b->l1_size * 8);
    if (off < 0) {
        return (int)off;
    }
    b->l1_offset = (uint64_t)off;
    b->end = MAX(b->end, b->l1_offset + b->l1_size * 8);
    return 0;
}

static bool emit_header(Builder *b, Error **errp)
{
    const Qcow2CreateParams *p = b->p;
    Qcow2Header h = {
        .version = p->version,
        .cluster_bits = p->cluster_bits,
        .size = p->size,
        .l1_size = (uint32_t)b->l1_size,
        .l1_table_offset = b->l1_offset,
        .refcount_table_offset = b->sim.rt_offset,
        .refcount_table_clusters = (uint32_t)(b->sim.rt_size * 8 / b->sim.cs),
        .refcount_order = p->refcount_order,
        .compression_type = p->compression_type,
        .backing_file = (char *)p->backing_file,
        .backing_format = (char *)p->backing_fmt,
    };
    if (p->compression_type != QCOW2_COMPRESSION_ZLIB) {
        h.incompatible_features |= QCOW2_INCOMPAT_COMPRESSION;
    }
    if (p->extended_l2) {
        h.incompatible_features |= QCOW2_INCOMPAT_EXTL2;
    }
    if (p->lazy_refcounts) {
        h.compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;
    }
    if (p->data_file) {
        h.incompatible_features |= QCOW2_INCOMPAT_DATA_FILE;
        h.data_file = (char *)p->data_file;
    }
    if (p->data_file_raw) {
        h.autoclear_features |= QCOW2_AUTOCLEAR_DATA_RAW;
    }
    uint8_t *buf = malloc(b->sim.cs);
    if (!buf) {
        error_setg(errp, "Out of memory building the qcow2 header");
        return false;
    }
    if (!qcow2_header_encode(&h, buf, b->sim.cs, errp)) {
        free(buf);
        return false;
    }
    b->end = MAX(b->end, b->sim.cs);
    return add_buf(b->l, 0, b->sim.cs, buf);
}

static bool emit_tables(Builder *b)
{
    Sim *s = &b->sim;
    Qcow2Layout *l = b->l;

    /* Stale copies first: the live structures may reuse their clusters. */
    for (size_t i = 0; i < s->nb_stale; i++) {
        Qcow2LayoutBuf *st = &s->stale[i];
        b->end = MAX(b->end, st->offset + st->len);
        if (!add_buf(l, st->offset, st->len, st->data)) {
            st->data = NULL;
            return false;
        }
        st->data = NULL;
    }

    if (b->l1_size) {
        uint8_t *buf = malloc(b->l1_size * 8);
        if (!buf) {
            return false;
        }
        for (uint64_t i = 0; i < b->l1_size; i++) {
            uint64_t v = b->l1[i];
            for (int k = 0; k < 8; k++) {
                buf[i * 8 + k] = v >> (56 - 8 * k);
            }
        }
        if (!add_buf(l, b->l1_offset, b->l1_size * 8, buf)) {
            return false;
        }
    }

    uint8_t *rt = calloc(s->rt_size, 8);
    if (!rt) {
        return false;
    }
    for (uint64_t i = 0; i < s->rt_size; i++) {
        uint64_t v = s->reftable[i];
        for (int k = 0; k < 8; k++) {
            rt[i * 8 + k] = v >> (56 - 8 * k);
        }
        if (!v) {
            continue;
        }
        uint8_t *rb = calloc(1, s->cs);
        if (!rb) {
            free(rt);
            return false;
        }
        for (uint64_t j = 0; j < s->rb_size; j++) {
            if (s->blocks[i][j]) {
                qcow2_refblock_set(rb, j, s->refcount_order, s->blocks[i][j]);
            }
        }
        b->end = MAX(b->end, v + s->cs);
        if (!add_buf(l, v, s->cs, rb)) {
            free(rt);
            return false;
        }
    }
    b->end = MAX(b->end, s->rt_offset + s->rt_size * 8);
    return add_buf(l, s->rt_offset, s->rt_size * 8, rt);
}

static const char *layout_strerror(int ret)
{
    return ret == -EFBIG ? "The image size is too large for file format "
                           "'qcow2' (try using a larger cluster size)"
                         : NULL;
}

bool qcow2_layout_build(const Qcow2CreateParams *p, Qcow2Layout *l,
                        Error **errp)
{
    Builder b = { .p = p, .l = l };
    Sim *s = &b.sim;
    bool ok = false;
    int ret;

    memset(l, 0, sizeof(*l));
    s->cluster_bits = p->cluster_bits;
    s->cs = 1ull << p->cluster_bits;
    s->refcount_order = p->refcount_order;
    s->rb_bits = p->cluster_bits + 3 - p->refcount_order;
    s->rb_size = 1ull << s->rb_bits;
    s->refcount_max = qcow2_refcount_max(p->refcount_order);
    l->cluster_size = s->cs;
    l->l2e_shift = p->extended_l2 ? 4 : 3;

    /* What qemu-img writes before it opens the image: a header, a one
     * cluster refcount table and an empty refcount block. */
    s->rt_size = s->cs / 8;
    s->rt_offset = s->cs;
    s->reftable = calloc(s->rt_size, sizeof(uint64_t));
    if (!s->reftable || sim_new_block(s, 0) < 0) {
        ret = -ENOMEM;
        goto fail;
    }
    s->reftable[0] = 2 * s->cs;
    b.end = 3 * s->cs;

    int64_t first = sim_alloc(s, 3 * s->cs);
    if (first != 0) {
        ret = first < 0 ? (int)first : -EIO;
        goto fail;
    }
    ret = grow_l1(&b);
    /* With a data file, preallocating is mapping: the data file itself
     * is allocated when it is created. */
    if (ret == 0 && (p->prealloc == PREALLOC_METADATA ||
                     (p->data_file && p->prealloc != PREALLOC_OFF))) {
        ret = prealloc_metadata(&b);
    } else if (ret == 0 && (p->prealloc == PREALLOC_FALLOC ||
                            p->prealloc == PREALLOC_FULL)) {
        ret = prealloc_falloc(&b);
    }
    if (ret < 0) {
        goto fail;
    }

    if (!emit_header(&b, errp)) {
        goto out;
    }
    if (!emit_tables(&b)) {
        ret = -ENOMEM;
        goto fail;
    }
    l->file_size = b.end;
    ok = true;
    goto out;

fail:
    if (layout_strerror(ret)) {
        error_setg(errp, "%s", layout_strerror(ret));
    } else {
        error_setg_errno(errp, -ret, "Could not lay out the qcow2 image");
    }
out:
    free(b.l1);
    sim_free(s);
    if (!ok) {
        qcow2_layout_free(l);
    }
    return ok;
}

void qcow2_layout_fill_l2(const Qcow2Layout *l, const Qcow2LayoutL2 *t,
                          uint8_t *buf)
{
    memset(buf, 0, l->cluster_size);
    for (size_t i = 0; i < t->nb_runs; i++) {
        const Qcow2LayoutRun *r = &l->runs[t->first_run + i];
        uint64_t idx = r->guest_cluster &
                       ((l->cluster_size >> l->l2e_shift) - 1);
        for (uint64_t j = 0; j < r->nb; j++) {
            uint64_t v = (r->host_offset + j * l->cluster_size) |
                         QCOW2_OFLAG_COPIED;
            /* Preallocated subclusters stay unallocated (bitmap 0):
             * they read from the backing file, as with QEMU. */
            uint8_t *e = buf + ((idx + j) << l->l2e_shift);
            for (int k = 0; k < 8; k++) {
                e[k] = v >> (56 - 8 * k);
            }
        }
    }
}

void qcow2_layout_free(Qcow2Layout *l)
{
    for (size_t i = 0; i < l->nb_bufs; i++) {
        free(l->bufs[i].data);
    }
    free(l->bufs);
    free(l->l2);
    free(l->runs);
    memset(l, 0, sizeof(*l));
}
