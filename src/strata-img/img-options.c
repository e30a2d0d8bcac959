/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img - image creation options as qemu-img presents them: -o
 * help, checking names before anything is printed, and the
 * "Formatting ..." line.
 *
 * The options are the drivers' own tables (block_create_opts), in the
 * order qemu-img prints set options in the "Formatting" line; -o help
 * sorts by name.  The driver's create does the real validation of
 * values.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "strata-img/img-common.h"
#include "util/cleanup.h"
#include "util/error.h"
#include "util/units.h"

bool img_format_known(const char *fmt)
{
    return block_create_opts(fmt) != NULL;
}

static const BlockCreateOpt *find_desc(const BlockCreateOpt *list,
                                       const char *name)
{
    for (; list && list->name; list++) {
        if (strcmp(list->name, name) == 0) {
            return list;
        }
    }
    return NULL;
}

/* Looks name up in the format's table, then in the protocol's. */
static const BlockCreateOpt *lookup_opt(const char *fmt, const char *name)
{
    const BlockCreateOpt *d = find_desc(block_create_opts(fmt), name);

    return d ? d : find_desc(block_protocol_create_opts(), name);
}

const BlockCreateOpt *img_lookup_create_opt(const char *fmt,
                                            const char *name)
{
    return lookup_opt(fmt, name);
}

json_t *img_parse_create_opts(const char *optstr, bool *help,
                              const char *filename)
{
    json_t *opts = json_object();
    const char *p = optstr;

    *help = false;
    while (*p) {
        /* One "name=value" item; ",," inside is a literal comma. */
        char *item = malloc(strlen(p) + 1);
        size_t n = 0;
        while (*p) {
            if (*p == ',') {
                if (p[1] == ',') {
                    item[n++] = ',';
                    p += 2;
                    continue;
                }
                p++;
                break;
            }
            item[n++] = *p++;
        }
        item[n] = '\0';
        char *eq = strchr(item, '=');
        if (!eq) {
            if (strcmp(item, "help") == 0 || strcmp(item, "?") == 0) {
                *help = true;
                free(item);
                continue;
            }
            if (n == 0) {
                error_report("Invalid option list: %s", optstr);
            } else {
                error_report("%s: Invalid parameter '%s'", filename, item);
            }
            free(item);
            json_decref(opts);
            return NULL;
        }
        *eq = '\0';
        json_object_set_new(opts, item, json_string(eq + 1));
        free(item);
    }
    return opts;
}

bool img_check_create_opts(const char *fmt, json_t *opts, const char *filename)
{
    const char *key;
    json_t *value;

    json_object_foreach(opts, key, value) {
        if (!lookup_opt(fmt, key)) {
            if (filename) {
                error_report("%s: Invalid parameter '%s'", filename, key);
            } else {
                error_report("Invalid parameter '%s'", key);
            }
            return false;
        }
    }
    return true;
}

static const char *type_hint(BlockCreateOptType t)
{
    switch (t) {
    case BLOCK_OPT_BOOL:
        return "bool (on/off)";
    case BLOCK_OPT_NUMBER:
        return "num";
    case BLOCK_OPT_SIZE:
        return "size";
    default:
        return "str";
    }
}

static int cmp_desc(const void *a, const void *b)
{
    const BlockCreateOpt *const *x = a;
    const BlockCreateOpt *const *y = b;

    return strcmp((*x)->name, (*y)->name);
}

/* Prints the options of list, then those of extra not already in list,
 * sorted by name. */
void img_print_opts_sorted(const BlockCreateOpt *list,
                           const BlockCreateOpt *extra)
{
    const BlockCreateOpt *sorted[64];
    size_t n = 0;

    for (const BlockCreateOpt *d = list; d && d->name && n < ARRAY_SIZE(sorted);
         d++) {
        sorted[n++] = d;
    }
    for (const BlockCreateOpt *d = extra;
         d && d->name && n < ARRAY_SIZE(sorted); d++) {
        if (!find_desc(list, d->name)) {
            sorted[n++] = d;
        }
    }
    qsort(sorted, n, sizeof(sorted[0]), cmp_desc);
    for (size_t i = 0; i < n; i++) {
        char head[128];
        snprintf(head, sizeof(head), "%s=<%s>", sorted[i]->name,
                 type_hint(sorted[i]->type));
        printf("  %-22s - %s\n", head, sorted[i]->help);
    }
}

void img_print_create_help(const char *fmt, bool with_protocol)
{
    const BlockCreateOpt *list = block_create_opts(fmt);

    /* With a target file name qemu-img merges in the protocol's options;
     * without one it can only hint at them. */
    if (with_protocol) {
        printf("Supported options:\n");
        img_print_opts_sorted(list, block_protocol_create_opts());
        return;
    }
    printf("Supported %s options:\n", fmt);
    img_print_opts_sorted(list, NULL);
    printf("\nThe protocol level may support further options.\n"
           "Specify the target filename to include those options.\n");
}

bool img_normalize_opt(const BlockCreateOpt *d, json_t *opts,
                       const char *filename)
{
    json_t *v = json_object_get(opts, d->name);
    const char *s;

    if (!v || !json_is_string(v)) {
        return true;
    }
    s = json_string_value(v);
    const char *pre = filename ? filename : "";
    const char *sep = filename ? ": " : "";
    if (d->type == BLOCK_OPT_SIZE) {
        uint64_t n;
        Error *err = NULL;
        /* QEMU's number parsing skips leading blanks. */
        const char *num = s + strspn(s, " \t\n\v\f\r");
        if (!parse_size(num, &n, &err)) {
            bool range = err->errnum == ERANGE;
            error_free(err);
            if (range) {
                error_report("%s%sValue '%s' is out of range for parameter "
                             "'%s'", pre, sep, s, d->name);
                return false;
            }
            error_report("%s%sParameter '%s' expects a non-negative number "
                         "below 2^64\nOptional suffix k, M, G, T, P or E "
                         "means kilo-, mega-, giga-, tera-, peta-\n"
                         "and exabytes, respectively.", pre, sep, d->name);
            return false;
        }
        json_object_set_new(opts, d->name, json_integer((json_int_t)n));
    } else if (d->type == BLOCK_OPT_NUMBER) {
        uint64_t n;
        Error *err = NULL;
        if (!parse_uint(s, INT64_MAX, &n, &err)) {
            error_free(err);
            error_report("%s%sParameter '%s' expects a number", pre, sep,
                         d->name);
            return false;
        }
        json_object_set_new(opts, d->name, json_integer((json_int_t)n));
    } else if (d->type == BLOCK_OPT_BOOL) {
        if (strcmp(s, "on") && strcmp(s, "off") && strcmp(s, "true") &&
            strcmp(s, "false")) {
            error_report("%s%sParameter '%s' expects 'on' or 'off'", pre,
                         sep, d->name);
            return false;
        }
    }
    return true;
}

bool img_normalize_create_opts(const char *fmt, json_t *opts,
                               const char *filename)
{
    const char *key;
    json_t *value;

    json_object_foreach(opts, key, value) {
        const BlockCreateOpt *d = lookup_opt(fmt, key);
        if (d && !img_normalize_opt(d, opts, filename)) {
            return false;
        }
    }
    return true;
}

static void print_opt_list(const BlockCreateOpt *list, json_t *opts,
                           const BlockCreateOpt *skip_dups)
{
    for (; list && list->name; list++) {
        if (skip_dups && find_desc(skip_dups, list->name)) {
            continue;
        }
        json_t *v = json_object_get(opts, list->name);
        if (v && json_is_integer(v)) {
            printf(" %s=%" JSON_INTEGER_FORMAT, list->name,
                   json_integer_value(v));
        } else if (v && json_is_string(v)) {
            /* QEMU prints option values as they would be typed: a comma
             * inside one is doubled. */
            printf(" %s=", list->name);
            for (const char *c = json_string_value(v); *c; c++) {
                if (*c == ',') {
                    putchar(',');
                }
                putchar(*c);
            }
        } else if (v && json_is_boolean(v)) {
            printf(" %s=%s", list->name, json_is_true(v) ? "on" : "off");
        } else if (!v && list->def_value) {
            printf(" %s=%s", list->name, list->def_value);
        }
    }
}

void img_print_formatting(const char *filename, const char *fmt,
                          json_t *opts)
{
    const BlockCreateOpt *list = block_create_opts(fmt);

    printf("Formatting '%s', fmt=%s", filename, fmt);
    print_opt_list(list, opts, NULL);
    /* The file format's own options are its protocol's: skipped as
     * duplicates. */
    print_opt_list(block_protocol_create_opts(), opts, list);
    printf("\n");
    fflush(stdout);
}
