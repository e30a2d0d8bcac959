/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for keyval_parse and the typed option getters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "util/keyval.h"

static void assert_json_eq(json_t *got, const char *expect)
{
    json_error_t jerr;
    json_t *want = json_loads(expect, 0, &jerr);
    assert_non_null(want);
    if (!json_equal(got, want)) {
        char *s = json_dumps(got, JSON_SORT_KEYS);
        fail_msg("got %s, want %s", s, expect);
    }
    json_decref(want);
}

static void check_parse(const char *str, const char *implied, const char *expect)
{
    Error *err = NULL;
    json_t *obj = keyval_parse(str, implied, &err);
    if (!obj) {
        fail_msg("parse of '%s' failed: %s", str, error_get_pretty(err));
    }
    assert_json_eq(obj, expect);
    json_decref(obj);
}

static void check_parse_err(const char *str, const char *implied, const char *msg)
{
    Error *err = NULL;
    json_t *obj = keyval_parse(str, implied, &err);
    assert_null(obj);
    assert_non_null(err);
    assert_string_equal(error_get_pretty(err), msg);
    error_free(err);
}

static void test_keyval_parse(void **state)
{
    check_parse("", NULL, "{}");
    check_parse("a=1", NULL, "{\"a\":\"1\"}");
    check_parse("driver=qcow2,file.driver=file,file.filename=a,,b.img", NULL,
                "{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\","
                "\"filename\":\"a,b.img\"}}");
    check_parse("a=1,", NULL, "{\"a\":\"1\"}");
    check_parse("a=", NULL, "{\"a\":\"\"}");
    check_parse("a=x=y", NULL, "{\"a\":\"x=y\"}");
    check_parse("a=1,a=2", NULL, "{\"a\":\"2\"}");
    check_parse("socket,path=x", "backend", "{\"backend\":\"socket\",\"path\":\"x\"}");
    check_parse("foo,,bar,x=1", "driver", "{\"driver\":\"foo,bar\",\"x\":\"1\"}");
    check_parse("nbd,id=x", "type", "{\"type\":\"nbd\",\"id\":\"x\"}");
    check_parse("x.0=a,x.1=b", NULL, "{\"x\":[\"a\",\"b\"]}");
    check_parse("x.1=b,x.0=a", NULL, "{\"x\":[\"a\",\"b\"]}");
    check_parse("x.0.a=1,x.0.b=2,x.1.a=3", NULL,
                "{\"x\":[{\"a\":\"1\",\"b\":\"2\"},{\"a\":\"3\"}]}");
    check_parse("a-b_c.d=1", NULL, "{\"a-b_c\":{\"d\":\"1\"}}");
    check_parse("{\"a\": 1, \"b\": {\"c\": true}}", NULL,
                "{\"a\":1,\"b\":{\"c\":true}}");

    /* Texts as qemu-storage-daemon 7.2 prints them. */
    check_parse_err("driver=file,foo", NULL, "Expected '=' after parameter 'foo'");
    check_parse_err("foo", NULL, "Expected '=' after parameter 'foo'");
    check_parse_err("id=x,nbd", "type", "Expected '=' after parameter 'nbd'");
    check_parse_err("a.b=1,a=2", NULL, "Parameters 'a.*' used inconsistently");
    check_parse_err("a=2,a.b=1", NULL, "Parameters 'a.*' used inconsistently");
    check_parse_err("x.0=1,x.2=3", NULL, "Parameter 'x.1' missing");
    check_parse_err("x.1=1", NULL, "Parameter 'x.0' missing");
    check_parse_err("x.0=1,x.a=3", NULL, "Parameters 'x.*' used inconsistently");
    check_parse_err("x..y=1", NULL, "Invalid parameter 'x..y'");
    check_parse_err("=1", NULL, "Invalid parameter ''");
    check_parse_err("1a=1", NULL, "Invalid parameter '1a'");
    check_parse_err("a b=1", NULL, "Invalid parameter 'a b'");

    Error *err = NULL;
    assert_null(keyval_parse("{\"a\":", NULL, &err));
    assert_non_null(err);
    error_free(err);
    err = NULL;
    assert_null(keyval_parse("{\"a\":1,\"a\":2}", NULL, &err));
    assert_non_null(err);
    error_free(err);
}

static json_t *kv(const char *s)
{
    Error *err = NULL;
    json_t *o = keyval_parse(s, NULL, &err);
    assert_non_null(o);
    return o;
}

static void expect_err_(bool ok, Error *err, const char *msg)
{
    assert_false(ok);
    assert_non_null(err);
    assert_string_equal(error_get_pretty(err), msg);
    error_free(err);
}
/* The call must run before err is read. */
#define expect_err(call, err, msg)                                         \
    do {                                                                   \
        bool ok_ = (call);                                                 \
        expect_err_(ok_, err, msg);                                        \
    } while (0)

static void test_getters(void **state)
{
    json_t *o = kv("b1=on,b2=off,b3=yes,b4=bogus,n=123,h=0x10,neg=-1,bad=12x,"
                   "sz=64k,s=str,e=unmap,c.direct=on");
    Error *err = NULL;
    bool b;
    uint64_t u;
    const char *s;
    int e;
    static const char *const choices[] = { "ignore", "unmap", NULL };

    assert_true(opt_get_bool(o, "b1", false, &b, &err) && b);
    assert_true(opt_get_bool(o, "b2", true, &b, &err) && !b);
    assert_true(opt_get_bool(o, "b3", false, &b, &err) && b);
    assert_true(opt_get_bool(o, "absent", true, &b, &err) && b);
    assert_true(opt_get_bool(o, "c.direct", false, &b, &err) && b);
    expect_err(opt_get_bool(o, "b4", false, &b, &err), err,
               "Parameter 'b4' expects 'on' or 'off'");
    err = NULL;

    assert_true(opt_get_uint64(o, "n", 0, &u, &err));
    assert_int_equal(u, 123);
    assert_true(opt_get_uint64(o, "h", 0, &u, &err));
    assert_int_equal(u, 16);
    assert_true(opt_get_uint64(o, "neg", 0, &u, &err));
    assert_int_equal(u, UINT64_MAX);
    assert_true(opt_get_uint64(o, "absent", 7, &u, &err));
    assert_int_equal(u, 7);
    expect_err(opt_get_uint64(o, "bad", 0, &u, &err), err,
               "Parameter 'bad' expects integer");
    err = NULL;

    assert_true(opt_get_size(o, "sz", 0, &u, &err));
    assert_int_equal(u, 65536);
    assert_true(opt_get_size(o, "n", 0, &u, &err));
    assert_int_equal(u, 123);
    expect_err(opt_get_size(o, "s", 0, &u, &err), err,
               "Parameter 's' expects size");
    err = NULL;

    assert_true(opt_get_str(o, "s", NULL, &s, &err));
    assert_string_equal(s, "str");
    assert_true(opt_get_str(o, "absent", "d", &s, &err));
    assert_string_equal(s, "d");

    assert_true(opt_get_enum(o, "e", choices, 0, &e, &err));
    assert_int_equal(e, 1);
    assert_true(opt_get_enum(o, "absent", choices, 0, &e, &err));
    assert_int_equal(e, 0);
    expect_err(opt_get_enum(o, "s", choices, 0, &e, &err), err,
               "Parameter 's' does not accept value 'str'");
    json_decref(o);
}

static void test_getters_json(void **state)
{
    json_error_t jerr;
    json_t *o = json_loads("{\"b\": true, \"bs\": \"foo\", \"bi\": 3, \"n\": -1,"
                           " \"ns\": \"abc\", \"nb\": true, \"s\": 5, \"e\": 1,"
                           " \"z\": 4096}", 0, &jerr);
    Error *err = NULL;
    bool b;
    uint64_t u;
    const char *s;
    int e;
    static const char *const choices[] = { "a", NULL };

    assert_true(opt_get_bool(o, "b", false, &b, &err) && b);
    expect_err(opt_get_bool(o, "bi", false, &b, &err), err,
               "Invalid parameter type for 'bi', expected: boolean");
    err = NULL;
    assert_true(opt_get_uint64(o, "n", 0, &u, &err));
    assert_int_equal(u, UINT64_MAX);
    expect_err(opt_get_uint64(o, "nb", 0, &u, &err), err,
               "Parameter 'nb' expects uint64");
    err = NULL;
    assert_true(opt_get_size(o, "z", 0, &u, &err));
    assert_int_equal(u, 4096);
    expect_err(opt_get_size(o, "nb", 0, &u, &err), err,
               "Invalid parameter type for 'nb', expected: integer");
    err = NULL;
    expect_err(opt_get_str(o, "s", NULL, &s, &err), err,
               "Invalid parameter type for 's', expected: string");
    err = NULL;
    expect_err(opt_get_enum(o, "e", choices, 0, &e, &err), err,
               "Invalid parameter type for 'e', expected: string");
    json_decref(o);
}

static void test_check_empty(void **state)
{
    Error *err = NULL;
    json_t *o = kv("a=1,cache.direct=on");
    json_object_del(o, "a");
    json_object_del(json_object_get(o, "cache"), "direct");
    assert_true(opt_check_empty(o, &err));
    json_object_set_new(o, "foo", json_string("bar"));
    expect_err(opt_check_empty(o, &err), err, "Parameter 'foo' is unexpected");
    json_decref(o);
    err = NULL;
    o = kv("cache.bogus=1");
    expect_err(opt_check_empty(o, &err), err,
               "Parameter 'cache.bogus' is unexpected");
    json_decref(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyval_parse),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_getters_json),
        cmocka_unit_test(test_check_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
