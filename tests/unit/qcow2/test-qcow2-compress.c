/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - unit tests of qcow2 cluster compression with per-thread
 * reused streams: many clusters through one thread's contexts, both
 * formats interleaved, a malformed cluster not poisoning the next one,
 * several threads at once, and the scratch buffers' nesting rule. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "block/drivers/qcow2/qcow2.h"

#define CS 65536

/* Compressible but different for every seed. */
static void fill(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)("abcdefgh"[(i / 7 + seed) % 8] + (i % 97 == 0));
    }
    memcpy(buf, &seed, sizeof(seed));
}

/* Compresses and decompresses one cluster; returns the compressed size. */
static int64_t roundtrip(int type, unsigned seed)
{
    uint8_t *in = malloc(CS), *out = malloc(CS), *back = malloc(CS);
    assert_non_null(in);
    assert_non_null(out);
    assert_non_null(back);
    fill(in, CS, seed);
    int64_t n = qcow2_compress(type, in, CS, out, CS - 1);
    assert_true(n > 0 && n < CS / 4);
    /* As on disk: the data is followed by unrelated bytes. */
    memset(out + n, 0x5a, (size_t)(CS - n));
    size_t in_len = (size_t)((n + 511) & ~511);
    assert_int_equal(qcow2_decompress(type, out, in_len, back, CS), 0);
    assert_memory_equal(in, back, CS);
    free(in);
    free(out);
    free(back);
    return n;
}

static void test_reuse_interleaved(void **state)
{
    (void)state;
    int64_t first[2] = { 0, 0 };
    for (unsigned i = 0; i < 200; i++) {
        int type = i % 2 ? QCOW2_COMPRESSION_ZSTD : QCOW2_COMPRESSION_ZLIB;
        int64_t n = roundtrip(type, i % 4);
        /* A reset stream compresses the same input to the same size. */
        if (i < 2) {
            first[i] = n;
        } else if (i % 4 < 2) {
            assert_int_equal(n, first[i % 2]);
        }
    }
}

static void test_incompressible_then_ok(void **state)
{
    (void)state;
    uint8_t *in = malloc(CS), *out = malloc(CS);
    assert_non_null(in);
    assert_non_null(out);
    unsigned x = 12345;
    for (size_t i = 0; i < CS; i++) {
        x = x * 1103515245u + 12345u;
        in[i] = (uint8_t)(x >> 16);
    }
    for (int type = 0; type <= 1; type++) {
        /* Random data does not shrink: 0, and the stream stays usable. */
        assert_int_equal(qcow2_compress(type, in, CS, out, CS - 1), 0);
        roundtrip(type, 7);
    }
    free(in);
    free(out);
}

static void test_malformed_then_ok(void **state)
{
    (void)state;
    uint8_t *in = malloc(CS), *out = malloc(CS), *back = malloc(CS);
    assert_non_null(in);
    assert_non_null(out);
    assert_non_null(back);
    for (int type = 0; type <= 1; type++) {
        fill(in, CS, 3);
        int64_t n = qcow2_compress(type, in, CS, out, CS - 1);
        assert_true(n > 16);
        /* Truncated: the decoder stops half way through a block. */
        assert_int_equal(qcow2_decompress(type, out, (size_t)n / 2, back, CS),
                         -EIO);
        /* Garbage. */
        memset(back, 0xff, 4096);
        assert_int_equal(qcow2_decompress(type, back, 4096, in, CS), -EIO);
        /* The next good cluster decodes from a clean state. */
        roundtrip(type, 9);
    }
    free(in);
    free(out);
    free(back);
}

static void *thread_main(void *opaque)
{
    unsigned id = (unsigned)(uintptr_t)opaque;
    for (unsigned i = 0; i < 50; i++) {
        roundtrip((int)((id + i) % 2), id * 100 + i);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, thread_main, (void *)i),
                         0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
    }
}

static void test_scratch_nesting(void **state)
{
    (void)state;
    uint8_t *a = qcow2_scratch_get(QCOW2_SCRATCH_CLUSTER, CS);
    uint8_t *b = qcow2_scratch_get(QCOW2_SCRATCH_COMPRESSED, CS);
    /* The slot is taken: a nested caller gets a buffer of its own. */
    uint8_t *c = qcow2_scratch_get(QCOW2_SCRATCH_CLUSTER, CS);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_ptr_not_equal(a, b);
    assert_ptr_not_equal(a, c);
    assert_int_equal((uintptr_t)c % 4096, 0);
    memset(a, 1, CS);
    memset(b, 2, CS);
    memset(c, 3, CS);
    assert_int_equal(a[CS - 1], 1);
    qcow2_scratch_put(QCOW2_SCRATCH_CLUSTER, c);
    qcow2_scratch_put(QCOW2_SCRATCH_COMPRESSED, b);
    qcow2_scratch_put(QCOW2_SCRATCH_CLUSTER, a);
    /* Released: the same buffer comes back, no allocation. */
    uint8_t *again = qcow2_scratch_get(QCOW2_SCRATCH_CLUSTER, 4096);
    assert_ptr_equal(again, a);
    qcow2_scratch_put(QCOW2_SCRATCH_CLUSTER, again);
    /* Too big to keep: allocated for the call only. */
    uint8_t *big = qcow2_scratch_get(QCOW2_SCRATCH_CLUSTER, 2u << 20);
    assert_non_null(big);
    assert_ptr_not_equal(big, a);
    memset(big, 4, 2u << 20);
    qcow2_scratch_put(QCOW2_SCRATCH_CLUSTER, big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse_interleaved),
        cmocka_unit_test(test_incompressible_then_ok),
        cmocka_unit_test(test_malformed_then_ok),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_scratch_nesting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
