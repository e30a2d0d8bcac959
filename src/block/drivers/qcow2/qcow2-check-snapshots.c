/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 check: the structures beside the active tables that
 * hold references too: the internal snapshot table (each snapshot's L1
 * table is walked like the active one) and persistent dirty bitmaps
 * (directory, bitmap tables and the clusters they point to).
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-check-int.h"
#include "util/cleanup.h"

#define BME_OFFSET_MASK      0x00fffffffffffe00ull
#define BME_RESERVED_MASK    0xff000000000001feull
#define BME_ALL_ONES         1ull
#define SNAPSHOT_HEADER_LEN  40
#define BITMAP_DIR_ENTRY_LEN 24


static uint16_t be16_at(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

/* Reads a table of big-endian 64-bit entries as host-endian values. */void qcow2_check_free_snapshots(Qcow2Check *c)
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
        uint32_t extra = qcow2_be32_at(e + 36);
        sn->l1_offset = qcow2_be64_at(e);
        sn->l1_size = qcow2_be32_at(e + 8);
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
int qcow2_check_count_bitmaps(Qcow2Check *c, BlockCheckResult *res)
{
    const Qcow2Extension *ext = qcow2_bitmaps_extension(&c->s->header);
    if (!ext) {
        return 0;
    }
    uint32_t nb_bitmaps = qcow2_be32_at(ext->data);
    uint64_t dir_size = qcow2_be64_at(ext->data + 8);
    uint64_t dir_offset = qcow2_be64_at(ext->data + 16);
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
        uint64_t table_offset = qcow2_be64_at(e);
        uint32_t table_size = qcow2_be32_at(e + 8);
        uint16_t name_size = be16_at(e + 18);
        uint32_t extra = qcow2_be32_at(e + 20);
        pos = ALIGN_UP(pos + BITMAP_DIR_ENTRY_LEN + extra + name_size, 8);

        ret = qcow2_imrt_inc(c, res, table_offset, (uint64_t)table_size * 8);
        if (ret < 0) {
            return ret;
        }
        CLEANUP_FREE uint64_t *table = NULL;
        ret = qcow2_check_read_table(c, table_offset, table_size, &table);
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
