/* SPDX-License-Identifier: BSD-3-Clause */
/* QEMU's JSON dialect: values it accepts beyond RFC 8259, and the first
 * error it reports for broken texts (expected strings observed from
 * qemu-img 7.2's "Could not parse the JSON options: ..." messages). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/qemu-json.h"

static json_t *parse(const char *text)
{
    return qemu_json_parse(text, strlen(text), NULL);
}

static void fails(const char *text, const char *want)
{
    Error *err = NULL;
    json_t *v = qemu_json_parse(text, strlen(text), &err);
    assert_null(v);
    assert_non_null(err);
    assert_string_equal(error_get_pretty(err), want);
    error_free(err);
}

static void test_single_quotes(void **state)
{
    (void)state;
    json_t *v = parse("{'a\\'b': 'say \"hi\"', \"c\": \"it\\'s\"}");
    assert_non_null(v);
    assert_string_equal(json_string_value(json_object_get(v, "a'b")),
                        "say \"hi\"");
    assert_string_equal(json_string_value(json_object_get(v, "c")), "it's");
    json_decref(v);
}

static void test_values(void **state)
{
    (void)state;
    json_t *v = parse(" [1, -0, 1.5e3, true, false, null, {}, [], "
                      "\"\\u00e9\\ud83d\\ude00\", 9223372036854775808]\n");
    assert_non_null(v);
    assert_int_equal(json_array_size(v), 10);
    assert_int_equal(json_integer_value(json_array_get(v, 0)), 1);
    assert_true(json_is_real(json_array_get(v, 2)));
    assert_string_equal(json_string_value(json_array_get(v, 8)),
                        "\xc3\xa9\xf0\x9f\x98\x80");
    assert_true(json_is_real(json_array_get(v, 9)));
    json_decref(v);
    /* U+0000 is modified UTF-8's C0 80. */
    v = parse("'\\u0000'");
    assert_int_equal(json_string_length(v), 2);
    assert_memory_equal(json_string_value(v), "\xc0\x80", 2);
    json_decref(v);
}

static void test_errors(void **state)
{
    (void)state;
    fails("", "Expecting a JSON value");
    fails("{\"a\":1} x", "Expecting at most one JSON value");
    fails("{\"a\":1}{}", "Expecting at most one JSON value");
    fails("{\"driver\":\"qcow2\"", "JSON parse error, premature EOI");
    fails("{'a':'b}", "JSON parse error, stray ''b}'");
    fails("{\"x\":@}", "JSON parse error, stray '@'");
    fails("{\"a\":1,}", "JSON parse error, expecting value");
    fails("{\"a\" 1}", "JSON parse error, missing : in object pair");
    fails("{1:2}", "JSON parse error, key is not a string in object");
    fails("{\"a\":1 \"b\":2}", "JSON parse error, expected separator in dict");
    fails("[1 2]", "JSON parse error, expected separator in list");
    fails("{\"a\":1,\"a\":2}", "JSON parse error, duplicate key");
    fails("{\"a\":01}", "JSON parse error, stray '01'");
    fails("{\"a\":nul}", "JSON parse error, invalid keyword 'nul'");
    fails("\"\\x\"", "JSON parse error, invalid escape sequence in string");
    fails("\"\\uD800\"",
          "JSON parse error, \\uD800 is not a valid Unicode character");
    fails("\"\\u12\"", "JSON parse error, \\u12\" is not a valid Unicode "
          "character");
    fails("\"\xff\"", "JSON parse error, stray '\"\xff'");
    fails("\"\xc3\"", "JSON parse error, invalid UTF-8 sequence in string");
}

static void test_limits(void **state)
{
    (void)state;
    char deep[1100];
    memset(deep, '[', sizeof(deep) - 1);
    deep[sizeof(deep) - 1] = '\0';
    fails(deep, "JSON nesting depth limit exceeded");
    /* 1024 levels are fine. */
    char ok[2049];
    memset(ok, '[', 1024);
    memset(ok + 1024, ']', 1024);
    ok[2048] = '\0';
    json_t *v = parse(ok);
    assert_non_null(v);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_quotes),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
