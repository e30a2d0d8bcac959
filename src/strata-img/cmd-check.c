/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img check [-q] [-f fmt] [--output=human|json] [-r leaks|all] [-U]
 *                  filename
 *
 * Exit codes as qemu-img: 0 clean, 1 the check could not run, 2
 * corruptions, 3 leaks only, 63 the format does not support checks.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "block/block.h"
#include "strata-img/img-common.h"
#include "util/error.h"

static void dump_human(const BlockCheckResult *r, bool quiet)
{
    if (!(r->corruptions || r->leaks || r->check_errors)) {
        img_qprintf(quiet, "No errors were found on the image.\n");
    } else {
        if (r->corruptions) {
            img_qprintf(quiet, "\n%d errors were found on the image.\n"
                        "Data may be corrupted, or further writes to the "
                        "image may corrupt it.\n", r->corruptions);
        }
        if (r->leaks) {
            img_qprintf(quiet, "\n%d leaked clusters were found on the "
                        "image.\nThis means waste of disk space, but no "
                        "harm to data.\n", r->leaks);
        }
        if (r->check_errors) {
            img_qprintf(quiet, "\n%d internal errors have occurred during "
                        "the check.\n", r->check_errors);
        }
    }
    if (r->bfi.total_clusters != 0 && r->bfi.allocated_clusters != 0) {
        img_qprintf(quiet, "%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, "
                    "%0.2f%% fragmented, %0.2f%% compressed clusters\n",
                    r->bfi.allocated_clusters, r->bfi.total_clusters,
                    r->bfi.allocated_clusters * 100.0 /
                        r->bfi.total_clusters,
                    r->bfi.fragmented_clusters * 100.0 /
                        r->bfi.allocated_clusters,
                    r->bfi.compressed_clusters * 100.0 /
                        r->bfi.allocated_clusters);
    }
    if (r->image_end_offset) {
        img_qprintf(quiet, "Image end offset: %" PRId64 "\n",
                    r->image_end_offset);
    }
}

/* qemu-img's ImageCheck: optional members only when non-zero. */
static void dump_json(const BlockCheckResult *r, const char *filename,
                      const char *format, bool quiet)
{
    json_t *o = json_object();

#define PUT_NONZERO(key, val) \
    do { \
        if (val) { \
            json_object_set_new(o, key, json_integer((json_int_t)(val))); \
        } \
    } while (0)
    /* qemu-img prints the members in its QDict's hash order; match it so
     * output compares equal as text. */
    PUT_NONZERO("image-end-offset", r->image_end_offset);
    PUT_NONZERO("compressed-clusters", r->bfi.compressed_clusters);
    PUT_NONZERO("total-clusters", r->bfi.total_clusters);
    PUT_NONZERO("corruptions", r->corruptions);
    PUT_NONZERO("corruptions-fixed", r->corruptions_fixed);
    json_object_set_new(o, "check-errors", json_integer(r->check_errors));
    PUT_NONZERO("leaks", r->leaks);
    PUT_NONZERO("leaks-fixed", r->leaks_fixed);
    PUT_NONZERO("allocated-clusters", r->bfi.allocated_clusters);
    json_object_set_new(o, "filename", json_string(filename));
    json_object_set_new(o, "format", json_string(format));
    PUT_NONZERO("fragmented-clusters", r->bfi.fragmented_clusters);
#undef PUT_NONZERO
    if (!quiet) {
        img_print_json(o);
    }
    json_decref(o);
}

int cmd_check(int argc, char **argv)
{
    enum { OPT_OUTPUT = 256 };
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { "image-opts", no_argument, NULL, IMG_OPT_IMAGE_OPTS },
        { "format", required_argument, NULL, 'f' },
        { "repair", required_argument, NULL, 'r' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    ImgOutputFormat ofmt = OFORMAT_HUMAN;
    bool quiet = false;
    int fix = 0, flags = BLOCK_O_NO_REPAIR, c;

    optind = 1;
    while ((c = getopt_long(argc, argv, ":hf:r:T:qU", long_options,
                            NULL)) != -1) {
        switch (c) {
        case IMG_OPT_OBJECT: img_object_add(optarg); break;
        case IMG_OPT_IMAGE_OPTS: img_set_image_opts(true); break;
        case 'h': img_help();
        case 'f': fmt = optarg; break;
        case 'r':
            flags |= BLOCK_O_RDWR | BLOCK_O_METADATA_ONLY;
            if (strcmp(optarg, "leaks") == 0) {
                fix = BLOCK_FIX_LEAKS;
            } else if (strcmp(optarg, "all") == 0) {
                fix = BLOCK_FIX_LEAKS | BLOCK_FIX_ERRORS;
            } else {
                img_usage_error("Unknown option value for -r (expecting "
                                "'leaks' or 'all'): %s", optarg);
            }
            break;
        case 'T': break; /* cache mode: accepted for compatibility */
        case 'q': quiet = true; break;
        case 'U': flags |= BLOCK_O_FORCE_SHARE; break;
        case OPT_OUTPUT:
            if (!img_parse_output(optarg, &ofmt)) {
                return 1;
            }
            break;
        default: img_bad_option(c, argv);
        }
    }
    if (optind != argc - 1) {
        img_usage_error("Expecting one image file name");
    }
    const char *filename = argv[optind];
    if ((flags & BLOCK_O_FORCE_SHARE) && (flags & BLOCK_O_RDWR)) {
        error_report("Could not open '%s': force-share=on can only be used "
                     "with read-only images", filename);
        return 1;
    }

    BlockNode *bs = img_open(filename, fmt, flags, quiet);
    if (!bs) {
        return 1;
    }
    BlockCheckResult res = { 0 };
    int ret = block_check(bs, &res, fix);
    if (ret == -ENOTSUP) {
        error_report("This image format does not support checks");
        block_node_unref(bs);
        return 63;
    }
    if (ret == 0 && (res.corruptions_fixed || res.leaks_fixed)) {
        int leaks_fixed = res.leaks_fixed;
        int corruptions_fixed = res.corruptions_fixed;
        if (ofmt == OFORMAT_HUMAN) {
            img_qprintf(quiet, "The following inconsistencies were found and "
                        "repaired:\n\n    %d leaked clusters\n"
                        "    %d corruptions\n\n"
                        "Double checking the fixed image now...\n",
                        leaks_fixed, corruptions_fixed);
        }
        memset(&res, 0, sizeof(res));
        ret = block_check(bs, &res, 0);
        res.leaks_fixed = leaks_fixed;
        res.corruptions_fixed = corruptions_fixed;
    }
    if (ret == 0) {
        if (ofmt == OFORMAT_HUMAN) {
            dump_human(&res, quiet);
        } else {
            dump_json(&res, filename, block_node_driver_name(bs), quiet);
        }
    }
    block_node_unref(bs);

    if (ret < 0 || res.check_errors) {
        if (ret < 0) {
            error_report("Check failed: %s", strerror(-ret));
        } else {
            error_report("Check failed");
        }
        return 1;
    }
    if (res.corruptions) {
        return 2;
    }
    if (res.leaks) {
        return 3;
    }
    return 0;
}
