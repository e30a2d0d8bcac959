/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for util/error.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "util/error.h"

static void test_set(void **state)
{
    Error *err = NULL;
    error_setg(&err, "bad %s %d", "thing", 3);
    assert_string_equal(error_get_pretty(err), "bad thing 3");
    assert_int_equal(err->cls, ERROR_CLASS_GENERIC_ERROR);
    /* The first error is kept: it is the cause. */
    error_setg(&err, "second");
    assert_string_equal(error_get_pretty(err), "bad thing 3");
    error_prepend(&err, "Could not open '%s': ", "x");
    assert_string_equal(error_get_pretty(err), "Could not open 'x': bad thing 3");
    error_free(err);

    err = NULL;
    error_setg_errno(&err, ENOENT, "Could not open '%s'", "f");
    assert_string_equal(error_get_pretty(err),
                        "Could not open 'f': No such file or directory");
    assert_int_equal(err->errnum, ENOENT);
    error_free(err);

    err = NULL;
    error_setg_errno(&err, -EACCES, "x");
    assert_string_equal(error_get_pretty(err), "x: Permission denied");
    error_free(err);

    err = NULL;
    error_set(&err, ERROR_CLASS_DEVICE_NOT_FOUND, "Device '%s' not found", "n");
    assert_string_equal(error_class_name(err->cls), "DeviceNotFound");
    assert_string_equal(error_class_name(ERROR_CLASS_GENERIC_ERROR), "GenericError");
    assert_string_equal(error_class_name(ERROR_CLASS_COMMAND_NOT_FOUND),
                        "CommandNotFound");
    error_free(err);

    /* NULL errp: callers that do not care. */
    error_setg(NULL, "ignored");
    error_prepend(NULL, "ignored");
}

static void test_propagate(void **state)
{
    Error *dst = NULL, *src = NULL;
    error_setg(&src, "a");
    error_propagate(&dst, src);
    assert_ptr_equal(dst, src);
    Error *src2 = NULL;
    error_setg(&src2, "b");
    error_propagate(&dst, src2);   /* dst already set: src2 freed */
    assert_string_equal(error_get_pretty(dst), "a");
    error_propagate(NULL, NULL);
    Error *src3 = NULL;
    error_setg(&src3, "c");
    error_propagate(NULL, src3);
    error_free(dst);
    {
        CLEANUP_ERROR Error *auto_err = NULL;
        error_setg(&auto_err, "freed at scope end");
    }
}

static void test_progname(void **state)
{
    error_set_progname("/usr/bin/strata-img");
    assert_string_equal(error_get_progname(), "strata-img");
    error_set_progname("stratad");
    assert_string_equal(error_get_progname(), "stratad");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_propagate),
        cmocka_unit_test(test_progname),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
