/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img - --image-opts: the image argument is an option string in
 * qemu-img's syntax ("driver=qcow2,file.filename=a,,b.qcow2"), parsed
 * as QEMU's QemuOpts parses it: ",," is a literal comma in a value, a
 * bare first item is "file=ITEM", a later bare item is a flag ("x" is
 * x=on, "nox" x=off, with QEMU's deprecation warning), "id" is dropped
 * and a repeated key keeps its last value.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "strata-img/img-common.h"
#include "util/cleanup.h"
#include "util/error.h"
#include "util/keyval.h"

static bool image_opts;

void img_set_image_opts(bool on)
{
    image_opts = on;
}

bool img_image_opts(void)
{
    return image_opts;
}

/* A value up to the next single ',' (",," stands for ','); *p moves
 * past the separator. */
static char *opt_value(const char **p)
{
    const char *s = *p;
    char *out = malloc(strlen(s) + 1);
    size_t n = 0;
    if (!out) {
        return NULL;
    }
    while (*s) {
        if (*s == ',') {
            if (s[1] != ',') {
                s++;
                break;
            }
            s++;
        }
        out[n++] = *s++;
    }
    out[n] = '\0';
    *p = s;
    return out;
}

json_t *img_parse_image_opts(const char *str)
{
    json_t *opts = json_object();
    const char *p = str;
    bool first = true;
    while (opts && *p) {
        size_t len = strcspn(p, "=,");
        CLEANUP_FREE char *name = NULL;
        CLEANUP_FREE char *value = NULL;
        if (p[len] == '=') {
            name = strndup(p, len);
            p += len + 1;
            value = opt_value(&p);
        } else if (first) {
            name = strdup("file");
            value = opt_value(&p);
        } else {
            name = strndup(p, len);
            p += len + (p[len] == ',');
            bool help = name && (!strcmp(name, "help") || !strcmp(name, "?"));
            if (name && strncmp(name, "no", 2) == 0) {
                memmove(name, name + 2, strlen(name + 2) + 1);
                value = strdup("off");
                warn_report("short-form boolean option 'no%s' deprecated",
                            name);
                fprintf(stderr, "Please use %s=off instead\n", name);
            } else {
                value = strdup("on");
                if (name && !help) {
                    warn_report("short-form boolean option '%s' deprecated",
                                name);
                    fprintf(stderr, "Please use %s=on instead\n", name);
                }
            }
        }
        first = false;
        if (!name || !value) {
            json_decref(opts);
            return NULL;
        }
        if (strcmp(name, "id") != 0) {
            json_object_set_new(opts, name, json_string(value));
        }
    }
    return opts;
}

void img_object_add(const char *arg)
{
    Error *err = NULL;
    if (!block_object_add_cmdline(arg, &err)) {
        error_report_err(err);
        exit(1);
    }
}

BlockNode *img_open_image_opts(const char *optstr, const char *fmt,
                               int flags)
{
    if (fmt) {
        error_report("--image-opts and --format are mutually exclusive");
        return NULL;
    }
    CLEANUP_JSON json_t *opts = img_parse_image_opts(optstr);
    if (!opts) {
        error_report("Out of memory");
        return NULL;
    }
    if (flags & BLOCK_O_FORCE_SHARE) {
        json_t *fs = json_object_get(opts, "force-share");
        if (fs && strcmp(json_string_value(fs), "on") != 0) {
            error_report("--force-share/-U conflicts with image options");
            return NULL;
        }
        json_object_set_new(opts, "force-share", json_string("on"));
    }
    Error *err = NULL;
    BlockNode *bs = block_open_image_opts(opts, flags, &err);
    if (!bs) {
        error_prepend(&err, "Could not open '%s': ", optstr);
        error_report_err(err);
    }
    return bs;
}
