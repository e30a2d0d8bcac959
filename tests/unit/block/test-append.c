/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for live overlays (block/append.c): an overlay goes on top
 * of a node and comes off again while a user writes; inside a quiesced
 * section no write reaches the overlay, so undoing the change loses
 * nothing, and once the section ends writes land in the overlay and
 * the old node keeps what it had.  Also the checks blockdev-snapshot
 * builds on (readers, backing support) and the switch to read-only.
 * Run under ASan in make check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>

#include "block/user.h"
#include "memdrv.h"

#define C MEM_CLUSTER
#define ROUNDS 300

static atomic_bool stop;
static atomic_int last_acked[2];
static atomic_long writes, bad;

typedef struct WriterArg {
    BlockUser *u;
    int idx;                      /* writes cluster 2 + idx */
} WriterArg;

static void *writer_main(void *opaque)
{
    WriterArg *a = opaque;
    char buf[4096];
    for (int v = 1; !atomic_load(&stop); v = v % 250 + 1) {
        memset(buf, v, sizeof(buf));
        if (block_user_write(a->u, (2 + (uint64_t)a->idx) * C, sizeof(buf),
                             buf, 0) != 0) {
            atomic_fetch_add(&bad, 1);
            continue;
        }
        atomic_store(&last_acked[a->idx], v);
        atomic_fetch_add(&writes, 1);
    }
    return NULL;
}

static BlockUser *rw_user(BlockNode *bs)
{
    Error *err = NULL;
    BlockUserOptions o = {
        .id = "u0", .kind = BLOCK_USER_OTHER,
        .perm = BLOCK_PERM_CONSISTENT_READ | BLOCK_PERM_WRITE,
        .shared = BLOCK_PERM_ALL,
    };
    BlockUser *u = block_user_new(bs, &o, &err);
    assert_non_null(u);
    return u;
}

static void start_writers(pthread_t *t, WriterArg *args, BlockUser *u)
{
    atomic_store(&stop, false);
    atomic_store(&writes, 0);
    atomic_store(&bad, 0);
    for (int i = 0; i < 2; i++) {
        args[i] = (WriterArg){ .u = u, .idx = i };
        atomic_store(&last_acked[i], 0);
        assert_int_equal(pthread_create(&t[i], NULL, writer_main, &args[i]),
                         0);
    }
}

static void stop_writers(pthread_t *t)
{
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
    }
    assert_int_equal(atomic_load(&bad), 0);
    assert_true(atomic_load(&writes) > 0);
}

static void wait_writes(long n)
{
    long seen = atomic_load(&writes);
    while (atomic_load(&writes) < seen + n) {
        sched_yield();
    }
}

static char byte_at(BlockNode *bs, uint64_t off)
{
    return (char)((MemState *)bs->opaque)->data[off];
}

static void test_undo_loses_no_write(void **state)
{
    BlockNode *base = mem_open_node("node-name=ub,size=262144,map=DDDD",
                                    BLOCK_O_RDWR);
    BlockUser *u = rw_user(base);
    pthread_t t[2];
    WriterArg args[2];
    start_writers(t, args, u);
    Error *err = NULL;
    for (int i = 0; i < ROUNDS; i++) {
        wait_writes(2);
        char name[32];
        snprintf(name, sizeof(name), "uo%d", i);
        char kv[96];
        snprintf(kv, sizeof(kv), "node-name=%s,size=262144,map=....,cow=on",
                 name);
        BlockNode *ov = mem_open_node(kv, BLOCK_O_RDWR);
        BlockQuiesce *q = block_quiesce_all_users();
        assert_false(block_node_has_readers(ov));
        assert_true(block_node_append(ov, base, &err));
        assert_ptr_equal(block_user_node(u), ov);
        assert_ptr_equal(ov->backing, base);
        assert_true(block_node_has_readers(ov));
        block_node_unappend(ov, base);
        assert_ptr_equal(block_user_node(u), base);
        assert_null(ov->backing);
        block_unquiesce_all_users(q);
        /* Nothing was written in the overlay while it was on top. */
        assert_int_equal(((MemState *)ov->opaque)->map[2], '.');
        assert_int_equal(((MemState *)ov->opaque)->map[3], '.');
        block_node_unref(ov);
    }
    stop_writers(t);
    /* Every acknowledged write is in the node that stayed. */
    assert_int_equal(byte_at(base, 2 * C), (char)atomic_load(&last_acked[0]));
    assert_int_equal(byte_at(base, 3 * C), (char)atomic_load(&last_acked[1]));
    block_user_free(u);
    block_node_unref(base);
}

static void test_commit_moves_writes(void **state)
{
    BlockNode *base = mem_open_node("node-name=cb,size=262144,map=DDDD",
                                    BLOCK_O_RDWR);
    memset(((MemState *)base->opaque)->data, 'b', 4 * C);
    BlockNode *ov = mem_open_node("node-name=co,size=262144,map=....,cow=on",
                                  BLOCK_O_RDWR);
    BlockUser *u = rw_user(base);
    pthread_t t[2];
    WriterArg args[2];
    start_writers(t, args, u);
    wait_writes(50);
    Error *err = NULL;
    BlockQuiesce *q = block_quiesce_all_users();
    assert_true(block_node_append(ov, base, &err));
    block_unquiesce_all_users(q);
    char at_snapshot[2] = { byte_at(base, 2 * C), byte_at(base, 3 * C) };
    wait_writes(50);
    stop_writers(t);
    /* The old node kept what it had; the overlay has the new writes and
     * reads the rest through. */
    assert_int_equal(byte_at(base, 2 * C), at_snapshot[0]);
    assert_int_equal(byte_at(base, 3 * C), at_snapshot[1]);
    assert_int_equal(byte_at(ov, 2 * C), (char)atomic_load(&last_acked[0]));
    char buf[512];
    assert_int_equal(block_user_read(u, 0, sizeof(buf), buf, 0), 0);
    assert_int_equal(buf[0], 'b');
    /* The old top stops being written. */
    block_node_make_read_only(base);
    assert_true(block_node_read_only(base));
    assert_int_not_equal(block_write(base, 0, 512, buf, 0), 0);
    block_user_free(u);
    block_node_unref(ov);
    block_node_unref(base);
}

static void test_checks(void **state)
{
    BlockNode *a = mem_open_node("node-name=ka,size=262144,map=DDDD",
                                 BLOCK_O_RDWR);
    BlockNode *b = mem_open_node("node-name=kb,size=262144,map=....,cow=on,"
                                 "backing=ka", BLOCK_O_RDWR);
    assert_true(block_node_supports_backing(b));
    /* a has a parent (b's backing link), b has none. */
    assert_true(block_node_has_readers(a));
    assert_false(block_node_has_readers(b));
    /* An overlay that would close a cycle is refused, nothing moves. */
    Error *err = NULL;
    assert_false(block_node_append(a, b, &err));
    assert_non_null(err);
    error_free(err);
    assert_null(a->backing);
    block_node_unref(b);
    block_node_unref(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_undo_loses_no_write),
        cmocka_unit_test(test_commit_moves_writes),
        cmocka_unit_test(test_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
