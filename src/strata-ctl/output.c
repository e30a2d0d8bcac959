/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-ctl - tables and JSON on stdout. */
#include "strata-ctl/ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/units.h"

struct CtlTable {
    size_t ncols, nrows, cap;
    char **cells;          /* (nrows + 1) * ncols, row 0 = headers */
};

CtlTable *table_new(size_t ncols, const char *const *headers)
{
    CtlTable *t = calloc(1, sizeof(*t));
    if (!t) {
        return NULL;
    }
    t->ncols = ncols;
    table_add(t, headers);
    return t;
}

void table_add(CtlTable *t, const char *const *cells)
{
    if (!t) {
        return;
    }
    if ((t->nrows + 1) * t->ncols > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : t->ncols * 8;
        char **c = realloc(t->cells, cap * sizeof(*c));
        if (!c) {
            return;
        }
        t->cells = c;
        t->cap = cap;
    }
    for (size_t i = 0; i < t->ncols; i++) {
        t->cells[t->nrows * t->ncols + i] = strdup(cells[i] ? cells[i] : "");
    }
    t->nrows++;
}

void table_print(CtlTable *t)
{
    if (!t) {
        return;
    }
    size_t *width = calloc(t->ncols, sizeof(*width));
    if (!width) {
        return;
    }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            size_t w = s ? strlen(s) : 0;
            if (w > width[c]) {
                width[c] = w;
            }
        }
    }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            if (c + 1 == t->ncols) {
                printf("%s\n", s ? s : "");
            } else {
                printf("%-*s  ", (int)width[c], s ? s : "");
            }
        }
    }
    free(width);
}

void table_free(CtlTable *t)
{
    if (!t) {
        return;
    }
    for (size_t i = 0; i < t->nrows * t->ncols; i++) {
        free(t->cells[i]);
    }
    free(t->cells);
    free(t);
}

void table_print_list(json_t *list, size_t ncols, const char *const *headers,
                      CtlRowFn *row)
{
    CtlTable *t = table_new(ncols, headers);
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item) {
        row(t, item);
    }
    table_print(t);
    table_free(t);
}

void ctl_print_list(const CtlOptions *o, json_t *list, size_t ncols,
                    const char *const *headers, CtlRowFn *row)
{
    if (o->json) {
        print_json(list);
    } else {
        table_print_list(list, ncols, headers, row);
    }
}

const char *size_cell(json_t *v, char *buf, size_t len)
{
    if (!json_is_integer(v)) {
        return "-";
    }
    return format_size((uint64_t)json_integer_value(v), buf, len);
}

void print_json(json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY
                                | JSON_PRESERVE_ORDER);
    if (s) {
        printf("%s\n", s);
        free(s);
    }
}
