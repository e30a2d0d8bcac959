/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for the image parameters codec (block/image-params.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "block/image-params.h"

static bool set(ImageParams *ip, const char *kv)
{
    Error *err = NULL;
    bool ok = image_params_set_kv(ip, kv, &err);
    error_free(err);
    return ok;
}

static void test_values_are_checked_and_canonical(void **state)
{
    ImageParams ip;
    image_params_init(&ip);
    assert_true(set(&ip, "prefetch-rate=64M"));
    assert_string_equal(image_params_get(&ip, "prefetch-rate"), "67108864");
    assert_true(set(&ip, "prefetch-rate=adaptive"));
    bool adaptive;
    uint64_t rate;
    image_params_prefetch_rate(&ip, &adaptive, &rate);
    assert_true(adaptive);
    assert_true(set(&ip, "copy-on-read=on"));
    assert_true(image_params_copy_on_read(&ip));
    assert_false(set(&ip, "copy-on-read=yes"));
    assert_true(image_params_copy_on_read(&ip));      /* unchanged */
    assert_false(set(&ip, "prefetch-delay=9999999999"));
    assert_false(set(&ip, "no-such-key=1"));
    assert_false(set(&ip, "=on"));
    assert_false(set(&ip, "prefetch"));
    assert_true(set(&ip, "copy-on-read="));            /* removed */
    assert_null(image_params_get(&ip, "copy-on-read"));
    assert_false(image_params_copy_on_read(&ip));
    image_params_free(&ip);
}

static void test_round_trip_keeps_unknown_keys(void **state)
{
    static const uint8_t stored[] = "\0\0\0\1zz-later=x y\0prefetch=on-open\0";
    ImageParams ip, again;
    Error *err = NULL;
    assert_true(image_params_decode(stored, sizeof(stored) - 1, &ip, &err));
    assert_int_equal(image_params_prefetch(&ip), IMAGE_PREFETCH_ON_OPEN);
    assert_string_equal(image_params_get(&ip, "zz-later"), "x y");
    assert_true(set(&ip, "l2-cache-size=1M"));
    uint8_t *buf;
    size_t len;
    assert_true(image_params_encode(&ip, &buf, &len, &err));
    /* Known keys in their order, then the others. */
    static const uint8_t want[] =
        "\0\0\0\1prefetch=on-open\0l2-cache-size=1048576\0zz-later=x y\0";
    assert_int_equal(len, sizeof(want) - 1);
    assert_memory_equal(buf, want, len);
    assert_true(image_params_decode(buf, len, &again, &err));
    assert_true(json_equal(ip.kv, again.kv));
    free(buf);
    image_params_free(&ip);
    image_params_free(&again);
}

static void test_empty_set_stores_nothing(void **state)
{
    ImageParams ip;
    image_params_init(&ip);
    uint8_t *buf = (uint8_t *)1;
    size_t len = 7;
    assert_true(image_params_encode(&ip, &buf, &len, NULL));
    assert_null(buf);
    assert_int_equal(len, 0);
    image_params_free(&ip);
}

static void expect_bad(const char *what, const uint8_t *p, size_t n,
                       const char *msg)
{
    ImageParams ip;
    Error *err = NULL;
    assert_false(image_params_decode(p, n, &ip, &err));
    assert_non_null(err);
    if (!strstr(error_get_pretty(err), msg)) {
        fail_msg("%s: '%s' lacks '%s'", what, error_get_pretty(err), msg);
    }
    error_free(err);
}

static void test_malformed_payloads_are_refused(void **state)
{
    expect_bad("short", (const uint8_t *)"\0\0", 2, "too short");
    expect_bad("version", (const uint8_t *)"\0\0\0\2a=b\0", 8,
               "version 2 is not supported");
    expect_bad("unterminated", (const uint8_t *)"\0\0\0\1a=b", 7,
               "not terminated");
    expect_bad("no =", (const uint8_t *)"\0\0\0\1ab\0", 7, "malformed");
    expect_bad("bad key", (const uint8_t *)"\0\0\0\1A=b\0", 8, "malformed");
    expect_bad("control", (const uint8_t *)"\0\0\0\1a=\x01\0", 8,
               "malformed");
    expect_bad("twice", (const uint8_t *)"\0\0\0\1a=1\0a=2\0", 12,
               "appears twice");
    expect_bad("bad known value",
               (const uint8_t *)"\0\0\0\1copy-on-read=maybe\0", 23,
               "expects 'on' or 'off'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_are_checked_and_canonical),
        cmocka_unit_test(test_round_trip_keeps_unknown_keys),
        cmocka_unit_test(test_empty_set_stores_nothing),
        cmocka_unit_test(test_malformed_payloads_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
