/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests: qcow2 check and repair through the driver's check callback
 * on images made by qcow2_create and damaged with pwrite (no QEMU tools
 * needed; the integration tests compare with qemu-img). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block.h"
#include "util/keyval.h"

#define CS 65536ull

static char dir[] = "/tmp/strata-test-qcow2check-XXXXXX";
static char img[300];

typedef struct Layout {
    uint64_t l1_off, rt_off;
    unsigned refcount_order;
} Layout;

static uint64_t read_be64(int fd, uint64_t off)
{
    uint64_t v;
    assert_int_equal(pread(fd, &v, 8, (off_t)off), 8);
    return be64toh(v);
}

static Layout layout(void)
{
    int fd = open(img, O_RDONLY);
    assert_true(fd >= 0);
    Layout l = { 0 };
    uint32_t order;
    l.l1_off = read_be64(fd, 40);
    l.rt_off = read_be64(fd, 48);
    assert_int_equal(pread(fd, &order, 4, 96), 4);
    l.refcount_order = be32toh(order);
    close(fd);
    return l;
}

/* Host cluster of guest cluster 0 (first L2 table). */
static uint64_t host_cluster0(const Layout *l)
{
    int fd = open(img, O_RDONLY);
    uint64_t l2 = read_be64(fd, l->l1_off) & 0x00fffffffffffe00ull;
    uint64_t e = read_be64(fd, l2) & 0x00fffffffffffe00ull;
    close(fd);
    assert_true(l2 && e);
    return e / CS;
}

/* Sets a refcount in the first refcount block (orders 0, 4 and 6). */
static void set_refcount(const Layout *l, uint64_t cluster, uint64_t value)
{
    int fd = open(img, O_RDWR);
    uint64_t rb = read_be64(fd, l->rt_off);
    uint8_t b;
    switch (l->refcount_order) {
    case 0:
        assert_int_equal(pread(fd, &b, 1, (off_t)(rb + cluster / 8)), 1);
        b = (uint8_t)((b & ~(1u << (cluster % 8))) | (value << (cluster % 8)));
        assert_int_equal(pwrite(fd, &b, 1, (off_t)(rb + cluster / 8)), 1);
        break;
    case 4: {
        uint16_t v = htobe16((uint16_t)value);
        assert_int_equal(pwrite(fd, &v, 2, (off_t)(rb + 2 * cluster)), 2);
        break;
    }
    default: {
        uint64_t v = htobe64(value);
        assert_int_equal(pwrite(fd, &v, 8, (off_t)(rb + 8 * cluster)), 8);
        break;
    }
    }
    close(fd);
}

static void make_image(const char *opts_kv)
{
    Error *err = NULL;
    json_t *opts = keyval_parse(opts_kv, NULL, &err);
    assert_non_null(opts);
    unlink(img);
    if (!block_create("qcow2", img, opts, &err)) {
        fail_msg("create: %s", error_get_pretty(err));
    }
    json_decref(opts);

    BlockNode *bs = block_open_image(img, "qcow2", BLOCK_O_RDWR, &err);
    assert_non_null(bs);
    static uint8_t buf[3 * CS];
    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] = (uint8_t)(i / CS + 1);
    }
    assert_int_equal(block_write(bs, 0, sizeof(buf), buf, 0), 0);
    assert_int_equal(block_write(bs, 1 << 20, CS, buf, 0), 0);
    block_node_unref(bs);
}

static int run_check(int fix, BlockCheckResult *res)
{
    Error *err = NULL;
    int flags = BLOCK_O_NO_REPAIR | (fix ? BLOCK_O_RDWR : 0);
    BlockNode *bs = block_open_image(img, "qcow2", flags, &err);
    if (!bs) {
        fail_msg("open: %s", error_get_pretty(err));
    }
    int ret = block_check(bs, res, fix);
    block_node_unref(bs);
    return ret;
}

static void assert_clean(void)
{
    BlockCheckResult r;
    assert_int_equal(run_check(0, &r), 0);
    assert_int_equal(r.corruptions, 0);
    assert_int_equal(r.leaks, 0);
    assert_int_equal(r.check_errors, 0);
    assert_int_equal(r.bfi.allocated_clusters, 4);
}

static void assert_data(void)
{
    Error *err = NULL;
    BlockNode *bs = block_open_image(img, "qcow2", 0, &err);
    assert_non_null(bs);
    static uint8_t buf[CS];
    for (unsigned c = 0; c < 3; c++) {
        assert_int_equal(block_read(bs, c * CS, CS, buf, 0), 0);
        assert_int_equal(buf[0], c + 1);
        assert_int_equal(buf[CS - 1], c + 1);
    }
    block_node_unref(bs);
}

static void test_clean(void **state)
{
    (void)state;
    make_image("size=4M");
    BlockCheckResult r;
    assert_int_equal(run_check(0, &r), 0);
    assert_int_equal(r.corruptions + r.leaks + r.check_errors, 0);
    assert_int_equal(r.bfi.total_clusters, 64);
    assert_int_equal(r.bfi.allocated_clusters, 4);
    /* QEMU's rule: an allocated cluster not right after the previous
     * allocated one of the same L2 table is fragmented. */
    Layout l = layout();
    int fd = open(img, O_RDONLY);
    uint64_t l2 = read_be64(fd, l.l1_off) & 0x00fffffffffffe00ull;
    uint64_t next = 0, frag = 0;
    for (unsigned i = 0; i < CS / 8; i++) {
        uint64_t off = read_be64(fd, l2 + 8 * i) & 0x00fffffffffffe00ull;
        if (off) {
            frag += next && off != next;
            next = off + CS;
        }
    }
    close(fd);
    assert_int_equal(r.bfi.fragmented_clusters, frag);
    struct stat st;
    assert_int_equal(stat(img, &st), 0);
    assert_int_equal(r.image_end_offset, (int64_t)st.st_size);
}

static void test_leak_fixed(void **state)
{
    (void)state;
    make_image("size=4M");
    Layout l = layout();
    struct stat st;
    assert_int_equal(stat(img, &st), 0);
    uint64_t extra = (uint64_t)st.st_size / CS;
    assert_int_equal(truncate(img, (off_t)((extra + 1) * CS)), 0);
    set_refcount(&l, extra, 1);

    BlockCheckResult r;
    assert_int_equal(run_check(0, &r), 0);
    assert_int_equal(r.leaks, 1);
    assert_int_equal(r.corruptions, 0);
    assert_int_equal(r.image_end_offset, (int64_t)((extra + 1) * CS));

    assert_int_equal(run_check(BLOCK_FIX_LEAKS, &r), 0);
    assert_int_equal(r.leaks_fixed, 1);
    assert_int_equal(r.leaks, 0);
    assert_clean();
}

static void check_rebuild(const char *opts)
{
    make_image(opts);
    Layout l = layout();
    set_refcount(&l, host_cluster0(&l), 0);

    BlockCheckResult r;
    assert_int_equal(run_check(0, &r), 0);
    /* The refcount, and OFLAG_COPIED on the entry using it. */
    assert_int_equal(r.corruptions, 2);

    /* Leaks-only repair cannot rebuild. */
    assert_int_equal(run_check(BLOCK_FIX_LEAKS, &r), -EIO);
    assert_int_equal(r.check_errors, 1);

    assert_int_equal(run_check(BLOCK_FIX_LEAKS | BLOCK_FIX_ERRORS, &r), 0);
    assert_int_equal(r.corruptions, 0);
    assert_int_equal(r.corruptions_fixed, 1);
    assert_int_equal(r.leaks, 0);
    /* The new refcount table moved: the old one is free now. */
    Layout after = layout();
    assert_true(after.rt_off != l.rt_off);
    assert_clean();
    assert_data();
}

static void test_rebuild_16(void **state)
{
    (void)state;
    check_rebuild("size=4M");
}

static void test_rebuild_1(void **state)
{
    (void)state;
    check_rebuild("size=4M,refcount_bits=1");
}

static void test_rebuild_64(void **state)
{
    (void)state;
    check_rebuild("size=4M,refcount_bits=64");
}

static void test_overflow_1bit(void **state)
{
    (void)state;
    make_image("size=4M,refcount_bits=1");
    Layout l = layout();
    uint64_t host = host_cluster0(&l);
    /* Guest cluster 1 now shares guest cluster 0's host cluster. */
    int fd = open(img, O_RDWR);
    uint64_t l2 = read_be64(fd, l.l1_off) & 0x00fffffffffffe00ull;
    uint64_t e = htobe64((1ull << 63) | (host * CS));
    assert_int_equal(pwrite(fd, &e, 8, (off_t)(l2 + 8)), 8);
    close(fd);

    BlockCheckResult r;
    assert_int_equal(run_check(0, &r), 0);
    /* One overflow; the cluster guest 1 used before is leaked. */
    assert_int_equal(r.corruptions, 1);
    assert_int_equal(r.leaks, 1);
    assert_int_equal(run_check(BLOCK_FIX_LEAKS | BLOCK_FIX_ERRORS, &r), 0);
    assert_int_equal(r.corruptions, 1);
    assert_int_equal(r.leaks_fixed, 1);
}

static void test_dirty_bit_cleared(void **state)
{
    (void)state;
    make_image("size=4M,lazy_refcounts=on");
    int fd = open(img, O_RDWR);
    uint64_t incompat = htobe64(1);
    assert_int_equal(pwrite(fd, &incompat, 8, 72), 8);
    close(fd);

    BlockCheckResult r;
    assert_int_equal(run_check(0, &r), 0);
    assert_int_equal(r.corruptions + r.leaks, 0);
    fd = open(img, O_RDONLY);
    assert_int_equal(read_be64(fd, 72), 1);
    close(fd);

    assert_int_equal(run_check(BLOCK_FIX_LEAKS, &r), 0);
    fd = open(img, O_RDONLY);
    assert_int_equal(read_be64(fd, 72), 0);
    close(fd);
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir)) {
        return -1;
    }
    snprintf(img, sizeof(img), "%s/c.qcow2", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(img);
    rmdir(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean),
        cmocka_unit_test(test_leak_fixed),
        cmocka_unit_test(test_rebuild_16),
        cmocka_unit_test(test_rebuild_1),
        cmocka_unit_test(test_rebuild_64),
        cmocka_unit_test(test_overflow_1bit),
        cmocka_unit_test(test_dirty_bit_cleared),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
