/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for swapping a node's backing child while I/O runs
 * (block/graph-change.c): readers, a writer and block status walks race
 * thousands of swaps; every read sees one of the backing nodes' data
 * (or zeroes without one), never garbage, and nothing is used after it
 * was freed (run under ASan in make check).  Cycles and drivers without
 * backing files are refused.  And block_node_replace: a node's users
 * and parent nodes move to a filter above it and back while the users'
 * requests run, and a filter freed right after it was taken out is
 * never used again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>

#include "block/user.h"
#include "memdrv.h"

#define C MEM_CLUSTER
#define SWAPS 3000

static atomic_bool stop;
static atomic_long bad_reads, reads, walks, writes;

static void fill(BlockNode *bs, uint64_t off, uint64_t len, char c)
{
    MemState *s = bs->opaque;
    memset(s->data + off, c, len);
}

static void *reader_main(void *opaque)
{
    BlockNode *top = opaque;
    char buf[4096];
    while (!atomic_load(&stop)) {
        /* Cluster 1 is never written in top: it comes from the backing
         * node of the moment, or reads as zeroes without one. */
        if (block_read(top, C + 512, sizeof(buf), buf, 0) != 0) {
            atomic_fetch_add(&bad_reads, 1);
            continue;
        }
        char c = buf[0];
        bool uniform = memcmp(buf, buf + 1, sizeof(buf) - 1) == 0;
        if (!uniform || (c != 'a' && c != 'b' && c != 0)) {
            atomic_fetch_add(&bad_reads, 1);
        }
        atomic_fetch_add(&reads, 1);
    }
    return NULL;
}

static void *writer_main(void *opaque)
{
    BlockNode *top = opaque;
    char buf[4096];
    memset(buf, 't', sizeof(buf));
    while (!atomic_load(&stop)) {
        assert_int_equal(block_write(top, 0, sizeof(buf), buf, 0), 0);
        atomic_fetch_add(&writes, 1);
    }
    return NULL;
}

static void *walker_main(void *opaque)
{
    BlockNode *top = opaque;
    while (!atomic_load(&stop)) {
        uint64_t pnum;
        int depth;
        int ret = block_status_above(top, NULL, C, 2 * C, &pnum, NULL, NULL,
                                     &depth);
        /* Depth 2 while a backing node is attached, 0 without. */
        if (ret < 0 || (depth != 2 && depth != 0)) {
            atomic_fetch_add(&bad_reads, 1);
        }
        atomic_fetch_add(&walks, 1);
    }
    return NULL;
}

static void test_swaps_race_io(void **state)
{
    BlockNode *a = mem_open_node("node-name=sa,size=262144,map=DDDD", 0);
    BlockNode *b = mem_open_node("node-name=sb,size=262144,map=DDDD", 0);
    BlockNode *top = mem_open_node("node-name=stop,size=262144,map=....,"
                                   "cow=on,backing=sa", BLOCK_O_RDWR);
    fill(a, 0, 4 * C, 'a');
    fill(b, 0, 4 * C, 'b');
    atomic_store(&stop, false);

    pthread_t t[4];
    assert_int_equal(pthread_create(&t[0], NULL, reader_main, top), 0);
    assert_int_equal(pthread_create(&t[1], NULL, reader_main, top), 0);
    assert_int_equal(pthread_create(&t[2], NULL, writer_main, top), 0);
    assert_int_equal(pthread_create(&t[3], NULL, walker_main, top), 0);

    BlockNode *order[] = { b, NULL, a, b, a, NULL };
    Error *err = NULL;
    for (int i = 0; i < SWAPS; i++) {
        BlockNode *next = order[i % 6];
        assert_true(block_node_set_backing(top, next, &err));
        assert_ptr_equal(top->backing, next);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
    }
    assert_int_equal(atomic_load(&bad_reads), 0);
    assert_true(atomic_load(&reads) > 0);
    assert_true(atomic_load(&walks) > 0);
    assert_true(atomic_load(&writes) > 0);
    /* Only the last swap's node is still linked. */
    BlockNode *last = order[(SWAPS - 1) % 6];
    assert_ptr_equal(top->backing, last);
    assert_int_equal(a->parents, last == a);
    assert_int_equal(b->parents, last == b);

    block_node_unref(top);
    block_node_unref(b);
    block_node_unref(a);
}

/* Every swap drops the last reference to the old backing node, so it is
 * closed and freed while readers and walks keep going: a reader that
 * still used it after the swap would be a use after free (ASan). */
static void test_swaps_free_old_backing(void **state)
{
    BlockNode *top = mem_open_node("node-name=ftop,size=262144,map=....,"
                                   "cow=on", BLOCK_O_RDWR);
    atomic_store(&stop, false);
    atomic_store(&bad_reads, 0);
    pthread_t t[3];
    assert_int_equal(pthread_create(&t[0], NULL, reader_main, top), 0);
    assert_int_equal(pthread_create(&t[1], NULL, reader_main, top), 0);
    assert_int_equal(pthread_create(&t[2], NULL, walker_main, top), 0);
    Error *err = NULL;
    for (int i = 0; i < 500; i++) {
        char kv[96];
        snprintf(kv, sizeof(kv), "node-name=f%d,size=262144,map=DDDD", i);
        BlockNode *b = mem_open_node(kv, 0);
        fill(b, 0, 4 * C, i % 2 ? 'a' : 'b');
        assert_true(block_node_set_backing(top, b, &err));
        block_node_unref(b);    /* top's link is the only reference now */
    }
    assert_true(block_node_set_backing(top, NULL, &err));
    atomic_store(&stop, true);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
    }
    assert_int_equal(atomic_load(&bad_reads), 0);
    assert_null(block_node_find("f499"));
    block_node_unref(top);
}

/* Dropping the last reference to the old backing node closes it (under
 * ASan a use after this would be reported). */
static void test_old_backing_released(void **state)
{
    BlockNode *a = mem_open_node("node-name=ra,size=131072,map=DD", 0);
    BlockNode *top = mem_open_node("node-name=rtop,size=131072,map=..,"
                                   "cow=on,backing=ra", BLOCK_O_RDWR);
    block_node_unref(a);              /* top's link keeps it */
    assert_non_null(block_node_find("ra"));
    Error *err = NULL;
    assert_true(block_node_set_backing(top, NULL, &err));
    assert_null(block_node_find("ra"));
    char buf[512];
    assert_int_equal(block_read(top, 0, sizeof(buf), buf, 0), 0);
    assert_int_equal(buf[0], 0);
    block_node_unref(top);
}

static void test_refusals(void **state)
{
    BlockNode *a = mem_open_node("node-name=ca,size=131072,map=DD", 0);
    BlockNode *top = mem_open_node("node-name=ctop,size=131072,map=..,"
                                   "cow=on,backing=ca", BLOCK_O_RDWR);
    Error *err = NULL;
    assert_false(block_node_set_backing(a, top, &err));
    assert_string_equal(error_get_pretty(err),
                        "Making 'ctop' a backing child of 'ca' would create "
                        "a cycle");
    error_free(err);
    err = NULL;
    assert_false(block_node_set_backing(top, top, &err));
    error_free(err);
    err = NULL;
    assert_ptr_equal(top->backing, a);

    json_t *opts = json_pack("{s:s, s:s, s:s, s:b}", "driver", "raw",
                             "node-name", "craw", "file", "ca",
                             "read-only", 1);
    BlockNode *raw = block_node_open(opts, &err);
    json_decref(opts);
    assert_non_null(raw);
    assert_false(block_node_set_backing(raw, a, &err));
    assert_string_equal(error_get_pretty(err),
                        "Driver 'raw' of node 'craw' does not support "
                        "backing files");
    error_free(err);
    block_node_unref(raw);
    block_node_unref(top);
    block_node_unref(a);
}

static void *user_io_main(void *opaque)
{
    BlockUser *u = opaque;
    char buf[4096];
    memset(buf, 'p', sizeof(buf));
    for (long i = 0; !atomic_load(&stop); i++) {
        if (i % 4 == 0) {
            if (block_user_write(u, 2 * C, sizeof(buf), buf, 0) != 0) {
                atomic_fetch_add(&bad_reads, 1);
            }
            atomic_fetch_add(&writes, 1);
            continue;
        }
        char r[4096];
        if (block_user_read(u, C, sizeof(r), r, 0) != 0 ||
            r[0] != 'p' || memcmp(r, r + 1, sizeof(r) - 1) != 0) {
            atomic_fetch_add(&bad_reads, 1);
        }
        atomic_fetch_add(&reads, 1);
    }
    return NULL;
}

static BlockNode *raw_over(const char *name, const char *child)
{
    Error *err = NULL;
    json_t *opts = json_pack("{s:s, s:s, s:s}", "driver", "raw",
                             "node-name", name, "file", child);
    BlockNode *bs = block_node_open(opts, &err);
    json_decref(opts);
    assert_non_null(bs);
    return bs;
}

static void test_replace_moves_users_and_parents(void **state)
{
    BlockNode *base = mem_open_node("node-name=pb,size=262144,map=DDDD",
                                    BLOCK_O_RDWR);
    fill(base, 0, 4 * C, 'p');
    BlockNode *parent = raw_over("pp", "pb");   /* a parent node */
    Error *err = NULL;
    BlockUserOptions o = {
        .id = "u0", .kind = BLOCK_USER_OTHER,
        .perm = BLOCK_PERM_CONSISTENT_READ | BLOCK_PERM_WRITE,
        .shared = BLOCK_PERM_ALL,
    };
    BlockUser *u = block_user_new(base, &o, &err);
    assert_non_null(u);
    atomic_store(&stop, false);
    atomic_store(&bad_reads, 0);
    atomic_store(&reads, 0);
    atomic_store(&writes, 0);
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, user_io_main, u), 0);
    }
    for (int i = 0; i < 300; i++) {
        /* Let requests run between changes, so they meet each state. */
        long seen = atomic_load(&reads);
        while (atomic_load(&reads) < seen + 3) {
            sched_yield();
        }
        char name[32];
        snprintf(name, sizeof(name), "pf%d", i);
        BlockNode *filter = raw_over(name, "pb");
        assert_true(block_node_replace(base, filter, &err));
        assert_ptr_equal(block_user_node(u), filter);
        assert_ptr_equal(parent->file, filter);
        assert_ptr_equal(filter->file, base);      /* not moved */
        assert_true(block_node_replace(filter, base, &err));
        assert_ptr_equal(block_user_node(u), base);
        assert_ptr_equal(parent->file, base);
        /* The last reference: a request that still ran on the filter
         * would use freed memory (ASan). */
        block_node_unref(filter);
        assert_null(block_node_find(name));
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
    }
    assert_int_equal(atomic_load(&bad_reads), 0);
    assert_true(atomic_load(&reads) > 0);
    assert_true(atomic_load(&writes) > 0);
    block_user_free(u);
    block_node_unref(parent);
    block_node_unref(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_swaps_race_io),
        cmocka_unit_test(test_swaps_free_old_backing),
        cmocka_unit_test(test_old_backing_released),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_replace_moves_users_and_parents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
