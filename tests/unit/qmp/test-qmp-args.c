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

/* ---- unions, alternates, lists, sized integers ---- */

static const char *const kinds[] = { "disk", "net", "none", NULL };

static const QmpArgSpec common_base[] = {
    { "kind", QMP_ARG_ENUM, .choices = kinds },
    { "tag", QMP_ARG_STR, .optional = true },
    { NULL },
};

static const QmpArgSpec disk_members[] = {
    { "path", QMP_ARG_STR },
    { "size", QMP_ARG_SIZE, .optional = true },
    { NULL },
};

static const QmpArgSpec net_base[] = {
    { "port", QMP_ARG_UINT16 },
    { NULL },
};

static const QmpArgSpec net_members[] = {
    QMP_ARG_INHERIT(net_base),
    { "level", QMP_ARG_INT8, .optional = true },
    { NULL },
};

static const QmpArgBranch kind_branches[] = {
    { "disk", disk_members },
    { "net", net_members },
    { NULL },
};

static const QmpArgSpec ref_branches[] = {
    { "definition", QMP_ARG_OBJECT, .nested = disk_members },
    { "reference", QMP_ARG_STR },
    { "null", QMP_ARG_NULL },
    { NULL },
};
static const QmpAlternate ref = { "DiskRef", ref_branches };

static const QmpArgSpec union_spec[] = {
    QMP_ARG_INHERIT(common_base),
    { "ref", QMP_ARG_ALTERNATE, .optional = true, .alternate = &ref },
    { "refs", QMP_ARG_ARRAY, .optional = true, .elem = QMP_ARG_ALTERNATE,
      .elem_alternate = &ref },
    { "ports", QMP_ARG_ARRAY, .optional = true, .elem = QMP_ARG_UINT8 },
    { "disks", QMP_ARG_ARRAY, .optional = true, .elem = QMP_ARG_OBJECT,
      .elem_nested = disk_members },
    { "ratio", QMP_ARG_NUMBER, .optional = true },
    QMP_ARG_UNION("kind", kind_branches),
    { NULL },
};

static void expect_spec(const QmpArgSpec *sp, bool keyval, const char *json,
                        const char *msg)
{
    json_error_t jerr;
    json_t *args = json_loads(json, 0, &jerr);
    assert_non_null(args);
    Error *err = NULL;
    bool ok = keyval ? qmp_args_check_keyval(args, "", sp, &err)
                     : qmp_args_check(args, "", sp, &err);
    if (!msg) {
        if (!ok) {
            fail_msg("%s: %s", json, error_get_pretty(err));
        }
    } else {
        assert_false(ok);
        assert_string_equal(error_get_pretty(err), msg);
        error_free(err);
    }
    json_decref(args);
}

static void test_unions(void **state)
{
    const QmpArgSpec *u = union_spec;
    expect_spec(u, false, "{\"kind\": \"disk\", \"path\": \"p\"}", NULL);
    expect_spec(u, false, "{\"kind\": \"none\"}", NULL);
    expect_spec(u, false, "{\"kind\": \"net\", \"port\": 80, \"level\": -128}",
                NULL);
    expect_spec(u, false, "{}", "Parameter 'kind' is missing");
    expect_spec(u, false, "{\"kind\": \"tape\"}",
                "Parameter 'kind' does not accept value 'tape'");
    expect_spec(u, false, "{\"kind\": \"disk\"}", "Parameter 'path' is missing");
    /* Base members first, whatever the JSON order; the branch after. */
    expect_spec(u, false, "{\"path\": 1, \"tag\": 2, \"kind\": \"disk\"}",
                "Invalid parameter type for 'tag', expected: string");
    expect_spec(u, false, "{\"path\": 1, \"ratio\": \"x\", \"kind\": \"disk\"}",
                "Invalid parameter type for 'ratio', expected: number");
    expect_spec(u, false, "{\"kind\": \"disk\", \"path\": 1}",
                "Invalid parameter type for 'path', expected: string");
    /* Another branch's member is unknown here, and reported last. */
    expect_spec(u, false, "{\"kind\": \"none\", \"path\": \"p\"}",
                "Parameter 'path' is unexpected");
    expect_spec(u, false, "{\"port\": 1, \"kind\": \"disk\"}",
                "Parameter 'path' is missing");
    /* Sized integers: the bare name for the range. */
    expect_spec(u, false, "{\"kind\": \"net\", \"port\": 65536}",
                "Parameter 'port' expects uint16_t");
    expect_spec(u, false, "{\"kind\": \"net\", \"port\": -1}",
                "Parameter 'port' expects uint16_t");
    expect_spec(u, false, "{\"kind\": \"net\", \"port\": 1.0}",
                "Parameter 'port' expects uint64");
    expect_spec(u, false, "{\"kind\": \"net\", \"port\": 1, \"level\": 128}",
                "Parameter 'level' expects int8_t");
    expect_spec(u, false, "{\"kind\": \"net\", \"port\": 1, \"level\": \"1\"}",
                "Invalid parameter type for 'level', expected: integer");
    expect_spec(u, false, "{\"kind\": \"disk\", \"path\": \"p\", \"size\": -1}",
                NULL);
}

static void test_alternates_and_lists(void **state)
{
    const QmpArgSpec *u = union_spec;
    expect_spec(u, false, "{\"kind\": \"none\", \"ref\": \"r\"}", NULL);
    expect_spec(u, false, "{\"kind\": \"none\", \"ref\": null}", NULL);
    expect_spec(u, false, "{\"kind\": \"none\", \"ref\": {\"path\": \"p\"}}",
                NULL);
    expect_spec(u, false, "{\"kind\": \"none\", \"ref\": 1}",
                "Invalid parameter type for 'ref', expected: DiskRef");
    expect_spec(u, false, "{\"kind\": \"none\", \"ref\": {}}",
                "Parameter 'ref.path' is missing");
    expect_spec(u, false, "{\"kind\": \"none\", \"ref\": {\"path\": \"p\", "
                "\"x\": 1}, \"y\": 2}", "Parameter 'ref.x' is unexpected");
    /* List elements: [i] in paths, 'null' as their bare name. */
    expect_spec(u, false, "{\"kind\": \"none\", \"refs\": [\"a\", true]}",
                "Invalid parameter type for 'null', expected: DiskRef");
    expect_spec(u, false, "{\"kind\": \"none\", \"refs\": [{}]}",
                "Parameter 'refs[0].path' is missing");
    expect_spec(u, false, "{\"kind\": \"none\", \"ports\": [1, 256]}",
                "Parameter 'null' expects uint8_t");
    expect_spec(u, false, "{\"kind\": \"none\", \"ports\": [1, \"x\"]}",
                "Parameter 'ports[1]' expects uint64");
    expect_spec(u, false, "{\"kind\": \"none\", \"disks\": [{\"path\": \"p\"},"
                " 3]}", "Invalid parameter type for 'disks[1]', expected: "
                "object");
    expect_spec(u, false, "{\"kind\": \"none\", \"disks\": {}}",
                "Invalid parameter type for 'disks', expected: array");
}

static void test_keyval(void **state)
{
    const QmpArgSpec *u = union_spec;
    expect_spec(u, true, "{\"kind\": \"net\", \"port\": \"0x50\"}", NULL);
    expect_spec(u, true, "{\"kind\": \"disk\", \"path\": \"p\", "
                "\"size\": \"1M\"}", NULL);
    expect_spec(u, true, "{\"kind\": \"disk\", \"path\": \"p\", "
                "\"size\": \"1Q\"}", "Parameter 'size' expects size");
    expect_spec(u, true, "{\"kind\": \"net\", \"port\": \"eighty\"}",
                "Parameter 'port' expects integer");
    expect_spec(u, true, "{\"kind\": \"net\", \"port\": \"70000\"}",
                "Parameter 'port' expects uint16_t");
    expect_spec(u, true, "{\"kind\": \"net\", \"port\": {\"a\": \"1\"}}",
                "Parameters 'port.*' are unexpected");
    expect_spec(u, true, "{\"kind\": \"none\", \"ports\": [\"1\", \"x\"]}",
                "Parameter 'ports.1' expects integer");
    expect_spec(spec, true, "{\"id\": \"e\", \"flat\": \"maybe\"}",
                "Parameter 'flat' expects 'on' or 'off'");
    expect_spec(spec, true, "{\"id\": \"e\", \"flat\": \"on\"}", NULL);
    expect_spec(u, true, "{\"kind\": \"none\", \"ratio\": \"1e3\"}", NULL);
    expect_spec(u, true, "{\"kind\": \"none\", \"ratio\": \"inf\"}",
                "Invalid parameter type for 'ratio', expected: number");
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
        cmocka_unit_test(test_unions),
        cmocka_unit_test(test_alternates_and_lists),
        cmocka_unit_test(test_keyval),
        cmocka_unit_test(test_accessors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
