/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img rebase [-U] [-q] [-f fmt] [-p] [-u] -b backing [-F fmt]
 *                   filename
 *
 * Safe mode (no -u) keeps what the guest sees: wherever the image does
 * not define a cluster itself and the old and new backing files differ,
 * the old content is written into the image before the header is
 * switched to the new backing file.  -u only rewrites the header.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "strata-img/img-common.h"
#include "util/cleanup.h"
#include "util/error.h"

#define REBASE_BUF_SIZE (2u << 20)
#define SECTOR 512u

/* Length of the leading run of 512-byte sectors that all compare equal or
 * all differ; returns true if they differ. */
static bool sectors_differ(const uint8_t *a, const uint8_t *b, uint64_t bytes,
                           uint64_t *pnum)
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

/* Copies into bs every unallocated range where the old backing content
 * (the backing node bs has now) and the new backing's differ, in
 * qemu-img's steps so the image ends up allocated as qemu-img leaves
 * it: where the old backing file has ended (it read as zeroes there)
 * zeroes are written as zeroes (a zero cluster on qcow2), anything else
 * as the old data. */
static int rebase_copy(BlockNode *bs, BlockNode *new_backing,
                       ImgProgress *prog)
{
    uint64_t size = block_node_size(bs);
    BlockNode *old_backing = block_node_backing(bs);
    uint64_t old_size = old_backing ? block_node_size(old_backing) : 0;
    uint64_t new_size = new_backing ? block_node_size(new_backing) : 0;
    CLEANUP_FREE uint8_t *buf_old = malloc(REBASE_BUF_SIZE);
    CLEANUP_FREE uint8_t *buf_new = malloc(REBASE_BUF_SIZE);

    if (!buf_old || !buf_new) {
        return -ENOMEM;
    }
    for (uint64_t offset = 0, n; offset < size; offset += n) {
        n = 0;
        int st = block_status(bs, offset, MIN(REBASE_BUF_SIZE, size - offset),
                              &n, NULL, NULL);
        if (st < 0) {
            return st;
        }
        if (n == 0) {
            return -EIO;
        }
        if (st & BLOCK_STATUS_ALLOCATED) {
            continue;
        }
        bool old_is_zero = offset >= old_size;
        int r = 0;
        if (old_is_zero) {
            memset(buf_old, 0, n);
        } else {
            n = MIN(n, old_size - offset);
            r = block_read(old_backing, offset, n, buf_old, 0);
        }
        if (r == 0 && offset < new_size) {
            n = MIN(n, new_size - offset);
            r = block_read(new_backing, offset, n, buf_new, 0);
        } else {
            memset(buf_new, 0, n);
        }
        if (r < 0) {
            return r;
        }
        for (uint64_t done = 0; done < n;) {
            uint64_t pnum;
            if (sectors_differ(buf_old + done, buf_new + done, n - done,
                               &pnum)) {
                r = old_is_zero
                    ? block_write_zeroes(bs, offset + done, pnum, 0)
                    : block_write(bs, offset + done, pnum, buf_old + done, 0);
                if (r < 0) {
                    error_report("Error while writing to COW image: %s",
                                 strerror(-r));
                    return r;
                }
            }
            done += pnum;
        }
        img_progress_update(prog, offset + n, size);
    }
    return block_flush(bs);
}

int cmd_rebase(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { "image-opts", no_argument, NULL, IMG_OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *out_base = NULL, *out_fmt = NULL;
    bool progress = false, quiet = false, unsafe = false;
    int share = 0, c, ret = 1;

    optind = 1;
    while ((c = getopt_long(argc, argv, ":hf:F:b:upt:T:qU", long_options,
                            NULL)) != -1) {
        switch (c) {
        case IMG_OPT_OBJECT: img_object_add(optarg); break;
        case IMG_OPT_IMAGE_OPTS: img_set_image_opts(true); break;
        case 'h': img_help();
        case 'f': fmt = optarg; break;
        case 'F': out_fmt = optarg; break;
        case 'b': out_base = optarg; break;
        case 'u': unsafe = true; break;
        case 'p': progress = true; break;
        case 't': case 'T': break; /* cache modes: accepted */
        case 'q': quiet = true; break;
        case 'U': share = BLOCK_O_FORCE_SHARE; break;
        default: img_bad_option(c, argv);
        }
    }
    if (quiet) {
        progress = false;
    }
    if (optind != argc - 1) {
        img_usage_error("Expecting one image file name");
    }
    if (!unsafe && !out_base) {
        img_usage_error("Must specify backing file (-b) or use unsafe mode "
                        "(-u)");
    }
    const char *filename = argv[optind];
    if (out_base && out_base[0] == '\0') {
        out_base = NULL;
    }

    BlockNode *bs = img_open(filename, fmt,
                             BLOCK_O_RDWR | (unsafe ? BLOCK_O_NO_BACKING : 0),
                             quiet);
    if (!bs) {
        return 1;
    }
    if (!block_node_can_change_backing_file(bs)) {
        error_report("Could not change the backing file to '%s': %s",
                     out_base ? out_base : "", strerror(ENOTSUP));
        goto out;
    }
    if (out_base && !out_fmt) {
        error_report("Could not change the backing file to '%s': backing "
                     "format must be specified", out_base);
        goto out;
    }

    if (!unsafe) {
        BlockNode *new_backing = NULL;
        if (out_base) {
            CLEANUP_FREE char *path = img_path_combine(filename, out_base);
            Error *err = NULL;
            new_backing = block_open_image(path ? path : out_base, out_fmt,
                                           share, &err);
            if (!new_backing) {
                error_report("Could not open new backing file '%s': %s",
                             out_base, error_get_pretty(err));
                error_print_hint(err);
                error_free(err);
                goto out;
            }
        }
        ImgProgress *prog = img_progress_new(progress, 1.0);
        int r = rebase_copy(bs, new_backing, prog);
        if (new_backing) {
            block_node_unref(new_backing);
        }
        if (r < 0) {
            img_progress_end(prog);
            error_report("Could not rebase '%s': %s", filename, strerror(-r));
            goto out;
        }
        img_progress_update(prog, 1, 1);
        img_progress_end(prog);
    }

    Error *err = NULL;
    if (!block_change_backing_file(bs, out_base, out_base ? out_fmt : NULL,
                                   &err)) {
        if (err && err->errnum == ENOSPC) {
            error_report("Could not change the backing file to '%s': No "
                         "space left in the file header", out_base);
            error_free(err);
        } else {
            error_prepend(&err, "Could not change the backing file to '%s': ",
                          out_base ? out_base : "");
            error_report_err(err);
        }
        goto out;
    }
    ret = 0;
out:
    block_node_unref(bs);
    return ret;
}
