/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP argument checking (see qmp-args.h).
 *
 * The visit follows QEMU 7.2's qapi/qobject-input-visitor.c and
 * qapi/qapi-visit-core.c: which check comes first, and which name (full
 * path or bare member name) each message uses. */
#include "qmp/qmp-args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qmp/json-stream.h"
#include "util/cleanup.h"
#include "util/units.h"

const QmpArgSpec qmp_no_args[] = { { NULL } };

typedef struct Visit {
    bool keyval;
    Error **errp;
} Visit;

/* A member's full path: "x" at the top, "parent.x" below; elements of
 * lists "list[2]" ("list.2" on the command line). */
typedef struct Path {
    char buf[512];
} Path;

static const char *member_path(Path *p, const char *parent, const char *name)
{
    snprintf(p->buf, sizeof(p->buf), "%s%s%s", parent, *parent ? "." : "",
             name);
    return p->buf;
}

static const char *element_path(Path *p, const Visit *vi, const char *list,
                                size_t i)
{
    snprintf(p->buf, sizeof(p->buf), vi->keyval ? "%s.%zu" : "%s[%zu]", list,
             i);
    return p->buf;
}

static bool bad_type(Visit *vi, const char *path, const char *expected)
{
    error_setg(vi->errp, "Invalid parameter type for '%s', expected: %s",
               path, expected);
    return false;
}

static bool bad_value(Visit *vi, const char *name, const char *expected)
{
    error_setg(vi->errp, "Parameter '%s' expects %s", name, expected);
    return false;
}

static int find_choice(const char *const *choices, const char *s)
{
    for (int i = 0; choices && choices[i]; i++) {
        if (!strcmp(choices[i], s)) {
            return i;
        }
    }
    return -1;
}

/* The string of a command-line scalar, or NULL (error set). */
static const char *keyval_str(Visit *vi, json_t *v, const char *path)
{
    if (json_is_string(v)) {
        return json_string_value(v);
    }
    if (json_is_object(v) || json_is_array(v)) {
        error_setg(vi->errp, "Parameters '%s.*' are unexpected", path);
    } else {
        error_setg(vi->errp, "Internal error: parameter %s invalid", path);
    }
    return NULL;
}

/* QEMU's qemu_strtoi64/qemu_strtou64 with base 0: the whole string. */
static bool parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || end == s || *end) {
        return false;
    }
    *out = v;
    return true;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end) {
        return false;
    }
    *out = v;
    return true;
}

/* QEMU's int64 visitor: a JSON integer that fits int64. */
static bool get_int64(Visit *vi, json_t *v, const char *path, int64_t *out)
{
    if (vi->keyval) {
        const char *s = keyval_str(vi, v, path);
        if (!s) {
            return false;
        }
        return parse_i64(s, out) || bad_value(vi, path, "integer");
    }
    if (!json_is_integer(v)) {
        return bad_type(vi, path, "integer");
    }
    *out = json_integer_value(v);
    return true;
}

/* QEMU's uint64 visitor: an unsigned integer, or a negative one (which
 * wraps, "for backward compatibility"). */
static bool get_uint64(Visit *vi, json_t *v, const char *path, bool size,
                       uint64_t *out)
{
    if (vi->keyval) {
        const char *s = keyval_str(vi, v, path);
        if (!s) {
            return false;
        }
        if (size) {
            return parse_size(s, out, NULL) || bad_value(vi, path, "size");
        }
        return parse_u64(s, out) || bad_value(vi, path, "integer");
    }
    if (json_is_integer(v)) {
        *out = (uint64_t)json_integer_value(v);
        return true;
    }
    if (json_stream_big_uint(v, out)) {
        return true;
    }
    return bad_value(vi, path, "uint64");
}

static bool visit_value(Visit *vi, json_t *v, const char *path,
                        const char *name, const QmpArgSpec *s);
static bool visit_struct(Visit *vi, json_t *obj, const char *path,
                         const QmpArgSpec *members);

static const QmpArgSpec *find_branch(const QmpArgBranch *branches,
                                     const char *value)
{
    for (const QmpArgBranch *b = branches; b && b->value; b++) {
        if (!strcmp(b->value, value)) {
            return b->members;
        }
    }
    return NULL;
}

/* The members of the branch selected in obj by the member tag (already
 * checked), or NULL. */
static const QmpArgSpec *selected_branch(json_t *obj, const QmpArgSpec *s)
{
    const char *value = json_string_value(json_object_get(obj, s->name));
    return value ? find_branch(s->branches, value) : NULL;
}

/* Visits the members of obj that members names, in order. */
static bool visit_members(Visit *vi, json_t *obj, const char *path,
                          const QmpArgSpec *members)
{
    for (const QmpArgSpec *s = members; s && s->name; s++) {
        if (s->type == QMP_ARG_BASE) {
            if (!visit_members(vi, obj, path, s->nested)) {
                return false;
            }
            continue;
        }
        if (s->type == QMP_ARG_VARIANTS) {
            if (!visit_members(vi, obj, path, selected_branch(obj, s))) {
                return false;
            }
            continue;
        }
        Path p;
        const char *mpath = member_path(&p, path, s->name);
        json_t *v = json_object_get(obj, s->name);
        if (!v) {
            if (s->optional) {
                continue;
            }
            error_setg(vi->errp, "Parameter '%s' is missing", mpath);
            return false;
        }
        if (!visit_value(vi, v, mpath, s->name, s)) {
            return false;
        }
    }
    return true;
}

bool qmp_args_names(json_t *args, const QmpArgSpec *members, const char *key)
{
    for (const QmpArgSpec *s = members; s && s->name; s++) {
        if (s->type == QMP_ARG_BASE) {
            if (qmp_args_names(args, s->nested, key)) {
                return true;
            }
        } else if (s->type == QMP_ARG_VARIANTS) {
            if (qmp_args_names(args, selected_branch(args, s), key)) {
                return true;
            }
        } else if (!strcmp(s->name, key)) {
            return true;
        }
    }
    return false;
}

/* QEMU's check_struct: a member nobody asked for. */
static bool check_unexpected(Visit *vi, json_t *obj, const char *path,
                             const QmpArgSpec *members)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (!qmp_args_names(obj, members, key)) {
            Path p;
            error_setg(vi->errp, "Parameter '%s' is unexpected",
                       member_path(&p, path, key));
            return false;
        }
    }
    return true;
}

static bool visit_struct(Visit *vi, json_t *obj, const char *path,
                         const QmpArgSpec *members)
{
    return visit_members(vi, obj, path, members) &&
           check_unexpected(vi, obj, path, members);
}

/* The branch of an alternate that takes a value of v's JSON type. */
static const QmpArgSpec *alternate_branch(const Visit *vi,
                                          const QmpAlternate *alt, json_t *v)
{
    for (const QmpArgSpec *b = alt->branches; b && b->name; b++) {
        bool takes;
        switch (b->type) {
        case QMP_ARG_OBJECT:
            takes = json_is_object(v);
            break;
        case QMP_ARG_ARRAY:
            takes = json_is_array(v);
            break;
        case QMP_ARG_STR:
        case QMP_ARG_ENUM:
            takes = json_is_string(v);
            break;
        case QMP_ARG_BOOL:
            takes = json_is_boolean(v) && !vi->keyval;
            break;
        case QMP_ARG_NULL:
            takes = json_is_null(v);
            break;
        case QMP_ARG_ANY:
            takes = true;
            break;
        default:      /* the numbers */
            takes = json_is_number(v) && !vi->keyval;
            break;
        }
        if (takes) {
            return b;
        }
    }
    return NULL;
}

static bool visit_array(Visit *vi, json_t *v, const char *path,
                        const QmpArgSpec *s)
{
    if (!json_is_array(v)) {
        return bad_type(vi, path, "array");
    }
    if (s->elem == QMP_ARG_ANY && !s->elem_nested) {
        return true;
    }
    const QmpArgSpec elem = {
        .name = "",
        .type = s->elem,
        .choices = s->elem_choices,
        .nested = s->elem_nested,
        .alternate = s->elem_alternate,
    };
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        Path p;
        /* Elements have no name of their own: QEMU says 'null' where a
         * message uses the bare name. */
        if (!visit_value(vi, e, element_path(&p, vi, path, i), "null",
                         &elem)) {
            return false;
        }
    }
    return true;
}

static bool visit_value(Visit *vi, json_t *v, const char *path,
                        const char *name, const QmpArgSpec *s)
{
    int64_t i;
    uint64_t u;
    switch (s->type) {
    case QMP_ARG_STR:
    case QMP_ARG_ENUM: {
        const char *str;
        if (vi->keyval) {
            str = keyval_str(vi, v, path);
            if (!str) {
                return false;
            }
        } else if (!json_is_string(v)) {
            return bad_type(vi, path, "string");
        } else {
            str = json_string_value(v);
        }
        if (s->type == QMP_ARG_ENUM && find_choice(s->choices, str) < 0) {
            error_setg(vi->errp, "Parameter '%s' does not accept value '%s'",
                       name, str);
            return false;
        }
        return true;
    }
    case QMP_ARG_BOOL:
        if (vi->keyval) {
            const char *str = keyval_str(vi, v, path);
            if (!str) {
                return false;
            }
            if (find_choice((const char *const[]){ "on", "yes", "true", "y",
                                                   "off", "no", "false", "n",
                                                   NULL }, str) < 0) {
                return bad_value(vi, path, "'on' or 'off'");
            }
            return true;
        }
        return json_is_boolean(v) || bad_type(vi, path, "boolean");
    case QMP_ARG_INT:
        return get_int64(vi, v, path, &i);
    case QMP_ARG_INT8:
    case QMP_ARG_INT16:
    case QMP_ARG_INT32: {
        if (!get_int64(vi, v, path, &i)) {
            return false;
        }
        int bits = s->type == QMP_ARG_INT8 ? 8
                   : s->type == QMP_ARG_INT16 ? 16 : 32;
        int64_t max = (INT64_C(1) << (bits - 1)) - 1;
        if (i < -max - 1 || i > max) {
            char what[16];
            snprintf(what, sizeof(what), "int%d_t", bits);
            return bad_value(vi, name, what);
        }
        return true;
    }
    case QMP_ARG_UINT64:
    case QMP_ARG_SIZE:
        return get_uint64(vi, v, path, s->type == QMP_ARG_SIZE, &u);
    case QMP_ARG_UINT8:
    case QMP_ARG_UINT16:
    case QMP_ARG_UINT32: {
        if (!get_uint64(vi, v, path, false, &u)) {
            return false;
        }
        int bits = s->type == QMP_ARG_UINT8 ? 8
                   : s->type == QMP_ARG_UINT16 ? 16 : 32;
        if (u > (UINT64_C(1) << bits) - 1) {
            char what[16];
            snprintf(what, sizeof(what), "uint%d_t", bits);
            return bad_value(vi, name, what);
        }
        return true;
    }
    case QMP_ARG_NUMBER:
        if (vi->keyval) {
            const char *str = keyval_str(vi, v, path);
            if (!str) {
                return false;
            }
            char *end;
            errno = 0;
            double d = strtod(str, &end);
            if (errno || end == str || *end || !isfinite(d)) {
                return bad_type(vi, path, "number");
            }
            return true;
        }
        return json_is_number(v) || bad_type(vi, path, "number");
    case QMP_ARG_NULL:
        return json_is_null(v) || bad_type(vi, path, "null");
    case QMP_ARG_ANY:
        return true;
    case QMP_ARG_OBJECT:
        if (!json_is_object(v)) {
            return bad_type(vi, path, "object");
        }
        return !s->nested || visit_struct(vi, v, path, s->nested);
    case QMP_ARG_ARRAY:
        return visit_array(vi, v, path, s);
    case QMP_ARG_ALTERNATE: {
        const QmpArgSpec *b = alternate_branch(vi, s->alternate, v);
        if (!b) {
            return bad_type(vi, name, s->alternate->name);
        }
        return visit_value(vi, v, path, name, b);
    }
    case QMP_ARG_BASE:
    case QMP_ARG_VARIANTS:
        break;
    }
    error_setg(vi->errp, "Internal error: bad description of '%s'", path);
    return false;
}

/* "addr." -> "addr" */
static bool check_prefixed(json_t *args, const char *prefix,
                           const QmpArgSpec *spec, bool keyval, Error **errp)
{
    char parent[256];
    size_t n = strlen(prefix);
    if (n && prefix[n - 1] == '.') {
        n--;
    }
    snprintf(parent, sizeof(parent), "%.*s", (int)n, prefix);
    Visit vi = { .keyval = keyval, .errp = errp };
    return visit_struct(&vi, args, parent, spec);
}

bool qmp_args_check(json_t *args, const char *prefix, const QmpArgSpec *spec,
                    Error **errp)
{
    return check_prefixed(args, prefix, spec, false, errp);
}

bool qmp_args_check_keyval(json_t *args, const char *prefix,
                           const QmpArgSpec *spec, Error **errp)
{
    return check_prefixed(args, prefix, spec, true, errp);
}

bool qmp_args_check_value(json_t *v, const char *path, const QmpArgSpec *s,
                          Error **errp)
{
    Visit vi = { .errp = errp };
    return visit_value(&vi, v, path, s->name && *s->name ? s->name : path, s);
}

bool qmp_args_only(json_t *obj, const char *prefix, const char *const *names,
                   Error **errp)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (find_choice(names, key) < 0) {
            error_setg(errp, "Parameter '%s%s' is unexpected", prefix, key);
            return false;
        }
    }
    return true;
}

const char *qmp_arg_str(json_t *args, const char *name, const char *def)
{
    json_t *v = json_object_get(args, name);
    return json_is_string(v) ? json_string_value(v) : def;
}

bool qmp_arg_bool(json_t *args, const char *name, bool def)
{
    json_t *v = json_object_get(args, name);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

int64_t qmp_arg_int(json_t *args, const char *name, int64_t def)
{
    json_t *v = json_object_get(args, name);
    return json_is_integer(v) ? json_integer_value(v) : def;
}

uint64_t qmp_arg_uint64(json_t *args, const char *name, uint64_t def)
{
    json_t *v = json_object_get(args, name);
    uint64_t u;
    if (json_is_integer(v)) {
        return (uint64_t)json_integer_value(v);
    }
    return json_stream_big_uint(v, &u) ? u : def;
}

int qmp_arg_enum(json_t *args, const char *name, const char *const *choices,
                 int def)
{
    json_t *v = json_object_get(args, name);
    if (!json_is_string(v)) {
        return def;
    }
    int i = find_choice(choices, json_string_value(v));
    return i >= 0 ? i : def;
}
