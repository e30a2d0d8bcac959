/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP argument checking with QEMU's error texts.
 *
 * A command describes its arguments with a table of QmpArgSpec; the
 * checker visits the members in table order (first problem wins, like
 * QEMU's input visitor), then rejects members the table does not name.
 * Nested objects are checked with their own table and error paths name
 * the member as QEMU does ('addr.data.path').
 */
#ifndef STRATA_QMP_QMP_ARGS_H
#define STRATA_QMP_QMP_ARGS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

typedef enum QmpArgType {
    QMP_ARG_STR,
    QMP_ARG_BOOL,
    QMP_ARG_INT,      /* int64 */
    QMP_ARG_UINT64,   /* negative values wrap, as in QEMU */
    QMP_ARG_UINT32,
    QMP_ARG_ENUM,     /* string out of choices */
    QMP_ARG_OBJECT,   /* checked with nested, unless nested is NULL */
    QMP_ARG_ARRAY,
    QMP_ARG_ANY,
} QmpArgType;

typedef struct QmpArgSpec {
    const char *name;                 /* NULL ends a table */
    QmpArgType type;
    bool optional;
    const char *const *choices;       /* QMP_ARG_ENUM: NULL-terminated */
    const struct QmpArgSpec *nested;  /* QMP_ARG_OBJECT members */
    QmpArgType elem;                  /* QMP_ARG_ARRAY element type */
    const char *const *elem_choices;  /* ... when elem is QMP_ARG_ENUM */
} QmpArgSpec;

/* Checks args (a JSON object) against spec.  prefix ("" or "addr.")
 * is put in front of member names in messages.  Messages:
 *   "Parameter 'x' is missing"
 *   "Invalid parameter type for 'x', expected: string"
 *   "Parameter 'x' expects uint64" / "... expects uint32_t"
 *   "Parameter 'x' does not accept value 'y'"
 *   "Parameter 'x' is unexpected"                                      */
bool qmp_args_check(json_t *args, const char *prefix, const QmpArgSpec *spec,
                    Error **errp);

/* Fails with "Parameter 'prefix+name' is unexpected" for the first member
 * of obj not named in names (NULL-terminated). */
bool qmp_args_only(json_t *obj, const char *prefix, const char *const *names,
                   Error **errp);

/* Type check of one value (also used for union members checked by hand).
 * path is the full member name for messages. */
bool qmp_args_check_value(json_t *v, const char *path, const QmpArgSpec *s,
                          Error **errp);

/* Accessors for arguments already checked; def when absent. */
const char *qmp_arg_str(json_t *args, const char *name, const char *def);
bool qmp_arg_bool(json_t *args, const char *name, bool def);
int64_t qmp_arg_int(json_t *args, const char *name, int64_t def);
/* Index in choices of an enum member, or def. */
int qmp_arg_enum(json_t *args, const char *name, const char *const *choices,
                 int def);

#endif
