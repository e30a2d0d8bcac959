/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QEMU's JSON dialect, parsed the way QEMU 7.2 parses the text
 * of a "json:" filename (qobject_from_json).
 *
 * Beyond RFC 8259: strings may be single-quoted ('it\'s', with '"'
 * allowed unescaped inside), "\'" is a valid escape in both kinds of
 * string, and the encoding is modified UTF-8 ("\u0000" is the bytes
 * C0 80).  Stricter than many parsers: duplicate keys, non-characters
 * and lone surrogates are errors.  The text must hold exactly one value.
 *
 * Errors carry QEMU's messages ("JSON parse error, premature EOI",
 * "Expecting a JSON value", "Expecting at most one JSON value", ...),
 * since tools print them to users who compare them with qemu-img's.
 * Work is bounded: nesting deeper than 1024 levels, more than 2M tokens
 * or more than 64 MiB of token text is refused, as QEMU refuses it.
 */
#ifndef STRATA_UTIL_QEMU_JSON_H
#define STRATA_UTIL_QEMU_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "util/error.h"

/* Parses text (len bytes; need not be NUL-terminated) into a new
 * reference, or returns NULL with errp set.  Numbers that fit int64_t
 * become integers, others reals; strings may hold bytes jansson would
 * not create itself (modified UTF-8), so dump them with care. */
json_t *qemu_json_parse(const char *text, size_t len, Error **errp);

#endif
