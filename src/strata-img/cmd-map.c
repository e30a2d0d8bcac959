/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img map [-f fmt] [--output=human|json] [--start-offset=off]
 *                [--max-length=len] [-U] filename
 *
 * Entries and their merging follow qemu-img 7.2 exactly: depth counts
 * backing hops from the top (0 = the image itself), "present" is false
 * where no layer defines the content, and adjacent runs merge when all
 * their fields agree and their host offsets are contiguous.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "block/block.h"
#include "strata-img/img-common.h"
#include "util/cleanup.h"
#include "util/error.h"
#include "util/units.h"

typedef struct MapEntry {
    uint64_t start;
    uint64_t length;
    int depth;
    bool present;
    bool zero;
    bool data;
    bool has_offset;
    uint64_t offset;
    const char *filename; /* of the node holding the data, or NULL */
} MapEntry;

static int get_entry(BlockNode *bs, uint64_t offset,
                     uint64_t bytes, MapEntry *e)
{
    uint64_t pnum = 0, map = 0;
    BlockNode *file = NULL;
    int shown_depth = 0;
    int ret;

    /* As qemu-img: each layer alone, descending while the run is neither
     * data nor zeroes there; the depth shown is where the search stopped
     * (zeroes past a shorter backing node stop it in the layer above). */
    for (BlockNode *n = bs;; n = block_node_backing(n), shown_depth++) {
        ret = block_status(n, offset, bytes, &pnum, &map, &file);
        if (ret < 0) {
            return ret;
        }
        if (pnum == 0) {
            return -EIO; /* a driver broke the contract; avoid looping */
        }
        if (ret & (BLOCK_STATUS_DATA | BLOCK_STATUS_ZERO)) {
            break;
        }
        if (!block_node_backing(n)) {
            ret = 0;
            break;
        }
        bytes = pnum;
    }
    *e = (MapEntry) {
        .start = offset,
        .length = pnum,
        .depth = shown_depth,
        .present = !!(ret & BLOCK_STATUS_ALLOCATED),
        .zero = !!(ret & BLOCK_STATUS_ZERO),
        .data = !!(ret & BLOCK_STATUS_DATA),
        .has_offset = !!(ret & BLOCK_STATUS_OFFSET_VALID),
        .offset = map,
    };
    if (e->has_offset && file) {
        e->filename = block_node_filename(file) ? block_node_filename(file)
                                                : block_node_name(file);
    }
    return 0;
}

static bool mergeable(const MapEntry *cur, const MapEntry *next)
{
    if (cur->length == 0) {
        return false;
    }
    if (cur->zero != next->zero || cur->data != next->data ||
        cur->depth != next->depth || cur->present != next->present ||
        (cur->filename != NULL) != (next->filename != NULL) ||
        cur->has_offset != next->has_offset) {
        return false;
    }
    if (cur->filename && strcmp(cur->filename, next->filename) != 0) {
        return false;
    }
    if (cur->has_offset && cur->offset + cur->length != next->offset) {
        return false;
    }
    return true;
}

static int dump_entry(ImgOutputFormat ofmt, const MapEntry *e, MapEntry *next)
{
    if (ofmt == OFORMAT_HUMAN) {
        if (e->data && !e->has_offset) {
            error_report("File contains external, encrypted or compressed "
                         "clusters.");
            return -1;
        }
        if (e->data && !e->zero) {
            printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n",
                   e->start, e->length, e->has_offset ? e->offset : 0,
                   e->filename ? e->filename : "");
        }
        /* Human output does not tell zero from unallocated: fold them
         * together so more runs merge. */
        if (next && (!next->data || next->zero)) {
            next->data = false;
            next->zero = true;
        }
        return 0;
    }
    printf("{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %d,"
           " \"present\": %s, \"zero\": %s, \"data\": %s", e->start,
           e->length, e->depth, e->present ? "true" : "false",
           e->zero ? "true" : "false", e->data ? "true" : "false");
    if (e->has_offset) {
        printf(", \"offset\": %" PRIu64, e->offset);
    }
    putchar('}');
    if (next) {
        puts(",");
    }
    return 0;
}

static bool parse_offset_arg(const char *what, const char *arg, uint64_t *out)
{
    int64_t v;
    if (!img_cvtnum(what, arg, 0, INT64_MAX, &v)) {
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

int cmd_map(int argc, char **argv)
{
    enum { OPT_OUTPUT = 256, OPT_START, OPT_MAXLEN };
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { "image-opts", no_argument, NULL, IMG_OPT_IMAGE_OPTS },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "start-offset", required_argument, NULL, OPT_START },
        { "max-length", required_argument, NULL, OPT_MAXLEN },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    ImgOutputFormat ofmt = OFORMAT_HUMAN;
    uint64_t start = 0, max_length = UINT64_MAX;
    int flags = 0, c, ret = 0;

    optind = 1;
    while ((c = getopt_long(argc, argv, ":f:hU", long_options, NULL)) != -1) {
        switch (c) {
        case IMG_OPT_OBJECT: img_object_add(optarg); break;
        case IMG_OPT_IMAGE_OPTS: img_set_image_opts(true); break;
        case 'h': img_help();
        case 'f': fmt = optarg; break;
        case 'U': flags |= BLOCK_O_FORCE_SHARE; break;
        case OPT_OUTPUT:
            if (!img_parse_output(optarg, &ofmt)) {
                return 1;
            }
            break;
        case OPT_START:
            if (!parse_offset_arg("start offset", optarg, &start)) {
                return 1;
            }
            break;
        case OPT_MAXLEN:
            if (!parse_offset_arg("max length", optarg, &max_length)) {
                return 1;
            }
            break;
        default: img_bad_option(c, argv);
        }
    }
    if (optind != argc - 1) {
        img_usage_error("Expecting one image file name");
    }

    BlockNode *bs = img_open(argv[optind], fmt, flags, false);
    if (!bs) {
        return 1;
    }
    uint64_t length = block_node_size(bs);
    if (max_length != UINT64_MAX && start + max_length < length) {
        length = start + max_length;
    }

    if (ofmt == OFORMAT_HUMAN) {
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    } else {
        putchar('[');
    }
    MapEntry cur = { .start = start };
    while (cur.start + cur.length < length) {
        uint64_t offset = cur.start + cur.length;
        MapEntry next;
        int r = get_entry(bs, offset, length - offset, &next);
        if (r < 0) {
            fflush(stdout);
            error_report("Could not read file metadata: %s", strerror(-r));
            ret = 1;
            goto out;
        }
        if (mergeable(&cur, &next)) {
            cur.length += next.length;
            continue;
        }
        if (cur.length > 0 && dump_entry(ofmt, &cur, &next) < 0) {
            ret = 1;
            goto out;
        }
        cur = next;
    }
    if (dump_entry(ofmt, &cur, NULL) < 0) {
        ret = 1;
        goto out;
    }
    if (ofmt == OFORMAT_JSON) {
        puts("]");
    }
out:
    fflush(stdout);
    block_node_unref(bs);
    return ret;
}
