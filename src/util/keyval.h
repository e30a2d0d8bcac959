/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QEMU's dotted key=value option syntax, and typed option access.
 *
 * "driver=qcow2,file.driver=file,file.filename=a,,b.img" becomes
 * {"driver":"qcow2","file":{"driver":"file","filename":"a,b.img"}}.
 * Keys that are all decimal integers at one level ("x.0=a,x.1=b") make
 * a JSON array.  Values stay strings; the typed getters below accept
 * either a JSON value of the right type (from QMP) or a string (from the
 * command line), exactly as QEMU's keyval input visitor does.
 */
#ifndef STRATA_UTIL_KEYVAL_H
#define STRATA_UTIL_KEYVAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

static inline void cleanup_json(json_t **p)
{
    json_decref(*p);
}
/* Drops a JSON reference at the end of the enclosing scope. */
#define CLEANUP_JSON __attribute__((cleanup(cleanup_json)))

/* Parses str.  If str starts with '{' it is parsed as JSON instead.
 * implied_key, if not NULL, names the key of a leading bare value
 * ("socket,path=x" with implied_key "backend" gives backend=socket).
 * Returns a new reference, or NULL with errp set. */
json_t *keyval_parse(const char *str, const char *implied_key, Error **errp);

/* Typed getters.  Each returns true and leaves *out at def when key is
 * absent; returns false with a QEMU-style message ("Parameter 'x'
 * expects a boolean") when the value has the wrong type. */
bool opt_get_bool(json_t *obj, const char *key, bool def, bool *out, Error **errp);
bool opt_get_uint64(json_t *obj, const char *key, uint64_t def, uint64_t *out,
                    Error **errp);
/* Size values additionally accept suffixes in string form ("64k"). */
bool opt_get_size(json_t *obj, const char *key, uint64_t def, uint64_t *out,
                  Error **errp);
/* *out points into obj (valid while obj lives) or is def. */
bool opt_get_str(json_t *obj, const char *key, const char *def,
                 const char **out, Error **errp);
/* As opt_get_str for a member that must be there: "Parameter 'x' is
 * missing" when it is not. */
bool opt_get_required_str(json_t *obj, const char *key, const char **out,
                          Error **errp);
/* Picks one of choices[] (NULL-terminated); *out is the index.  Error:
 * "Parameter 'x' does not accept value 'y'". */
bool opt_get_enum(json_t *obj, const char *key, const char *const choices[],
                  int def, int *out, Error **errp);

/* QEMU's id_wellformed(), for export and job ids: a letter, then
 * letters, digits, '-', '.' and '_'. */
bool id_wellformed(const char *id);

/* Fails with "Parameter 'k' is unexpected" naming the first key left in
 * obj.  Used after each consumer has json_object_del()ed what it knows. */
bool opt_check_empty(json_t *obj, Error **errp);

#endif
