/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests: the QMP protocol of one client (negotiation, request
 * checks, id echo, reply layout), without sockets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qmp/qmp-internal.h"

typedef struct Output {
    char buf[65536];
    size_t len;
} Output;

static void out_write(void *opaque, const char *buf, size_t len)
{
    Output *o = opaque;
    assert_true(o->len + len < sizeof(o->buf));
    memcpy(o->buf + o->len, buf, len);
    o->len += len;
    o->buf[o->len] = '\0';
}

/* Feeds one request and returns the reply text (CRLF included). */
static const char *exchange(QmpSession *s, Output *o, const char *req)
{
    o->len = 0;
    o->buf[0] = '\0';
    qmp_session_feed(s, req, strlen(req));
    return o->buf;
}

static json_t *cmd_echo(json_t *args, Error **errp)
{
    return json_incref(args);
}

static json_t *cmd_fail(json_t *args, Error **errp)
{
    error_set(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, "Block job 'x' not found");
    return NULL;
}

static int setup(void **state)
{
    qmp_register_core_commands();
    qmp_register_command("x-echo", cmd_echo);
    qmp_register_command("x-fail", cmd_fail);
    return 0;
}

static int teardown(void **state)
{
    qmp_unregister_all_commands();
    return 0;
}

static void test_greeting_and_negotiation(void **state)
{
    Output o = { 0 };
    QmpSession *s = qmp_session_new(out_write, &o, false);
    qmp_session_greet(s);
    int major = 0, minor = 0, micro = 0;
    sscanf(STRATA_VERSION, "%d.%d.%d", &major, &minor, &micro);
    char want[256];
    snprintf(want, sizeof(want),
             "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": %d, "
             "\"minor\": %d, \"major\": %d}, \"package\": \"strata "
             STRATA_VERSION "\"}, \"capabilities\": [\"oob\"]}}\r\n",
             micro, minor, major);
    assert_string_equal(o.buf, want);
    assert_string_equal(exchange(s, &o, "{\"execute\": \"query-version\"}\n"),
        "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting "
        "capabilities negotiation with 'qmp_capabilities'\"}}\r\n");
    assert_string_equal(exchange(s, &o, "{\"execute\": \"nosuch\", \"id\": 3}\n"),
        "{\"id\": 3, \"error\": {\"class\": \"CommandNotFound\", \"desc\": "
        "\"Expecting capabilities negotiation with 'qmp_capabilities'\"}}\r\n");
    assert_string_equal(exchange(s, &o,
        "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"x\"]}}\n"),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter "
        "'null' does not accept value 'x'\"}}\r\n");
    assert_false(qmp_session_negotiated(s));
    assert_string_equal(exchange(s, &o, "{\"execute\": \"qmp_capabilities\"}\n"),
                        "{\"return\": {}}\r\n");
    assert_true(qmp_session_negotiated(s));
    assert_string_equal(exchange(s, &o, "{\"execute\": \"qmp_capabilities\"}\n"),
        "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Capabilities "
        "negotiation is already complete, command ignored\"}}\r\n");
    qmp_session_free(s);
}

static QmpSession *negotiated(Output *o, bool oob)
{
    QmpSession *s = qmp_session_new(out_write, o, false);
    exchange(s, o, oob ? "{\"execute\": \"qmp_capabilities\", \"arguments\":"
                         " {\"enable\": [\"oob\"]}}"
                       : "{\"execute\": \"qmp_capabilities\"}");
    assert_true(qmp_session_negotiated(s));
    return s;
}

static void test_id_echo(void **state)
{
    Output o = { 0 };
    QmpSession *s = negotiated(&o, false);
    assert_string_equal(exchange(s, &o,
        "{\"execute\": \"x-echo\", \"arguments\": {\"a\": 1}, \"id\": {\"k\": [1, \"\\u00e9\"]}}"),
        "{\"return\": {\"a\": 1}, \"id\": {\"k\": [1, \"\\u00E9\"]}}\r\n");
    assert_string_equal(exchange(s, &o, "{\"id\": null, \"execute\": \"x-echo\"}"),
                        "{\"return\": {}, \"id\": null}\r\n");
    assert_string_equal(exchange(s, &o, "{\"execute\": \"x-fail\", \"id\": \"s\"}"),
        "{\"id\": \"s\", \"error\": {\"class\": \"DeviceNotActive\", \"desc\": "
        "\"Block job 'x' not found\"}}\r\n");
    qmp_session_free(s);
}

static void test_input_errors(void **state)
{
    Output o = { 0 };
    QmpSession *s = negotiated(&o, false);
    static const struct {
        const char *req, *rsp;
    } cases[] = {
        { "[1]", "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON object\"}}\r\n" },
        { "{\"foo\": 1, \"id\": 5}", "{\"id\": 5, \"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'foo' is unexpected\"}}\r\n" },
        { "{\"execute\": 1}", "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'execute' must be a string\"}}\r\n" },
        { "{\"execute\": \"quit\", \"arguments\": []}", "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'arguments' must be an object\"}}\r\n" },
        { "{\"id\": 1}", "{\"id\": 1, \"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input lacks member 'execute'\"}}\r\n" },
        { "{\"exec-oob\": \"query-version\"}", "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'exec-oob' is unexpected\"}}\r\n" },
        { "{\"execute\": \"nosuch\", \"id\": \"x\"}", "{\"id\": \"x\", \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command nosuch has not been found\"}}\r\n" },
        { "{\"execute\": \"query-version\", \"arguments\": {\"x\": 1}}", "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'x' is unexpected\"}}\r\n" },
        { "garbage\n", "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, invalid keyword 'garbage'\"}}\r\n" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_string_equal(exchange(s, &o, cases[i].req), cases[i].rsp);
    }
    qmp_session_free(s);
}

static void test_oob(void **state)
{
    Output o = { 0 };
    QmpSession *s = negotiated(&o, true);
    assert_string_equal(exchange(s, &o, "{\"exec-oob\": \"query-version\"}"),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"The command "
        "query-version does not support OOB\"}}\r\n");
    assert_string_equal(exchange(s, &o,
        "{\"exec-oob\": \"query-version\", \"execute\": \"query-version\"}"),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member "
        "'execute' clashes with 'exec-oob'\"}}\r\n");
    qmp_session_free(s);
}

static void test_query_commands_and_pretty(void **state)
{
    Output o = { 0 };
    QmpSession *s = negotiated(&o, false);
    const char *rsp = exchange(s, &o, "{\"execute\": \"query-commands\"}");
    assert_non_null(strstr(rsp, "{\"name\": \"qmp_capabilities\"}"));
    assert_non_null(strstr(rsp, "{\"name\": \"x-echo\"}"));
    qmp_session_free(s);

    s = qmp_session_new(out_write, &o, true);
    exchange(s, &o, "{\"execute\": \"qmp_capabilities\"}");
    assert_string_equal(o.buf, "{\n    \"return\": {}\n}\r\n");
    qmp_session_free(s);
}

static void test_event_shape(void **state)
{
    json_t *ev = qmp_event_build("BLOCK_EXPORT_DELETED",
                                 json_pack("{s:s}", "id", "e0"));
    size_t len;
    char *line = qmp_format_json(ev, false, &len);
    assert_non_null(strstr(line, "{\"timestamp\": {\"seconds\": "));
    assert_non_null(strstr(line, ", \"event\": \"BLOCK_EXPORT_DELETED\", "
                                 "\"data\": {\"id\": \"e0\"}}\r\n"));
    free(line);
    json_decref(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greeting_and_negotiation),
        cmocka_unit_test(test_id_echo),
        cmocka_unit_test(test_input_errors),
        cmocka_unit_test(test_oob),
        cmocka_unit_test(test_query_commands_and_pretty),
        cmocka_unit_test(test_event_shape),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
