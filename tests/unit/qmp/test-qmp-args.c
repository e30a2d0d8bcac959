/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests: QMP argument checking with QEMU's error texts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "qmp/qmp-args.h"

static const char *const modes[] = { "safe", "hard", NULL };
static const char *const caps[] = { "oob", NULL };

static const QmpArgSpec data_spec[] = {
    { "path", QMP_ARG_STR },
    { NULL },
};

static const QmpArgSpec spec[] = {
    { "id", QMP_ARG_STR },
    { "mode", QMP_ARG_ENUM, .optional = true, .choices = modes },
    { "flat", QMP_ARG_BOOL, .optional = true },
    { "count", QMP_ARG_INT, .optional = true },
    { "threshold", QMP_ARG_UINT64, .optional = true },
    { "max", QMP_ARG_UINT32, .optional = true },
    { "data", QMP_ARG_OBJECT, .optional = true, .nested = data_spec },
    { "enable", QMP_ARG_ARRAY, .optional = true, .elem = QMP_ARG_ENUM,
      .elem_choices = caps },
    { NULL },
};

static void expect(const char *json, const char *msg)
{
    json_t *args = json_loads(json, 0, NULL);
    assert_non_null(args);
    Error *err = NULL;
    bool ok = qmp_args_check(args, "", spec, &err);
    if (!msg) {
        assert_true(ok);
        assert_null(err);
    } else {
        assert_false(ok);
        assert_non_null(err);
        assert_string_equal(error_get_pretty(err), msg);
        error_free(err);
    }
    json_decref(args);
}

static void test_valid(void **state)
{
    expect("{\"id\": \"e0\"}", NULL);
    expect("{\"id\": \"e0\", \"mode\": \"hard\", \"flat\": true, \"count\": -3,"
           " \"threshold\": -1, \"max\": 4294967295,"
           " \"data\": {\"path\": \"/x\"}, \"enable\": [\"oob\"]}", NULL);
}

static void test_errors(void **state)
{
    expect("{}", "Parameter 'id' is missing");
    expect("{\"id\": 1}", "Invalid parameter type for 'id', expected: string");
    expect("{\"id\": \"e\", \"mode\": \"x\"}",
           "Parameter 'mode' does not accept value 'x'");
    expect("{\"id\": \"e\", \"flat\": 1}",
           "Invalid parameter type for 'flat', expected: boolean");
    expect("{\"id\": \"e\", \"count\": \"1\"}",
           "Invalid parameter type for 'count', expected: integer");
    expect("{\"id\": \"e\", \"threshold\": 1.5}",
           "Parameter 'threshold' expects uint64");
    expect("{\"id\": \"e\", \"max\": -1}", "Parameter 'max' expects uint32_t");
    expect("{\"id\": \"e\", \"max\": \"x\"}", "Parameter 'max' expects uint64");
    expect("{\"id\": \"e\", \"data\": {}}", "Parameter 'data.path' is missing");
    expect("{\"id\": \"e\", \"data\": {\"path\": \"p\", \"x\": 1}}",
           "Parameter 'data.x' is unexpected");
    expect("{\"id\": \"e\", \"data\": 3}",
           "Invalid parameter type for 'data', expected: object");
    expect("{\"id\": \"e\", \"enable\": \"oob\"}",
           "Invalid parameter type for 'enable', expected: array");
    expect("{\"id\": \"e\", \"enable\": [\"x\"]}",
           "Parameter 'null' does not accept value 'x'");
    expect("{\"id\": \"e\", \"extra\": 1}", "Parameter 'extra' is unexpected");
    /* Declared members are checked before unknown ones, like QEMU. */
    expect("{\"extra\": 1}", "Parameter 'id' is missing");
}

static void test_accessors(void **state)
{
    json_t *args = json_pack("{s:s, s:b, s:I}", "mode", "hard", "flat", 1,
                             "count", (json_int_t)7);
    assert_int_equal(qmp_arg_enum(args, "mode", modes, 0), 1);
    assert_int_equal(qmp_arg_enum(args, "none", modes, 0), 0);
    assert_true(qmp_arg_bool(args, "flat", false));
    assert_int_equal(qmp_arg_int(args, "count", 0), 7);
    assert_string_equal(qmp_arg_str(args, "nope", "def"), "def");
    json_decref(args);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_accessors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
