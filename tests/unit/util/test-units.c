/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for parse_size / format_size / parse_uint (util/units.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "util/units.h"

static void check_size(const char *s, uint64_t expect)
{
    uint64_t v = 0;
    Error *err = NULL;
    assert_true(parse_size(s, &v, &err));
    assert_null(err);
    assert_int_equal(v, expect);
}

static void check_bad_size(const char *s)
{
    uint64_t v = 12345;
    Error *err = NULL;
    assert_false(parse_size(s, &v, &err));
    assert_non_null(err);
    assert_non_null(strstr(error_get_pretty(err), s));
    assert_int_equal(v, 12345);
    error_free(err);
}

static void test_parse_size(void **state)
{
    check_size("512", 512);
    check_size("0", 0);
    check_size("64k", 65536);
    check_size("64K", 65536);
    check_size("10G", 10ULL << 30);
    check_size("1.5M", 1572864);
    check_size("1.5G", 3ULL << 29);
    check_size("1T", 1ULL << 40);
    check_size("1P", 1ULL << 50);
    check_size("1E", 1ULL << 60);
    check_size("100B", 100);
    check_size("1.k", 1024);
    check_size("0x10", 16);
    check_size("18446744073709551615", UINT64_MAX);
    check_bad_size("");
    check_bad_size("abc");
    check_bad_size("-1");
    check_bad_size("1.5");
    check_bad_size("10X");
    check_bad_size("10GB");
    check_bad_size("16E");
    check_bad_size("18446744073709551616");
    check_bad_size(" 1");
}

static void check_fmt(uint64_t v, const char *expect)
{
    char buf[32];
    assert_string_equal(format_size(v, buf, sizeof(buf)), expect);
}

static void test_format_size(void **state)
{
    /* Values compared with `qemu-img info` output. */
    check_fmt(0, "0 B");
    check_fmt(512, "512 B");
    check_fmt(999, "999 B");
    check_fmt(1000, "0.977 KiB");
    check_fmt(1024, "1 KiB");
    check_fmt(196608, "192 KiB");
    check_fmt(64ULL << 20, "64 MiB");
    check_fmt(1ULL << 30, "1 GiB");
    check_fmt(3ULL << 29, "1.5 GiB");
    check_fmt(10ULL << 30, "10 GiB");
    check_fmt(1ULL << 40, "1 TiB");
    check_fmt(1073741825, "1 GiB");
    check_fmt(UINT64_MAX, "16 EiB");
}

static void test_parse_uint(void **state)
{
    uint64_t v;
    Error *err = NULL;
    assert_true(parse_uint("42", 100, &v, &err));
    assert_int_equal(v, 42);
    assert_false(parse_uint("101", 100, &v, &err));
    assert_non_null(err);
    error_free(err);
    err = NULL;
    assert_false(parse_uint("4x", 100, &v, &err));
    error_free(err);
    err = NULL;
    assert_false(parse_uint("-1", 100, &v, &err));
    error_free(err);
    err = NULL;
    assert_false(parse_uint("99999999999999999999999", UINT64_MAX, &v, &err));
    error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_format_size),
        cmocka_unit_test(test_parse_uint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
