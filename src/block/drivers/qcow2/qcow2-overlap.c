/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 metadata overlap check.
 *
 * Every write to the image file is checked against the set of host
 * clusters that hold metadata (header, active L1, L2 tables, refcount
 * table and blocks, snapshot table) so a corrupt L2 entry can never make
 * a guest write overwrite metadata.  The set is an open-addressing hash
 * of cluster index -> type, so a check costs one probe per cluster.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2.h"
#include "util/cleanup.h"

/* Slot value: (cluster index + 1) << 3 | type; 0 = empty. */
#define SLOT_TYPE(v) ((Qcow2MetaType)((v) & 7))
#define SLOT_CLUSTER(v) (((v) >> 3) - 1)

const char *qcow2_meta_type_name(Qcow2MetaType type)
{
    switch (type) {
    case QCOW2_META_HEADER:    return "qcow2_header";
    case QCOW2_META_L1:        return "active L1 table";
    case QCOW2_META_L2:        return "active L2 table";
    case QCOW2_META_REFTABLE:  return "refcount table";
    case QCOW2_META_REFBLOCK:  return "refcount block";
    case QCOW2_META_SNAPSHOTS: return "snapshot table";
    default:                   return "metadata";
    }
}

static uint64_t slot_of(uint64_t cluster, uint64_t cap)
{
    return (cluster * 0x9e3779b97f4a7c15ull >> 20) & (cap - 1);
}

static int64_t find_slot(const BDRVQcow2State *s, uint64_t cluster)
{
    if (!s->meta_set_cap) {
        return -1;
    }
    for (uint64_t i = slot_of(cluster, s->meta_set_cap);;
         i = (i + 1) & (s->meta_set_cap - 1)) {
        uint64_t v = s->meta_set[i];
        if (v == 0) {
            return -1;
        }
        if (SLOT_CLUSTER(v) == cluster) {
            return (int64_t)i;
        }
    }
}

static void insert_slot(uint64_t *set, uint64_t cap, uint64_t value)
{
    uint64_t i = slot_of(SLOT_CLUSTER(value), cap);
    while (set[i] != 0) {
        i = (i + 1) & (cap - 1);
    }
    set[i] = value;
}

static int grow_set(BDRVQcow2State *s)
{
    uint64_t cap = s->meta_set_cap ? s->meta_set_cap * 2 : 1024;
    uint64_t *set = calloc(cap, sizeof(*set));
    if (!set) {
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < s->meta_set_cap; i++) {
        if (s->meta_set[i]) {
            insert_slot(set, cap, s->meta_set[i]);
        }
    }
    free(s->meta_set);
    s->meta_set = set;
    s->meta_set_cap = cap;
    return 0;
}

int qcow2_meta_add(BDRVQcow2State *s, uint64_t offset, uint64_t len,
                   Qcow2MetaType type)
{
    if (len == 0) {
        return 0;
    }
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + len - 1) >> s->cluster_bits;
    for (uint64_t c = first; c <= last; c++) {
        int64_t i = find_slot(s, c);
        if (i >= 0) {
            continue; /* first type wins: it is what a write would hit */
        }
        if ((s->meta_set_count + 1) * 2 > s->meta_set_cap) {
            int ret = grow_set(s);
            if (ret < 0) {
                return ret;
            }
        }
        insert_slot(s->meta_set, s->meta_set_cap, ((c + 1) << 3) | type);
        s->meta_set_count++;
    }
    return 0;
}

void qcow2_meta_remove(BDRVQcow2State *s, uint64_t offset, uint64_t len)
{
    if (len == 0) {
        return;
    }
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + len - 1) >> s->cluster_bits;
    uint64_t mask = s->meta_set_cap - 1;
    for (uint64_t c = first; c <= last; c++) {
        int64_t found = find_slot(s, c);
        if (found < 0) {
            continue;
        }
        /* Backward-shift deletion keeps probe chains intact. */
        uint64_t hole = (uint64_t)found;
        s->meta_set[hole] = 0;
        s->meta_set_count--;
        for (uint64_t j = (hole + 1) & mask; s->meta_set[j];
             j = (j + 1) & mask) {
            uint64_t home = slot_of(SLOT_CLUSTER(s->meta_set[j]),
                                    s->meta_set_cap);
            /* Move j into the hole unless its home lies cyclically in
             * (hole, j]. */
            bool stays = hole <= j ? (home > hole && home <= j)
                                   : (home > hole || home <= j);
            if (!stays) {
                s->meta_set[hole] = s->meta_set[j];
                s->meta_set[j] = 0;
                hole = j;
            }
        }
    }
}

void qcow2_meta_clear(BDRVQcow2State *s)
{
    free(s->meta_set);
    s->meta_set = NULL;
    s->meta_set_cap = 0;
    s->meta_set_count = 0;
}

Qcow2MetaType qcow2_meta_overlap(BDRVQcow2State *s, uint64_t offset,
                                 uint64_t len, Qcow2MetaType ignore)
{
    if (len == 0 || s->meta_set_count == 0) {
        return QCOW2_META_NONE;
    }
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + len - 1) >> s->cluster_bits;
    for (uint64_t c = first; c <= last; c++) {
        int64_t i = find_slot(s, c);
        if (i >= 0) {
            Qcow2MetaType t = SLOT_TYPE(s->meta_set[i]);
            if (t != ignore) {
                return t;
            }
        }
    }
    return QCOW2_META_NONE;
}

int qcow2_meta_rebuild_locked(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    int ret;

    qcow2_meta_clear(s);
    ret = qcow2_meta_add(s, 0, cs, QCOW2_META_HEADER);
    if (ret < 0) {
        return ret;
    }
    ret = qcow2_meta_add(s, s->l1_table_offset,
                         (uint64_t)s->l1_size * sizeof(uint64_t),
                         QCOW2_META_L1);
    if (ret < 0) {
        return ret;
    }
    ret = qcow2_meta_add(s, s->reftable_offset,
                         s->reftable_entries * sizeof(uint64_t),
                         QCOW2_META_REFTABLE);
    if (ret < 0) {
        return ret;
    }
    uint64_t meta_end = 0;
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t l2 = s->l1_table[i] & QCOW2_L1E_OFFSET_MASK;
        if (l2) {
            ret = qcow2_meta_add(s, l2, cs, QCOW2_META_L2);
            if (ret < 0) {
                return ret;
            }
            meta_end = MAX(meta_end, l2 + cs);
        }
    }
    for (uint64_t i = 0; i < s->reftable_entries; i++) {
        uint64_t rb = s->reftable[i] & QCOW2_REFT_OFFSET_MASK;
        if (rb) {
            ret = qcow2_meta_add(s, rb, cs, QCOW2_META_REFBLOCK);
            if (ret < 0) {
                return ret;
            }
            meta_end = MAX(meta_end, rb + cs);
        }
    }
    if (s->header.nb_snapshots && s->header.snapshots_offset) {
        ret = qcow2_meta_add(s, s->header.snapshots_offset, cs,
                             QCOW2_META_SNAPSHOTS);
        if (ret < 0) {
            return ret;
        }
    }
    /* Never allocate over a table, even one a corrupt image placed past
     * the end of the file. */
    meta_end = ALIGN_UP(meta_end, cs);
    if (meta_end > s->next_alloc && meta_end <= QCOW2_MAX_HOST_OFFSET) {
        s->next_alloc = meta_end;
    }
    return 0;
}
