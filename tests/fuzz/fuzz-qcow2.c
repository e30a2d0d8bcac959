/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - libFuzzer target for the qcow2 driver: the input is an image
 * file.  It is opened read-write without its backing chain, its bitmap
 * directory sized, then read, written, block-status'ed, zeroed,
 * discarded and closed; and opened for metadata changes, where its
 * internal snapshots are listed, created, applied and deleted.  Any
 * crash, sanitizer report or hang is a bug: malformed images must only
 * give errors. */
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "block/block.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Opening a dirty image repairs it as QEMU does, and a refcount block
 * listed far past the end makes the repair grow the file to reach it:
 * a 128 KiB input became a 1 TiB sparse file whose every cluster the
 * check then visits, a minute per input under the sanitizers.  The
 * images stay small here instead: growth past 256 MiB fails with EFBIG,
 * an error path like any other.  (Set at the first input, after
 * libFuzzer has installed its own SIGXFSZ handler.) */
static void limit_file_size(void)
{
    static bool done;
    if (!done) {
        struct rlimit lim = { 256 << 20, 256 << 20 };
        signal(SIGXFSZ, SIG_IGN);
        setrlimit(RLIMIT_FSIZE, &lim);
        done = true;
    }
}

/* Internal snapshots: the table is parsed at open (for metadata-only
 * opens too, which images with snapshots allow), then listed, added to,
 * applied and deleted, which walks every snapshot's tables. */
static void fuzz_snapshots(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz-qcow2-snap", 0);
    if (fd < 0) {
        return;
    }
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    Error *err = NULL;
    BlockNode *bs = block_open_image(path, "qcow2",
                                     BLOCK_O_RDWR | BLOCK_O_METADATA_ONLY |
                                     BLOCK_O_NO_BACKING, &err);
    if (!bs) {
        error_free(err);
        close(fd);
        return;
    }
    BlockSnapshotInfo *list = NULL;
    int n = block_snapshot_list(bs, &list);
    BlockSnapshotInfo sn = { .name = "fuzz", .icount = 0 };
    block_snapshot_create(bs, &sn);
    if (n > 0) {
        block_snapshot_goto(bs, list[0].id, &err);
        error_free(err);
        err = NULL;
        block_snapshot_delete(bs, list[n - 1].id, list[n - 1].name, &err);
        error_free(err);
        err = NULL;
    }
    block_snapshot_list_free(list, n);
    block_snapshot_delete(bs, NULL, "fuzz", &err);
    error_free(err);
    block_node_unref(bs);
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Corruption reports still reach stderr; run with -close_fd_mask=2
     * to silence them (libFuzzer keeps its own reports). */
    log_set_level(LOG_ERROR);
    limit_file_size();
    int fd = memfd_create("fuzz-qcow2", 0);
    if (fd < 0) {
        return 0;
    }
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

    fuzz_snapshots(data, size);
    Error *err = NULL;
    BlockNode *bs = block_open_image(path, "qcow2",
                                     BLOCK_O_RDWR | BLOCK_O_NO_BACKING, &err);
    if (!bs) {
        error_free(err);
        close(fd);
        return 0;
    }
    uint64_t vsize = block_node_size(bs);
    /* The bitmap directory, as measure reads it, before any write. */
    block_node_bitmaps_copy_size(bs, 512ull << (size > 8 ? data[8] % 13 : 7));
    /* Keep the work per input small even for huge virtual sizes. */
    uint64_t len = vsize < 131072 ? vsize : 131072;
    uint8_t *buf = calloc(1, len ? len : 1);
    if (buf && len) {
        uint64_t off = (size > 7 ? data[7] : 0) * 512ull;
        off = off < vsize ? off : 0;
        uint64_t n = len < vsize - off ? len : vsize - off;
        block_read(bs, off, n, buf, 0);
        uint64_t pnum, map;
        block_status(bs, off, n, &pnum, &map, NULL);
        memset(buf, 0xa5, n);
        block_write(bs, off, n, buf, 0);
        block_read(bs, 0, len, buf, 0);
        block_write_zeroes(bs, 0, len, BLOCK_REQ_MAY_UNMAP);
        block_discard(bs, 0, len);
        block_write(bs, vsize - (len < 4096 ? len : 4096),
                    len < 4096 ? len : 4096, buf, BLOCK_REQ_FUA);
        for (uint64_t o = 0; o < vsize && o < (1u << 24);) {
            if (block_status(bs, o, vsize - o, &pnum, &map, NULL) < 0) {
                break;
            }
            o += pnum;
        }
        block_flush(bs);
    }
    free(buf);
    block_node_unref(bs);
    close(fd);
    return 0;
}
