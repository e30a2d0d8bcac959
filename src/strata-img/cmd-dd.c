/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img dd [--image-opts] [-U] [-f fmt] [-O output_fmt]
 *               [bs=block_size] [count=blocks] [skip=blocks]
 *               if=input of=output
 *
 * qemu-img's dd(1) subset: the output image is created (in output_fmt,
 * raw by default) with the size of what is copied and the input copied
 * into it block by block.  As in qemu-img 7.2, count= limits the input
 * read from its start, so with skip= the copy is count - skip blocks.
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "strata-img/img-common.h"
#include "util/cleanup.h"
#include "util/error.h"
#include "util/keyval.h"

typedef struct DdArgs {
    int64_t bs;
    int64_t count;
    int64_t skip;
    const char *in;
    const char *out;
    bool has_count, has_skip;
} DdArgs;

/* Parses one NAME=VALUE operand; false after printing qemu-img's text. */
static bool dd_operand(const char *arg, DdArgs *a)
{
    const char *eq = strchr(arg, '=');
    size_t n = eq ? (size_t)(eq - arg) : 0;
    const char *v = eq ? eq + 1 : NULL;

    if (eq && n == 2 && strncmp(arg, "bs", 2) == 0) {
        return img_cvtnum("bs", v, 1, INT32_MAX, &a->bs);
    }
    if (eq && n == 5 && strncmp(arg, "count", 5) == 0) {
        a->has_count = true;
        return img_cvtnum("count", v, 0, INT64_MAX, &a->count);
    }
    if (eq && n == 4 && strncmp(arg, "skip", 4) == 0) {
        a->has_skip = true;
        return img_cvtnum("skip", v, 0, INT64_MAX, &a->skip);
    }
    if (eq && n == 2 && strncmp(arg, "if", 2) == 0) {
        a->in = v;
        return true;
    }
    if (eq && n == 2 && strncmp(arg, "of", 2) == 0) {
        a->out = v;
        return true;
    }
    /* qemu-img names the operand without its value. */
    error_report("unrecognized operand %.*s", eq ? (int)n : (int)strlen(arg),
                 arg);
    return false;
}

static int dd_copy(BlockNode *src, BlockNode *dst, const DdArgs *a,
                   int64_t size, int64_t in_pos)
{
    CLEANUP_FREE uint8_t *buf = malloc((size_t)a->bs);
    if (!buf) {
        error_report("Out of memory");
        return 1;
    }
    for (int64_t out_pos = 0; in_pos < size;) {
        uint64_t len = (uint64_t)MIN((int64_t)a->bs, size - in_pos);
        int r = block_read(src, (uint64_t)in_pos, len, buf, 0);
        if (r < 0) {
            error_report("error while reading from input image file: %s",
                         strerror(-r));
            return 1;
        }
        in_pos += (int64_t)len;
        r = block_write(dst, (uint64_t)out_pos, len, buf, 0);
        if (r < 0) {
            error_report("error while writing to output image file: %s",
                         strerror(-r));
            return 1;
        }
        out_pos += (int64_t)len;
    }
    return 0;
}

int cmd_dd(int argc, char **argv)
{
    enum { OPT_IMAGE_OPTS = 256, OPT_OBJECT };
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "force-share", no_argument, NULL, 'U' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "object", required_argument, NULL, OPT_OBJECT },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *out_fmt = "raw";
    bool force_share = false, image_opts = false;
    DdArgs a = { .bs = 512 };
    CLEANUP_JSON json_t *opts = NULL;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, ":hf:O:U", long_options, NULL)) != -1) {
        switch (c) {
        case 'h': img_help();
        case 'f': fmt = optarg; break;
        case 'O': out_fmt = optarg; break;
        case 'U': force_share = true; break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        /* Created (and checked) as qemu-img does, though only encrypted
         * images, which dd cannot read, would use them. */
        case OPT_OBJECT: img_object_add(optarg); break;
        default: img_bad_option(c, argv);
        }
    }
    for (int i = optind; i < argc; i++) {
        if (!dd_operand(argv[i], &a)) {
            return 1;
        }
    }
    if (!a.in || !a.out) {
        error_report("Must specify both input and output files");
        return 1;
    }

    BlockNode *src = img_open_maybe_opts(a.in, fmt,
                                         force_share ? BLOCK_O_FORCE_SHARE : 0,
                                         image_opts);
    if (!src) {
        return 1;
    }
    int ret = 1;
    if (!block_driver_known(out_fmt)) {
        error_report("Unknown file format");
        goto out;
    }
    if (!img_format_known(out_fmt)) {
        error_report("Format driver '%s' does not support image creation",
                     out_fmt);
        goto out;
    }

    int64_t size = (int64_t)block_node_size(src);
    if (a.has_count && a.count <= INT64_MAX / a.bs && a.count * a.bs < size) {
        size = a.count * a.bs;
    }
    /* A skip past the end makes an empty output, with a complaint. */
    bool skip_past = a.has_skip && (a.skip > INT64_MAX / a.bs ||
                                    size < a.skip * a.bs);
    int64_t in_pos = skip_past ? size : a.skip * a.bs;

    opts = json_pack("{s:I}", "size", (json_int_t)(size - in_pos));
    Error *err = NULL;
    if (!opts) {
        error_report("Out of memory");
        goto out;
    }
    if (!block_create(out_fmt, a.out, opts, &err)) {
        error_prepend(&err, "%s: error while creating output image: ", a.out);
        error_report_err(err);
        goto out;
    }
    BlockNode *dst = img_open(a.out, out_fmt, BLOCK_O_RDWR, true);
    if (!dst) {
        goto out;
    }
    if (skip_past) {
        error_report("%s: cannot skip to specified offset", a.in);
    }
    ret = dd_copy(src, dst, &a, size, in_pos);
    block_node_unref(dst);
out:
    block_node_unref(src);
    return ret;
}
