/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for the I/O entry points (block/io.c) and block status
 * (block/status.c) with an in-memory test driver. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "events.h"
#include "memdrv.h"

/* ---- event capture ---- */
static size_t n_events(void)
{
    pthread_mutex_lock(&ev_lock);
    size_t n = json_array_size(events);
    pthread_mutex_unlock(&ev_lock);
    return n;
}

static void expect_threshold_event(size_t idx, const char *node,
                                   uint64_t exceeded, uint64_t threshold)
{
    json_t *ev = json_array_get(events, idx);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "event")),
                        "BLOCK_WRITE_THRESHOLD");
    json_t *d = json_object_get(ev, "data");
    assert_string_equal(json_string_value(json_object_get(d, "node-name")), node);
    assert_int_equal(json_integer_value(json_object_get(d, "amount-exceeded")),
                     exceeded);
    assert_int_equal(json_integer_value(json_object_get(d, "write-threshold")),
                     threshold);
    assert_int_equal(json_object_size(d), 3);
}

/* ---- bounds and flags ---- */

static void test_bounds(void **state)
{
    BlockNode *bs = mem_open_node("node-name=b,size=65536", BLOCK_O_RDWR);
    char buf[16] = { 0 };
    assert_int_equal(block_read(bs, 65536 - 8, 8, buf, 0), 0);
    assert_int_equal(block_read(bs, 65536 - 8, 9, buf, 0), -EIO);
    assert_int_equal(block_read(bs, 65537, 0, buf, 0), -EIO);
    assert_int_equal(block_write(bs, 65536, 1, buf, 0), -EIO);
    assert_int_equal(block_write_zeroes(bs, 0, 65537, 0), -EIO);
    assert_int_equal(block_discard(bs, 65535, 2), -EIO);
    assert_int_equal(block_read(bs, UINT64_MAX, 1, buf, 0), -EINVAL);
    assert_int_equal(block_write(bs, (uint64_t)INT64_MAX, 2, buf, 0), -EINVAL);
    assert_int_equal(block_read(bs, 0, (uint64_t)1 << 63, buf, 0), -EINVAL);
    assert_int_equal(block_write(bs, 100, 0, buf, 0), 0);
    block_node_unref(bs);

    bs = mem_open_node("node-name=ro,size=65536", 0);
    assert_true(bs->read_only);
    assert_int_equal(block_read(bs, 0, 8, buf, 0), 0);
    assert_int_equal(block_write(bs, 0, 8, buf, 0), -EPERM);
    assert_int_equal(block_write_zeroes(bs, 0, 8, 0), -EPERM);
    assert_int_equal(block_discard(bs, 0, 8), -EPERM);
    block_node_unref(bs);
}

static void test_split_and_fallback(void **state)
{
    BlockNode *bs = mem_open_node("node-name=s,size=1048576,max-transfer=65536,"
                                  "fast-zero=off", BLOCK_O_RDWR);
    MemState *s = bs->opaque;
    static char buf[300001];
    memset(buf, 7, 300000);
    assert_int_equal(block_write(bs, 1, 300000, buf, 0), 0);
    assert_int_equal(s->max_req, 65536);
    assert_int_equal(s->n_write, 5);
    assert_int_equal(block_read(bs, 0, 300001, buf, 0), 0);
    assert_int_equal(buf[0], 0);
    assert_int_equal(buf[300000], 7);

    /* No fast zero: the core writes zeroes, unless told not to. */
    int w = s->n_write;
    assert_int_equal(block_write_zeroes(bs, 0, 131072, 0), 0);
    assert_int_equal(s->n_write, w + 2);
    assert_int_equal(s->data[1], 0);
    assert_int_equal(block_write_zeroes(bs, 0, 4096, BLOCK_REQ_NO_FALLBACK),
                     -ENOTSUP);
    s->fast_zero = true;
    assert_int_equal(block_write_zeroes(bs, 0, 4096, BLOCK_REQ_NO_FALLBACK), 0);
    assert_int_equal(s->n_zero, 1);

    /* FUA reaches the driver; cache.no-flush drops it and flushes. */
    assert_int_equal(block_write(bs, 0, 10, buf, BLOCK_REQ_FUA), 0);
    assert_int_equal(s->n_fua, 1);
    assert_int_equal(block_flush(bs), 0);
    assert_int_equal(s->n_flush, 1);
    bs->no_flush = true;
    assert_int_equal(block_write(bs, 0, 10, buf, BLOCK_REQ_FUA), 0);
    assert_int_equal(s->n_fua, 1);
    assert_int_equal(block_flush(bs), 0);
    assert_int_equal(s->n_flush, 1);

    /* Discard reaches the driver only with discard=unmap. */
    assert_int_equal(block_discard(bs, 0, 65536), 0);
    assert_int_equal(s->n_discard, 0);
    bs->discard = BLOCK_DISCARD_UNMAP;
    assert_int_equal(block_discard(bs, 0, 65536), 0);
    assert_int_equal(s->n_discard, 1);
    block_node_unref(bs);
}

/* ---- alignment: RMW ---- */

static void test_rmw_simple(void **state)
{
    BlockNode *bs = mem_open_node("node-name=a,size=65536,align=4096", BLOCK_O_RDWR);
    MemState *s = bs->opaque;
    memset(s->data, 'x', 65536);
    assert_int_equal(block_write(bs, 4095, 2, "ab", 0), 0);
    assert_int_equal(s->data[4094], 'x');
    assert_int_equal(s->data[4095], 'a');
    assert_int_equal(s->data[4096], 'b');
    assert_int_equal(s->data[4097], 'x');
    char out[3];
    assert_int_equal(block_read(bs, 4095, 3, out, 0), 0);
    assert_memory_equal(out, "abx", 3);
    /* Unaligned zeroes: partial blocks written, middle zeroed fast. */
    assert_int_equal(block_write_zeroes(bs, 100, 10000, 0), 0);
    assert_int_equal(s->data[99], 'x');
    for (int i = 100; i < 10100; i++) {
        assert_int_equal(s->data[i], 0);
    }
    assert_int_equal(s->data[10100], 'x');
    assert_int_equal(s->n_zero, 1);
    assert_int_equal(block_write_zeroes(bs, 100, 10, BLOCK_REQ_NO_FALLBACK),
                     -ENOTSUP);
    block_node_unref(bs);
}

typedef struct RmwArg {
    BlockNode *bs;
    int id;
    int nthreads;
} RmwArg;

#define RMW_SEG 100
#define RMW_ITERS 200

static void *rmw_thread(void *opaque)
{
    RmwArg *a = opaque;
    char buf[RMW_SEG];
    memset(buf, 'A' + a->id, sizeof(buf));
    for (int i = 0; i < RMW_ITERS; i++) {
        /* Segments of all threads interleave inside the same 4 KiB blocks. */
        uint64_t off = ((uint64_t)i * a->nthreads + (uint64_t)a->id) * RMW_SEG;
        if (block_write(a->bs, off, RMW_SEG, buf, 0) != 0) {
            return (void *)1;
        }
    }
    return NULL;
}

static void test_rmw_concurrent(void **state)
{
    enum { NT = 6 };
    BlockNode *bs = mem_open_node("node-name=c,size=262144,align=4096,slow=on",
                                  BLOCK_O_RDWR);
    MemState *s = bs->opaque;
    pthread_t th[NT];
    RmwArg args[NT];
    for (int i = 0; i < NT; i++) {
        args[i] = (RmwArg){ bs, i, NT };
        pthread_create(&th[i], NULL, rmw_thread, &args[i]);
    }
    for (int i = 0; i < NT; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        assert_null(ret);
    }
    /* Every byte holds its writer's mark: no write was lost. */
    for (int i = 0; i < RMW_ITERS * NT; i++) {
        char want = (char)('A' + i % NT);
        for (int k = 0; k < RMW_SEG; k++) {
            if (s->data[i * RMW_SEG + k] != want) {
                fail_msg("byte %d is '%c', want '%c'", i * RMW_SEG + k,
                         s->data[i * RMW_SEG + k], want);
            }
        }
    }
    block_node_unref(bs);
}

/* ---- write threshold ---- */

static void test_threshold(void **state)
{
    BlockNode *bs = mem_open_node("node-name=thr,size=4194304", BLOCK_O_RDWR);
    char buf[65536] = { 0 };
    size_t base = n_events();

    atomic_store(&bs->write_threshold, 1048576);
    /* Ending exactly at the threshold does not fire. */
    assert_int_equal(block_write(bs, 1048576 - 65536, 65536, buf, 0), 0);
    assert_int_equal(n_events(), base);
    /* Past it fires once, reports the excess and disarms. */
    assert_int_equal(block_write(bs, 1048576, 4096, buf, 0), 0);
    assert_int_equal(n_events(), base + 1);
    expect_threshold_event(base, "thr", 4096, 1048576);
    assert_int_equal(atomic_load(&bs->write_threshold), 0);
    assert_int_equal(block_write(bs, 2097152, 4096, buf, 0), 0);
    assert_int_equal(n_events(), base + 1);

    /* Byte granular, reads and flushes never fire. */
    atomic_store(&bs->write_threshold, 1000);
    assert_int_equal(block_read(bs, 0, 65536, buf, 0), 0);
    assert_int_equal(block_flush(bs), 0);
    assert_int_equal(n_events(), base + 1);
    assert_int_equal(block_write(bs, 600, 512, buf, 0), 0);
    expect_threshold_event(base + 1, "thr", 112, 1000);

    /* Write zeroes fires. */
    atomic_store(&bs->write_threshold, 4096);
    assert_int_equal(block_write_zeroes(bs, 0, 8192, 0), 0);
    expect_threshold_event(base + 2, "thr", 4096, 4096);

    /* Discard only with discard=unmap. */
    atomic_store(&bs->write_threshold, 4096);
    assert_int_equal(block_discard(bs, 0, 65536), 0);
    assert_int_equal(n_events(), base + 3);
    bs->discard = BLOCK_DISCARD_UNMAP;
    assert_int_equal(block_discard(bs, 0, 65536), 0);
    expect_threshold_event(base + 3, "thr", 61440, 4096);

    /* 0 disables; invalid requests do not fire. */
    atomic_store(&bs->write_threshold, 0);
    assert_int_equal(block_write(bs, 0, 65536, buf, 0), 0);
    atomic_store(&bs->write_threshold, 1);
    assert_int_equal(block_write(bs, 4194304, 1, buf, 0), -EIO);
    assert_int_equal(n_events(), base + 4);
    assert_int_equal(atomic_load(&bs->write_threshold), 1);

    /* Highest written offset. */
    assert_int_equal(atomic_load(&bs->wr_highest_offset), 2097152 + 4096);
    block_node_unref(bs);
}

typedef struct ThrArg {
    BlockNode *bs;
    int id;
} ThrArg;

static void *thr_thread(void *opaque)
{
    ThrArg *a = opaque;
    char buf[512] = { 0 };
    for (int i = 0; i < 200; i++) {
        block_write(a->bs, (uint64_t)(a->id * 200 + i) * 512, 512, buf, 0);
    }
    return NULL;
}

static void test_threshold_concurrent(void **state)
{
    enum { NT = 4 };
    BlockNode *bs = mem_open_node("node-name=thrc,size=4194304", BLOCK_O_RDWR);
    size_t base = n_events();
    atomic_store(&bs->write_threshold, 1);
    pthread_t th[NT];
    ThrArg args[NT];
    for (int i = 0; i < NT; i++) {
        args[i] = (ThrArg){ bs, i };
        pthread_create(&th[i], NULL, thr_thread, &args[i]);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
    }
    assert_int_equal(n_events(), base + 1);
    block_node_unref(bs);
}

/* ---- drain ---- */

typedef struct DrainArg {
    BlockNode *bs;
    atomic_bool done;
} DrainArg;

static void *drain_writer(void *opaque)
{
    DrainArg *a = opaque;
    char buf[512] = { 0 };
    block_write(a->bs, 0, 512, buf, 0);
    atomic_store(&a->done, true);
    return NULL;
}

static void *drain_thread(void *opaque)
{
    DrainArg *a = opaque;
    block_drain_begin(a->bs);
    atomic_store(&a->done, true);
    return NULL;
}

static void test_drain(void **state)
{
    BlockNode *bs = mem_open_node("node-name=dr,size=65536", BLOCK_O_RDWR);
    MemState *s = bs->opaque;

    /* A request stuck in the driver keeps drain_begin waiting. */
    atomic_store(&s->gate, true);
    DrainArg w = { bs, false }, d = { bs, false };
    pthread_t tw, td;
    pthread_create(&tw, NULL, drain_writer, &w);
    while (atomic_load(&s->in_driver) == 0) {
        sched_yield();
    }
    pthread_create(&td, NULL, drain_thread, &d);
    usleep(50000);
    assert_false(atomic_load(&d.done));
    atomic_store(&s->gate, false);
    pthread_join(tw, NULL);
    pthread_join(td, NULL);
    assert_true(atomic_load(&d.done));

    /* While drained (by another thread), new requests are held. */
    DrainArg w2 = { bs, false };
    pthread_create(&tw, NULL, drain_writer, &w2);
    usleep(50000);
    assert_false(atomic_load(&w2.done));
    assert_int_equal(s->n_write, 1);
    /* Nesting: a second begin/end pair keeps it drained. */
    block_drain_begin(bs);
    block_drain_end(bs);
    usleep(20000);
    assert_false(atomic_load(&w2.done));
    /* drain_thread drained on another thread; end it from here. */
    block_drain_end(bs);
    pthread_join(tw, NULL);
    assert_true(atomic_load(&w2.done));
    assert_int_equal(s->n_write, 2);

    /* The draining thread's own requests pass. */
    block_drain_begin(bs);
    char buf[8] = { 0 };
    assert_int_equal(block_write(bs, 0, 8, buf, 0), 0);
    block_drain_end(bs);
    block_node_unref(bs);
}

/* ---- block status through a chain ---- */

static void test_status_chain(void **state)
{
    /* base: D . Z .    (4 clusters, 256 KiB)
     * mid:  . D . .
     * top:  . . . D D  (5 clusters: top is larger than the others) */
    BlockNode *base = mem_open_node("node-name=base,size=262144,map=D.Z.", 0);
    BlockNode *mid = mem_open_node("node-name=mid,size=196608,map=.D..,"
                                   "backing=base", 0);
    BlockNode *top = mem_open_node("node-name=top,size=327680,map=...DD,"
                                   "backing=mid", 0);
    assert_ptr_equal(top->backing, mid);
    assert_ptr_equal(mid->backing, base);
    assert_int_equal(base->parents, 1);

    uint64_t pnum;
    int depth;
    const uint64_t C = MEM_CLUSTER;
    int ret = block_status_above(top, NULL, 0, 5 * C, &pnum, NULL, NULL, &depth);
    assert_int_equal(depth, 3);
    assert_int_equal(pnum, C);
    assert_true(ret & BLOCK_STATUS_DATA);
    assert_true(ret & BLOCK_STATUS_ALLOCATED);

    ret = block_status_above(top, NULL, C, 4 * C, &pnum, NULL, NULL, &depth);
    assert_int_equal(depth, 2);
    assert_int_equal(pnum, C);
    assert_true(ret & BLOCK_STATUS_DATA);

    /* Cluster 2: zero in base, allocated there. */
    ret = block_status_above(top, NULL, 2 * C, 3 * C, &pnum, NULL, NULL, &depth);
    assert_int_equal(depth, 3);
    assert_int_equal(pnum, C);
    assert_true(ret & BLOCK_STATUS_ZERO);
    assert_true(ret & BLOCK_STATUS_ALLOCATED);

    /* Clusters 3-4: allocated in top. */
    ret = block_status_above(top, NULL, 3 * C, 2 * C, &pnum, NULL, NULL, &depth);
    assert_int_equal(depth, 1);
    assert_int_equal(pnum, 2 * C);
    assert_true(ret & BLOCK_STATUS_EOF);

    /* Down to (not including) mid: cluster 0 is unallocated above it. */
    ret = block_status_above(top, mid, 0, 3 * C, &pnum, NULL, NULL, &depth);
    assert_int_equal(depth, 0);
    assert_int_equal(pnum, 3 * C);
    assert_false(ret & BLOCK_STATUS_ALLOCATED);
    assert_false(ret & BLOCK_STATUS_ZERO);

    /* mid alone: unallocated cluster 3 is past nothing; base has '.'
     * there: allocated nowhere, reads zero. */
    ret = block_status_above(mid, NULL, 2 * C, C, &pnum, NULL, NULL, &depth);
    assert_int_equal(depth, 3 - 1);
    ret = block_status_above(base, NULL, 3 * C, C, &pnum, NULL, NULL, &depth);
    assert_int_equal(depth, 0);
    assert_true(ret & BLOCK_STATUS_ZERO);
    assert_false(ret & BLOCK_STATUS_ALLOCATED);

    /* Single layer status: unallocated in top with a backing node. */
    ret = block_status(top, 0, C, &pnum, NULL, NULL);
    assert_false(ret & (BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_ZERO));
    assert_int_equal(block_status(top, 5 * C, 1, &pnum, NULL, NULL), -EIO);

    /* block_read_backing: zeroes past the end of the shorter backing. */
    MemState *ms = mid->opaque;
    memset(ms->data, 'm', 196608);
    char buf[8];
    assert_int_equal(block_read_backing(top, 196608 - 4, 8, buf), 0);
    assert_memory_equal(buf, "mmmm\0\0\0\0", 8);
    assert_int_equal(block_read_backing(base, 0, 8, buf), 0);
    assert_memory_equal(buf, "\0\0\0\0\0\0\0\0", 8);

    block_node_unref(top);
    assert_null(block_node_find("top"));
    assert_non_null(block_node_find("mid"));
    block_node_unref(mid);
    block_node_unref(base);
    assert_null(block_node_find("base"));
}

static void test_status_past_backing_end(void **state)
{
    BlockNode *base = mem_open_node("node-name=short,size=65536,map=D", 0);
    BlockNode *top = mem_open_node("node-name=long,size=262144,map=....,"
                                   "backing=short", 0);
    uint64_t pnum;
    int depth;
    BlockNode *file = NULL;
    /* As QEMU: the zeroes past the short node's end are allocated in it
     * (depth 2), ZERO without DATA. */
    int ret = block_status_above(top, NULL, 65536, 3 * 65536, &pnum, NULL,
                                 &file, &depth);
    assert_int_equal(depth, 2);
    assert_int_equal(pnum, 3 * 65536);
    assert_ptr_equal(file, base);
    assert_true(ret & BLOCK_STATUS_ZERO);
    assert_true(ret & BLOCK_STATUS_ALLOCATED);
    assert_false(ret & BLOCK_STATUS_DATA);
    assert_true(ret & BLOCK_STATUS_EOF);

    /* The top layer alone says zeroes there, but not allocated. */
    ret = block_status(top, 65536, 65536, &pnum, NULL, NULL);
    assert_true(ret & BLOCK_STATUS_ZERO);
    assert_false(ret & BLOCK_STATUS_ALLOCATED);

    /* A run starting inside the short node stops at its end. */
    ret = block_status_above(top, NULL, 0, 4 * 65536, &pnum, NULL, NULL,
                             &depth);
    assert_int_equal(depth, 2);
    assert_int_equal(pnum, 65536);
    assert_true(ret & BLOCK_STATUS_DATA);
    assert_false(ret & BLOCK_STATUS_EOF);

    /* Searching down to (not including) the short node: not allocated
     * above it, but the top says zeroes. */
    ret = block_status_above(top, base, 65536, 65536, &pnum, NULL, NULL,
                             &depth);
    assert_int_equal(depth, 0);
    assert_true(ret & BLOCK_STATUS_ZERO);
    assert_false(ret & BLOCK_STATUS_ALLOCATED);
    block_node_unref(top);
    block_node_unref(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_split_and_fallback),
        cmocka_unit_test(test_rmw_simple),
        cmocka_unit_test(test_rmw_concurrent),
        cmocka_unit_test(test_threshold),
        cmocka_unit_test(test_threshold_concurrent),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_status_chain),
        cmocka_unit_test(test_status_past_backing_end),
    };
    return cmocka_run_group_tests(tests, setup_events, teardown_events);
}
