/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - JSON text exactly as QEMU's qobject_to_json writes a QDict.
 *
 * QEMU shows some objects to users as text: "json:{...}" filenames in
 * qemu-img info and in query-named-block-nodes.  Its QDict is a hash
 * table, so the members come out in hash-bucket order, not in the order
 * they were added; tools that compare names need the same text.
 */
#ifndef STRATA_UTIL_QDICT_JSON_H
#define STRATA_UTIL_QDICT_JSON_H

#include <jansson.h>

/* The bucket of key in QEMU's QDict (its tdb_hash modulo 512). */
unsigned qdict_bucket(const char *key);

/* Serialises v as QEMU does (", " and ": " separators, object members in
 * QDict order with the later-added member first within a bucket, non
 * ASCII characters as \uXXXX).  Returns a malloc'ed string or NULL when
 * out of memory. */
char *qdict_json_dumps(const json_t *v);

#endif
