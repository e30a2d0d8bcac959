/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img info [-f fmt] [--output=human|json] [--backing-chain] [-U]
 *                 filename
 *
 * Each image of the chain is opened alone (no backing), so info works
 * even when a backing file is missing, as qemu-img's does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "strata-img/img-common.h"
#include "util/cleanup.h"
#include "util/error.h"
#include "util/units.h"

/* qemu-img's ImageInfo for one node, keys in the order it prints them. */
static json_t *collect_info(BlockNode *bs, const char *filename)
{
    json_t *info = json_object();
    int64_t actual = block_allocated_file_size(bs);
    uint32_t cluster_size = block_node_cluster_size(bs);
    const char *shown = block_node_filename(bs) ? block_node_filename(bs)
                                                : filename;
    const char *backing_file = block_node_backing_file(bs);
    const char *backing_format = block_node_backing_format(bs);

    if (backing_file && backing_format) {
        json_object_set_new(info, "backing-filename-format",
                            json_string(backing_format));
    }
    json_t *snapshots = block_snapshot_info_json(bs);
    if (snapshots) {
        json_object_set_new(info, "snapshots", snapshots);
    }
    json_object_set_new(info, "virtual-size",
                        json_integer((json_int_t)block_node_size(bs)));
    json_object_set_new(info, "filename", json_string(shown));
    if (cluster_size) {
        json_object_set_new(info, "cluster-size", json_integer(cluster_size));
    }
    json_object_set_new(info, "format",
                        json_string(block_node_driver_name(bs)));
    if (actual >= 0) {
        json_object_set_new(info, "actual-size", json_integer(actual));
    }
    json_t *spec = block_node_specific_info(bs);
    if (spec) {
        json_object_set_new(info, "format-specific", spec);
    }
    if (backing_file) {
        /* Relative to the directory of the image's file, which a json:
         * name may still tell (through a filter); absent when not. */
        Error *err = NULL;
        CLEANUP_FREE char *full = block_full_backing_filename(bs, &err);
        error_free(err);
        if (full) {
            json_object_set_new(info, "full-backing-filename",
                                json_string(full));
        }
        json_object_set_new(info, "backing-filename",
                            json_string(backing_file));
    }
    if (block_node_has_image_info(bs)) {
        json_object_set_new(info, "dirty-flag",
                            json_boolean(block_node_is_dirty(bs)));
    }
    return info;
}

static void dump_value(int indent, json_t *value);

/* Format-specific data as qemu-img prints it: "key: value", dashes in
 * keys shown as spaces, four spaces per level. */
static void dump_object(int indent, json_t *obj)
{
    const char *key;
    json_t *value;

    json_object_foreach(obj, key, value) {
        bool composite = json_is_object(value) || json_is_array(value);
        CLEANUP_FREE char *name = strdup(key);
        for (char *p = name; p && *p; p++) {
            if (*p == '-') {
                *p = ' ';
            }
        }
        printf("%*s%s:%c", indent * 4, "", name ? name : key,
               composite ? '\n' : ' ');
        dump_value(indent + 1, value);
    }
}

static void dump_array(int indent, json_t *arr)
{
    size_t i;
    json_t *value;

    json_array_foreach(arr, i, value) {
        bool composite = json_is_object(value) || json_is_array(value);
        printf("%*s[%zu]:%c", indent * 4, "", i, composite ? '\n' : ' ');
        dump_value(indent + 1, value);
    }
}

static void dump_value(int indent, json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT:
        dump_object(indent, value);
        break;
    case JSON_ARRAY:
        dump_array(indent, value);
        break;
    case JSON_STRING:
        printf("%s\n", json_string_value(value));
        break;
    case JSON_INTEGER:
        printf("%" JSON_INTEGER_FORMAT "\n", json_integer_value(value));
        break;
    case JSON_REAL:
        printf("%g\n", json_real_value(value));
        break;
    case JSON_TRUE:
        printf("true\n");
        break;
    case JSON_FALSE:
        printf("false\n");
        break;
    case JSON_NULL:
        printf("null\n");
        break;
    }
}

static void dump_human(json_t *info)
{
    char vsize[32], dsize[32];
    json_int_t virt = json_integer_value(json_object_get(info,
                                                         "virtual-size"));
    json_t *actual = json_object_get(info, "actual-size");
    json_t *v;

    format_size((uint64_t)virt, vsize, sizeof(vsize));
    if (actual) {
        format_size((uint64_t)json_integer_value(actual), dsize,
                    sizeof(dsize));
    } else {
        snprintf(dsize, sizeof(dsize), "unavailable");
    }
    printf("image: %s\n"
           "file format: %s\n"
           "virtual size: %s (%" JSON_INTEGER_FORMAT " bytes)\n"
           "disk size: %s\n",
           json_string_value(json_object_get(info, "filename")),
           json_string_value(json_object_get(info, "format")),
           vsize, virt, dsize);
    if ((v = json_object_get(info, "cluster-size"))) {
        printf("cluster_size: %" JSON_INTEGER_FORMAT "\n",
               json_integer_value(v));
    }
    if (json_is_true(json_object_get(info, "dirty-flag"))) {
        printf("cleanly shut down: no\n");
    }
    if ((v = json_object_get(info, "backing-filename"))) {
        json_t *full = json_object_get(info, "full-backing-filename");
        printf("backing file: %s", json_string_value(v));
        if (!full) {
            printf(" (cannot determine actual path)");
        } else if (strcmp(json_string_value(v),
                          json_string_value(full)) != 0) {
            printf(" (actual path: %s)", json_string_value(full));
        }
        printf("\n");
        if ((v = json_object_get(info, "backing-filename-format"))) {
            printf("backing file format: %s\n", json_string_value(v));
        }
    }
    if ((v = json_object_get(info, "snapshots"))) {
        size_t i;
        json_t *o;
        printf("Snapshot list:\n");
        img_dump_snapshot(NULL);
        printf("\n");
        json_array_foreach(v, i, o) {
            json_t *ic = json_object_get(o, "icount");
            BlockSnapshotInfo sn = {
                .id = (char *)json_string_value(json_object_get(o, "id")),
                .name = (char *)json_string_value(json_object_get(o, "name")),
                .vm_state_size = (uint64_t)json_integer_value(
                    json_object_get(o, "vm-state-size")),
                .date_sec = (uint32_t)json_integer_value(
                    json_object_get(o, "date-sec")),
                .vm_clock_nsec =
                    (uint64_t)json_integer_value(
                        json_object_get(o, "vm-clock-sec")) * 1000000000ull +
                    (uint64_t)json_integer_value(
                        json_object_get(o, "vm-clock-nsec")),
                .icount = ic ? (uint64_t)json_integer_value(ic) : UINT64_MAX,
            };
            img_dump_snapshot(&sn);
            printf("\n");
        }
    }
    if ((v = json_object_get(info, "format-specific"))) {
        json_t *data = json_object_get(v, "data");
        printf("Format specific information:\n");
        if (data) {
            dump_value(1, data);
        }
    }
}

/* Collects the info of filename and, with chain, of every backing file
 * below it.  Returns a JSON array, or NULL after printing an error. */
static json_t *collect_chain(const char *filename, const char *fmt,
                             bool chain, int flags)
{
    json_t *list = json_array();
    json_t *seen = json_object();
    CLEANUP_FREE char *cur_name = strdup(filename);
    CLEANUP_FREE char *cur_fmt = fmt ? strdup(fmt) : NULL;

    while (cur_name) {
        if (json_object_get(seen, cur_name)) {
            error_report("Backing file '%s' creates an infinite loop.",
                         cur_name);
            goto fail;
        }
        json_object_set_new(seen, cur_name, json_true());

        BlockNode *bs = img_open(cur_name, cur_fmt,
                                 flags | BLOCK_O_NO_BACKING | BLOCK_O_NO_IO, false);
        /* Backing files are names, whatever the top image was. */
        img_set_image_opts(false);
        if (!bs) {
            goto fail;
        }
        json_t *info = collect_info(bs, cur_name);
        block_node_unref(bs);
        json_array_append_new(list, info);

        free(cur_name);
        free(cur_fmt);
        cur_name = NULL;
        cur_fmt = NULL;
        if (!chain) {
            break;
        }
        json_t *next = json_object_get(info, "full-backing-filename");
        if (!next) {
            next = json_object_get(info, "backing-filename");
        }
        if (next) {
            cur_name = strdup(json_string_value(next));
            json_t *nfmt = json_object_get(info, "backing-filename-format");
            cur_fmt = nfmt ? strdup(json_string_value(nfmt)) : NULL;
        }
    }
    json_decref(seen);
    return list;
fail:
    json_decref(seen);
    json_decref(list);
    return NULL;
}

int cmd_info(int argc, char **argv)
{
    enum { OPT_OUTPUT = 256, OPT_BACKING_CHAIN };
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { "image-opts", no_argument, NULL, IMG_OPT_IMAGE_OPTS },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "backing-chain", no_argument, NULL, OPT_BACKING_CHAIN },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    ImgOutputFormat ofmt = OFORMAT_HUMAN;
    bool chain = false;
    int flags = 0;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, ":f:hU", long_options, NULL)) != -1) {
        switch (c) {
        case IMG_OPT_OBJECT: img_object_add(optarg); break;
        case IMG_OPT_IMAGE_OPTS: img_set_image_opts(true); break;
        case 'f': fmt = optarg; break;
        case 'h': img_help();
        case 'U': flags |= BLOCK_O_FORCE_SHARE; break;
        case OPT_OUTPUT:
            if (!img_parse_output(optarg, &ofmt)) {
                return 1;
            }
            break;
        case OPT_BACKING_CHAIN: chain = true; break;
        default: img_bad_option(c, argv);
        }
    }
    if (optind != argc - 1) {
        img_usage_error("Expecting one image file name");
    }

    json_t *list = collect_chain(argv[optind], fmt, chain, flags);
    if (!list) {
        return 1;
    }
    if (ofmt == OFORMAT_JSON) {
        img_print_json(chain ? list : json_array_get(list, 0));
    } else {
        size_t i;
        json_t *info;
        json_array_foreach(list, i, info) {
            if (i > 0) {
                printf("\n");
            }
            dump_human(info);
        }
    }
    json_decref(list);
    return 0;
}
