/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests: qcow2 header codec on qemu-img-made headers and on
 * headers damaged on purpose (QEMU's messages where it has one). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "block/drivers/qcow2/qcow2-format.h"

#define HDR_BYTES 1024

typedef struct Sample {
    const char *name;
    uint64_t file_size; /* of the image the header came from */
} Sample;

static const Sample samples[] = {
    { "h-v3", 196616 },
    { "h-v2", 196624 },
    { "h-backing", 196616 },
    { "h-zstd4k", 16384 },
};

static void load(const char *name, uint8_t *buf)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.hdr", QCOW2META_DATA_DIR, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(buf, 1, HDR_BYTES, f), HDR_BYTES);
    fclose(f);
}

static void test_roundtrip(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        uint8_t in[HDR_BYTES];
        Qcow2Header h;
        Error *err = NULL;
        load(samples[i].name, in);
        assert_true(qcow2_header_decode(in, sizeof(in), samples[i].file_size,
                                        &h, &err));
        size_t cs = qcow2_cluster_size(&h);
        uint8_t *out = malloc(cs);
        assert_non_null(out);
        assert_true(qcow2_header_encode(&h, out, cs, &err));
        /* Byte-identical to what qemu-img wrote, zeroes after. */
        assert_memory_equal(out, in, cs < HDR_BYTES ? cs : HDR_BYTES);
        for (size_t k = HDR_BYTES; k < cs; k++) {
            assert_int_equal(out[k], 0);
        }
        free(out);
        qcow2_header_free(&h);
    }
}

static void test_fields(void **state)
{
    (void)state;
    uint8_t in[HDR_BYTES];
    Qcow2Header h;
    load("h-backing", in);
    assert_true(qcow2_header_decode(in, sizeof(in), 196616, &h, NULL));
    assert_int_equal(h.version, 3);
    assert_int_equal(h.cluster_bits, 16);
    assert_int_equal(h.size, 64 << 20);
    assert_string_equal(h.backing_file, "base.qcow2");
    assert_string_equal(h.backing_format, "qcow2");
    assert_int_equal(h.header_length, 112);
    qcow2_header_free(&h);

    load("h-v2", in);
    assert_true(qcow2_header_decode(in, sizeof(in), 196624, &h, NULL));
    assert_int_equal(h.version, 2);
    assert_int_equal(h.refcount_order, 4);
    assert_int_equal(h.header_length, 72);
    assert_null(h.backing_file);
    qcow2_header_free(&h);

    load("h-zstd4k", in);
    assert_true(qcow2_header_decode(in, sizeof(in), 16384, &h, NULL));
    assert_int_equal(h.compression_type, QCOW2_COMPRESSION_ZSTD);
    assert_true(h.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS);
    qcow2_header_free(&h);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, v >> 32);
    put32(p + 4, (uint32_t)v);
}

typedef struct Damage {
    const char *sample;
    size_t off;
    int width;          /* 1, 4 or 8 bytes */
    uint64_t value;
    const char *msg;    /* expected message prefix */
} Damage;

static const Damage damages[] = {
    { "h-v3", 0, 4, 0x12345678, "Image is not in qcow2 format" },
    { "h-v3", 4, 4, 4, "Unsupported qcow2 version 4" },
    { "h-v3", 20, 4, 8, "Unsupported cluster size: 2^8" },
    { "h-v3", 20, 4, 22, "Unsupported cluster size: 2^22" },
    { "h-v3", 100, 4, 100, "qcow2 header too short" },
    { "h-v3", 100, 4, 70000, "qcow2 header exceeds cluster size" },
    { "h-v3", 100, 4, 108, "Invalid qcow2 header length 108" },
    { "h-v3", 96, 4, 7, "Reference count entry width too large" },
    { "h-v3", 36, 4, 5000000, "Active L1 table too large" },
    { "h-v3", 36, 4, 0, "L1 table is too small" },
    { "h-v3", 40, 8, 0x30200, "Active L1 table offset invalid" },
    { "h-v3", 40, 8, 0x300000, "Active L1 table offset invalid: the table" },
    { "h-v3", 48, 8, 0x10200, "Reference count table offset invalid" },
    { "h-v3", 48, 8, 0x300000, "Reference count table offset invalid: the" },
    { "h-v3", 56, 4, 0, "Image does not contain a reference count table" },
    { "h-v3", 56, 4, 200, "Reference count table too large" },
    { "h-v3", 64, 8, 0x10008, "Snapshot table offset invalid" },
    { "h-v3", 60, 4, 70000, "Snapshot table too large" },
    { "h-v3", 8, 8, 0x20000, "Invalid backing file offset" },
    { "h-v3", 32, 4, 3, "Unsupported encryption method 3" },
    { "h-v3", 104, 1, 2, "qcow2: unknown compression type: 2" },
    { "h-v3", 104, 1, 1, "qcow2: Compression type incompatible feature bit "
                         "must be set" },
    { "h-v3", 24, 8, 1ull << 63, "Image is too big" },
    { "h-v3", 116, 4, 70000, "Header extension too large" },
    { "h-backing", 16, 4, 2000, "Backing file name too long" },
    { "h-backing", 116, 4, 20, "ERROR: ext_backing_format: len=20 too large" },
};

static void test_damaged(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(damages) / sizeof(damages[0]); i++) {
        const Damage *d = &damages[i];
        uint8_t in[HDR_BYTES];
        Qcow2Header h;
        Error *err = NULL;
        load(d->sample, in);
        switch (d->width) {
        case 1: in[d->off] = (uint8_t)d->value; break;
        case 4: put32(in + d->off, (uint32_t)d->value); break;
        default: put64(in + d->off, d->value); break;
        }
        bool ok = qcow2_header_decode(in, sizeof(in), 196616, &h, &err);
        if (ok || strncmp(error_get_pretty(err), d->msg, strlen(d->msg))) {
            fail_msg("case %zu (%s): got '%s', want '%s'", i, d->msg,
                     ok ? "success" : error_get_pretty(err), d->msg);
        }
        error_free(err);
    }
}

static void test_truncated(void **state)
{
    (void)state;
    uint8_t in[HDR_BYTES];
    Error *err = NULL;
    Qcow2Header h;
    load("h-v3", in);
    for (size_t len = 0; len < QCOW2_V3_HEADER_SIZE; len++) {
        assert_false(qcow2_header_decode(in, len, 196616, &h, &err));
        assert_non_null(err);
        error_free(err);
        err = NULL;
    }
}

static void test_unknown_ext_kept(void **state)
{
    (void)state;
    uint8_t in[HDR_BYTES], out[65536], again[65536];
    Qcow2Header h, h2;
    load("h-v3", in);
    assert_true(qcow2_header_decode(in, sizeof(in), 196616, &h, NULL));
    static uint8_t payload[] = { 1, 2, 3, 4, 5 };
    h.unknown_ext = calloc(1, sizeof(*h.unknown_ext));
    h.unknown_ext[0] = (Qcow2Extension){ 0x12345678, sizeof(payload),
                                         malloc(sizeof(payload)) };
    memcpy(h.unknown_ext[0].data, payload, sizeof(payload));
    h.nb_unknown_ext = 1;
    h.strata_params = (uint8_t *)strdup("cor=on");
    h.strata_params_len = 6;
    h.backing_file = strdup("b.img");
    assert_true(qcow2_header_encode(&h, out, sizeof(out), NULL));
    assert_true(qcow2_header_decode(out, sizeof(out), 196616, &h2, NULL));
    assert_int_equal(h2.nb_unknown_ext, 1);
    assert_int_equal(h2.unknown_ext[0].type, 0x12345678);
    assert_memory_equal(h2.unknown_ext[0].data, payload, sizeof(payload));
    assert_int_equal(h2.strata_params_len, 6);
    assert_memory_equal(h2.strata_params, "cor=on", 6);
    assert_string_equal(h2.backing_file, "b.img");
    assert_true(qcow2_header_encode(&h2, again, sizeof(again), NULL));
    assert_memory_equal(out, again, sizeof(out));
    qcow2_header_free(&h);
    qcow2_header_free(&h2);
}

static void test_encode_too_small(void **state)
{
    (void)state;
    uint8_t in[HDR_BYTES], out[512];
    Qcow2Header h;
    Error *err = NULL;
    load("h-v3", in);
    assert_true(qcow2_header_decode(in, sizeof(in), 196616, &h, NULL));
    char name[1000];
    memset(name, 'x', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    h.backing_file = strdup(name);
    assert_false(qcow2_header_encode(&h, out, sizeof(out), &err));
    assert_non_null(err);
    error_free(err);
    qcow2_header_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_damaged),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_unknown_ext_kept),
        cmocka_unit_test(test_encode_too_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
