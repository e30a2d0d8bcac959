/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - JSON text in QEMU's QDict member order (see qdict-json.h). */
#include "util/qdict-json.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"

#define QDICT_BUCKETS 512

unsigned qdict_bucket(const char *key)
{
    const unsigned char *p = (const unsigned char *)key;
    uint32_t value = 0x238F13AFu * (uint32_t)strlen(key);
    for (unsigned i = 0; p[i]; i++) {
        value += (uint32_t)p[i] << (i * 5 % 24);
    }
    return (1103515243u * value + 12345u) % QDICT_BUCKETS;
}

/* Decodes one UTF-8 sequence (jansson strings are valid UTF-8). */
static uint32_t utf8_next(const unsigned char **pp)
{
    const unsigned char *p = *pp;
    uint32_t cp;
    int extra;
    if (p[0] < 0x80) {
        cp = p[0];
        extra = 0;
    } else if ((p[0] & 0xe0) == 0xc0) {
        cp = p[0] & 0x1f;
        extra = 1;
    } else if ((p[0] & 0xf0) == 0xe0) {
        cp = p[0] & 0x0f;
        extra = 2;
    } else {
        cp = p[0] & 0x07;
        extra = 3;
    }
    p++;
    for (int i = 0; i < extra; i++) {
        if ((*p & 0xc0) != 0x80) {
            *pp = p;
            return 0xfffd;
        }
        cp = (cp << 6) | (*p++ & 0x3f);
    }
    *pp = p;
    return cp;
}

static void dump_string(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    while (*p) {
        uint32_t cp = utf8_next(&p);
        switch (cp) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (cp > 0xffff) {
                fprintf(f, "\\u%04X\\u%04X", 0xd800 + ((cp - 0x10000) >> 10),
                        0xdc00 + ((cp - 0x10000) & 0x3ff));
            } else if (cp < 0x20 || cp >= 0x7f) {
                fprintf(f, "\\u%04X", cp);
            } else {
                fputc((int)cp, f);
            }
        }
    }
    fputc('"', f);
}

typedef struct Member {
    const char *key;
    json_t *value;
    unsigned bucket;
    size_t added;
} Member;

/* QDict iterates bucket by bucket; each bucket is a list with the most
 * recently added entry at its head. */
static int member_cmp(const void *a, const void *b)
{
    const Member *x = a, *y = b;
    if (x->bucket != y->bucket) {
        return x->bucket < y->bucket ? -1 : 1;
    }
    return x->added > y->added ? -1 : (x->added < y->added);
}

static bool dump_value(FILE *f, const json_t *v);

static bool dump_object(FILE *f, const json_t *obj)
{
    size_t n = json_object_size(obj);
    CLEANUP_FREE Member *m = calloc(n ? n : 1, sizeof(*m));
    if (!m) {
        return false;
    }
    size_t i = 0;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val) {
        m[i] = (Member){ key, val, qdict_bucket(key), i };
        i++;
    }
    qsort(m, n, sizeof(*m), member_cmp);
    fputc('{', f);
    for (i = 0; i < n; i++) {
        if (i) {
            fputs(", ", f);
        }
        dump_string(f, m[i].key);
        fputs(": ", f);
        if (!dump_value(f, m[i].value)) {
            return false;
        }
    }
    fputc('}', f);
    return true;
}

static bool dump_value(FILE *f, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return dump_object(f, v);
    case JSON_ARRAY:
        fputc('[', f);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) {
                fputs(", ", f);
            }
            if (!dump_value(f, json_array_get(v, i))) {
                return false;
            }
        }
        fputc(']', f);
        return true;
    case JSON_STRING:
        dump_string(f, json_string_value(v));
        return true;
    case JSON_INTEGER:
        fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return true;
    case JSON_REAL:
        fprintf(f, "%.17g", json_real_value(v));
        return true;
    case JSON_TRUE:
        fputs("true", f);
        return true;
    case JSON_FALSE:
        fputs("false", f);
        return true;
    case JSON_NULL:
        fputs("null", f);
        return true;
    }
    return false;
}

char *qdict_json_dumps(const json_t *v)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        return NULL;
    }
    bool ok = dump_value(f, v);
    if (fclose(f) != 0 || !ok) {
        free(buf);
        return NULL;
    }
    return buf;
}
