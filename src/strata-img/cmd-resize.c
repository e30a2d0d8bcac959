/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img resize [-f fmt] [--preallocation=mode] [-q] [--shrink]
 *                   filename [+|-]size
 */
#include <stdio.h>
#include <string.h>

#include "block/block.h"
#include "strata-img/img-common.h"
#include "util/error.h"
#include "util/units.h"

int cmd_resize(int argc, char **argv)
{
    enum { OPT_PREALLOC = 256, OPT_SHRINK };
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { "image-opts", no_argument, NULL, IMG_OPT_IMAGE_OPTS },
        { "format", required_argument, NULL, 'f' },
        { "preallocation", required_argument, NULL, OPT_PREALLOC },
        { "shrink", no_argument, NULL, OPT_SHRINK },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    PreallocMode prealloc = PREALLOC_OFF;
    bool quiet = false, shrink = false;
    int c;

    /* The size is always last and may look like an option ("-1G"), so it
     * is taken off before getopt sees it, as qemu-img does. */
    if (argc < 3) {
        img_usage_error("Not enough arguments");
    }
    const char *size_arg = argv[--argc];

    optind = 1;
    while ((c = getopt_long(argc, argv, ":f:hq", long_options, NULL)) != -1) {
        switch (c) {
        case IMG_OPT_OBJECT: img_object_add(optarg); break;
        case IMG_OPT_IMAGE_OPTS: img_set_image_opts(true); break;
        case 'h': img_help();
        case 'f': fmt = optarg; break;
        case 'q': quiet = true; break;
        case OPT_SHRINK: shrink = true; break;
        case OPT_PREALLOC: {
            int i;
            for (i = 0; prealloc_mode_names[i]; i++) {
                if (strcmp(prealloc_mode_names[i], optarg) == 0) {
                    break;
                }
            }
            if (!prealloc_mode_names[i]) {
                error_report("Invalid preallocation mode '%s'", optarg);
                return 1;
            }
            prealloc = (PreallocMode)i;
            break;
        }
        default: img_bad_option(c, argv);
        }
    }
    if (optind != argc - 1) {
        img_usage_error("Expecting image file name and size");
    }
    const char *filename = argv[optind];

    int relative = 0;
    if (size_arg[0] == '+') {
        relative = 1;
        size_arg++;
    } else if (size_arg[0] == '-') {
        relative = -1;
        size_arg++;
    }
    uint64_t n;
    Error *err = NULL;
    if (!parse_size(size_arg, &n, &err)) {
        error_free(err);
        error_report("Parameter 'size' expects a non-negative number below "
                     "2^64\nOptional suffix k, M, G, T, P or E means kilo-, "
                     "mega-, giga-, tera-, peta-\nand exabytes, respectively.");
        return 1;
    }

    BlockNode *bs = img_open(filename, fmt, BLOCK_O_RDWR, quiet);
    if (!bs) {
        return 1;
    }
    int ret = 1;
    uint64_t current = block_node_size(bs);
    __int128 total = relative ? (__int128)current + (__int128)relative * n
                              : (__int128)n;
    if (total <= 0 || total > INT64_MAX) {
        error_report("New image size must be positive");
        goto out;
    }
    if ((uint64_t)total < current && prealloc != PREALLOC_OFF) {
        error_report("Preallocation can only be used for growing images");
        goto out;
    }
    if ((uint64_t)total < current && !shrink) {
        error_report("Use the --shrink option to perform a shrink operation.");
        warn_report("Shrinking an image will delete all data beyond the "
                    "shrunken image's end. Before performing such an "
                    "operation, make sure there is no important data there.");
        goto out;
    }
    if (!block_truncate(bs, (uint64_t)total, false, prealloc, &err)) {
        error_report_err(err);
        goto out;
    }
    img_qprintf(quiet, "Image resized.\n");
    ret = 0;
out:
    block_node_unref(bs);
    return ret;
}
