/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img create [-q] [-f fmt] [-b backing [-F backing_fmt]] [-u]
 *                   [-o options] filename [size]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "strata-img/img-common.h"
#include "util/cleanup.h"
#include "util/error.h"

/* Appends -o arguments with ',' as qemu-img does with repeated -o. */
static void append_optstr(char **acc, const char *more)
{
    char *joined = NULL;

    if (!*acc) {
        *acc = strdup(more);
        return;
    }
    if (asprintf(&joined, "%s,%s", *acc, more) >= 0) {
        free(*acc);
        *acc = joined;
    }
}

/* Opens the backing file to check it and learn its size, as qemu-img
 * does unless -u.  Returns false after printing the error. */
static bool probe_backing(const char *filename, const char *backing,
                          const char *backing_fmt, uint64_t *size)
{
    CLEANUP_FREE char *path = img_path_combine(filename, backing);
    Error *err = NULL;
    BlockNode *bs;

    bs = block_open_image(path ? path : backing, backing_fmt,
                          BLOCK_O_NO_BACKING, &err);
    if (!bs) {
        fprintf(stderr, "%s: %s: %s\n", error_get_progname(), filename,
                error_get_pretty(err));
        error_print_hint(err);
        fputs("Could not open backing image.\n", stderr);
        error_free(err);
        return false;
    }
    *size = block_node_size(bs);
    block_node_unref(bs);
    return true;
}

int cmd_create(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = "raw";
    const char *backing = NULL;
    const char *backing_fmt = NULL;
    CLEANUP_FREE char *optstr = NULL;
    bool quiet = false, unsafe = false, help = false;
    const char *filename;
    json_t *opts;
    int c, ret = 1;

    optind = 1;
    while ((c = getopt_long(argc, argv, ":F:b:f:ho:qu", long_options,
                            NULL)) != -1) {
        switch (c) {
        case IMG_OPT_OBJECT: img_object_add(optarg); break;
        case 'F': backing_fmt = optarg; break;
        case 'b': backing = optarg; break;
        case 'f': fmt = optarg; break;
        case 'h': img_help();
        case 'o': append_optstr(&optstr, optarg); break;
        case 'q': quiet = true; break;
        case 'u': unsafe = true; break;
        default: img_bad_option(c, argv);
        }
    }

    opts = img_parse_create_opts(optstr ? optstr : "", &help,
                                 optind < argc ? argv[optind] : "");
    if (!opts) {
        return 1;
    }
    if (!img_format_known(fmt)) {
        if (block_driver_known(fmt)) {
            error_report("Format driver '%s' does not support image creation",
                         fmt);
        } else if (optind < argc) {
            error_report("%s: Unknown file format '%s'", argv[optind], fmt);
        } else {
            error_report("Unknown file format '%s'", fmt);
        }
        goto out;
    }
    if (help) {
        img_print_create_help(fmt, optind < argc);
        ret = 0;
        goto out;
    }
    if (optind >= argc) {
        img_usage_error("Expecting image file name");
    }
    filename = argv[optind++];

    uint64_t size = 0;
    bool have_size = false;
    if (optind < argc) {
        if (!img_parse_image_size(argv[optind], &size)) {
            goto out;
        }
        have_size = true;
        optind++;
    }
    if (optind != argc) {
        img_usage_error("Unexpected argument: %s", argv[optind]);
    }

    if (!img_check_create_opts(fmt, opts, filename) ||
        !img_normalize_create_opts(fmt, opts, filename)) {
        goto out;
    }
    if (have_size) {
        if (json_object_get(opts, "size")) {
            error_report("%s: The image size must be specified only once",
                         filename);
            goto out;
        }
        json_object_set_new(opts, "size", json_integer((json_int_t)size));
    }
    if (backing) {
        json_object_set_new(opts, "backing_file", json_string(backing));
    }
    if (backing_fmt) {
        json_object_set_new(opts, "backing_fmt", json_string(backing_fmt));
    }

    const char *bfile = json_string_value(json_object_get(opts,
                                                          "backing_file"));
    const char *bfmt = json_string_value(json_object_get(opts,
                                                         "backing_fmt"));
    if (bfile) {
        if (strcmp(bfile, filename) == 0) {
            error_report("%s: Error: Trying to create an image with the same "
                         "filename as the backing file", filename);
            goto out;
        }
        if (bfile[0] == '\0') {
            error_report("%s: Expected backing file name, got empty string",
                         filename);
            goto out;
        }
        /* QEMU opens the backing file first (unless -u), so its open
         * errors, an unknown -F included, come before the complaint about
         * a missing -F, which then names the format probing found. */
        uint64_t backing_size = 0;
        if (!unsafe) {
            if (bfmt && !img_format_known(bfmt) && !block_driver_known(bfmt)) {
                fprintf(stderr, "%s: %s: Unknown driver '%s'\n"
                        "Could not open backing image.\n",
                        error_get_progname(), filename, bfmt);
                goto out;
            }
            if (!probe_backing(filename, bfile, bfmt, &backing_size)) {
                goto out;
            }
        }
        if (!bfmt) {
            error_report("%s: Backing file specified without backing format",
                         filename);
            if (!unsafe) {
                CLEANUP_FREE char *path = img_path_combine(filename, bfile);
                const char *probed = block_probe_format(path ? path : bfile,
                                                        NULL);
                if (probed) {
                    /* qemu-img ends this hint without a newline. */
                    fprintf(stderr, "Detected format of %s.", probed);
                }
            }
            goto out;
        }
        if (unsafe && !img_format_known(bfmt) && !block_driver_known(bfmt)) {
            error_report("%s: Unknown backing file format '%s'", filename,
                         bfmt);
            goto out;
        }
        if (!unsafe && !json_object_get(opts, "size")) {
            json_object_set_new(opts, "size",
                                json_integer((json_int_t)backing_size));
        }
    }
    if (!json_object_get(opts, "size")) {
        error_report("%s: Image creation needs a size parameter", filename);
        goto out;
    }

    if (!quiet) {
        img_print_formatting(filename, fmt, opts);
    }
    Error *err = NULL;
    if (!block_create(fmt, filename, opts, &err)) {
        error_prepend(&err, "%s: ", filename);
        error_report_err(err);
        goto out;
    }
    ret = 0;
out:
    json_decref(opts);
    return ret;
}
