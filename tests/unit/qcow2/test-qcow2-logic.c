/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - unit tests of the qcow2 engine's pure logic: refcount entry
 * packing, compressed descriptors, L2 entry types, the table cache's
 * LRU, and the metadata overlap set. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "block/drivers/qcow2/qcow2.h"

static void test_refblock_widths(void **state)
{
    (void)state;
    uint8_t block[512];
    for (unsigned order = 0; order <= 6; order++) {
        unsigned bits = 1u << order;
        uint64_t entries = 512 * 8 / bits;
        uint64_t max = qcow2_refcount_max(order);
        memset(block, 0, sizeof(block));
        for (uint64_t i = 0; i < entries; i++) {
            qcow2_refblock_set(block, i, order, (i * 2654435761ull) & max);
        }
        for (uint64_t i = 0; i < entries; i++) {
            assert_int_equal(qcow2_refblock_get(block, i, order),
                             (i * 2654435761ull) & max);
        }
        /* Setting one entry leaves its neighbours alone. */
        qcow2_refblock_set(block, 5, order, max);
        assert_int_equal(qcow2_refblock_get(block, 4, order),
                         (4 * 2654435761ull) & max);
        assert_int_equal(qcow2_refblock_get(block, 6, order),
                         (6 * 2654435761ull) & max);
        assert_int_equal(qcow2_refblock_get(block, 5, order), max);
    }
    /* On-disk layout: 16-bit big-endian, sub-byte LSB first (QEMU). */
    memset(block, 0, sizeof(block));
    qcow2_refblock_set(block, 1, 4, 0x1234);
    assert_int_equal(block[2], 0x12);
    assert_int_equal(block[3], 0x34);
    memset(block, 0, sizeof(block));
    qcow2_refblock_set(block, 1, 0, 1);
    assert_int_equal(block[0], 0x02);
    qcow2_refblock_set(block, 1, 2, 0xf);
    assert_int_equal(block[0], 0xf2);
    assert_true(qcow2_refcount_max(0) == 1);
    assert_true(qcow2_refcount_max(4) == 0xffff);
    assert_true(qcow2_refcount_max(6) == UINT64_MAX);
}

static void test_compressed_desc(void **state)
{
    (void)state;
    /* Observed QEMU entry (64 KiB clusters): 0x400000000005004f. */
    Qcow2CompressedDesc d;
    qcow2_compressed_decode(0x400000000005004full, 16, &d);
    assert_int_equal(d.host_offset, 0x5004f);
    assert_int_equal(d.nb_sectors, 1);
    assert_int_equal(d.size, 512 - 0x4f);

    for (unsigned cb = 9; cb <= 21; cb++) {
        uint64_t cs = 1ull << cb;
        uint64_t offs[] = { 0x50000, 0x5004f, 0x1234567, 0x10000 - 1 };
        for (size_t i = 0; i < 4; i++) {
            for (uint64_t size = 1; size <= cs; size = size * 3 + 7) {
                uint64_t e = qcow2_compressed_encode(offs[i], size, cb);
                assert_true(e & QCOW2_OFLAG_COMPRESSED);
                assert_false(e & QCOW2_OFLAG_COPIED);
                qcow2_compressed_decode(e, cb, &d);
                assert_int_equal(d.host_offset, offs[i]);
                /* Covers the data and ends on a sector boundary. */
                assert_true(d.size >= size);
                assert_true(d.size - size < 512);
                assert_int_equal((d.host_offset + d.size) % 512, 0);
                assert_int_equal(qcow2_l2e_type(e), QCOW2_CLUSTER_COMPRESSED);
            }
        }
    }
    /* An offset the descriptor cannot hold is refused. */
    assert_int_equal(qcow2_compressed_encode(1ull << 60, 100, 21), 0);
}

static void test_l2_types(void **state)
{
    (void)state;
    assert_int_equal(qcow2_l2e_type(0), QCOW2_CLUSTER_UNALLOCATED);
    assert_int_equal(qcow2_l2e_type(0x8000000000050000ull), QCOW2_CLUSTER_NORMAL);
    assert_int_equal(qcow2_l2e_type(0x50000ull), QCOW2_CLUSTER_NORMAL);
    assert_int_equal(qcow2_l2e_type(0x1), QCOW2_CLUSTER_ZERO_PLAIN);
    assert_int_equal(qcow2_l2e_type(0x8000000000060001ull),
                     QCOW2_CLUSTER_ZERO_ALLOC);
    assert_int_equal(qcow2_l2e_type(0x4000000000050000ull),
                     QCOW2_CLUSTER_COMPRESSED);
}

/* With an external data file, guest cluster 0 is at host offset 0: its
 * entry is only the COPIED flag, which reads as data there and as
 * unallocated elsewhere. */
static void test_l2_types_data_file(void **state)
{
    (void)state;
    BDRVQcow2State s;
    memset(&s, 0, sizeof(s));
    uint64_t at_zero = QCOW2_OFLAG_COPIED;
    assert_int_equal(qcow2_cluster_type(&s, at_zero),
                     QCOW2_CLUSTER_UNALLOCATED);
    s.header.incompatible_features = QCOW2_INCOMPAT_DATA_FILE;
    assert_true(qcow2_has_data_file(&s));
    assert_false(qcow2_data_file_raw(&s));
    assert_int_equal(qcow2_cluster_type(&s, at_zero), QCOW2_CLUSTER_NORMAL);
    assert_int_equal(qcow2_cluster_type(&s, at_zero | QCOW2_OFLAG_ZERO),
                     QCOW2_CLUSTER_ZERO_PLAIN);
    assert_int_equal(qcow2_cluster_type(&s, 0), QCOW2_CLUSTER_UNALLOCATED);
    assert_int_equal(qcow2_cluster_type(&s, 0x20000 | QCOW2_OFLAG_COPIED),
                     QCOW2_CLUSTER_NORMAL);
    /* Extended L2 entries: the bitmap decides per subcluster. */
    assert_int_equal(qcow2_cluster_type_ext(&s, at_zero),
                     QCOW2_CLUSTER_NORMAL);
    assert_int_equal(qcow2_subcluster_type(&s, at_zero, 1, 0), QCOW2_SC_NORMAL);
    assert_int_equal(qcow2_subcluster_type(&s, at_zero, 1, 1),
                     QCOW2_SC_UNALLOCATED_ALLOC);
    assert_int_equal(qcow2_subcluster_type(&s, 0, 1ull << 32, 0),
                     QCOW2_SC_ZERO_PLAIN);
    s.header.autoclear_features = QCOW2_AUTOCLEAR_DATA_RAW;
    assert_true(qcow2_data_file_raw(&s));
}

static void test_cache_lru(void **state)
{
    (void)state;
    Qcow2Cache *c = qcow2_cache_new(4, 512);
    assert_non_null(c);
    void *t[5];
    /* Fresh tables need no I/O, so no node is needed. */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(qcow2_cache_get_locked(NULL, c, 512 * (i + 1), true,
                                                &t[i]), 0);
        memset(t[i], i + 1, 512);
        qcow2_cache_put(c, t[i]);
    }
    /* Touch the oldest so the second becomes least recently used. */
    void *again;
    assert_int_equal(qcow2_cache_get_locked(NULL, c, 512, false, &again), 0);
    assert_ptr_equal(again, t[0]);
    assert_int_equal(((uint8_t *)again)[0], 1);
    qcow2_cache_put(c, again);
    assert_int_equal(qcow2_cache_get_locked(NULL, c, 512 * 5, true, &t[4]), 0);
    assert_false(qcow2_cache_contains(c, 1024));
    assert_true(qcow2_cache_contains(c, 512));
    assert_true(qcow2_cache_contains(c, 1536));
    assert_true(qcow2_cache_contains(c, 2560));
    /* Pinned tables are never evicted: pin all four, a fifth fails. */
    void *p[3];
    assert_int_equal(qcow2_cache_get_locked(NULL, c, 512, false, &p[0]), 0);
    assert_int_equal(qcow2_cache_get_locked(NULL, c, 1536, false, &p[1]), 0);
    assert_int_equal(qcow2_cache_get_locked(NULL, c, 2048, false, &p[2]), 0);
    void *none;
    assert_int_equal(qcow2_cache_get_locked(NULL, c, 512 * 9, true, &none),
                     -ENOMEM);
    qcow2_cache_discard(c, 512);
    assert_false(qcow2_cache_contains(c, 512));
    qcow2_cache_free(c);
}

static void test_overlap_set(void **state)
{
    (void)state;
    BDRVQcow2State s;
    memset(&s, 0, sizeof(s));
    s.cluster_bits = 16;
    s.cluster_size = 65536;
    assert_int_equal(qcow2_meta_add(&s, 0, 65536, QCOW2_META_HEADER), 0);
    assert_int_equal(qcow2_meta_add(&s, 0x10000, 0x20000, QCOW2_META_REFTABLE),
                     0);
    for (uint64_t i = 0; i < 5000; i++) {
        assert_int_equal(qcow2_meta_add(&s, (100 + 2 * i) << 16, 65536,
                                        QCOW2_META_L2), 0);
    }
    assert_int_equal(qcow2_meta_overlap(&s, 0x10000 + 100, 4096,
                                        QCOW2_META_NONE), QCOW2_META_REFTABLE);
    assert_string_equal(qcow2_meta_type_name(QCOW2_META_REFTABLE),
                        "refcount table");
    assert_int_equal(qcow2_meta_overlap(&s, 0x30000, 65536, QCOW2_META_NONE),
                     QCOW2_META_NONE);
    assert_int_equal(qcow2_meta_overlap(&s, 101ull << 16, 65536,
                                        QCOW2_META_NONE), QCOW2_META_NONE);
    assert_int_equal(qcow2_meta_overlap(&s, (101ull << 16) + 1, 65536,
                                        QCOW2_META_NONE), QCOW2_META_L2);
    assert_int_equal(qcow2_meta_overlap(&s, 102ull << 16, 512, QCOW2_META_L2),
                     QCOW2_META_NONE);
    /* Removing entries keeps every other one findable. */
    for (uint64_t i = 0; i < 5000; i += 2) {
        qcow2_meta_remove(&s, (100 + 2 * i) << 16, 65536);
    }
    for (uint64_t i = 0; i < 5000; i++) {
        Qcow2MetaType want = i % 2 ? QCOW2_META_L2 : QCOW2_META_NONE;
        assert_int_equal(qcow2_meta_overlap(&s, (100 + 2 * i) << 16, 1,
                                            QCOW2_META_NONE), want);
    }
    qcow2_meta_clear(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refblock_widths),
        cmocka_unit_test(test_compressed_desc),
        cmocka_unit_test(test_l2_types),
        cmocka_unit_test(test_l2_types_data_file),
        cmocka_unit_test(test_cache_lru),
        cmocka_unit_test(test_overlap_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
