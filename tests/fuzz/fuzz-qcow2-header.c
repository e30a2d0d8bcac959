/* SPDX-License-Identifier: BSD-3-Clause */
/* libFuzzer target: qcow2_header_decode must reject any malformed header
 * with an error (never crash), and whatever it accepts must encode and
 * decode again to the same header.  The strata parameters extension's
 * payload goes through its own decoder too: rejected with an error, or
 * accepted and then encoded to a payload that decodes to the same set. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-format.h"
#include "block/image-params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_params(const uint8_t *p, size_t len)
{
    ImageParams ip, ip2;
    Error *err = NULL;
    if (!image_params_decode(p, len, &ip, &err)) {
        error_free(err);
        return;
    }
    uint8_t *enc = NULL;
    size_t enc_len = 0;
    if (!image_params_encode(&ip, &enc, &enc_len, NULL)) {
        abort();
    }
    if (enc) {
        if (!image_params_decode(enc, enc_len, &ip2, NULL) ||
            !json_equal(ip.kv, ip2.kv)) {
            abort(); /* decode(encode(set)) == set */
        }
        image_params_free(&ip2);
    } else if (json_object_size(ip.kv) != 0) {
        abort(); /* only the empty set encodes to nothing */
    }
    free(enc);
    image_params_free(&ip);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Qcow2Header h, h2;
    Error *err = NULL;

    /* The file is at least as long as the bytes we were given. */
    if (!qcow2_header_decode(data, size, size + (1u << 20), &h, &err)) {
        error_free(err);
        return 0;
    }
    if (h.strata_params) {
        check_params(h.strata_params, h.strata_params_len);
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
