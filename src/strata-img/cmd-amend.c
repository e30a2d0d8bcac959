/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img amend [-p] [-q] [-f fmt] [--force] -o options filename
 *
 * Changes format options of an existing image in place, as qemu-img
 * amend: the options are parsed first (an unknown one, or one only
 * create takes, is refused before the image changes), then the format
 * applies them in QEMU's order with QEMU's texts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "strata-img/img-common.h"
#include "util/cleanup.h"
#include "util/error.h"
#include "util/keyval.h"

static const BlockCreateOpt *find_opt(const BlockCreateOpt *list,
                                      const char *name)
{
    for (; list && list->name; list++) {
        if (!strcmp(list->name, name)) {
            return list;
        }
    }
    return NULL;
}

/* qemu-img appends its hint when every option would do for create. */
static bool all_create_opts(const char *fmt, json_t *opts)
{
    const char *key;
    json_t *v;
    json_object_foreach(opts, key, v) {
        if (!find_opt(block_create_opts(fmt), key) &&
            !find_opt(block_protocol_create_opts(), key)) {
            return false;
        }
    }
    return true;
}

static void amend_progress(void *opaque, uint64_t done, uint64_t total)
{
    img_progress_update(opaque, done, total);
}

int cmd_amend(int argc, char **argv)
{
    enum { OPT_FORCE = 256, OPT_OBJECT, OPT_IMAGE_OPTS };
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { "image-opts", no_argument, NULL, IMG_OPT_IMAGE_OPTS },
        { "force", no_argument, NULL, OPT_FORCE },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    bool quiet = false, progress = false, force = false;
    CLEANUP_FREE char *optstr = NULL;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, ":ho:f:t:pq", long_options,
                            NULL)) != -1) {
        switch (c) {
        case IMG_OPT_OBJECT: img_object_add(optarg); break;
        case IMG_OPT_IMAGE_OPTS: img_set_image_opts(true); break;
        case 'h': img_help();
        case 'o': {
            /* Several -o join with a comma, as qemu-img does. */
            char *joined = NULL;
            if (asprintf(&joined, "%s%s%s", optstr ? optstr : "",
                         optstr ? "," : "", optarg) < 0) {
                error_report("Out of memory");
                return 1;
            }
            free(optstr);
            optstr = joined;
            break;
        }
        case 'f': fmt = optarg; break;
        case 't': break;          /* the cache mode changes nothing here */
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case OPT_FORCE: force = true; break;
        default: img_bad_option(c, argv);
        }
    }
    if (!optstr) {
        img_usage_error("Must specify options (-o)");
    }
    if (quiet) {
        progress = false;
    }
    const char *filename = optind == argc - 1 ? argv[optind] : NULL;
    bool help = false;
    CLEANUP_JSON json_t *opts = img_parse_create_opts(optstr, &help, NULL);
    if (!opts) {
        return 1;
    }
    /* -o help lists a format's options: from -f without an image. */
    if (!filename && !(help && fmt)) {
        error_report("Expecting one image file name");
        return 1;
    }
    BlockNode *bs = NULL;
    if (filename) {
        bs = img_open(filename, fmt, BLOCK_O_RDWR | BLOCK_O_METADATA_ONLY,
                      quiet);
        if (!bs) {
            return 1;
        }
        fmt = block_node_driver_name(bs);
    }
    const BlockCreateOpt *list = bs ? block_node_amend_opts(bs)
                                    : block_format_amend_opts(fmt);
    if (!list) {
        if (!bs && !img_format_known(fmt)) {
            error_report("Unknown file format '%s'", fmt);
        } else {
            error_report("Format driver '%s' does not support option "
                         "amendment", fmt);
        }
        if (bs) {
            block_node_unref(bs);
        }
        return 1;
    }
    if (help) {
        printf("Amend options for '%s':\n", fmt);
        img_print_opts_sorted(list, NULL);
        if (bs) {
            block_node_unref(bs);
        }
        return 0;
    }

    /* Every option parses before anything changes. */
    const char *key;
    json_t *v;
    json_object_foreach(opts, key, v) {
        const BlockCreateOpt *d = find_opt(list, key);
        if (!d) {
            error_report("Invalid parameter '%s'%s", key,
                         all_create_opts(fmt, opts)
                         ? "\nThis option is only supported for image "
                           "creation" : "");
            block_node_unref(bs);
            return 1;
        }
        if (!img_normalize_opt(d, opts, NULL)) {
            block_node_unref(bs);
            return 1;
        }
    }

    ImgProgress *p = img_progress_new(progress, 1.0);
    Error *err = NULL;
    bool ok = block_amend(bs, opts, force, amend_progress, p, &err);
    img_progress_update(p, 1, 1);     /* as qemu-img: also on failure */
    img_progress_end(p);
    block_node_unref(bs);
    if (!ok) {
        error_report_err(err);
        return 1;
    }
    return 0;
}
