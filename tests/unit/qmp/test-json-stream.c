/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests: QMP stream framing and QEMU-worded parse errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "qmp/json-stream.h"

#define MAX_OUT 16

typedef struct Collected {
    int n;
    json_t *values[MAX_OUT];
    char *errors[MAX_OUT];
} Collected;

static void collect(void *opaque, json_t *value, const char *err)
{
    Collected *c = opaque;
    assert_true(c->n < MAX_OUT);
    c->values[c->n] = value;
    c->errors[c->n] = err ? strdup(err) : NULL;
    c->n++;
}

static void collected_free(Collected *c)
{
    for (int i = 0; i < c->n; i++) {
        json_decref(c->values[i]);
        free(c->errors[i]);
    }
    memset(c, 0, sizeof(*c));
}

static Collected run(const char *input)
{
    Collected c = { 0 };
    JsonStream *js = json_stream_new(collect, &c);
    json_stream_feed(js, input, strlen(input));
    json_stream_free(js);
    return c;
}

static void test_one_object(void **state)
{
    Collected c = run("{\"execute\": \"query-version\"}\r\n");
    assert_int_equal(c.n, 1);
    assert_non_null(c.values[0]);
    assert_string_equal(json_string_value(json_object_get(c.values[0],
                                                          "execute")),
                        "query-version");
    collected_free(&c);
}

static void test_split_across_lines(void **state)
{
    Collected c = { 0 };
    JsonStream *js = json_stream_new(collect, &c);
    const char *a = "{\"execute\":\n\"query-";
    const char *b = "version\", \"id\": {\"x\": [1, 2]}}\n";
    json_stream_feed(js, a, strlen(a));
    assert_int_equal(c.n, 0);
    /* Byte by byte, to exercise every state at a chunk boundary. */
    for (const char *p = b; *p; p++) {
        json_stream_feed(js, p, 1);
    }
    assert_int_equal(c.n, 1);
    assert_string_equal(json_string_value(json_object_get(c.values[0],
                                                          "execute")),
                        "query-version");
    json_stream_free(js);
    collected_free(&c);
}

static void test_several_per_line(void **state)
{
    Collected c = run("{\"a\": 1} {\"b\": \"}{\"}[1]\n");
    assert_int_equal(c.n, 3);
    assert_true(json_is_object(c.values[0]));
    assert_string_equal(json_string_value(json_object_get(c.values[1], "b")),
                        "}{");
    assert_true(json_is_array(c.values[2]));
    collected_free(&c);
}

static void test_scalars_wait_for_delimiter(void **state)
{
    Collected c = { 0 };
    JsonStream *js = json_stream_new(collect, &c);
    json_stream_feed(js, "12", 2);
    assert_int_equal(c.n, 0);
    json_stream_feed(js, "3 ", 2);
    assert_int_equal(c.n, 1);
    assert_int_equal(json_integer_value(c.values[0]), 123);
    json_stream_free(js);
    collected_free(&c);
}

static void expect_error(const char *input, const char *msg)
{
    Collected c = run(input);
    assert_true(c.n >= 1);
    assert_null(c.values[0]);
    assert_string_equal(c.errors[0], msg);
    collected_free(&c);
}

static void test_qemu_error_texts(void **state)
{
    expect_error("garbage\n", "JSON parse error, invalid keyword 'garbage'");
    expect_error("{\"a\":}\n", "JSON parse error, expecting value");
    expect_error("}\n", "JSON parse error, expecting value");
    expect_error("{\"a\" 1}\n", "JSON parse error, missing : in object pair");
    expect_error("{1:2}\n", "JSON parse error, key is not a string in object");
    expect_error("[1,]\n", "JSON parse error, expecting value");
    expect_error("{\"a\":1,}\n", "JSON parse error, expecting value");
    expect_error("@\n", "JSON parse error, stray '@'");
    expect_error("{\"e\": \"q\" \"id\": 1}\n",
                 "JSON parse error, expected separator in dict");
    expect_error("\"\\x\"\n",
                 "JSON parse error, invalid escape sequence in string");
    expect_error("[1 2]\n", "JSON parse error, expected separator in list");
}

static void test_recovers_after_garbage(void **state)
{
    Collected c = run("@@@ {\"ok\": true}\n");
    assert_int_equal(c.n, 2);
    assert_null(c.values[0]);
    assert_string_equal(c.errors[0], "JSON parse error, stray '@'");
    assert_true(json_is_true(json_object_get(c.values[1], "ok")));
    collected_free(&c);

    /* An error inside an object drops that object only. */
    c = run("{\"a\": @}\n{\"b\": 2}\n");
    assert_true(c.n >= 2);
    assert_null(c.values[0]);
    assert_int_equal(json_integer_value(json_object_get(c.values[c.n - 1],
                                                        "b")), 2);
    collected_free(&c);
}

static void test_nesting_limit(void **state)
{
    size_t n = JSON_STREAM_MAX_NESTING + 10;
    char *deep = malloc(n + 2);
    memset(deep, '[', n);
    deep[n] = '\n';
    deep[n + 1] = '\0';
    Collected c = run(deep);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.errors[0], "JSON nesting depth limit exceeded");
    collected_free(&c);
    free(deep);
}

static void test_nul_escape_and_unicode(void **state)
{
    Collected c = run("{\"id\": \"\\u00e9\\u0000x\"}\n");
    assert_int_equal(c.n, 1);
    json_t *id = json_object_get(c.values[0], "id");
    assert_int_equal(json_string_length(id), 4);
    collected_free(&c);
}

static void test_single_quoted_strings(void **state)
{
    /* QEMU accepts 'strings' too; inside them " needs no escape and \'
     * is a quote. */
    Collected c = run("{'execute': 'it\\'s \"q\"', 'n': 1}\n");
    assert_int_equal(c.n, 1);
    assert_non_null(c.values[0]);
    assert_string_equal(json_string_value(json_object_get(c.values[0],
                                                          "execute")),
                        "it's \"q\"");
    collected_free(&c);
}

/* What json_stream_big_uint() says of each number in the value, seen
 * from the callback (as the QMP dispatcher sees it). */
typedef struct Numbers {
    int n;
    bool big[8];
    uint64_t u[8];
    bool real[8];
} Numbers;

static void look_at_numbers(void *opaque, json_t *value, const char *err)
{
    Numbers *nums = opaque;
    assert_null(err);
    size_t i;
    json_t *e;
    json_array_foreach(value, i, e) {
        nums->real[nums->n] = json_is_real(e);
        nums->big[nums->n] = json_stream_big_uint(e, &nums->u[nums->n]);
        nums->n++;
    }
    json_decref(value);
}

static void test_big_integers(void **state)
{
    Numbers nums = { 0 };
    JsonStream *js = json_stream_new(look_at_numbers, &nums);
    const char *in = "[9223372036854775807, 9223372036854775808, "
                     "18446744073709551615, 18446744073709551616, "
                     "-9223372036854775808, -9223372036854775809, 1.0]\n";
    json_stream_feed(js, in, strlen(in));
    json_stream_free(js);
    assert_int_equal(nums.n, 7);
    /* int64 as integers; above INT64_MAX up to UINT64_MAX exactly
     * known; beyond, doubles, as QEMU's parser. */
    assert_false(nums.real[0]);
    assert_false(nums.big[0]);
    assert_true(nums.real[1] && nums.big[1]);
    assert_true(nums.u[1] == UINT64_C(9223372036854775808));
    assert_true(nums.real[2] && nums.big[2]);
    assert_true(nums.u[2] == UINT64_MAX);
    assert_true(nums.real[3] && !nums.big[3]);
    assert_false(nums.real[4]);
    assert_true(nums.real[5] && !nums.big[5]);
    assert_true(nums.real[6] && !nums.big[6]);
}

static void test_duplicate_key(void **state)
{
    expect_error("{\"a\": 1, \"a\": 2}\n", "JSON parse error, duplicate key");
    /* The value is parsed before the key is looked up, as in QEMU. */
    expect_error("{\"a\": 1, \"a\": }\n", "JSON parse error, expecting value");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_object),
        cmocka_unit_test(test_split_across_lines),
        cmocka_unit_test(test_several_per_line),
        cmocka_unit_test(test_scalars_wait_for_delimiter),
        cmocka_unit_test(test_qemu_error_texts),
        cmocka_unit_test(test_recovers_after_garbage),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_nul_escape_and_unicode),
        cmocka_unit_test(test_single_quoted_strings),
        cmocka_unit_test(test_big_integers),
        cmocka_unit_test(test_duplicate_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
