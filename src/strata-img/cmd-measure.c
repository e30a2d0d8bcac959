/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img measure [--output=human|json] [-O fmt] [-o options]
 *     [--size N | [--object def] [--image-opts] [-f fmt] [-l snapshot]
 *      filename]
 *
 * Option handling and output; the figures come from measure-calc.c.
 * Checks run in qemu-img's order, so a command line with several
 * mistakes gets the same first complaint.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "strata-img/img-common.h"
#include "strata-img/measure-calc.h"
#include "util/cleanup.h"
#include "util/error.h"
#include "util/keyval.h"

typedef struct MeasureArgs {
    ImgOutputFormat ofmt;
    const char *fmt;
    const char *out_fmt;
    const char *snapshot;
    char *optstr;
    bool image_opts;
    bool force_share;
    bool have_size;
    uint64_t size;
    json_t *secrets;      /* ids of --object secret,... */
} MeasureArgs;

/* qemu-img joins repeated -o with ','; a piece that would change the
 * meaning of its neighbours once joined (empty, a leading ',' or an odd
 * run of trailing ',') is refused. */
static bool append_options(char **acc, const char *more)
{
    size_t len = strlen(more), i = len;

    while (i > 0 && more[i - 1] == ',') {
        i--;
    }
    if (!more[0] || more[0] == ',' || (len - i) % 2) {
        error_report("Invalid option list: %s", more);
        return false;
    }
    char *joined = NULL;
    if (asprintf(&joined, "%s%s%s", *acc ? *acc : "", *acc ? "," : "",
                 more) < 0) {
        error_report("Out of memory");
        return false;
    }
    free(*acc);
    *acc = joined;
    return true;
}

/* -l snapshot.id=ID,snapshot.name=NAME must name nothing else; checked
 * while the options are read, as qemu-img does. */
static bool check_snapshot_param(const char *param)
{
    if (strncmp(param, "snapshot.", 9) != 0) {
        return true;
    }
    Error *err = NULL;
    CLEANUP_JSON json_t *o = keyval_parse(param, NULL, &err);
    const char *key, *sub;
    json_t *v, *w;
    bool ok = o != NULL;

    error_free(err);
    json_object_foreach(o, key, v) {
        if (strcmp(key, "snapshot") != 0 || !json_is_object(v)) {
            error_report("Invalid parameter '%s'", key);
            ok = false;
            break;
        }
        json_object_foreach(v, sub, w) {
            if (strcmp(sub, "id") && strcmp(sub, "name")) {
                error_report("Invalid parameter 'snapshot.%s'", sub);
                ok = false;
                break;
            }
        }
    }
    if (!ok) {
        error_report("Failed in parsing snapshot param '%s'", param);
    }
    return ok;
}

/* --object: only secrets matter here (they let a LUKS header be
 * sized); their contents are never needed, only that they exist. */
static bool add_object(MeasureArgs *a, const char *arg)
{
    Error *err = NULL;
    CLEANUP_JSON json_t *o = keyval_parse(arg, "qom-type", &err);

    if (!o) {
        error_report_err(err);
        return false;
    }
    const char *type = json_string_value(json_object_get(o, "qom-type"));
    const char *id = json_string_value(json_object_get(o, "id"));
    if (!type || strcmp(type, "secret") != 0) {
        return true;
    }
    if (!id) {
        error_report("Parameter 'id' is missing");
        return false;
    }
    if (!json_object_get(o, "file") && !json_object_get(o, "data")) {
        error_report("Either 'file' or 'data' must be provided");
        return false;
    }
    json_array_append_new(a->secrets, json_string(id));
    return true;
}

static bool parse_args(int argc, char **argv, MeasureArgs *a)
{
    enum { OPT_OUTPUT = 256, OPT_SIZE, OPT_OBJECT, OPT_IMAGE_OPTS };
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "size", required_argument, NULL, OPT_SIZE },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    /* No leading ':' here: as qemu-img's measure, getopt itself names a
     * bad option, and the help follows. */
    optind = 1;
    while ((c = getopt_long(argc, argv, "hf:O:o:l:U", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'f': a->fmt = optarg; break;
        case 'O': a->out_fmt = optarg; break;
        case 'o':
            if (!append_options(&a->optstr, optarg)) {
                return false;
            }
            break;
        case 'l':
            if (!check_snapshot_param(optarg)) {
                return false;
            }
            a->snapshot = optarg;
            break;
        case 'U': a->force_share = true; break;
        case OPT_OBJECT:
            if (!add_object(a, optarg)) {
                return false;
            }
            break;
        case OPT_IMAGE_OPTS: a->image_opts = true; break;
        case OPT_OUTPUT:
            if (!img_parse_output(optarg, &a->ofmt)) {
                return false;
            }
            break;
        case OPT_SIZE: {
            int64_t n;
            if (!img_cvtnum("image size", optarg, 0, INT64_MAX, &n)) {
                return false;
            }
            a->size = (uint64_t)n;
            a->have_size = true;
            break;
        }
        default:
            img_help();
        }
    }
    return true;
}

static bool is_bool_word(const char *s)
{
    static const char *const words[] = { "on", "yes", "true", "y", "off",
                                         "no", "false", "n", NULL };
    for (int i = 0; words[i]; i++) {
        if (!strcmp(s, words[i])) {
            return true;
        }
    }
    return false;
}

/* Parses -o as QemuOpts does for measure: each name=value in order is
 * looked up in the format's and its protocol's options and its value
 * converted; a bare name means name=on.  Returns NULL after printing. */
static json_t *parse_target_opts(const char *fmt, const char *optstr)
{
    CLEANUP_JSON json_t *opts = json_object();
    const char *p = optstr ? optstr : "";

    while (*p) {
        CLEANUP_FREE char *item = malloc(strlen(p) + 1);
        size_t n = 0;
        for (; *p; p++) {
            if (*p == ',') {
                if (p[1] != ',') {
                    p++;
                    break;
                }
                p++;
            }
            item[n++] = *p;
        }
        item[n] = '\0';
        char *eq = strchr(item, '=');
        const char *value = "on";
        if (eq) {
            *eq = '\0';
            value = eq + 1;
        }
        const BlockCreateOpt *d = img_lookup_create_opt(fmt, item);
        if (!d) {
            error_report("Invalid parameter '%s'", item);
            goto bad;
        }
        json_object_set_new(opts, item, json_string(value));
        if (d->type == BLOCK_OPT_BOOL && !is_bool_word(value)) {
            error_report("Parameter '%s' expects 'on' or 'off'", item);
            goto bad;
        }
        if (d->type == BLOCK_OPT_NUMBER) {
            /* QemuOpts reads numbers with strtoull in base 0: hex and
             * octal, leading blanks and wrapped negatives included. */
            char *end;
            errno = 0;
            unsigned long long num = strtoull(value, &end, 0);
            if (end == value || *end || (errno && errno != ERANGE)) {
                error_report("Parameter '%s' expects a number", item);
                goto bad;
            }
            if (errno == ERANGE) {
                error_report("Value '%s' is too large for parameter '%s'",
                             value, item);
                goto bad;
            }
            json_object_set_new(opts, item, json_integer((json_int_t)num));
        } else if (d->type != BLOCK_OPT_BOOL &&
                   !img_normalize_opt(d, opts, NULL)) {
            goto bad;
        }
    }
    return json_incref(opts);
bad:
    error_report("Invalid options for file format '%s'", fmt);
    return NULL;
}

/* Formats QEMU knows that can be created but not measured; strata
 * answers for them as qemu-img does instead of "Unknown". */
static bool qemu_creatable_format(const char *fmt)
{
    static const char *const names[] = { "file", "host_device", "vmdk",
                                         "vdi", "vhdx", "vpc", "qed", "qcow",
                                         "parallels", NULL };
    for (int i = 0; names[i]; i++) {
        if (!strcmp(fmt, names[i])) {
            return true;
        }
    }
    return false;
}

/* Checks that the target format can be measured; prints qemu-img's
 * answer otherwise. */
static bool check_target_format(const char *fmt)
{
    if (!strcmp(fmt, "qcow2") || !strcmp(fmt, "raw")) {
        return true;
    }
    if (img_format_known(fmt) || qemu_creatable_format(fmt)) {
        error_report("Block driver '%s' does not support size measurement",
                     fmt);
    } else if (block_driver_known(fmt)) {
        error_report("Format driver '%s' does not support image creation",
                     fmt);
    } else {
        error_report("Unknown file format '%s'", fmt);
    }
    return false;
}

static void print_result(const MeasureResult *r, ImgOutputFormat ofmt)
{
    if (ofmt == OFORMAT_HUMAN) {
        printf("required size: %" PRIu64 "\n", r->required);
        printf("fully allocated size: %" PRIu64 "\n", r->fully_allocated);
        if (r->has_bitmaps) {
            printf("bitmaps size: %" PRIu64 "\n", r->bitmaps);
        }
        return;
    }
    /* QEMU's dictionary happens to print bitmaps first. */
    json_t *o = json_object();
    if (r->has_bitmaps) {
        json_object_set_new(o, "bitmaps", json_integer((json_int_t)r->bitmaps));
    }
    json_object_set_new(o, "required", json_integer((json_int_t)r->required));
    json_object_set_new(o, "fully-allocated",
                        json_integer((json_int_t)r->fully_allocated));
    img_print_json(o);
    json_decref(o);
}

int cmd_measure(int argc, char **argv)
{
    MeasureArgs a = { .ofmt = OFORMAT_HUMAN, .out_fmt = "raw",
                      .secrets = json_array() };
    const char *filename = NULL;
    BlockNode *src = NULL;
    json_t *opts = NULL;
    int ret = 1;

    if (!parse_args(argc, argv, &a)) {
        goto out;
    }
    if (argc - optind > 1) {
        error_report("At most one filename argument is allowed.");
        goto out;
    }
    if (argc - optind == 1) {
        filename = argv[optind];
    }
    if (!filename && (a.image_opts || a.fmt || a.snapshot)) {
        error_report("--image-opts, -f, and -l require a filename argument.");
        goto out;
    }
    if (filename && a.have_size) {
        error_report("--size N cannot be used together with a filename.");
        goto out;
    }
    if (!filename && !a.have_size) {
        error_report("Either --size N or one filename must be specified.");
        goto out;
    }
    if (filename) {
        src = img_open_maybe_opts(filename, a.fmt,
                                  a.force_share ? BLOCK_O_FORCE_SHARE : 0,
                                  a.image_opts);
        if (!src || (a.snapshot && !img_load_snapshot(&src, 1, a.snapshot))) {
            goto out;
        }
    }
    if (!check_target_format(a.out_fmt)) {
        goto out;
    }
    opts = parse_target_opts(a.out_fmt, a.optstr);
    if (!opts) {
        goto out;
    }
    if (a.have_size) {
        json_object_set_new(opts, "size", json_integer((json_int_t)a.size));
    }

    MeasureTarget t;
    MeasureResult r;
    if (!measure_target_from_opts(a.out_fmt, opts, a.secrets, &t) ||
        !measure_compute(&t, src, &r)) {
        goto out;
    }
    print_result(&r, a.ofmt);
    ret = 0;
out:
    json_decref(opts);
    if (src) {
        block_node_unref(src);
    }
    free(a.optstr);
    json_decref(a.secrets);
    return ret;
}
