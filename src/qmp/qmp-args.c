/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP argument checking (see qmp-args.h). */
#include "qmp/qmp-args.h"

#include <stdio.h>
#include <string.h>

#include "util/cleanup.h"

static const char *type_name(QmpArgType t)
{
    switch (t) {
    case QMP_ARG_STR:
    case QMP_ARG_ENUM:
        return "string";
    case QMP_ARG_BOOL:
        return "boolean";
    case QMP_ARG_INT:
    case QMP_ARG_UINT64:
    case QMP_ARG_UINT32:
        return "integer";
    case QMP_ARG_OBJECT:
        return "object";
    case QMP_ARG_ARRAY:
        return "array";
    case QMP_ARG_ANY:
        break;
    }
    return "value";
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

static bool check_scalar(json_t *v, const char *path, QmpArgType type,
                         const char *const *choices, Error **errp)
{
    switch (type) {
    case QMP_ARG_STR:
        if (!json_is_string(v)) {
            goto bad_type;
        }
        return true;
    case QMP_ARG_ENUM:
        if (!json_is_string(v)) {
            goto bad_type;
        }
        if (find_choice(choices, json_string_value(v)) < 0) {
            error_setg(errp, "Parameter '%s' does not accept value '%s'",
                       path, json_string_value(v));
            return false;
        }
        return true;
    case QMP_ARG_BOOL:
        if (!json_is_boolean(v)) {
            goto bad_type;
        }
        return true;
    case QMP_ARG_INT:
        /* QEMU's int64 visitor says the same for a string and for a
         * number that is not an integer (checked against qsd 7.2). */
        if (!json_is_integer(v)) {
            goto bad_type;
        }
        return true;
    case QMP_ARG_UINT64:
        if (!json_is_integer(v)) {
            error_setg(errp, "Parameter '%s' expects uint64", path);
            return false;
        }
        return true;
    case QMP_ARG_UINT32:
        if (!json_is_integer(v)) {
            error_setg(errp, "Parameter '%s' expects uint64", path);
            return false;
        }
        if (json_integer_value(v) < 0 || json_integer_value(v) > UINT32_MAX) {
            error_setg(errp, "Parameter '%s' expects uint32_t", path);
            return false;
        }
        return true;
    case QMP_ARG_OBJECT:
        if (!json_is_object(v)) {
            goto bad_type;
        }
        return true;
    case QMP_ARG_ARRAY:
        if (!json_is_array(v)) {
            goto bad_type;
        }
        return true;
    case QMP_ARG_ANY:
        return true;
    }
bad_type:
    error_setg(errp, "Invalid parameter type for '%s', expected: %s", path,
               type_name(type));
    return false;
}

bool qmp_args_check_value(json_t *v, const char *path, const QmpArgSpec *s,
                          Error **errp)
{
    if (!check_scalar(v, path, s->type, s->choices, errp)) {
        return false;
    }
    if (s->type == QMP_ARG_OBJECT && s->nested) {
        CLEANUP_FREE char *prefix = NULL;
        if (asprintf(&prefix, "%s.", path) < 0) {
            error_setg(errp, "Out of memory");
            return false;
        }
        return qmp_args_check(v, prefix, s->nested, errp);
    }
    if (s->type == QMP_ARG_ARRAY && s->elem != QMP_ARG_ANY) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            /* QEMU names list elements oddly ("Parameter 'null' ..."
             * for qmp_capabilities); it uses the member name for type
             * errors and 'null' for enum values. */
            const char *epath = s->elem == QMP_ARG_ENUM && json_is_string(e)
                                    ? "null" : path;
            if (!check_scalar(e, epath, s->elem, s->elem_choices, errp)) {
                return false;
            }
        }
    }
    return true;
}

bool qmp_args_check(json_t *args, const char *prefix, const QmpArgSpec *spec,
                    Error **errp)
{
    char path[256];
    for (const QmpArgSpec *s = spec; s->name; s++) {
        snprintf(path, sizeof(path), "%s%s", prefix, s->name);
        json_t *v = json_object_get(args, s->name);
        if (!v) {
            if (!s->optional) {
                error_setg(errp, "Parameter '%s' is missing", path);
                return false;
            }
            continue;
        }
        /* QEMU names a nested enum's bad value by the member alone
         * ("Parameter 'mode' does not accept value 'x'"). */
        const char *name = s->type == QMP_ARG_ENUM && json_is_string(v)
                           ? s->name : path;
        if (!qmp_args_check_value(v, name, s, errp)) {
            return false;
        }
    }
    const char *key;
    json_t *v;
    json_object_foreach(args, key, v) {
        bool known = false;
        for (const QmpArgSpec *s = spec; s->name && !known; s++) {
            known = !strcmp(s->name, key);
        }
        if (!known) {
            error_setg(errp, "Parameter '%s%s' is unexpected", prefix, key);
            return false;
        }
    }
    return true;
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
