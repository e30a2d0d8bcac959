/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img update [-q] [-f fmt] [--output=human|json] [-U]
 *                   FILE... [KEY=VALUE...]
 *
 * Sets image parameters (docs/image-params.md) on many images in one
 * command, as provisioning scripts do for the VMs made from one
 * template.  Without KEY=VALUE it shows them.
 *
 * Every assignment is checked before any image is touched.  Each image
 * then changes all at once or not at all: the new set is written with
 * one write of the image's header.  An image another process holds (a
 * VM, qemu-storage-daemon, stratad) is refused -- its locks say so --
 * and the others are still updated; the exit code is 1 if any image
 * was not.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "block/block.h"
#include "block/image-params.h"
#include "strata-img/img-common.h"
#include "util/cleanup.h"
#include "util/error.h"

/* An argument is an assignment when it reads key=value with a key of
 * parameter syntax and is not the name of an existing file. */
static bool is_assignment(const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) {
        return false;
    }
    for (const char *p = arg; p < eq; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '-')) {
            return false;
        }
    }
    struct stat st;
    return stat(arg, &st) != 0;
}

typedef struct Row {
    const char *filename;
    const char *result;      /* updated, unchanged, in-use, failed */
    char *error;
    json_t *changes;         /* [{parameter, old, new}] */
    json_t *params;          /* show mode: the typed set */
} Row;

static const char *value_or_dash(json_t *v)
{
    return v && json_is_string(v) ? json_string_value(v) : "-";
}

/* Opens, applies the changes, writes: one image. */
static void update_one(Row *row, const char *fmt, int flags, char **assign,
                       int n_assign)
{
    Error *err = NULL;
    row->changes = json_array();
    BlockNode *bs = block_open_image(row->filename, fmt,
                                     flags | BLOCK_O_NO_BACKING, &err);
    if (!bs) {
        row->result = err->errnum == EBUSY ? "in-use" : "failed";
        /* The message without QEMU's hint ("Is another process
         * using..."): ours says the same. */
        const char *msg = error_get_pretty(err);
        if (err->errnum == EBUSY
            ? asprintf(&row->error, "'%s' is in use by another process "
                       "(%s); not updated", row->filename, msg) < 0
            : asprintf(&row->error, "Could not open '%s': %s", row->filename,
                       msg) < 0) {
            row->error = NULL;
        }
        if (!row->error) {
            row->error = strdup("Out of memory");
        }
        error_free(err);
        return;
    }
    ImageParams old = { 0 }, new = { 0 };
    bool ok = block_get_image_params(bs, &old, &err) &&
              image_params_copy(&new, &old);
    for (int i = 0; ok && i < n_assign; i++) {
        ok = image_params_set_kv(&new, assign[i], &err);
    }
    bool changed = false;
    for (int i = 0; ok && i < n_assign; i++) {
        CLEANUP_FREE char *key = strndup(assign[i],
                                         strcspn(assign[i], "="));
        const char *o = image_params_get(&old, key);
        const char *n = image_params_get(&new, key);
        bool same = (!o && !n) || (o && n && !strcmp(o, n));
        changed |= !same;
        json_array_append_new(row->changes, json_pack(
            "{s:s, s:o, s:o}", "parameter", key,
            "old", o ? json_string(o) : json_null(),
            "new", n ? json_string(n) : json_null()));
    }
    if (ok && changed) {
        ok = block_set_image_params(bs, &new, &err);
    }
    if (ok) {
        row->result = changed ? "updated" : "unchanged";
    } else {
        row->result = "failed";
        error_prepend(&err, "Could not update '%s': ", row->filename);
        row->error = strdup(error_get_pretty(err));
        error_free(err);
    }
    image_params_free(&old);
    image_params_free(&new);
    block_node_unref(bs);
}

static void show_one(Row *row, const char *fmt, int flags)
{
    Error *err = NULL;
    BlockNode *bs = block_open_image(row->filename, fmt,
                                     flags | BLOCK_O_NO_BACKING, &err);
    ImageParams ip = { 0 };
    if (bs && block_get_image_params(bs, &ip, &err)) {
        row->result = "ok";
        row->params = image_params_to_json(&ip);
        image_params_free(&ip);
    } else {
        row->result = "failed";
        error_prepend(&err, "Could not read '%s': ", row->filename);
        row->error = strdup(error_get_pretty(err));
        error_free(err);
    }
    if (bs) {
        block_node_unref(bs);
    }
}

static void print_table(Row *rows, int n, bool show)
{
    /* Column widths from the content. */
    size_t w_img = strlen("IMAGE"), w_key = strlen("PARAMETER");
    size_t w_old = strlen(show ? "VALUE" : "OLD"), w_new = strlen("NEW");
    for (int i = 0; i < n; i++) {
        w_img = MAX(w_img, strlen(rows[i].filename));
        json_t *c;
        size_t k;
        const char *key;
        if (show && rows[i].params) {
            json_object_foreach(rows[i].params, key, c) {
                CLEANUP_FREE char *v = json_dumps(c, JSON_ENCODE_ANY);
                w_key = MAX(w_key, strlen(key));
                w_old = MAX(w_old, v ? strlen(v) : 0);
            }
        }
        json_array_foreach(rows[i].changes, k, c) {
            w_key = MAX(w_key, strlen(json_string_value(
                                   json_object_get(c, "parameter"))));
            w_old = MAX(w_old, strlen(value_or_dash(json_object_get(c,
                                                                    "old"))));
            w_new = MAX(w_new, strlen(value_or_dash(json_object_get(c,
                                                                    "new"))));
        }
    }
    if (show) {
        printf("%-*s  %-*s  %s\n", (int)w_img, "IMAGE", (int)w_key,
               "PARAMETER", "VALUE");
    } else {
        printf("%-*s  %-*s  %-*s  %-*s  %s\n", (int)w_img, "IMAGE",
               (int)w_key, "PARAMETER", (int)w_old, "OLD", (int)w_new, "NEW",
               "RESULT");
    }
    for (int i = 0; i < n; i++) {
        Row *r = &rows[i];
        if (show) {
            const char *key;
            json_t *v;
            if (!r->params || json_object_size(r->params) == 0) {
                printf("%-*s  %-*s  %s\n", (int)w_img, r->filename,
                       (int)w_key, "-", r->params ? "(none set)"
                                                  : "(unreadable)");
            }
            if (r->params) {
                json_object_foreach(r->params, key, v) {
                    CLEANUP_FREE char *s = json_dumps(v, JSON_ENCODE_ANY);
                    printf("%-*s  %-*s  %s\n", (int)w_img, r->filename,
                           (int)w_key, key, s ? s : "?");
                }
            }
            continue;
        }
        size_t k;
        json_t *c;
        if (json_array_size(r->changes) == 0) {
            printf("%-*s  %-*s  %-*s  %-*s  %s\n", (int)w_img, r->filename,
                   (int)w_key, "-", (int)w_old, "-", (int)w_new, "-",
                   r->result);
        }
        json_array_foreach(r->changes, k, c) {
            printf("%-*s  %-*s  %-*s  %-*s  %s\n", (int)w_img, r->filename,
                   (int)w_key,
                   json_string_value(json_object_get(c, "parameter")),
                   (int)w_old, value_or_dash(json_object_get(c, "old")),
                   (int)w_new, value_or_dash(json_object_get(c, "new")),
                   r->result);
        }
    }
}

static void print_json(Row *rows, int n, bool show)
{
    json_t *out = json_array();
    for (int i = 0; i < n; i++) {
        Row *r = &rows[i];
        json_t *o = json_pack("{s:s, s:s}", "filename", r->filename,
                              "result", r->result);
        if (show && r->params) {
            json_object_set(o, "parameters", r->params);
        }
        if (!show) {
            json_object_set(o, "changes", r->changes);
        }
        if (r->error) {
            json_object_set_new(o, "error", json_string(r->error));
        }
        json_array_append_new(out, o);
    }
    img_print_json(out);
    json_decref(out);
}

int cmd_update(int argc, char **argv)
{
    enum { OPT_OUTPUT = 256 };
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    ImgOutputFormat out = OFORMAT_HUMAN;
    bool quiet = false, force_share = false;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, ":f:hqU", long_options, NULL)) != -1) {
        switch (c) {
        case 'h': img_help();
        case 'f': fmt = optarg; break;
        case 'q': quiet = true; break;
        case 'U': force_share = true; break;
        case OPT_OUTPUT:
            if (!img_parse_output(optarg, &out)) {
                return 1;
            }
            break;
        default: img_bad_option(c, argv);
        }
    }
    int n_args = argc - optind;
    CLEANUP_FREE char **files = calloc((size_t)n_args + 1, sizeof(char *));
    CLEANUP_FREE char **assign = calloc((size_t)n_args + 1, sizeof(char *));
    CLEANUP_FREE Row *rows = calloc((size_t)n_args + 1, sizeof(Row));
    if (!files || !assign || !rows) {
        error_report("Out of memory");
        return 1;
    }
    int n_files = 0, n_assign = 0;
    for (int i = optind; i < argc; i++) {
        if (is_assignment(argv[i])) {
            assign[n_assign++] = argv[i];
        } else {
            files[n_files++] = argv[i];
        }
    }
    if (n_files == 0) {
        img_usage_error("Expecting one or more image file names");
    }
    bool show = n_assign == 0;
    if (!show && force_share) {
        error_report("-U/--force-share only shows parameters; it cannot be "
                     "used to change them");
        return 1;
    }
    /* Every assignment is checked before any image is touched. */
    {
        ImageParams check;
        image_params_init(&check);
        for (int i = 0; i < n_assign; i++) {
            Error *err = NULL;
            if (!image_params_set_kv(&check, assign[i], &err)) {
                error_report_err(err);
                image_params_free(&check);
                return 1;
            }
        }
        image_params_free(&check);
    }

    int flags = show ? (force_share ? BLOCK_O_FORCE_SHARE : 0) : BLOCK_O_RDWR;
    int failed = 0;
    for (int i = 0; i < n_files; i++) {
        rows[i].filename = files[i];
        if (show) {
            show_one(&rows[i], fmt, flags);
        } else {
            update_one(&rows[i], fmt, flags, assign, n_assign);
        }
        if (rows[i].error) {
            failed++;
            if (out == OFORMAT_HUMAN) {
                error_report("%s", rows[i].error);
            }
        }
    }
    if (!quiet) {
        if (out == OFORMAT_JSON) {
            print_json(rows, n_files, show);
        } else {
            print_table(rows, n_files, show);
        }
    }
    for (int i = 0; i < n_files; i++) {
        free(rows[i].error);
        json_decref(rows[i].changes);
        json_decref(rows[i].params);
    }
    return failed ? 1 : 0;
}
