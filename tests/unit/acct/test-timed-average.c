/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests: TimedAverage windows, with QEMU's exact semantics. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/timed-average.h"

#define T0 INT64_C(1000000000)
/* A 1 s interval is stretched to 4/3 s. */
#define P INT64_C(1333333333)
#define HALF INT64_C(666666666)

static void test_init_and_empty(void **state)
{
    TimedAverage ta;
    timed_average_init(&ta, 1000000000, T0);
    assert_int_equal(ta.period, P);
    assert_int_equal(ta.windows[0].expiration, T0 + HALF);
    assert_int_equal(ta.windows[1].expiration, T0 + P);
    assert_int_equal(timed_average_min(&ta, T0), 0);
    assert_int_equal(timed_average_max(&ta, T0), 0);
    assert_int_equal(timed_average_avg(&ta, T0), 0);
    uint64_t elapsed = 0;
    assert_int_equal(timed_average_sum(&ta, T0, &elapsed), 0);
    /* the older window is half a period old at the start */
    assert_int_equal(elapsed, P - HALF);
}

static void test_min_max_avg(void **state)
{
    TimedAverage ta;
    timed_average_init(&ta, 1000000000, T0);
    assert_int_equal(timed_average_account(&ta, 100, T0 + 10), 0);
    timed_average_account(&ta, 300, T0 + 20);
    timed_average_account(&ta, 200, T0 + 30);
    assert_int_equal(timed_average_min(&ta, T0 + 40), 100);
    assert_int_equal(timed_average_max(&ta, T0 + 40), 300);
    assert_int_equal(timed_average_avg(&ta, T0 + 40), 200);
    uint64_t elapsed;
    assert_int_equal(timed_average_sum(&ta, T0 + 40, &elapsed), 600);
    assert_int_equal(elapsed, P - HALF + 40);
}

static void test_rollover(void **state)
{
    TimedAverage ta;
    timed_average_init(&ta, 1000000000, T0);
    timed_average_account(&ta, 100, T0);

    /* Window 0 expires at T0 + P/2: it is emptied, window 1 (which still
     * holds 100) becomes the older one. */
    assert_int_equal(timed_average_account(&ta, 50, T0 + HALF), 1);
    assert_int_equal(ta.current, 1);
    assert_int_equal(timed_average_min(&ta, T0 + HALF), 50);
    assert_int_equal(timed_average_max(&ta, T0 + HALF), 100);
    assert_int_equal(timed_average_avg(&ta, T0 + HALF), 75);
    assert_int_equal(ta.windows[0].expiration, T0 + HALF + P);

    /* Window 1 expires at T0 + P: only 50 (in window 0) is left. */
    assert_int_equal(timed_average_expire(&ta, T0 + P), 2);
    assert_int_equal(ta.current, 0);
    assert_int_equal(timed_average_min(&ta, T0 + P), 50);
    assert_int_equal(timed_average_max(&ta, T0 + P), 50);
    uint64_t elapsed;
    assert_int_equal(timed_average_sum(&ta, T0 + P, &elapsed), 50);
    assert_int_equal(elapsed, P - HALF);

    /* Then window 0 expires too: nothing is left. */
    assert_int_equal(timed_average_max(&ta, T0 + HALF + P), 0);
    assert_int_equal(timed_average_avg(&ta, T0 + HALF + P), 0);
}

static void test_long_idle_keeps_phase(void **state)
{
    TimedAverage ta;
    timed_average_init(&ta, 1000000000, T0);
    timed_average_account(&ta, 7, T0);
    /* 10 periods and 5 ns later both windows expired long ago; their next
     * expirations stay on the original grid. */
    int64_t now = T0 + 10 * P + 5;
    assert_int_equal(timed_average_expire(&ta, now), 3);
    assert_int_equal(ta.windows[0].expiration, T0 + HALF + 10 * P);
    assert_int_equal(ta.windows[1].expiration, T0 + 11 * P);
    assert_int_equal(ta.current, 0);
    assert_int_equal(timed_average_max(&ta, now), 0);
    uint64_t elapsed;
    timed_average_sum(&ta, now, &elapsed);
    assert_int_equal(elapsed, P - (T0 + HALF + 10 * P - now));
}

static void test_long_interval(void **state)
{
    TimedAverage ta;
    timed_average_init(&ta, UINT64_C(3600) * 1000000000, T0);
    assert_int_equal(ta.period, UINT64_C(4800) * 1000000000);
    timed_average_account(&ta, 1, T0);
    assert_int_equal(timed_average_max(&ta, T0 + INT64_C(2399) * 1000000000), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_and_empty),
        cmocka_unit_test(test_min_max_avg),
        cmocka_unit_test(test_rollover),
        cmocka_unit_test(test_long_idle_keeps_phase),
        cmocka_unit_test(test_long_interval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
