/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img commit [-q] [-f fmt] [-b base] [-d] [-p] filename
 *
 * Copies what the top image and the layers above base define into base,
 * then empties the top (unless -d) so it reads through to base.  With -b
 * naming a deeper layer the layers in between become stale, so -b
 * implies -d as in qemu-img.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "strata-img/img-chain.h"
#include "strata-img/img-common.h"
#include "util/cleanup.h"
#include "util/error.h"

#define COMMIT_BUF_SIZE (2u << 20)

/* Whether any byte of [offset, offset+len) is defined above base. */
static int allocated_above(BlockNode *top, BlockNode *base, uint64_t offset,
                           uint64_t len)
{
    for (uint64_t end = offset + len; offset < end;) {
        uint64_t pnum = 0;
        int depth = 0;
        int st = block_status_above(top, base, offset, end - offset, &pnum,
                                    NULL, NULL, &depth);
        if (st < 0) {
            return st;
        }
        if (pnum == 0) {
            return -EIO;
        }
        if (depth > 0) {
            return 1;
        }
        offset += pnum;
    }
    return 0;
}

static int copy_range(BlockNode *top, BlockNode *base, uint64_t offset,
                      uint64_t len, uint8_t *buf)
{
    for (uint64_t done = 0; done < len;) {
        uint64_t n = MIN(len - done, COMMIT_BUF_SIZE);
        int r = block_read(top, offset + done, n, buf, 0);
        if (r == 0) {
            r = block_write(base, offset + done, n, buf, 0);
        }
        if (r < 0) {
            return r;
        }
        done += n;
    }
    return 0;
}

/* Commits one chunk of granule g that has something defined above base,
 * the way qemu-img's commit job does: the chunk's content (read through
 * the whole chain) is copied, except that a run of whole base clusters
 * that reads as zeroes without data becomes zeroes written with unmap
 * (zero clusters on qcow2), not data clusters of zeroes. */
static int commit_chunk(BlockNode *top, BlockNode *base, uint64_t offset,
                        uint64_t end, uint64_t g, uint8_t *buf)
{
    uint64_t bcs = block_node_cluster_size(base);

    while (offset < end) {
        uint64_t pnum = 0;
        int st = block_status_above(top, NULL, offset, end - offset, &pnum,
                                    NULL, NULL, NULL);
        if (st < 0) {
            return st;
        }
        uint64_t io = MIN(pnum, end - offset);
        bool zero = false;
        io -= io % g;
        if (io < g) {
            io = MIN(g, end - offset);
        } else if (!(st & BLOCK_STATUS_DATA) && (st & BLOCK_STATUS_ZERO)) {
            zero = bcs == 0 ||
                   (IS_ALIGNED(offset, bcs) && IS_ALIGNED(offset + io, bcs));
        }
        int r = zero ? block_write_zeroes(base, offset, io,
                                          BLOCK_REQ_MAY_UNMAP)
                     : copy_range(top, base, offset, io, buf);
        if (r < 0) {
            return r;
        }
        offset += io;
    }
    return 0;
}

static int commit_data(BlockNode *top, BlockNode *base, ImgProgress *prog)
{
    uint64_t size = block_node_size(top);
    uint64_t bcs = block_node_cluster_size(base);
    /* qemu-img's job tracks what to copy in granules of the base's
     * cluster size, kept between 4 KiB and 64 KiB. */
    uint64_t g = bcs ? MIN(MAX(bcs, 4096u), 65536u) : 65536u;
    CLEANUP_FREE uint8_t *buf = malloc(COMMIT_BUF_SIZE);

    if (!buf) {
        return -ENOMEM;
    }
    for (uint64_t offset = 0; offset < size;) {
        /* A run of consecutive granules with something above base. */
        uint64_t end = offset;
        while (end < size && end - offset < COMMIT_BUF_SIZE) {
            uint64_t n = MIN(g, size - end);
            int r = allocated_above(top, base, end, n);
            if (r < 0) {
                return r;
            }
            if (r == 0) {
                break;
            }
            end += n;
        }
        if (end > offset) {
            int r = commit_chunk(top, base, offset, end, g, buf);
            if (r < 0) {
                return r;
            }
            offset = end;
        } else {
            /* Skip the whole run that is not defined above base. */
            uint64_t pnum = 0;
            int depth = 0;
            int st = block_status_above(top, base, offset, size - offset,
                                        &pnum, NULL, NULL, &depth);
            if (st < 0) {
                return st;
            }
            uint64_t next = depth == 0 ? ALIGN_DOWN(offset + pnum, g) : 0;
            offset = MIN(MAX(next, offset + g), size);
        }
        img_progress_update(prog, offset, size);
    }
    return block_flush(base);
}

int cmd_commit(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { "image-opts", no_argument, NULL, IMG_OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *base_name = NULL;
    bool progress = false, quiet = false, drop = false;
    int c, ret = 1;

    optind = 1;
    while ((c = getopt_long(argc, argv, ":f:ht:b:dpqr:", long_options,
                            NULL)) != -1) {
        switch (c) {
        case IMG_OPT_OBJECT: img_object_add(optarg); break;
        case IMG_OPT_IMAGE_OPTS: img_set_image_opts(true); break;
        case 'h': img_help();
        case 'f': fmt = optarg; break;
        case 't': break; /* cache mode: accepted for compatibility */
        case 'b': base_name = optarg; drop = true; break;
        case 'd': drop = true; break;
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case 'r': break; /* rate limit: an offline commit runs flat out */
        default: img_bad_option(c, argv);
        }
    }
    if (quiet) {
        progress = false;
    }
    if (optind != argc - 1) {
        img_usage_error("Expecting one image file name");
    }
    const char *filename = argv[optind];

    ImgChain *chain = img_discover_chain(filename, fmt, 0);
    if (!chain) {
        return 1;
    }
    int base_idx;
    if (base_name) {
        base_idx = img_chain_find(chain, base_name);
        if (base_idx < 0) {
            error_report("Did not find '%s' in the backing chain of '%s'",
                         base_name, filename);
            goto out_chain;
        }
    } else {
        if (chain->count < 2) {
            error_report("Image does not have a backing file");
            goto out_chain;
        }
        base_idx = 1;
    }

    /* Layers below base are opened too: base may read through them
     * while it is partially written (qcow2 copy-on-write). */
    BlockNode *top = img_open_chain(chain, 1ull | (1ull << base_idx), 0);
    if (!top) {
        goto out_chain;
    }
    BlockNode *base = top;
    for (int i = 0; i < base_idx; i++) {
        base = block_node_backing(base);
    }

    ImgProgress *prog = img_progress_new(progress, 1.0);
    Error *err = NULL;
    int r = 0;
    if (block_node_size(base) < block_node_size(top) &&
        !block_truncate(base, block_node_size(top), false, PREALLOC_OFF,
                        &err)) {
        img_progress_end(prog);
        error_prepend(&err, "Could not resize '%s': ",
                      chain->layers[base_idx].filename);
        error_report_err(err);
        goto out_top;
    }
    r = commit_data(top, base, prog);
    if (r < 0) {
        /* qemu-img runs the copy as a block job and words it so. */
        img_progress_end(prog);
        error_report("Block job failed: %s", strerror(-r));
        goto out_top;
    }
    if (!drop) {
        /* A format that cannot be emptied (raw) keeps its data, and
         * qemu-img still reports success. */
        r = block_make_empty(top);
        if (r < 0 && r != -ENOTSUP) {
            img_progress_end(prog);
            error_report("Failed to empty %s: %s", filename, strerror(-r));
            goto out_top;
        }
    }
    img_progress_update(prog, 1, 1);
    img_progress_end(prog);
    img_qprintf(quiet, "Image committed.\n");
    ret = 0;
out_top:
    block_node_unref(top);
out_chain:
    img_chain_free(chain);
    return ret;
}
