/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img - helpers shared by the subcommands. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "strata-img/img-common.h"
#include "util/cleanup.h"
#include "util/error.h"
#include "util/keyval.h"
#include "util/units.h"

void img_usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", error_get_progname());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help' for more information\n",
            error_get_progname());
    exit(1);
}

void img_bad_option(int c, char **argv)
{
    /* getopt leaves the offending word at optind - 1. */
    const char *word = argv[optind - 1];

    if (c == ':') {
        img_usage_error("missing argument for option '%s'", word);
    }
    img_usage_error("unrecognized option '%s'", word);
}

bool img_parse_output(const char *arg, ImgOutputFormat *out)
{
    if (strcmp(arg, "human") == 0) {
        *out = OFORMAT_HUMAN;
        return true;
    }
    if (strcmp(arg, "json") == 0) {
        *out = OFORMAT_JSON;
        return true;
    }
    error_report("--output must be used with human or json as argument.");
    return false;
}

BlockNode *img_open(const char *filename, const char *fmt, int flags,
                    bool quiet)
{
    Error *err = NULL;
    BlockNode *bs = block_open_image(filename, fmt, flags, &err);

    if (!bs) {
        error_prepend(&err, "Could not open '%s': ", filename);
        error_report_err(err);
        return NULL;
    }
    if (!fmt && (flags & BLOCK_O_RDWR) && !quiet &&
        block_node_is_probe_fallback(bs)) {
        img_warn_probed_raw(filename);
    }
    return bs;
}

void img_warn_probed_raw(const char *filename)
{
    fprintf(stderr,
            "WARNING: Image format was not specified for '%s' and "
            "probing guessed raw.\n"
            "         Automatically detecting the format is dangerous "
            "for raw images, write operations on block 0 will be "
            "restricted.\n"
            "         Specify the 'raw' format explicitly to remove the "
            "restrictions.\n",
            filename);
}

/* QEMU probes the format when --image-opts names none: look at the file
 * the options name, as a plain open would.  False with errp set when
 * there is nothing to probe or the file cannot be opened. */
static bool probe_driver(json_t *opts, int flags, Error **errp)
{
    json_t *file = json_object_get(opts, "file");
    const char *name = json_string_value(json_object_get(file, "filename"));

    if (json_object_get(opts, "driver")) {
        return true;
    }
    if (!file) {
        error_setg(errp, "Must specify either driver or file");
        return false;
    }
    if (!name) {
        return true;  /* the open below names what is missing */
    }
    BlockNode *bs = block_open_image(name, NULL,
                                     (flags & BLOCK_O_FORCE_SHARE) |
                                     BLOCK_O_NO_BACKING, errp);
    if (!bs) {
        return false;
    }
    json_object_set_new(opts, "driver",
                        json_string(block_node_driver_name(bs)));
    block_node_unref(bs);
    return true;
}

BlockNode *img_open_maybe_opts(const char *filename, const char *fmt,
                               int flags, bool image_opts)
{
    if (!image_opts) {
        return img_open(filename, fmt, flags, false);
    }
    if (fmt) {
        error_report("--image-opts and --format are mutually exclusive");
        return NULL;
    }
    Error *err = NULL;
    CLEANUP_JSON json_t *opts = keyval_parse(filename, NULL, &err);
    BlockNode *bs = NULL;
    if (opts) {
        if (flags & BLOCK_O_FORCE_SHARE) {
            json_object_set_new(opts, "force-share", json_true());
        }
        json_object_set_new(opts, "read-only",
                            json_boolean(!(flags & BLOCK_O_RDWR)));
        /* As QEMU, a file child given by its name alone is a file. */
        json_t *file = json_object_get(opts, "file");
        if (json_is_object(file) && json_object_get(file, "filename") &&
            !json_object_get(file, "driver")) {
            json_object_set_new(file, "driver", json_string("file"));
        }
        if (probe_driver(opts, flags, &err)) {
            bs = block_node_open(opts, &err);
        }
    }
    if (!bs) {
        error_prepend(&err, "Could not open '%s': ", filename);
        error_report_err(err);
    }
    return bs;
}

char *img_path_combine(const char *base_path, const char *filename)
{
    const char *slash;

    if (strncmp(base_path, "json:", 5) == 0) {
        return NULL;
    }
    if (filename[0] == '/' || strstr(filename, "://") != NULL) {
        return strdup(filename);
    }
    slash = strrchr(base_path, '/');
    if (!slash) {
        return strdup(filename);
    }
    char *out = NULL;
    if (asprintf(&out, "%.*s%s", (int)(slash - base_path + 1), base_path,
                 filename) < 0) {
        return NULL;
    }
    return out;
}

void img_print_json(json_t *value)
{
    CLEANUP_FREE char *text = json_dumps(value, JSON_INDENT(4) |
                                         JSON_PRESERVE_ORDER |
                                         JSON_ENCODE_ANY);
    if (text) {
        printf("%s\n", text);
    }
}

void img_qprintf(bool quiet, const char *fmt, ...)
{
    va_list ap;

    if (quiet) {
        return;
    }
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}

bool img_parse_image_size(const char *str, uint64_t *out)
{
    Error *err = NULL;

    /* qemu-img refuses sizes that do not fit in int64_t. */
    if (!parse_size(str, out, &err) || *out > INT64_MAX) {
        if (err) {
            error_free(err);
        }
        error_report("Invalid image size specified. You may use k, M, G, T, "
                     "P or E suffixes for");
        error_report("kilobytes, megabytes, gigabytes, terabytes, petabytes "
                     "and exabytes.");
        return false;
    }
    return true;
}

bool img_cvtnum(const char *name, const char *value, int64_t min, int64_t max,
                int64_t *out)
{
    Error *err = NULL;
    uint64_t v = 0;
    bool ok = parse_size(value, &v, &err);
    bool range = !ok && err->errnum == ERANGE;
    error_free(err);
    if (!ok && !range) {
        error_report("Invalid %s specified. You may use k, M, G, T, P or E "
                     "suffixes for", name);
        error_report("kilobytes, megabytes, gigabytes, terabytes, petabytes "
                     "and exabytes.");
        return false;
    }
    if (range || v > (uint64_t)max || (int64_t)v < min) {
        error_report("Invalid %s specified. Must be between %" PRId64
                     " and %" PRId64 ".", name, min, max);
        return false;
    }
    *out = (int64_t)v;
    return true;
}
