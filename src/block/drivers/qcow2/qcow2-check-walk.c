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
#define BME_OFFSET_MASK     0x00fffffffffffe00ull
#define BME_RESERVED_MASK   0xff000000000001feull
#define BME_ALL_ONES        1ull
#define SNAPSHOT_HEADER_LEN 40
#define BITMAP_DIR_ENTRY_LEN 24

static uint64_t be64_at(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return be64toh(v);
}

static uint32_t be32_at(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return be32toh(v);
}

static uint16_t be16_at(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

/* Reads a table of big-endian 64-bit entries as host-endian values. */
static int read_table(Qcow2Check *c, uint64_t offset, uint64_t entries,
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
 * entry (no host cluster). */
static int fix_l2_entry_by_zero(Qcow2Check *c, BlockCheckResult *res,
                                uint64_t l2_offset, uint64_t *l2,
                                uint64_t index, bool active, bool *overlap)
{
    uint64_t entry_offset = l2_offset + index * 8;
    uint64_t be = htobe64(QCOW2_OFLAG_ZERO);
    l2[index] = QCOW2_OFLAG_ZERO;
    *overlap = qcow2_meta_overlap(c->s, entry_offset, 8,
                                  active ? QCOW2_META_L2 : QCOW2_META_NONE) !=
               QCOW2_META_NONE;
    if (*overlap) {
        fprintf(stderr, "ERROR: Overlap check failed\n");
        res->check_errors++;
        return -EIO;
    }
    int ret = block_write(c->bs->file, entry_offset, 8, &be, 0);
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
    int ret = read_table(c, l2_offset, s->l2_entries, &l2);
    if (ret < 0) {
        fprintf(stderr, "ERROR: I/O error in check_refcounts_l2\n");
        res->check_errors++;
        return ret;
    }

    for (uint64_t i = 0; i < s->l2_entries; i++) {
        uint64_t e = l2[i];
        Qcow2ClusterType type = qcow2_l2e_type(e);

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
            if (offset & (s->cluster_size - 1)) {
                res->corruptions++;
                if (e & QCOW2_OFLAG_ZERO) {
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
            ret = qcow2_imrt_inc(c, res, offset, s->cluster_size);
            if (ret < 0) {
                return ret;
            }
            break;
        }
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
    ret = read_table(c, l1_offset, l1_size, &l1);
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

void qcow2_check_free_snapshots(Qcow2Check *c)
{
    for (uint32_t i = 0; i < c->nb_snapshots; i++) {
        free(c->snapshots[i].id);
        free(c->snapshots[i].name);
    }
    free(c->snapshots);
    c->snapshots = NULL;
    c->nb_snapshots = 0;
}

static char *read_string(Qcow2Check *c, uint64_t offset, uint16_t len)
{
    char *str = calloc(1, (size_t)len + 1);
    if (str && len && block_read(c->bs->file, offset, len, str, 0) < 0) {
        free(str);
        return NULL;
    }
    return str;
}

int qcow2_check_read_snapshots(Qcow2Check *c, BlockCheckResult *res)
{
    const Qcow2Header *h = &c->s->header;
    uint64_t offset = h->snapshots_offset;

    c->snapshots_size = 0;
    if (h->nb_snapshots == 0) {
        return 0;
    }
    c->snapshots = calloc(h->nb_snapshots, sizeof(*c->snapshots));
    if (!c->snapshots) {
        res->check_errors++;
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < h->nb_snapshots; i++) {
        uint8_t e[SNAPSHOT_HEADER_LEN];
        offset = ALIGN_UP(offset, 8);
        int ret = block_read(c->bs->file, offset, sizeof(e), e, 0);
        if (ret < 0) {
            fprintf(stderr, "qcow2: Failed to read the snapshot table: %s\n",
                    strerror(-ret));
            res->check_errors++;
            return ret;
        }
        Qcow2CheckSnapshot *sn = &c->snapshots[c->nb_snapshots++];
        uint16_t id_len = be16_at(e + 12), name_len = be16_at(e + 14);
        uint32_t extra = be32_at(e + 36);
        sn->l1_offset = be64_at(e);
        sn->l1_size = be32_at(e + 8);
        offset += sizeof(e) + extra;
        sn->id = read_string(c, offset, id_len);
        offset += id_len;
        sn->name = read_string(c, offset, name_len);
        offset += name_len;
        if (!sn->id || !sn->name) {
            res->check_errors++;
            return -EIO;
        }
    }
    c->snapshots_size = offset - h->snapshots_offset;
    return 0;
}

/* Persistent dirty bitmaps: the directory, each bitmap table and the
 * clusters the tables point to. */
static int count_bitmaps(Qcow2Check *c, BlockCheckResult *res)
{
    const Qcow2Header *h = &c->s->header;
    const Qcow2Extension *ext = NULL;
    for (size_t i = 0; i < h->nb_unknown_ext; i++) {
        if (h->unknown_ext[i].type == QCOW2_EXT_BITMAPS) {
            ext = &h->unknown_ext[i];
        }
    }
    /* QEMU ignores the extension once a writer dropped the autoclear bit
     * (the bitmaps are inconsistent then). */
    if (!ext || ext->len < 24 ||
        !(h->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS)) {
        return 0;
    }
    uint32_t nb_bitmaps = be32_at(ext->data);
    uint64_t dir_size = be64_at(ext->data + 8);
    uint64_t dir_offset = be64_at(ext->data + 16);
    if (nb_bitmaps == 0) {
        return 0;
    }
    int ret = qcow2_imrt_inc(c, res, dir_offset, dir_size);
    if (ret < 0) {
        return ret;
    }
    if (dir_size > (64u << 20)) {
        res->corruptions++;
        return -EINVAL;
    }
    CLEANUP_FREE uint8_t *dir = malloc(MAX(dir_size, 1));
    if (!dir) {
        res->check_errors++;
        return -ENOMEM;
    }
    ret = block_read(c->bs->file, dir_offset, dir_size, dir, 0);
    if (ret < 0) {
        res->corruptions++;
        return -EINVAL;
    }
    uint64_t pos = 0;
    for (uint32_t n = 0; n < nb_bitmaps; n++) {
        if (pos + BITMAP_DIR_ENTRY_LEN > dir_size) {
            res->corruptions++;
            return -EINVAL;
        }
        const uint8_t *e = dir + pos;
        uint64_t table_offset = be64_at(e);
        uint32_t table_size = be32_at(e + 8);
        uint16_t name_size = be16_at(e + 18);
        uint32_t extra = be32_at(e + 20);
        pos = ALIGN_UP(pos + BITMAP_DIR_ENTRY_LEN + extra + name_size, 8);

        ret = qcow2_imrt_inc(c, res, table_offset, (uint64_t)table_size * 8);
        if (ret < 0) {
            return ret;
        }
        CLEANUP_FREE uint64_t *table = NULL;
        ret = read_table(c, table_offset, table_size, &table);
        if (ret < 0) {
            res->check_errors++;
            return ret;
        }
        for (uint32_t i = 0; i < table_size; i++) {
            uint64_t entry = table[i];
            uint64_t offset = entry & BME_OFFSET_MASK;
            if ((entry & BME_RESERVED_MASK) ||
                (offset & (c->s->cluster_size - 1)) ||
                ((entry & BME_ALL_ONES) && offset)) {
                res->corruptions++;
                continue;
            }
            if (offset) {
                ret = qcow2_imrt_inc(c, res, offset, c->s->cluster_size);
                if (ret < 0) {
                    return ret;
                }
            }
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
                error_report_err(err);
                *rebuild = true;
                fprintf(stderr, "ERROR could not resize image: %s\n",
                        strerror(EIO));
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
    ret = count_bitmaps(c, res);
    if (ret < 0) {
        return ret;
    }
    return count_refblocks(c, res, fix, rebuild);
}
