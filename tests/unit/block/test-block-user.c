/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for users of nodes (block/user.c): two users of one node
 * keep independent error policies, "ignore" completes a failed request,
 * and node accounting keeps client, job and metadata I/O apart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "block/user.h"
#include "events.h"
#include "memdrv.h"
#include "util/cleanup.h"

/* The data of the idx-th BLOCK_IO_ERROR event from device, or NULL. */
static json_t *io_error_event(const char *device, size_t idx)
{
    LOCK_GUARD(&ev_lock);
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev) {
        json_t *d = json_object_get(ev, "data");
        if (!strcmp(json_string_value(json_object_get(ev, "event")),
                    "BLOCK_IO_ERROR") &&
            !strcmp(json_string_value(json_object_get(d, "device")), device)
            && idx-- == 0) {
            return d;
        }
    }
    return NULL;
}

static BlockUser *new_user(BlockNode *bs, const char *id,
                           BlockErrorAction werror, BlockOrigin origin)
{
    BlockAcctOptions ao;
    block_acct_options_init(&ao);
    Error *err = NULL;
    BlockUserOptions o = {
        .id = id,
        .kind = origin == BLOCK_ORIGIN_JOB ? BLOCK_USER_JOB : BLOCK_USER_OTHER,
        .perm = BLOCK_PERM_CONSISTENT_READ | BLOCK_PERM_WRITE,
        .shared = BLOCK_PERM_ALL,
        .werror = werror,
        .rerror = BLOCK_ERROR_ACTION_REPORT,
        .origin = origin,
        .acct = block_acct_new(&ao, &err),
    };
    assert_non_null(o.acct);
    BlockUser *u = block_user_new(bs, &o, &err);
    assert_non_null(u);
    return u;
}

typedef struct Writer {
    BlockUser *u;
    uint64_t offset;
    char fill;
    atomic_int result;
    atomic_bool done;
} Writer;

static void *writer_main(void *opaque)
{
    Writer *w = opaque;
    char buf[4096];
    memset(buf, w->fill, sizeof(buf));
    atomic_store(&w->result,
                 block_user_write(w->u, w->offset, sizeof(buf), buf, 0));
    atomic_store(&w->done, true);
    return NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Waits (bounded) until the user holds n requests. */
static bool wait_held(BlockUser *u, int n)
{
    for (int i = 0; i < 5000; i++) {
        BlockUserStatus st;
        block_user_get_status(u, &st);
        if (st.held == n) {
            return true;
        }
        sleep_ms(1);
    }
    return false;
}

/* One node, two users: the export-like user holds its ENOSPC write and
 * pauses; the second user's write fails at once with the same error and
 * the second user never pauses.  Resuming the first retries its write,
 * which then lands. */
static void test_independent_policies(void **state)
{
    BlockNode *bs = mem_open_node("node-name=shared0,size=1048576", BLOCK_O_RDWR);
    MemState *ms = bs->opaque;
    BlockUser *hold = new_user(bs, "holder", BLOCK_ERROR_ACTION_ENOSPC,
                               BLOCK_ORIGIN_CLIENT);
    BlockUser *rep = new_user(bs, "reporter", BLOCK_ERROR_ACTION_REPORT,
                              BLOCK_ORIGIN_CLIENT);

    atomic_store(&ms->fail_write, ENOSPC);
    Writer w = { .u = hold, .offset = 0, .fill = 'h' };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
    assert_true(wait_held(hold, 1));

    BlockUserStatus st;
    block_user_get_status(hold, &st);
    assert_true(st.paused);
    assert_int_equal(st.io_status, BLOCK_IO_STATUS_NOSPACE);
    assert_string_equal(st.operation, "write");
    assert_false(atomic_load(&w.done));

    char buf[4096];
    memset(buf, 'r', sizeof(buf));
    assert_int_equal(block_user_write(rep, 8192, sizeof(buf), buf, 0),
                     -ENOSPC);
    block_user_get_status(rep, &st);
    assert_false(st.paused);
    assert_int_equal(st.held, 0);
    assert_int_equal(st.io_status, BLOCK_IO_STATUS_OK);
    /* Reads through the second user are not held behind the first. */
    assert_int_equal(block_user_read(rep, 0, sizeof(buf), buf, 0), 0);

    /* The holding thread reports the pause after queueing its request:
     * wait for the event rather than assume it is already out. */
    for (int i = 0; i < 5000 && !io_error_event("holder", 0); i++) {
        sleep_ms(1);
    }
    json_t *e = io_error_event("holder", 0);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "action")), "stop");
    assert_true(json_is_true(json_object_get(e, "nospace")));
    assert_string_equal(json_string_value(json_object_get(e, "node-name")),
                        "shared0");
    e = io_error_event("reporter", 0);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "action")),
                        "report");
    assert_null(io_error_event("holder", 1));

    /* Still full: a resume retries, fails again, pauses again. */
    assert_true(block_user_resume(hold));
    assert_true(wait_held(hold, 1));
    for (int i = 0; i < 5000 && !io_error_event("holder", 1); i++) {
        sleep_ms(1);
    }
    assert_non_null(io_error_event("holder", 1));
    assert_false(atomic_load(&w.done));

    /* The volume grew: the held write completes and lands. */
    atomic_store(&ms->fail_write, 0);
    assert_true(block_user_resume(hold));
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&w.result), 0);
    assert_int_equal(ms->data[0], 'h');
    assert_int_equal(ms->data[4095], 'h');
    block_user_get_status(hold, &st);
    assert_false(st.paused);
    assert_int_equal(st.pauses, 2);
    assert_int_equal(st.io_status, BLOCK_IO_STATUS_OK);

    /* Each user's own accounting saw only its own requests. */
    BlockAcctStats as;
    block_acct_get_stats(block_user_acct(hold), &as);
    assert_int_equal(as.op[BLOCK_ACCT_WRITE].ops, 1);
    assert_int_equal(as.op[BLOCK_ACCT_WRITE].failed_ops, 0);
    assert_int_equal(as.op[BLOCK_ACCT_READ].ops, 0);
    block_acct_get_stats(block_user_acct(rep), &as);
    assert_int_equal(as.op[BLOCK_ACCT_WRITE].ops, 0);
    assert_int_equal(as.op[BLOCK_ACCT_WRITE].failed_ops, 1);
    assert_int_equal(as.op[BLOCK_ACCT_READ].ops, 1);

    block_user_free(hold);
    block_user_free(rep);
    block_node_unref(bs);
}

/* A forced stop fails the held request with its error instead of
 * leaving it waiting forever. */
static void test_stop_fails_held(void **state)
{
    BlockNode *bs = mem_open_node("node-name=stop0,size=1048576", BLOCK_O_RDWR);
    MemState *ms = bs->opaque;
    BlockUser *u = new_user(bs, "stopper", BLOCK_ERROR_ACTION_STOP,
                            BLOCK_ORIGIN_CLIENT);
    atomic_store(&ms->fail_write, EIO);
    Writer w = { .u = u, .offset = 4096, .fill = 's' };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
    assert_true(wait_held(u, 1));
    assert_int_equal(block_user_held_requests(NULL), 1);
    assert_int_equal(block_user_stop(u), 1);
    block_user_wait_unheld(u);
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&w.result), -EIO);
    assert_int_equal(block_user_held_requests(NULL), 0);
    block_user_free(u);
    block_node_unref(bs);
}

/* "ignore" completes the failed request and reports it. */
static void test_ignore(void **state)
{
    BlockNode *bs = mem_open_node("node-name=ign0,size=1048576", BLOCK_O_RDWR);
    MemState *ms = bs->opaque;
    BlockUser *u = new_user(bs, "ignorer", BLOCK_ERROR_ACTION_IGNORE,
                            BLOCK_ORIGIN_JOB);
    atomic_store(&ms->fail_write, EIO);
    char buf[512] = { 0 };
    assert_int_equal(block_user_write(u, 0, sizeof(buf), buf, 0), 0);
    json_t *e = io_error_event("ignorer", 0);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "action")),
                        "ignore");
    BlockUserStatus st;
    block_user_get_status(u, &st);
    assert_false(st.paused);
    atomic_store(&ms->fail_write, 0);
    block_user_free(u);
    block_node_unref(bs);
}

/* Node accounting keeps the origins apart: a client user's writes, a
 * job user's reads and a driver's metadata reads on one node. */
static void test_origin_accounting(void **state)
{
    BlockNode *bs = mem_open_node("node-name=orig0,size=1048576", BLOCK_O_RDWR);
    BlockUser *client = new_user(bs, "client0", BLOCK_ERROR_ACTION_REPORT,
                                 BLOCK_ORIGIN_CLIENT);
    BlockUser *job = new_user(bs, "job0", BLOCK_ERROR_ACTION_REPORT,
                              BLOCK_ORIGIN_JOB);
    char buf[8192];
    memset(buf, 'x', sizeof(buf));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(block_user_write(client, i * 4096, 4096, buf, 0), 0);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(block_user_read(job, 65536 + i * 8192, 8192, buf, 0),
                         0);
    }
    assert_int_equal(block_user_write(job, 131072, 512, buf, 0), 0);
    assert_int_equal(block_read(bs, 0, 1024, buf, BLOCK_REQ_METADATA), 0);
    /* The thread's origin is back to the default after the users ran. */
    assert_int_equal(block_origin_current(), BLOCK_ORIGIN_CLIENT);

    BlockAcctOpStats o[BLOCK_ACCT__MAX];
    BlockAcct *acct = bs->acct;
    block_acct_get_origin_stats(acct, BLOCK_ORIGIN_CLIENT, o);
    assert_int_equal(o[BLOCK_ACCT_WRITE].ops, 3);
    assert_int_equal(o[BLOCK_ACCT_WRITE].bytes, 3 * 4096);
    assert_int_equal(o[BLOCK_ACCT_READ].ops, 0);
    block_acct_get_origin_stats(acct, BLOCK_ORIGIN_JOB, o);
    assert_int_equal(o[BLOCK_ACCT_READ].ops, 2);
    assert_int_equal(o[BLOCK_ACCT_READ].bytes, 2 * 8192);
    assert_int_equal(o[BLOCK_ACCT_WRITE].ops, 1);
    assert_int_equal(o[BLOCK_ACCT_WRITE].bytes, 512);
    block_acct_get_origin_stats(acct, BLOCK_ORIGIN_METADATA, o);
    assert_int_equal(o[BLOCK_ACCT_READ].ops, 1);
    assert_int_equal(o[BLOCK_ACCT_READ].bytes, 1024);
    assert_int_equal(o[BLOCK_ACCT_WRITE].ops, 0);

    /* The node's totals are the sum of the origins. */
    BlockAcctStats st;
    block_acct_get_stats(acct, &st);
    assert_int_equal(st.op[BLOCK_ACCT_WRITE].ops, 4);
    assert_int_equal(st.op[BLOCK_ACCT_READ].ops, 3);
    assert_int_equal(st.op[BLOCK_ACCT_READ].bytes, 2 * 8192 + 1024);

    /* The users' own accounting carries their origin too. */
    block_acct_get_origin_stats(block_user_acct(job), BLOCK_ORIGIN_JOB, o);
    assert_int_equal(o[BLOCK_ACCT_READ].ops, 2);
    block_acct_get_origin_stats(block_user_acct(job), BLOCK_ORIGIN_CLIENT, o);
    assert_int_equal(o[BLOCK_ACCT_READ].ops, 0);

    block_user_free(client);
    block_user_free(job);
    block_node_unref(bs);
}

static void test_action_names(void **state)
{
    BlockErrorAction a;
    Error *err = NULL;
    const unsigned all = (1u << BLOCK_ERROR_ACTION__MAX) - 1;
    assert_true(block_error_action_parse("enospc", all, "werror", &a, &err));
    assert_int_equal(a, BLOCK_ERROR_ACTION_ENOSPC);
    assert_false(block_error_action_parse("ignore",
                                          1u << BLOCK_ERROR_ACTION_REPORT,
                                          "rerror", &a, &err));
    assert_string_equal(error_get_pretty(err),
                        "Parameter 'rerror' does not accept value 'ignore'");
    error_free(err);
    assert_string_equal(block_error_action_name(BLOCK_ERROR_ACTION_STOP),
                        "stop");
    assert_string_equal(block_io_status_name(BLOCK_IO_STATUS_NOSPACE),
                        "nospace");
    assert_string_equal(block_origin_name(BLOCK_ORIGIN_METADATA), "metadata");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_independent_policies, setup_events,
                                        teardown_events),
        cmocka_unit_test_setup_teardown(test_stop_fails_held, setup_events,
                                        teardown_events),
        cmocka_unit_test_setup_teardown(test_ignore, setup_events,
                                        teardown_events),
        cmocka_unit_test_setup_teardown(test_origin_accounting, setup_events,
                                        teardown_events),
        cmocka_unit_test(test_action_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
