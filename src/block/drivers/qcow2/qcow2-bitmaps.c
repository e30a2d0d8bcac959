/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - persistent dirty bitmaps of a qcow2 image, as far as strata
 * needs them: the space a copy of them takes in a new image (qemu-img
 * measure's "bitmaps size").  The bitmaps themselves are kept on disk
 * untouched; nothing here reads or writes their bits.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_core.h"
#include "block/drivers/qcow2/qcow2-format.h"
#include "block/drivers/qcow2/qcow2.h"
#include "util/cleanup.h"

#define DIR_ENTRY_LEN    24
#define MAX_DIR_SIZE     (64u << 20)  /* QEMU's limit on the directory */
#define MIN_GRAN_BITS    9
#define MAX_GRAN_BITS    31
#define TABLE_ENTRY_SIZE 8

static uint64_t round_up(uint64_t n, uint64_t align)
{
    return DIV_ROUND_UP(n, align) * align;
}

const Qcow2Extension *qcow2_bitmaps_extension(const Qcow2Header *h)
{
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
        return NULL;
    }
    return ext;
}

/* The bitmaps extension's directory location, copied under the lock;
 * false when the image has no bitmaps QEMU would load. */
static bool dir_location(BDRVQcow2State *s, uint32_t *nb, uint64_t *size,
                         uint64_t *offset)
{
    LOCK_GUARD(&s->lock);
    const Qcow2Extension *ext = qcow2_bitmaps_extension(&s->header);

    if (!ext) {
        return false;
    }
    uint32_t n32;
    uint64_t n64;
    memcpy(&n32, ext->data, 4);
    *nb = be32toh(n32);
    memcpy(&n64, ext->data + 8, 8);
    *size = be64toh(n64);
    memcpy(&n64, ext->data + 16, 8);
    *offset = be64toh(n64);
    return *nb > 0;
}

int64_t qcow2_bitmaps_copy_size(BlockNode *bs, uint64_t cluster_size)
{
    BDRVQcow2State *s = bs->opaque;
    uint32_t nb;
    uint64_t dir_size, dir_offset;

    if (!cluster_size || !dir_location(s, &nb, &dir_size, &dir_offset)) {
        return 0;
    }
    if (dir_size > MAX_DIR_SIZE || dir_size < DIR_ENTRY_LEN) {
        return -EINVAL;
    }
    CLEANUP_FREE uint8_t *dir = malloc(dir_size);
    if (!dir) {
        return -ENOMEM;
    }
    int ret = block_read(bs->file, dir_offset, dir_size, dir, 0);
    if (ret < 0) {
        return ret;
    }

    /* Every bitmap is assumed fully allocated in the copy: its data
     * clusters, its table, and its share of the new directory (whose
     * entries carry no extra data). */
    uint64_t vsize = block_node_size(bs);
    uint64_t total = 0, new_dir = 0, pos = 0;
    for (uint32_t i = 0; i < nb; i++) {
        if (pos + DIR_ENTRY_LEN > dir_size) {
            return -EINVAL;
        }
        const uint8_t *e = dir + pos;
        unsigned gran_bits = e[17];
        uint64_t name_size = (uint64_t)(e[18] << 8 | e[19]);
        uint32_t extra;
        memcpy(&extra, e + 20, 4);
        extra = be32toh(extra);
        /* QEMU refuses to open an image with such an entry; so do we
         * here, the one place strata reads the directory. */
        if (gran_bits < MIN_GRAN_BITS || gran_bits > MAX_GRAN_BITS ||
            extra != 0 || pos + DIR_ENTRY_LEN + name_size > dir_size) {
            return -EINVAL;
        }
        pos = round_up(pos + DIR_ENTRY_LEN + extra + name_size, 8);

        uint64_t bits = DIV_ROUND_UP(vsize, 1ull << gran_bits);
        uint64_t clusters = DIV_ROUND_UP(DIV_ROUND_UP(bits, 8), cluster_size);
        total += clusters * cluster_size;
        total += round_up(clusters * TABLE_ENTRY_SIZE, cluster_size);
        new_dir += round_up(DIR_ENTRY_LEN + name_size, 8);
    }
    return (int64_t)(total + round_up(new_dir, cluster_size));
}
