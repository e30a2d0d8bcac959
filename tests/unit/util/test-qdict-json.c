/* SPDX-License-Identifier: BSD-3-Clause */
/* QEMU's QDict text: the member order and escapes qobject_to_json uses
 * (expected strings observed from qemu-storage-daemon 7.2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#include "util/qdict-json.h"

static void check(json_t *v, const char *want)
{
    char *got = qdict_json_dumps(v);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
    json_decref(v);
}

static void test_member_order(void **state)
{
    (void)state;
    /* Buckets: offset 180, driver 239, filename 313, size 318, file 463. */
    check(json_pack("{s:s, s:i, s:i, s:{s:s, s:s}}", "driver", "raw",
                    "offset", 512, "size", 4096, "file", "driver", "file",
                    "filename", "/x"),
          "{\"offset\": 512, \"driver\": \"raw\", \"size\": 4096, \"file\": "
          "{\"driver\": \"file\", \"filename\": \"/x\"}}");
    assert_int_equal(qdict_bucket("offset"), 180);
    assert_int_equal(qdict_bucket("file"), 463);
}

static void test_same_bucket_latest_first(void **state)
{
    (void)state;
    assert_int_equal(qdict_bucket("inject-error.0.errno"),
                     qdict_bucket("inject-error.0.event"));
    check(json_pack("{s:s, s:i}", "inject-error.0.event", "read_aio",
                    "inject-error.0.errno", 5),
          "{\"inject-error.0.errno\": 5, \"inject-error.0.event\": \"read_aio\"}");
}

static void test_values_and_escapes(void **state)
{
    (void)state;
    check(json_pack("[n, b, b, i, s, [], {}]", 0, 1, -7, "a\"b\\c\n\t\x01\xc3\xa9\xf0\x9f\x98\x80"),
          "[null, false, true, -7, \"a\\\"b\\\\c\\n\\t\\u0001\\u00E9\\uD83D\\uDE00\", [], {}]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_member_order),
        cmocka_unit_test(test_same_bucket_latest_first),
        cmocka_unit_test(test_values_and_escapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
