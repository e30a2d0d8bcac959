/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img compare [-f fmt] [-F fmt] [-p] [-q] [-s] [-U] file1 file2
 *
 * Exit codes as qemu-img: 0 identical, 1 different, 2 an image could
 * not be opened, 3 block status failed, 4 a read failed.  Images of
 * different sizes are identical when the longer one reads as zeroes
 * past the shorter one's end (not in strict mode).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "strata-img/img-common.h"
#include "util/cleanup.h"
#include "util/error.h"

#define COMPARE_BUF_SIZE (2u << 20)
#define SECTOR 512u

/* Length of the run from the start of both buffers whose 512-byte
 * sectors are all equal or all different; returns true if different. */
static bool compare_sectors(const uint8_t *a, const uint8_t *b,
                            uint64_t bytes, uint64_t *pnum)
{
    uint64_t i = MIN(bytes, SECTOR);
    bool differ = memcmp(a, b, i) != 0;

    while (i < bytes) {
        uint64_t len = MIN(bytes - i, SECTOR);
        if ((memcmp(a + i, b + i, len) != 0) != differ) {
            break;
        }
        i += len;
    }
    *pnum = i;
    return differ;
}

static bool is_zero(const uint8_t *buf, size_t len)
{
    return len == 0 || (buf[0] == 0 && memcmp(buf, buf + 1, len - 1) == 0);
}

/* Offset of the first sector that is not all zeroes, or -1. */
static int64_t find_nonzero(const uint8_t *buf, uint64_t n)
{
    for (uint64_t i = 0; i < n; i += SECTOR) {
        if (!is_zero(buf + i, MIN(SECTOR, n - i))) {
            return (int64_t)i;
        }
    }
    return -1;
}

/* 0 if the range reads as zeroes, 1 (after printing) if not, 4 on a
 * read error. */
static int check_empty(BlockNode *bs, uint64_t offset, uint64_t bytes,
                       const char *filename, uint8_t *buf, bool quiet)
{
    int r = block_read(bs, offset, bytes, buf, 0);

    if (r < 0) {
        error_report("Error while reading offset %" PRIu64 " of %s: %s",
                     offset, filename, strerror(-r));
        return 4;
    }
    int64_t idx = find_nonzero(buf, bytes);
    if (idx >= 0) {
        img_qprintf(quiet, "Content mismatch at offset %" PRIu64 "!\n",
                    offset + (uint64_t)idx);
        return 1;
    }
    return 0;
}

static int compare_images(BlockNode *bs1, BlockNode *bs2, const char *f1,
                          const char *f2, bool strict, bool quiet,
                          ImgProgress *prog, uint8_t *buf1, uint8_t *buf2)
{
    uint64_t size1 = block_node_size(bs1), size2 = block_node_size(bs2);
    uint64_t total = MIN(size1, size2), progress_base = MAX(size1, size2);
    uint64_t offset = 0;
    int r;

    if (strict && size1 != size2) {
        img_qprintf(quiet, "Strict mode: Image size mismatch!\n");
        return 1;
    }
    while (offset < total) {
        uint64_t pnum1 = 0, pnum2 = 0;
        int st1 = block_status_above(bs1, NULL, offset, size1 - offset,
                                     &pnum1, NULL, NULL, NULL);
        if (st1 < 0 || pnum1 == 0) {
            error_report("Sector allocation test failed for %s", f1);
            return 3;
        }
        int st2 = block_status_above(bs2, NULL, offset, size2 - offset,
                                     &pnum2, NULL, NULL, NULL);
        if (st2 < 0 || pnum2 == 0) {
            error_report("Sector allocation test failed for %s", f2);
            return 3;
        }
        bool alloc1 = st1 & BLOCK_STATUS_ALLOCATED;
        bool alloc2 = st2 & BLOCK_STATUS_ALLOCATED;
        uint64_t chunk = MIN(MIN(pnum1, pnum2), total - offset);

        if (strict && st1 != st2) {
            img_qprintf(quiet, "Strict mode: Offset %" PRIu64
                        " block status mismatch!\n", offset);
            return 1;
        }
        if ((st1 & BLOCK_STATUS_ZERO) && (st2 & BLOCK_STATUS_ZERO)) {
            /* both read as zeroes */
        } else if (alloc1 == alloc2) {
            if (alloc1) {
                uint64_t same;
                chunk = MIN(chunk, COMPARE_BUF_SIZE);
                if ((r = block_read(bs1, offset, chunk, buf1, 0)) < 0) {
                    error_report("Error while reading offset %" PRIu64
                                 " of %s: %s", offset, f1, strerror(-r));
                    return 4;
                }
                if ((r = block_read(bs2, offset, chunk, buf2, 0)) < 0) {
                    error_report("Error while reading offset %" PRIu64
                                 " of %s: %s", offset, f2, strerror(-r));
                    return 4;
                }
                bool differ = compare_sectors(buf1, buf2, chunk, &same);
                if (differ || same != chunk) {
                    img_qprintf(quiet, "Content mismatch at offset %" PRIu64
                                "!\n", offset + (differ ? 0 : same));
                    return 1;
                }
            }
        } else {
            chunk = MIN(chunk, COMPARE_BUF_SIZE);
            r = alloc1 ? check_empty(bs1, offset, chunk, f1, buf1, quiet)
                       : check_empty(bs2, offset, chunk, f2, buf1, quiet);
            if (r) {
                return r;
            }
        }
        offset += chunk;
        img_progress_update(prog, offset, progress_base);
    }

    if (size1 != size2) {
        BlockNode *over = size1 > size2 ? bs1 : bs2;
        const char *f_over = size1 > size2 ? f1 : f2;

        img_qprintf(quiet, "Warning: Image size mismatch!\n");
        while (offset < progress_base) {
            uint64_t chunk = 0;
            int st = block_status_above(over, NULL, offset,
                                        progress_base - offset, &chunk, NULL,
                                        NULL, NULL);
            if (st < 0 || chunk == 0) {
                error_report("Sector allocation test failed for %s", f_over);
                return 3;
            }
            if ((st & BLOCK_STATUS_ALLOCATED) && !(st & BLOCK_STATUS_ZERO)) {
                chunk = MIN(chunk, COMPARE_BUF_SIZE);
                r = check_empty(over, offset, chunk, f_over, buf1, quiet);
                if (r) {
                    return r;
                }
            }
            offset += chunk;
            img_progress_update(prog, offset, progress_base);
        }
    }
    img_qprintf(quiet, "Images are identical.\n");
    return 0;
}

int cmd_compare(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { "image-opts", no_argument, NULL, IMG_OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt1 = NULL, *fmt2 = NULL;
    bool progress = false, quiet = false, strict = false;
    int flags = 0, c, ret;

    optind = 1;
    while ((c = getopt_long(argc, argv, ":hf:F:T:pqsU", long_options,
                            NULL)) != -1) {
        switch (c) {
        case IMG_OPT_OBJECT: img_object_add(optarg); break;
        case IMG_OPT_IMAGE_OPTS: img_set_image_opts(true); break;
        case 'h': img_help();
        case 'f': fmt1 = optarg; break;
        case 'F': fmt2 = optarg; break;
        case 'T': break; /* cache mode: accepted for compatibility */
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case 's': strict = true; break;
        case 'U': flags |= BLOCK_O_FORCE_SHARE; break;
        default: img_bad_option(c, argv);
        }
    }
    if (quiet) {
        progress = false;
    }
    if (optind != argc - 2) {
        img_usage_error("Expecting two image file names");
    }
    const char *f1 = argv[optind], *f2 = argv[optind + 1];

    BlockNode *bs1 = img_open(f1, fmt1, flags, quiet);
    if (!bs1) {
        return 2;
    }
    BlockNode *bs2 = img_open(f2, fmt2, flags, quiet);
    if (!bs2) {
        block_node_unref(bs1);
        return 2;
    }
    ImgProgress *prog = img_progress_new(progress, 2.0);
    CLEANUP_FREE uint8_t *buf1 = malloc(COMPARE_BUF_SIZE);
    CLEANUP_FREE uint8_t *buf2 = malloc(COMPARE_BUF_SIZE);
    if (!buf1 || !buf2) {
        error_report("Out of memory");
        ret = 4;
    } else {
        ret = compare_images(bs1, bs2, f1, f2, strict, quiet, prog, buf1,
                             buf2);
    }
    block_node_unref(bs2);
    block_node_unref(bs1);
    img_progress_end(prog);
    return ret;
}
