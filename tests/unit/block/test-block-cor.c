/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for copy-on-read (block/cor.c): what is copied, and that a
 * client write racing with a copy of the same range is never
 * overwritten with the stale data the copy read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <time.h>

#include "memdrv.h"

#define C MEM_CLUSTER

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static void fill(BlockNode *bs, uint64_t off, uint64_t len, char c)
{
    MemState *s = bs->opaque;
    memset(s->data + off, c, len);
}

/* base: D D . D ; mid: . . D . ; top: D . . . (cow, so reads fall
 * through).  A copy of everything with base = NULL copies clusters 1, 2
 * and 3 (cluster 0 is top's own); with base = base only cluster 2. */
static void test_what_is_copied(void **state)
{
    BlockNode *base = mem_open_node("node-name=cbase,size=262144,map=DD.D", 0);
    BlockNode *mid = mem_open_node("node-name=cmid,size=262144,map=..D.,"
                                   "cow=on,backing=cbase", 0);
    BlockNode *top = mem_open_node("node-name=ctop,size=262144,map=D...,"
                                   "cow=on,backing=cmid", BLOCK_O_RDWR);
    fill(base, 0, 4 * C, 'b');
    fill(mid, 2 * C, C, 'm');
    fill(top, 0, C, 't');
    MemState *ts = top->opaque;

    uint64_t copied = 7;
    /* Not enabled: refused, nothing copied. */
    assert_int_equal(block_copy_on_read(top, NULL, 0, 4 * C, &copied), -EINVAL);
    assert_int_equal(copied, 0);

    block_cor_enable(top);
    /* Only down to (not including) base: cluster 2, from mid. */
    assert_int_equal(block_copy_on_read(top, base, 0, 4 * C, &copied), 0);
    assert_int_equal(copied, C);
    assert_string_equal(ts->map, "D.D.");
    assert_int_equal(ts->data[2 * C], 'm');
    /* The whole chain: clusters 1 and 3 from base. */
    assert_int_equal(block_copy_on_read(top, NULL, 0, 4 * C, &copied), 0);
    assert_int_equal(copied, 2 * C);
    assert_string_equal(ts->map, "DDDD");
    assert_int_equal(ts->data[C], 'b');
    assert_int_equal(ts->data[3 * C + C - 1], 'b');
    assert_int_equal(ts->data[0], 't');
    /* Nothing left to copy. */
    assert_int_equal(block_copy_on_read(top, NULL, 0, 4 * C, &copied), 0);
    assert_int_equal(copied, 0);
    block_cor_disable(top);

    block_node_unref(top);
    block_node_unref(mid);
    block_node_unref(base);
}

typedef struct Job {
    BlockNode *bs;
    atomic_int ret;
    atomic_bool done;
} Job;

static void *copy_main(void *opaque)
{
    Job *j = opaque;
    atomic_store(&j->ret, block_copy_on_read(j->bs, NULL, 0, C, NULL));
    atomic_store(&j->done, true);
    return NULL;
}

static void *write_main(void *opaque)
{
    Job *j = opaque;
    char buf[4096];
    memset(buf, 'w', sizeof(buf));
    atomic_store(&j->ret, block_write(j->bs, 0, sizeof(buf), buf, 0));
    atomic_store(&j->done, true);
    return NULL;
}

/* The copy is held inside its read of the backing node; a client write
 * to the same cluster must wait for the copy, then land on top of it. */
static void test_write_during_copy_is_kept(void **state)
{
    BlockNode *base = mem_open_node("node-name=rbase,size=131072,map=DD", 0);
    BlockNode *top = mem_open_node("node-name=rtop,size=131072,map=..,"
                                   "cow=on,backing=rbase", BLOCK_O_RDWR);
    fill(base, 0, 2 * C, 'b');
    MemState *bst = base->opaque;
    MemState *tst = top->opaque;
    block_cor_enable(top);

    atomic_store(&bst->gate, true);
    Job copy = { .bs = top }, wr = { .bs = top };
    pthread_t tc, tw;
    assert_int_equal(pthread_create(&tc, NULL, copy_main, &copy), 0);
    for (int i = 0; i < 5000 && atomic_load(&bst->in_driver) == 0; i++) {
        sleep_ms(1);
    }
    assert_int_equal(atomic_load(&bst->in_driver), 1);   /* copy is reading */

    assert_int_equal(pthread_create(&tw, NULL, write_main, &wr), 0);
    sleep_ms(100);
    assert_false(atomic_load(&wr.done));     /* waits for the copy */
    assert_int_equal(atomic_load(&tst->n_write), 0);

    atomic_store(&bst->gate, false);
    pthread_join(tc, NULL);
    pthread_join(tw, NULL);
    assert_int_equal(atomic_load(&copy.ret), 0);
    assert_int_equal(atomic_load(&wr.ret), 0);
    /* The client's bytes are there; the rest of the cluster is the
     * copied data. */
    assert_int_equal(tst->data[0], 'w');
    assert_int_equal(tst->data[4095], 'w');
    assert_int_equal(tst->data[4096], 'b');
    block_cor_disable(top);

    /* Without copy-on-read enabled, writes do not wait at all. */
    atomic_store(&bst->gate, false);
    wr.done = false;
    write_main(&wr);
    assert_int_equal(atomic_load(&wr.ret), 0);

    block_node_unref(top);
    block_node_unref(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_what_is_copied),
        cmocka_unit_test(test_write_during_copy_is_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
