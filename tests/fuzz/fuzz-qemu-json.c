/* SPDX-License-Identifier: BSD-3-Clause */
/* libFuzzer target: QEMU's JSON dialect (util/qemu-json.c), the parser
 * of "json:" filenames.  Every input gives a value or an error, never
 * both; a value is an object, array or scalar jansson can walk. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "util/qemu-json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t walk(json_t *v, int depth)
{
    if (depth > 1100) {
        __builtin_trap();    /* deeper than the nesting limit allows */
    }
    size_t n = 1;
    const char *k;
    json_t *sub;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach(v, k, sub) {
            n += walk(sub, depth + 1);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, sub) {
            n += walk(sub, depth + 1);
        }
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Error *err = NULL;
    json_t *v = qemu_json_parse((const char *)data, size, &err);
    if (!v == !err) {
        __builtin_trap();
    }
    if (v) {
        walk(v, 0);
        json_decref(v);
    } else if (!error_get_pretty(err)[0]) {
        __builtin_trap();
    }
    error_free(err);
    return 0;
}
