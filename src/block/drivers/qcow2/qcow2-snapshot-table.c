/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 internal snapshot table: reading it at open (with the
 * limits and messages QEMU applies, so an image QEMU refuses is refused
 * the same way) and writing a new one.
 *
 * An entry is a fixed 40-byte part, extra data (of which strata knows
 * the first 24 bytes: a 64-bit VM state size, the disk size and the
 * instruction count), then the id and the name, without terminators.
 * Entries start on 8-byte boundaries.  A table is never changed in
 * place: a new one is written elsewhere and the header is switched to
 * it, so a crash leaves the old table or the new one.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-io.h"
#include "util/cleanup.h"

#define SN_HEADER_LEN   40
#define SN_EXTRA_LEN    24       /* the extra data strata interprets */
#define SN_EXTRA_MAX    1024     /* QEMU's limit on extra data per entry */
#define SN_TABLE_MAX    (1024ull * 65536) /* QEMU's limit on the table */
#define SN_WINDOW       65536

/* Reads the table through a window, returning zeroes past the end of
 * the file as QEMU's file driver does. */
typedef struct TableReader {
    BlockNode *file;
    uint64_t file_size;
    uint8_t *buf;
    uint64_t start;              /* file offset of buf[0] */
    uint64_t len;                /* valid bytes in buf */
} TableReader;

static int reader_get(TableReader *r, uint64_t offset, uint64_t len,
                      void *out)
{
    uint8_t *o = out;
    while (len > 0) {
        if (offset < r->start || offset >= r->start + r->len) {
            r->start = offset;
            r->len = SN_WINDOW;
            memset(r->buf, 0, SN_WINDOW);
            if (offset < r->file_size) {
                uint64_t n = MIN((uint64_t)SN_WINDOW, r->file_size - offset);
                int ret = block_read(r->file, offset, n, r->buf,
                                     BLOCK_REQ_METADATA);
                if (ret < 0) {
                    r->len = 0;
                    return ret;
                }
            }
        }
        uint64_t n = MIN(len, r->start + r->len - offset);
        memcpy(o, r->buf + (offset - r->start), n);
        o += n;
        offset += n;
        len -= n;
    }
    return 0;
}


static void put_be64(uint8_t *p, uint64_t v)
{
    v = htobe64(v);
    memcpy(p, &v, 8);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    v = htobe32(v);
    memcpy(p, &v, 4);
}

static void free_entries(Qcow2Snapshot *list, uint32_t nb)
{
    for (uint32_t i = 0; list && i < nb; i++) {
        free(list[i].id_str);
        free(list[i].name);
        free(list[i].unknown_extra);
    }
    free(list);
}

void qcow2_free_snapshots(BDRVQcow2State *s)
{
    free_entries(s->snapshots, s->header.nb_snapshots);
    s->snapshots = NULL;
    s->snapshots_size = 0;
}

static char *read_string(TableReader *r, uint64_t offset, uint16_t len,
                         int *ret)
{
    char *str = malloc((size_t)len + 1);
    if (!str) {
        *ret = -ENOMEM;
        return NULL;
    }
    *ret = reader_get(r, offset, len, str);
    if (*ret < 0) {
        free(str);
        return NULL;
    }
    str[len] = '\0';
    return str;
}

/* One entry at *offset (already 8-byte aligned); advances *offset. */
static int read_entry(BDRVQcow2State *s, TableReader *r, uint32_t index,
                      uint64_t *offset, Qcow2Snapshot *sn, Error **errp)
{
    uint8_t h[SN_HEADER_LEN], extra[SN_EXTRA_LEN] = { 0 };
    uint64_t off = *offset;
    int ret = reader_get(r, off, sizeof(h), h);
    if (ret < 0) {
        goto read_failed;
    }
    off += sizeof(h);
    sn->l1_table_offset = qcow2_be64_at(h);
    sn->l1_size = qcow2_be32_at(h + 8);
    uint16_t id_len = (uint16_t)((h[12] << 8) | h[13]);
    uint16_t name_len = (uint16_t)((h[14] << 8) | h[15]);
    sn->date_sec = qcow2_be32_at(h + 16);
    sn->date_nsec = qcow2_be32_at(h + 20);
    sn->vm_clock_nsec = qcow2_be64_at(h + 24);
    sn->vm_state_size = qcow2_be32_at(h + 32);
    sn->extra_data_size = qcow2_be32_at(h + 36);
    if (sn->extra_data_size > SN_EXTRA_MAX) {
        error_setg(errp, "Too much extra metadata in snapshot table entry "
                   "%" PRIu32 "\nYou can force-remove this extra metadata "
                   "with qemu-img check -r all", index);
        return -EFBIG;
    }
    uint32_t known = MIN((uint32_t)SN_EXTRA_LEN, sn->extra_data_size);
    ret = reader_get(r, off, known, extra);
    if (ret < 0) {
        goto read_failed;
    }
    off += known;
    if (sn->extra_data_size >= 8) {
        sn->vm_state_size = qcow2_be64_at(extra);
    }
    sn->disk_size = sn->extra_data_size >= 16 ? qcow2_be64_at(extra + 8)
                                              : s->header.size;
    sn->icount = sn->extra_data_size >= 24 ? qcow2_be64_at(extra + 16)
                                           : UINT64_MAX;
    if (sn->extra_data_size > SN_EXTRA_LEN) {
        uint32_t n = sn->extra_data_size - SN_EXTRA_LEN;
        sn->unknown_extra = malloc(n);
        if (!sn->unknown_extra) {
            error_setg(errp, "Could not allocate the snapshot table");
            return -ENOMEM;
        }
        ret = reader_get(r, off, n, sn->unknown_extra);
        if (ret < 0) {
            goto read_failed;
        }
        off += n;
    }
    sn->id_str = read_string(r, off, id_len, &ret);
    if (!sn->id_str) {
        goto read_failed;
    }
    off += id_len;
    sn->name = read_string(r, off, name_len, &ret);
    if (!sn->name) {
        goto read_failed;
    }
    off += name_len;
    *offset = off;
    return 0;

read_failed:
    error_setg_errno(errp, -ret, "Failed to read snapshot table");
    return ret;
}

bool qcow2_read_snapshots(BlockNode *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint32_t nb = s->header.nb_snapshots;
    s->snapshots = NULL;
    s->snapshots_size = 0;
    if (nb == 0) {
        return true;
    }
    Qcow2Snapshot *list = calloc(nb, sizeof(*list));
    CLEANUP_FREE uint8_t *window = malloc(SN_WINDOW);
    if (!list || !window) {
        free(list);
        error_setg(errp, "Could not allocate the snapshot table");
        return false;
    }
    TableReader r = {
        .file = bs->file, .file_size = block_node_size(bs->file),
        .buf = window,
    };
    uint64_t start = s->header.snapshots_offset;
    uint64_t offset = start;
    for (uint32_t i = 0; i < nb; i++) {
        offset = ALIGN_UP(offset, 8);
        if (read_entry(s, &r, i, &offset, &list[i], errp) < 0) {
            free_entries(list, nb);
            return false;
        }
        if (offset - start > SN_TABLE_MAX) {
            error_setg(errp, "Snapshot table is too big\nYou can "
                       "force-remove all %" PRIu32 " overhanging snapshots "
                       "with qemu-img check -r all", nb - i);
            free_entries(list, nb);
            return false;
        }
    }
    s->snapshots = list;
    s->snapshots_size = offset - start;
    return true;
}

/* Bytes the table takes, or 0 with -EFBIG past QEMU's limit. */
static int table_size(const Qcow2Snapshot *list, uint32_t nb, uint64_t *size)
{
    uint64_t off = 0;
    for (uint32_t i = 0; i < nb; i++) {
        off = ALIGN_UP(off, 8) + SN_HEADER_LEN +
              MAX((uint64_t)SN_EXTRA_LEN, list[i].extra_data_size) +
              strlen(list[i].id_str) + strlen(list[i].name);
        if (off > SN_TABLE_MAX) {
            return -EFBIG;
        }
    }
    *size = off;
    return 0;
}

static void encode_table(const Qcow2Snapshot *list, uint32_t nb,
                         uint8_t *buf)
{
    uint64_t off = 0;
    for (uint32_t i = 0; i < nb; i++) {
        const Qcow2Snapshot *sn = &list[i];
        size_t id_len = strlen(sn->id_str), name_len = strlen(sn->name);
        uint32_t extra = MAX((uint32_t)SN_EXTRA_LEN, sn->extra_data_size);
        uint8_t *h = buf + (off = ALIGN_UP(off, 8));
        put_be64(h, sn->l1_table_offset);
        put_be32(h + 8, sn->l1_size);
        h[12] = (uint8_t)(id_len >> 8);
        h[13] = (uint8_t)id_len;
        h[14] = (uint8_t)(name_len >> 8);
        h[15] = (uint8_t)name_len;
        put_be32(h + 16, sn->date_sec);
        put_be32(h + 20, sn->date_nsec);
        put_be64(h + 24, sn->vm_clock_nsec);
        /* A VM state too big for 32 bits reads as none in old readers
         * rather than as a truncated size. */
        put_be32(h + 32, sn->vm_state_size <= UINT32_MAX
                         ? (uint32_t)sn->vm_state_size : 0);
        put_be32(h + 36, extra);
        off += SN_HEADER_LEN;
        put_be64(buf + off, sn->vm_state_size);
        put_be64(buf + off + 8, sn->disk_size);
        put_be64(buf + off + 16, sn->icount);
        off += SN_EXTRA_LEN;
        if (extra > SN_EXTRA_LEN) {
            memcpy(buf + off, sn->unknown_extra, extra - SN_EXTRA_LEN);
            off += extra - SN_EXTRA_LEN;
        }
        memcpy(buf + off, sn->id_str, id_len);
        off += id_len;
        memcpy(buf + off, sn->name, name_len);
        off += name_len;
    }
}

int qcow2_write_snapshots_locked(BlockNode *bs, Qcow2Snapshot *list,
                                 uint32_t nb)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t size = 0, new_offset = 0;
    int ret = table_size(list, nb, &size);
    if (ret < 0) {
        return ret;
    }
    if (size) {
        CLEANUP_FREE uint8_t *buf = calloc(1, ALIGN_UP(size, cs));
        if (!buf) {
            return -ENOMEM;
        }
        encode_table(list, nb, buf);
        ret = qcow2_alloc_clusters_locked(bs, DIV_ROUND_UP(size, cs),
                                          &new_offset);
        if (ret < 0) {
            return ret;
        }
        /* Everything the new table's refcounts depend on goes first. */
        ret = qcow2_flush_caches_locked(bs);
        if (ret == 0) {
            ret = block_flush(bs->file);
        }
        if (ret == 0) {
            ret = qcow2_write_meta_locked(bs, new_offset, size, buf,
                                          QCOW2_META_NONE);
        }
        if (ret == 0) {
            ret = block_flush(bs->file);
        }
        if (ret < 0) {
            qcow2_free_clusters_locked(bs, new_offset, size);
            return ret;
        }
    }
    uint8_t hdr[12];
    put_be32(hdr, nb);
    put_be64(hdr + 4, new_offset);
    ret = qcow2_write_meta_locked(bs, 60, sizeof(hdr), hdr,
                                  QCOW2_META_HEADER);
    if (ret == 0) {
        ret = block_flush(bs->file);
    }
    if (ret < 0) {
        if (size) {
            qcow2_free_clusters_locked(bs, new_offset, size);
        }
        return ret;
    }
    uint64_t old_offset = s->header.snapshots_offset;
    uint64_t old_size = s->snapshots_size;
    if (s->header.nb_snapshots && old_size) {
        qcow2_meta_remove(s, old_offset, ALIGN_UP(old_size, cs));
        /* The header no longer points there: only a leak if this fails. */
        qcow2_free_clusters_locked(bs, old_offset, old_size);
    }
    s->header.nb_snapshots = nb;
    s->header.snapshots_offset = new_offset;
    s->snapshots_size = size;
    if (size) {
        ret = qcow2_meta_add(s, new_offset, ALIGN_UP(size, cs),
                             QCOW2_META_SNAPSHOTS);
    }
    return ret;
}
