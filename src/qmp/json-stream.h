/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - splits a QMP byte stream into JSON values, as QEMU does.
 *
 * Bytes arrive in arbitrary pieces.  A lexer tracks strings and counts
 * braces and brackets; a value is complete when they balance (an
 * object may span several lines, a line may hold several objects).
 * The complete text is parsed as QEMU's parser does, with its wording
 * for errors ("JSON parse error, expecting value", "... duplicate key");
 * jansson decodes the strings.  After a lexical error the stream skips
 * to the next structural character or line end and carries on.
 *
 * Numbers: an integer that fits int64 is a jansson integer; one that
 * only fits uint64 is a jansson real whose exact value
 * json_stream_big_uint() knows (QEMU keeps it as an unsigned number);
 * anything else is a real.
 */
#ifndef STRATA_QMP_JSON_STREAM_H
#define STRATA_QMP_JSON_STREAM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits, as QEMU's (token size is smaller: bounded memory per client). */
#define JSON_STREAM_MAX_SIZE      (16u << 20)
#define JSON_STREAM_MAX_TOKENS    (2u << 20)
#define JSON_STREAM_MAX_NESTING   1024

typedef struct JsonStream JsonStream;

/* Called once per complete value (value is a new reference the callee
 * owns, err NULL) or per error (value NULL, err the message, e.g.
 * "JSON parse error, stray '@'"). */
typedef void JsonStreamFn(void *opaque, json_t *value, const char *err);

JsonStream *json_stream_new(JsonStreamFn *fn, void *opaque);
void json_stream_free(JsonStream *js);
/* Consumes len bytes, calling fn for each value or error found.  fn must
 * not free js. */
void json_stream_feed(JsonStream *js, const char *buf, size_t len);

/* Explains why text (a balanced, lexically valid JSON text) does not
 * parse, in QEMU's words; returns the message (a constant or buf), or
 * NULL if the structure is fine. */
const char *json_stream_diagnose(const char *text, size_t len,
                                 char *buf, size_t buflen);

/* True, with the exact value in *out, when v is a number of the value
 * being dispatched that was written as an integer above INT64_MAX (and
 * at most UINT64_MAX).  Valid from the callback's start until the next
 * value is parsed; main thread (the parsing thread) only. */
bool json_stream_big_uint(const json_t *v, uint64_t *out);
/* Drops what json_stream_big_uint() knows (done before each parse). */
void json_stream_forget_numbers(void);

#endif
