/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img convert [-U] [-c] [-p] [-q] [-n] [-f fmt] [-t cache]
 *     [-O output_fmt] [-B backing [-F backing_fmt]] [-o options]
 *     [-S sparse_size] [-m workers] [-W] [--target-is-zero]
 *     filename [filename2 [...]] output_filename
 *
 * Option parsing, target creation and opening; the copy itself is in
 * convert-copy.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "strata-img/convert-copy.h"
#include "strata-img/img-common.h"
#include "util/cleanup.h"
#include "util/error.h"
#include "util/ratelimit.h"
#include "util/units.h"

typedef struct ConvertArgs {
    const char *fmt;
    const char *out_fmt;
    const char *out_base;
    const char *out_base_fmt;
    const char *cache;
    char *optstr;
    uint64_t min_sparse;
    uint64_t rate_limit;      /* -r: bytes per second, 0 = unlimited */
    int workers;
    bool compressed, progress, quiet, skip_create, out_of_order;
    bool target_is_zero;
    bool salvage, copy_range, explicit_sparse;
    bool tgt_image_opts;      /* --target-image-opts (needs -n) */
    int src_flags;
    const char *snapshot;     /* -l: a snapshot of the source to copy */
} ConvertArgs;

static void append_optstr(char **acc, const char *more)
{
    char *joined = NULL;

    if (!*acc) {
        *acc = strdup(more);
    } else if (asprintf(&joined, "%s,%s", *acc, more) >= 0) {
        free(*acc);
        *acc = joined;
    }
}

/* Parses the options; returns optind, or -1 after printing an error. */
static int parse_args(int argc, char **argv, ConvertArgs *a)
{
    enum { OPT_TARGET_IS_ZERO = 256, OPT_IGNORED, OPT_SALVAGE,
           OPT_TARGET_IMAGE_OPTS };
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { "image-opts", no_argument, NULL, IMG_OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { "target-is-zero", no_argument, NULL, OPT_TARGET_IS_ZERO },
        { "salvage", no_argument, NULL, OPT_SALVAGE },
        { "target-image-opts", no_argument, NULL, OPT_TARGET_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, ":hf:O:B:F:Cco:l:S:pt:T:qnm:Wr:U",
                            long_options, NULL)) != -1) {
        switch (c) {
        case IMG_OPT_OBJECT: img_object_add(optarg); break;
        case IMG_OPT_IMAGE_OPTS: img_set_image_opts(true); break;
        case 'h': img_help();
        case 'f': a->fmt = optarg; break;
        case 'O': a->out_fmt = optarg; break;
        case 'B': a->out_base = optarg; break;
        case 'F': a->out_base_fmt = optarg; break;
        case 'C': a->copy_range = true; break; /* plain copies are used */
        case 'c': a->compressed = true; break;
        case 'o': append_optstr(&a->optstr, optarg); break;
        case 'l': a->snapshot = optarg; break;
        case 'S': {
            Error *err = NULL;
            a->explicit_sparse = true;
            if (!parse_size(optarg, &a->min_sparse, &err) ||
                !IS_ALIGNED(a->min_sparse, 512) ||
                a->min_sparse > (2u << 20)) {
                error_free(err);
                error_report("Invalid buffer size for sparse output "
                             "specified. You may use k, M, G, T, P or E "
                             "suffixes for");
                error_report("kilobytes, megabytes, gigabytes, terabytes, "
                             "petabytes and exabytes.");
                return -1;
            }
            break;
        }
        case 'p': a->progress = true; break;
        case 't': a->cache = optarg; break;
        case 'T': break; /* source cache mode */
        case 'q': a->quiet = true; break;
        case 'n': a->skip_create = true; break;
        case 'm': {
            uint64_t n;
            Error *err = NULL;
            if (!parse_uint(optarg, 16, &n, &err) || n < 1) {
                error_free(err);
                error_report("Invalid number of coroutines. Allowed number "
                             "of coroutines is between 1 and 16");
                return -1;
            }
            a->workers = (int)n;
            break;
        }
        case 'W': a->out_of_order = true; break;
        case 'r':
            if (!parse_size(optarg, &a->rate_limit, NULL)) {
                error_report("Invalid rate limit specified. You may use k, M, "
                             "G, T, P or E suffixes for ");
                error_report("kilobytes, megabytes, gigabytes, terabytes, "
                             "petabytes and exabytes.");
                return -1;
            }
            break;
        case 'U': a->src_flags |= BLOCK_O_FORCE_SHARE; break;
        case OPT_TARGET_IS_ZERO: a->target_is_zero = true; break;
        case OPT_SALVAGE: a->salvage = true; break;
        case OPT_TARGET_IMAGE_OPTS: a->tgt_image_opts = true; break;
        default: img_bad_option(c, argv);
        }
    }
    return optind;
}

/* Creates the target unless -n.  Returns false after printing. */
static bool create_target(const ConvertArgs *a, const char *out,
                          uint64_t total)
{
    bool help = false;
    json_t *opts = img_parse_create_opts(a->optstr ? a->optstr : "", &help,
                                         out);
    Error *err = NULL;
    bool ok = false;

    if (!opts) {
        return false;
    }
    if (!img_check_create_opts(a->out_fmt, opts, NULL) ||
        !img_normalize_create_opts(a->out_fmt, opts, NULL)) {
        goto out;
    }
    json_object_set_new(opts, "size", json_integer((json_int_t)total));
    if (a->out_base) {
        json_object_set_new(opts, "backing_file", json_string(a->out_base));
    }
    if (a->out_base_fmt) {
        json_object_set_new(opts, "backing_fmt",
                            json_string(a->out_base_fmt));
    }
    if (json_object_get(opts, "backing_file") &&
        !json_object_get(opts, "backing_fmt")) {
        error_report("Use of backing file requires explicit backing format");
        goto out;
    }
    if (!block_create(a->out_fmt, out, opts, &err)) {
        error_report("%s: error while converting %s: %s", out, a->out_fmt,
                     error_get_pretty(err));
        error_print_hint(err);
        error_free(err);
        goto out;
    }
    ok = true;
out:
    json_decref(opts);
    return ok;
}

/* Opens the target with the cache mode convert uses (qemu-img's default
 * for convert is "unsafe": no flushes). */
static BlockNode *open_target(const ConvertArgs *a, const char *out)
{
    if (a->tgt_image_opts) {
        /* The target is an option list (with -n only, as qemu-img). */
        bool saved = img_image_opts();
        img_set_image_opts(true);
        BlockNode *bs = img_open(out, a->out_fmt, BLOCK_O_RDWR, a->quiet);
        img_set_image_opts(saved);
        return bs;
    }
    const char *cache = a->cache ? a->cache : "unsafe";
    bool no_flush = strcmp(cache, "unsafe") == 0;
    bool direct = strcmp(cache, "none") == 0 ||
                  strcmp(cache, "directsync") == 0;
    Error *err = NULL;
    /* A json: target (with -n) names its children itself, such as an
     * external data file. */
    json_t *opts = strncmp(out, "json:", 5) == 0
        ? block_image_options(out, a->out_fmt, &err)
        : json_pack("{s:s, s:{s:s, s:s}}", "driver", a->out_fmt,
                    "file", "driver", "file", "filename", out);
    BlockNode *bs = NULL;
    if (opts) {
        json_t *file = json_object_get(opts, "file");
        json_t *nodes[] = { opts, json_is_object(file) ? file : NULL };
        for (size_t i = 0; i < ARRAY_SIZE(nodes) && nodes[i]; i++) {
            if (!json_object_get(nodes[i], "cache")) {
                json_object_set_new(nodes[i], "cache",
                                    json_pack("{s:b, s:b}", "direct", direct,
                                              "no-flush", no_flush));
            }
        }
        /* As qemu-img, which opens the target with unmap unless -S 0:
         * zero writes may free clusters, and what is freed leaves the
         * file. */
        json_object_set_new(opts, "discard",
                            json_string(a->min_sparse ? "unmap" : "ignore"));
        bs = block_node_open(opts, &err);
    }

    json_decref(opts);
    if (!bs) {
        error_prepend(&err, "Could not open '%s': ", out);
        error_report_err(err);
    }
    return bs;
}

int cmd_convert(int argc, char **argv)
{
    ConvertArgs a = { .min_sparse = 4096, .workers = 8 };
    int first = parse_args(argc, argv, &a);
    CLEANUP_FREE char *optstr_owner = NULL;
    int ret = 1;

    if (first < 0) {
        free(a.optstr);
        return 1;
    }
    optstr_owner = a.optstr;
    RateLimit rate;
    ratelimit_init(&rate, a.rate_limit);
    if (!a.out_fmt && !a.tgt_image_opts) {
        a.out_fmt = "raw";
    }
    /* strata copies without offloading, but refuses -C where qemu-img
     * does, so scripts get the same answers. */
    if (a.copy_range && (a.compressed || a.explicit_sparse || a.salvage)) {
        error_report(a.compressed ? "Cannot enable copy offloading when -c "
                                    "is used"
                     : a.explicit_sparse ? "Cannot enable copy offloading "
                                           "when -S is used"
                     : "Cannot use copy offloading in salvaging mode");
        return 1;
    }
    if (a.tgt_image_opts && !a.skip_create) {
        error_report("--target-image-opts requires use of -n flag");
        return 1;
    }
    if (a.quiet) {
        a.progress = false;
    }
    if (a.optstr) {
        bool help = false;
        json_t *o = img_parse_create_opts(a.optstr, &help, "");
        if (!o) {
            return 1;
        }
        json_decref(o);
        if (help) {
            if (!img_format_known(a.out_fmt)) {
                error_report("Unknown file format '%s'", a.out_fmt);
                return 1;
            }
            img_print_create_help(a.out_fmt, argc - first >= 2);
            return 0;
        }
    }
    int nsrc = argc - first - 1;
    if (nsrc < 1) {
        error_report("Must specify image file name");
        return 1;
    }
    const char *out = argv[argc - 1];
    if (a.out_fmt && !block_driver_known(a.out_fmt)) {
        error_report("Unknown file format '%s'", a.out_fmt);
        return 1;
    }
    if (a.compressed && a.out_fmt &&
        !block_format_can_compress(a.out_fmt)) {
        error_report("Compression not supported for this file format");
        return 1;
    }
    if (a.target_is_zero && !a.skip_create) {
        error_report("--target-is-zero requires use of -n flag");
        return 1;
    }
    if (a.out_base_fmt && !a.out_base) {
        error_report("-F requires -B");
        return 1;
    }

    /* -o backing_file=... gives the target a backing file as -B does;
     * qemu-img reads it only when it creates the target. */
    CLEANUP_FREE char *opt_base = NULL;
    if (a.optstr && !a.skip_create) {
        bool help = false;
        json_t *o = img_parse_create_opts(a.optstr, &help, "");
        json_t *b = o ? json_object_get(o, "backing_file") : NULL;
        if (json_is_string(b)) {
            opt_base = strdup(json_string_value(b));
        }
        json_decref(o);
    }
    bool target_has_backing = a.out_base || opt_base;

    BlockNode **src = calloc((size_t)nsrc, sizeof(*src));
    uint64_t total = 0;
    BlockNode *dst = NULL;
    ImgProgress *prog = NULL;
    int opened = 0;
    if (!src) {
        error_report("Out of memory");
        return 1;
    }
    for (; opened < nsrc; opened++) {
        src[opened] = img_open(argv[first + opened], a.fmt, a.src_flags,
                               a.quiet);
        if (!src[opened]) {
            goto out;
        }
        total += block_node_size(src[opened]);
    }

    if (a.snapshot && !img_load_snapshot(src, nsrc, a.snapshot)) {
        goto out;
    }
    if (a.target_is_zero && target_has_backing) {
        error_report("Cannot use --target-is-zero when the destination "
                     "image has a backing file");
        goto out;
    }
    if (nsrc > 1 && target_has_backing) {
        error_report("Having a backing file for the target makes no sense "
                     "when concatenating multiple input images");
        goto out;
    }

    if (!a.skip_create && !create_target(&a, out, total)) {
        goto out;
    }
    dst = open_target(&a, out);
    if (!dst) {
        goto out;
    }
    if (a.skip_create && block_node_size(dst) < total) {
        error_report("output file is smaller than input file");
        goto out;
    }

    prog = img_progress_new(a.progress, 1.0);
    ConvertParams p = {
        .src = src,
        .nsrc = nsrc,
        .dst = dst,
        .min_sparse = a.min_sparse,
        .dst_cluster = block_node_cluster_size(dst),
        .compressed = a.compressed,
        .target_has_backing = target_has_backing,
        .target_backing_size = UINT64_MAX,
        .out_of_order = a.out_of_order,
        .salvage = a.salvage,
        .workers = a.workers,
        .progress = prog,
        .rate = &rate,
    };
    /* As qemu-img: for a target it has just created, zeroes past the end
     * of the backing file need no write (they read as zeroes there). */
    if (target_has_backing && !a.skip_create && block_node_backing(dst)) {
        p.target_backing_size = block_node_size(block_node_backing(dst));
    }
    p.has_zero_init = a.skip_create ? a.target_is_zero
                                    : (a.min_sparse && !p.target_has_backing);
    if (p.compressed && p.dst_cluster == 0) {
        error_report("Compression not supported for this file format");
        goto out;
    }
    ret = convert_copy(&p);
    if (ret == 0) {
        img_progress_update(prog, 1, 1);
    }
out:
    img_progress_end(prog);
    ratelimit_destroy(&rate);
    if (dst) {
        block_node_unref(dst);
    }
    for (int i = 0; i < opened; i++) {
        block_node_unref(src[i]);
    }
    free(src);
    return ret;
}
