/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for the one SocketAddress decoder (util/socket-address.c):
 * both forms, typed JSON and keyval strings, QEMU's texts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/keyval.h"
#include "util/socket-address.h"

/* Decodes text (JSON) in the given form; returns the error text or NULL. */
static char *decode(const char *text, bool legacy, const char *prefix,
                    SocketAddress *sa)
{
    json_t *obj = json_loads(text, 0, NULL);
    assert_non_null(obj);
    Error *err = NULL;
    bool ok = legacy ? socket_address_decode_legacy(obj, prefix, sa, &err)
                     : socket_address_decode(obj, prefix, sa, &err);
    json_decref(obj);
    char *msg = ok ? NULL : strdup(error_get_pretty(err));
    error_free(err);
    return msg;
}

static void expect_error(const char *text, bool legacy, const char *prefix,
                         const char *want)
{
    SocketAddress sa;
    char *msg = decode(text, legacy, prefix, &sa);
    socket_address_free(&sa);
    assert_non_null(msg);
    assert_string_equal(msg, want);
    free(msg);
}

static void test_forms(void **state)
{
    SocketAddress sa;
    assert_null(decode("{\"type\":\"unix\",\"path\":\"/run/x.sock\"}", false,
                       "addr.", &sa));
    assert_int_equal(sa.type, SOCKET_ADDRESS_UNIX);
    assert_string_equal(sa.path, "/run/x.sock");
    socket_address_free(&sa);

    assert_null(decode("{\"type\":\"inet\",\"data\":{\"host\":\"::1\","
                       "\"port\":\"10809\"}}", true, "addr.", &sa));
    assert_int_equal(sa.type, SOCKET_ADDRESS_INET);
    assert_string_equal(sa.host, "::1");
    assert_string_equal(sa.port, "10809");
    socket_address_free(&sa);

    /* A JSON number is a port too. */
    assert_null(decode("{\"type\":\"inet\",\"host\":\"h\",\"port\":9400}",
                       false, "", &sa));
    assert_string_equal(sa.port, "9400");
    socket_address_free(&sa);

    /* Keyval strings from the command line. */
    Error *err = NULL;
    json_t *kv = keyval_parse("addr.type=inet,addr.host=127.0.0.1,"
                              "addr.port=0", NULL, &err);
    assert_non_null(kv);
    assert_true(socket_address_decode(json_object_get(kv, "addr"), "addr.",
                                      &sa, &err));
    assert_string_equal(sa.host, "127.0.0.1");
    socket_address_free(&sa);
    json_decref(kv);

    /* QEMU's InetSocketAddress options. */
    assert_null(decode("{\"type\":\"inet\",\"host\":\"h\",\"port\":\"1\","
                       "\"ipv6\":true,\"numeric\":true,\"to\":9,"
                       "\"keep-alive\":true,\"mptcp\":false}", false, "",
                       &sa));
    assert_int_equal(sa.resolve.family, AF_INET6);
    assert_true(sa.resolve.numeric);
    assert_true(sa.keep_alive);
    assert_int_equal(sa.to, 9);
    socket_address_free(&sa);
    assert_null(decode("{\"type\":\"inet\",\"host\":\"h\",\"port\":\"1\","
                       "\"ipv6\":false}", false, "", &sa));
    assert_int_equal(sa.resolve.family, AF_INET);
    assert_int_equal(sa.to, -1);
    socket_address_free(&sa);
}

static void test_errors(void **state)
{
    expect_error("{\"path\":\"/x\"}", false, "addr.",
                 "Parameter 'addr.type' is missing");
    expect_error("{\"type\":\"bogus\"}", false, "addr.",
                 "Parameter 'type' does not accept value 'bogus'");
    /* QEMU's, but not strata's. */
    expect_error("{\"type\":\"vsock\"}", false, "addr.",
                 "Socket address type 'vsock' is not supported by strata "
                 "(use 'unix' or 'inet')");
    expect_error("{\"type\":\"unix\",\"path\":\"/x\",\"abstract\":true}",
                 false, "addr.", "Abstract unix sockets ('addr.abstract') are "
                 "not supported by strata");
    expect_error("{\"type\":\"inet\",\"host\":\"h\",\"port\":\"1\","
                 "\"ipv4\":false,\"ipv6\":false}", false, "",
                 "Cannot disable IPv4 and IPv6 at same time");
    expect_error("{\"type\":\"unix\"}", false, "addr.",
                 "Parameter 'addr.path' is missing");
    expect_error("{\"type\":\"unix\"}", false, "",
                 "Parameter 'path' is missing");
    expect_error("{\"type\":\"inet\",\"host\":\"h\"}", false, "addr.",
                 "Parameter 'addr.port' is missing");
    expect_error("{\"type\":\"unix\",\"path\":5}", false, "server.",
                 "Invalid parameter type for 'server.path', expected: "
                 "string");
    expect_error("{\"type\":\"unix\",\"path\":\"/x\",\"bogus\":1}", false,
                 "addr.", "Parameter 'addr.bogus' is unexpected");
    expect_error("{\"type\":\"unix\"}", true, "addr.",
                 "Parameter 'addr.data' is missing");
    expect_error("{\"type\":\"inet\",\"host\":\"h\",\"port\":70000}", false,
                 "", "Parameter 'port' expects a port number");
}

static void test_listen_unix(void **state)
{
    char dir[] = "/tmp/strata-sa-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/l.sock", dir);
    SocketAddress sa = { .type = SOCKET_ADDRESS_UNIX, .path = path };
    int fds[2];
    Error *err = NULL;
    assert_int_equal(socket_address_listen(&sa, 4, 0, fds, 2, &err), 1);
    close(fds[0]);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_listen_unix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
