/* SPDX-License-Identifier: BSD-3-Clause */
/* libFuzzer target: qcow2_header_decode must reject any malformed header
 * with an error (never crash), and whatever it accepts must encode and
 * decode again to the same header. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Qcow2Header h, h2;
    Error *err = NULL;

    /* The file is at least as long as the bytes we were given. */
    if (!qcow2_header_decode(data, size, size + (1u << 20), &h, &err)) {
        error_free(err);
        return 0;
    }
    size_t cs = qcow2_cluster_size(&h);
    uint8_t *a = malloc(cs), *b = malloc(cs);
    if (a && b && qcow2_header_encode(&h, a, cs, NULL)) {
        if (!qcow2_header_decode(a, cs, UINT64_MAX / 2, &h2, NULL)) {
            abort(); /* our own output must decode */
        }
        if (!qcow2_header_encode(&h2, b, cs, NULL) || memcmp(a, b, cs)) {
            abort(); /* encode(decode(encode(h))) == encode(h) */
        }
        qcow2_header_free(&h2);
    }
    free(a);
    free(b);
    qcow2_header_free(&h);
    return 0;
}
