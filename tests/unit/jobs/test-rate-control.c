/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for the adaptive stream rate (jobs/rate-control.c), driven
 * with made-up clocks and client counters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "jobs/rate-control.h"

#define MS (1000 * 1000ULL)
#define MIB (1024 * 1024ULL)

typedef struct Clients {
    RateSample s;
    uint64_t now;
} Clients;

/* One period with n client requests of mean latency lat_ns. */
static RateDecision period(RateControl *rc, Clients *c, uint64_t n,
                           uint64_t lat_ns)
{
    c->now += RATE_CONTROL_PERIOD_NS;
    c->s.ops += n;
    c->s.total_time_ns += n * lat_ns;
    return rate_control_update(rc, c->now, c->s);
}

/* Runs through the first yield window, where the baseline is measured
 * with the clients alone at base_ns. */
static void measure_baseline(RateControl *rc, Clients *c, uint64_t base_ns)
{
    RateDecision d = period(rc, c, 20, base_ns);
    assert_true(d.pause_ns > 0);             /* yielding */
    while (d.pause_ns > 0) {
        d = period(rc, c, 20, base_ns);
    }
    assert_true(rc->baseline_ns > 0.9 * base_ns &&
                rc->baseline_ns < 1.1 * base_ns);
}

static void test_backs_off_when_clients_suffer(void **state)
{
    RateControl rc;
    Clients c = { .now = 1000 * MS };
    rate_control_init(&rc, 100 * MIB, 1, c.now, c.s);
    measure_baseline(&rc, &c, 100 * 1000);
    uint64_t before = rc.rate;
    RateDecision d = period(&rc, &c, 50, 400 * 1000);  /* 4x slower */
    assert_int_equal(d.rate, before / 2);
    assert_true(rc.decreases == 1);
    /* Keeps halving, never below the floor. */
    for (int i = 0; i < 30; i++) {
        d = period(&rc, &c, 50, 400 * 1000);
    }
    assert_int_equal(d.rate, rc.floor);
    assert_true(rc.floor >= 1 * MIB);
}

static void test_speeds_up_when_idle_or_unhurt(void **state)
{
    RateControl rc;
    Clients c = { .now = 1000 * MS };
    rate_control_init(&rc, 64 * MIB, 7, c.now, c.s);
    measure_baseline(&rc, &c, 100 * 1000);
    uint64_t r = rc.rate;
    /* Clients busy but as fast as without the job: speed up. */
    RateDecision d = period(&rc, &c, 50, 105 * 1000);
    assert_true(d.rate > r);
    assert_int_equal(d.pause_ns, 0);
    /* An idle guest: up to the ceiling, not beyond. */
    for (int i = 0; i < 150; i++) {
        d = period(&rc, &c, 0, 0);
        if (d.pause_ns) {
            continue;     /* a periodic probe */
        }
    }
    assert_int_equal(rc.rate, 64 * MIB);
}

/* An idle guest gets the whole ceiling in one period. */
static void test_idle_goes_to_ceiling_at_once(void **state)
{
    RateControl rc;
    Clients c = { .now = 1000 * MS };
    rate_control_init(&rc, 256 * MIB, 5, c.now, c.s);
    measure_baseline(&rc, &c, 100 * 1000);
    assert_true(rc.rate < 256 * MIB);
    RateDecision d = period(&rc, &c, 0, 0);
    assert_int_equal(d.rate, 256 * MIB);
}

/* Busy but unhurt: doubling until the first decrease, steps after. */
static void test_slow_start_then_additive(void **state)
{
    RateControl rc;
    Clients c = { .now = 1000 * MS };
    rate_control_init(&rc, 1024 * MIB, 9, c.now, c.s);
    measure_baseline(&rc, &c, 100 * 1000);
    uint64_t r = rc.rate;
    RateDecision d = period(&rc, &c, 50, 100 * 1000);
    assert_int_equal(d.rate, 2 * r);
    d = period(&rc, &c, 50, 100 * 1000);
    assert_int_equal(d.rate, 4 * r);
    d = period(&rc, &c, 50, 300 * 1000);        /* hurt: halve */
    assert_int_equal(d.rate, 2 * r);
    d = period(&rc, &c, 50, 100 * 1000);        /* now one step */
    uint64_t step = d.rate - 2 * r;
    assert_true(step > 0 && step <= 1024 * MIB / 64 * 5 / 4);
}

/* Daemons with different seeds do not back off for the same time. */
static void test_backoff_is_randomized(void **state)
{
    uint64_t pauses[2];
    for (int k = 0; k < 2; k++) {
        RateControl rc;
        Clients c = { .now = 1000 * MS };
        rate_control_init(&rc, 100 * MIB, 1000u + (uint32_t)k * 7919u, c.now,
                          c.s);
        measure_baseline(&rc, &c, 100 * 1000);
        RateDecision d = period(&rc, &c, 50, 500 * 1000);
        assert_true(d.pause_ns > 0 || rc.decreases == 1);
        pauses[k] = d.pause_ns;
    }
    assert_true(pauses[0] != pauses[1]);
}

/* The controller measures the baseline again every few seconds. */
static void test_probes_again(void **state)
{
    RateControl rc;
    Clients c = { .now = 1000 * MS };
    rate_control_init(&rc, 100 * MIB, 3, c.now, c.s);
    measure_baseline(&rc, &c, 100 * 1000);
    int probes = 0;
    for (int i = 0; i < 200; i++) {       /* 20 s */
        RateDecision d = period(&rc, &c, 0, 0);
        probes += d.pause_ns > 0 && rc.yielding;
    }
    assert_true(probes >= 3);
}

/* Clients seen before the job give the first baseline: the job starts at
 * the ceiling, without a yield, and backs off within one period. */
static void test_history_is_the_first_baseline(void **state)
{
    RateControl rc;
    Clients c = { .now = 1000 * MS, .s = { .ops = 5000,
                                           .total_time_ns = 5000 * 80000 } };
    rate_control_init(&rc, 512 * MIB, 11, c.now, c.s);
    assert_int_equal(rc.rate, 512 * MIB);
    assert_true(rc.baseline_ns > 79999 && rc.baseline_ns < 80001);
    RateDecision d = period(&rc, &c, 50, 85 * 1000);   /* unhurt */
    assert_int_equal(d.pause_ns, 0);
    assert_int_equal(d.rate, 512 * MIB);
    d = period(&rc, &c, 50, 300 * 1000);               /* hurt */
    assert_int_equal(d.rate, 256 * MIB);
    /* Too little history: measure first, start gently. */
    Clients few = { .now = 1000 * MS, .s = { .ops = 10,
                                             .total_time_ns = 10 * 80000 } };
    rate_control_init(&rc, 512 * MIB, 11, few.now, few.s);
    assert_int_equal(rc.rate, 512 * MIB / 16);
    d = period(&rc, &few, 20, 80000);
    assert_true(d.pause_ns > 0);
}

/* Requests served from memory wander by a microsecond or two from
 * period to period: that is not the job hurting them. */
static void test_microsecond_wander_is_not_hurt(void **state)
{
    RateControl rc;
    Clients c = { .now = 1000 * MS };
    rate_control_init(&rc, 256 * MIB, 13, c.now, c.s);
    measure_baseline(&rc, &c, 2000);
    for (int i = 0; i < 20; i++) {
        RateDecision d = period(&rc, &c, 6000, i % 2 ? 2600 : 2300);
        if (!rc.yielding) {
            assert_int_equal(d.pause_ns, 0);
        }
    }
    assert_int_equal(rc.decreases, 0);
    assert_int_equal(rc.rate, 256 * MIB);
}

/* A client stuck behind the job's copies completes only a request or
 * two per period, each slow: that is harm, not an idle guest. */
static void test_starved_client_is_not_idle(void **state)
{
    RateControl rc;
    Clients c = { .now = 1000 * MS };
    rate_control_init(&rc, 1024 * MIB, 17, c.now, c.s);
    measure_baseline(&rc, &c, 500 * 1000);
    uint64_t r = rc.rate;
    RateDecision d = period(&rc, &c, 2, 48 * 1000 * 1000);
    assert_int_equal(d.rate, r / 2);
    assert_int_equal(rc.decreases, 1);
    /* A truly idle period still opens up to the ceiling. */
    d = period(&rc, &c, 0, 0);
    assert_int_equal(d.rate, 1024 * MIB);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backs_off_when_clients_suffer),
        cmocka_unit_test(test_speeds_up_when_idle_or_unhurt),
        cmocka_unit_test(test_idle_goes_to_ceiling_at_once),
        cmocka_unit_test(test_slow_start_then_additive),
        cmocka_unit_test(test_backoff_is_randomized),
        cmocka_unit_test(test_probes_again),
        cmocka_unit_test(test_history_is_the_first_baseline),
        cmocka_unit_test(test_microsecond_wander_is_not_hurt),
        cmocka_unit_test(test_starved_client_is_not_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
