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
    if (img_image_opts()) {
        return img_open_image_opts(filename, fmt, flags);
    }
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

BlockNode *img_open_maybe_opts(const char *filename, const char *fmt,
                               int flags, bool image_opts)
{
    /* The option list is read as qemu-img reads it (img-image-opts.c);
     * the block layer probes a format the list leaves out. */
    if (image_opts) {
        return img_open_image_opts(filename, fmt, flags);
    }
    return img_open(filename, fmt, flags, false);
}

char *img_path_combine(const char *base_path, const char *filename)
{
    const char *slash;

    if (strncmp(base_path, "json:", 5) == 0) {
        return NULL;
    }
    /* Absolute, or prefixed (json:, file:, nbd://): taken as it is, as
     * QEMU's path_has_protocol rule (a colon before any slash). */
    if (filename[0] == '/' || filename[strcspn(filename, ":/")] == ':') {
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
