/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP argument checking with QEMU's error texts.
 *
 * A command describes its arguments with a table of QmpArgSpec, QEMU's
 * QAPI schema written as data (docs/qmp.md, "Arguments").  The checker
 * does what QEMU's QObject input visitor does, in the same order, so the
 * first problem found is the one QEMU reports:
 *  - members are visited in table order (a base type's members where
 *    QMP_ARG_INHERIT puts them, normally first; a flat union's branch
 *    where QMP_ARG_UNION puts it, normally last);
 *  - a nested object is checked completely (its own unexpected members
 *    included) when its member's turn comes;
 *  - members the description does not name are reported after all the
 *    named ones are fine.
 * Messages name a member by its full path ('addr.data.path',
 * 'children[0].driver'), except where QEMU uses the bare name: a bad enum
 * value, an out-of-range sized integer and a value no alternate branch
 * takes ('null' for a list element).
 *
 * Most shared QAPI types (BlockdevOptions, SocketAddress, ...) are in
 * qmp/qapi-schema.h, transcribed from QEMU's schema.
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
    QMP_ARG_ARRAY,    /* elements described by elem (+ elem_*) */
    QMP_ARG_ANY,
    QMP_ARG_INT8,
    QMP_ARG_INT16,
    QMP_ARG_INT32,
    QMP_ARG_UINT8,
    QMP_ARG_UINT16,
    QMP_ARG_SIZE,     /* as uint64 in JSON; "1M" on the command line */
    QMP_ARG_NUMBER,   /* any JSON number */
    QMP_ARG_NULL,     /* JSON null */
    QMP_ARG_ALTERNATE, /* one of alternate's branches, by JSON type */
    /* Not members: entries that splice members in. */
    QMP_ARG_BASE,     /* nested's members (a QAPI base type) go here */
    QMP_ARG_VARIANTS, /* the members of the branch of branches named by
                       * the value of member name (a flat union's
                       * discriminator, an enum visited before) */
} QmpArgType;

#define QMP_ARG_INT64 QMP_ARG_INT

struct QmpArgSpec;

/* A flat union's branch: the members that come with one value of the
 * discriminator.  Values without a branch bring no members. */
typedef struct QmpArgBranch {
    const char *value;                /* NULL ends a table */
    const struct QmpArgSpec *members;
} QmpArgBranch;

/* A QAPI alternate: a value of one of several JSON types. */
typedef struct QmpAlternate {
    const char *name;                 /* QAPI type name, for messages */
    /* One branch per JSON type (object, string/enum, number, boolean,
     * null, array); the names are QAPI's branch names.  NULL-ended. */
    const struct QmpArgSpec *branches;
} QmpAlternate;

typedef struct QmpArgSpec {
    const char *name;                 /* NULL ends a table */
    QmpArgType type;
    bool optional;
    const char *const *choices;       /* QMP_ARG_ENUM: NULL-terminated */
    const struct QmpArgSpec *nested;  /* QMP_ARG_OBJECT, QMP_ARG_BASE */
    QmpArgType elem;                  /* QMP_ARG_ARRAY element type */
    const char *const *elem_choices;  /* ... when elem is QMP_ARG_ENUM */
    const QmpAlternate *alternate;    /* QMP_ARG_ALTERNATE */
    const QmpArgBranch *branches;     /* QMP_ARG_VARIANTS */
    const struct QmpArgSpec *elem_nested;   /* elem QMP_ARG_OBJECT */
    const QmpAlternate *elem_alternate;     /* elem QMP_ARG_ALTERNATE */
} QmpArgSpec;

/* The members of base (a table), here. */
#define QMP_ARG_INHERIT(base) \
    { .name = "", .type = QMP_ARG_BASE, .nested = (base) }
/* The members of the branch (of br) the value of member tag selects. */
#define QMP_ARG_UNION(tag, br) \
    { .name = (tag), .type = QMP_ARG_VARIANTS, .branches = (br) }

/* The description of a command without arguments. */
extern const QmpArgSpec qmp_no_args[];

/* Checks args (a JSON object) against spec.  prefix ("" or "addr.")
 * is put in front of member names in messages.  Messages:
 *   "Parameter 'x' is missing"
 *   "Invalid parameter type for 'x', expected: string"
 *   "Parameter 'x' expects uint64" / "... expects uint32_t"
 *   "Parameter 'x' does not accept value 'y'"
 *   "Invalid parameter type for 'x', expected: BlockdevRef"
 *   "Parameter 'x' is unexpected"                                      */
bool qmp_args_check(json_t *args, const char *prefix, const QmpArgSpec *spec,
                    Error **errp);

/* The same for options from the command line (keyval: every scalar is a
 * string), with the texts of QEMU's keyval input visitor ("Parameter 'x'
 * expects 'on' or 'off'", "... expects integer", "... expects size").
 * The values stay strings. */
bool qmp_args_check_keyval(json_t *args, const char *prefix,
                           const QmpArgSpec *spec, Error **errp);

/* Fails with "Parameter 'prefix+name' is unexpected" for the first member
 * of obj not named in names (NULL-terminated). */
bool qmp_args_only(json_t *obj, const char *prefix, const char *const *names,
                   Error **errp);

/* Type check of one value (also used for union members checked by hand).
 * path is the full member name for messages. */
bool qmp_args_check_value(json_t *v, const char *path, const QmpArgSpec *s,
                          Error **errp);

/* True when members (with its bases and the union branch args selects)
 * names key. */
bool qmp_args_names(json_t *args, const QmpArgSpec *members,
                    const char *key);

/* Accessors for arguments already checked; def when absent. */
const char *qmp_arg_str(json_t *args, const char *name, const char *def);
bool qmp_arg_bool(json_t *args, const char *name, bool def);
int64_t qmp_arg_int(json_t *args, const char *name, int64_t def);
/* An uint64 (or size) member: negative JSON integers wrap, integers
 * above INT64_MAX are taken exactly. */
uint64_t qmp_arg_uint64(json_t *args, const char *name, uint64_t def);
/* Index in choices of an enum member, or def. */
int qmp_arg_enum(json_t *args, const char *name, const char *const *choices,
                 int def);

#endif
