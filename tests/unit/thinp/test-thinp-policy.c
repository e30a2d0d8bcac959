/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-thinp's arithmetic (vdsm's policy) and settings parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "strata-thinp/thinp.h"

#define MiB (1024ull * 1024)
#define GiB (1024 * MiB)

static void test_limits_and_threshold(void **state)
{
    (void)state;
    ThinpPolicy p = { .chunk = GiB, .free_percent = 50, .max_factor = 1.1 };
    assert_int_equal(thinp_free_limit(&p, false), 512 * MiB);
    assert_int_equal(thinp_free_limit(&p, true), GiB);
    assert_int_equal(thinp_threshold(&p, 2 * GiB, false), 1536 * MiB);
    /* Never 0 (that would disarm): a small volume arms at 1. */
    assert_int_equal(thinp_threshold(&p, 100 * MiB, false), 1);
    /* vdsm's current defaults: 2560 MiB at 20% -> 2048 MiB of room. */
    ThinpPolicy v = { .chunk = 2560 * MiB, .free_percent = 20,
                      .max_factor = 1.1 };
    assert_int_equal(thinp_free_limit(&v, false), 2048 * MiB);
}

static void test_next_size_and_max(void **state)
{
    (void)state;
    ThinpPolicy p = { .chunk = GiB, .free_percent = 50, .max_factor = 1.1 };
    uint64_t cap = 20 * GiB;
    uint64_t max = thinp_max_size(&p, cap);
    assert_int_equal(max, 22528 * MiB);    /* 22 GiB */
    assert_int_equal(thinp_next_size(&p, GiB, cap, false), 2 * GiB);
    assert_int_equal(thinp_next_size(&p, GiB, cap, true), 3 * GiB);
    /* Rounded up to a MiB. */
    assert_int_equal(thinp_next_size(&p, GiB + 5, cap, false),
                     2 * GiB + MiB);
    /* Capped, then stuck at the maximum. */
    assert_int_equal(thinp_next_size(&p, max - MiB, cap, false), max);
    assert_int_equal(thinp_next_size(&p, max, cap, false), max);
    assert_int_equal(thinp_next_size(&p, max + GiB, cap, false), max + GiB);
    assert_int_equal(thinp_max_size(&p, 16 * MiB), 18 * MiB);
}

static void test_config_file(void **state)
{
    (void)state;
    char path[] = "/tmp/test-thinp-confXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("# comment\n\nsocket = /run/a.sock\nsocket=/run/b.sock\n"
          "chunk=2G\nfree-percent=20\nmax-factor=1.2\npoll-interval=0.5\n"
          "volume=fmt0\ncopying=fmt1\nextend-cmd=lvextend -L {size}b {path}\n",
          f);
    fclose(f);
    ThinpConfig c;
    thinp_config_init(&c);
    Error *err = NULL;
    assert_true(thinp_config_load(&c, path, &err));
    assert_int_equal(c.nsockets, 2);
    assert_string_equal(c.sockets[1], "/run/b.sock");
    assert_int_equal(c.policy.chunk, 2 * GiB);
    assert_int_equal(c.policy.free_percent, 20);
    assert_int_equal(c.poll_interval_ms, 500);
    assert_true(thinp_config_has(c.volumes, c.nvolumes, "fmt0"));
    assert_true(thinp_config_has(c.copying, c.ncopying, "fmt1"));
    assert_string_equal(c.extend_cmd, "lvextend -L {size}b {path}");
    thinp_config_free(&c);

    f = fopen(path, "w");
    fputs("chunk=1G\nfree-percent=120\n", f);
    fclose(f);
    thinp_config_init(&c);
    assert_false(thinp_config_load(&c, path, &err));
    assert_non_null(strstr(error_get_pretty(err), ":2: free-percent"));
    error_free(err);
    err = NULL;
    assert_false(thinp_config_set(&c, "bogus", "1", &err));
    assert_non_null(strstr(error_get_pretty(err), "unknown setting 'bogus'"));
    error_free(err);
    thinp_config_free(&c);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits_and_threshold),
        cmocka_unit_test(test_next_size_and_max),
        cmocka_unit_test(test_config_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
