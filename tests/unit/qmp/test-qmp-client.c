/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests: the QMP client against a fake server on a socketpair.  The
 * fake server's lines are written before the client reads, so every
 * exchange is deterministic and single-threaded. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "qmp/qmp-client.h"

#define GREETING "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n"
#define EMPTY_RETURN "{\"return\": {}}\r\n"

typedef struct Fixture {
    int server;          /* the fake server's end */
    QmpClient *c;
} Fixture;

static void server_says(int fd, const char *text)
{
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
}

/* Reads everything the client has sent so far. */
static char *server_hears(int fd)
{
    static char buf[4096];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static int pair(int *client)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
                     0);
    *client = sv[0];
    return sv[1];
}

static int setup_connected(void **state)
{
    Fixture *f = calloc(1, sizeof(*f));
    int cfd;
    f->server = pair(&cfd);
    server_says(f->server, GREETING EMPTY_RETURN);
    Error *err = NULL;
    f->c = qmp_client_new_fd(cfd, "fake", 1000, &err);
    assert_null(err);
    assert_non_null(f->c);
    assert_string_equal(server_hears(f->server),
                        "{\"execute\":\"qmp_capabilities\"}\n");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    Fixture *f = *state;
    qmp_client_close(f->c);
    close(f->server);
    free(f);
    return 0;
}

static void test_execute_returns_value_and_keeps_events(void **state)
{
    Fixture *f = *state;
    server_says(f->server,
                "{\"event\": \"A\", \"data\": {}}\r\n"
                "\r\n"
                "{\"event\": \"B\", \"data\": {}}\r\n"
                "{\"return\": {\"x\": 7}}\r\n");
    json_t *args = json_pack("{s:s}", "node-name", "n0");
    Error *err = NULL;
    bool lost = true;
    json_t *r = qmp_client_execute(f->c, "query-x", args, 1000, &lost, &err);
    json_decref(args);
    assert_null(err);
    assert_false(lost);
    assert_int_equal(json_integer_value(json_object_get(r, "x")), 7);
    json_decref(r);
    assert_string_equal(server_hears(f->server),
                        "{\"execute\":\"query-x\",\"arguments\":"
                        "{\"node-name\":\"n0\"}}\n");
    /* Events that came before the reply, in order, then a timeout. */
    json_t *ev = qmp_client_next_event(f->c, 0, &err);
    assert_string_equal(json_string_value(json_object_get(ev, "event")), "A");
    json_decref(ev);
    ev = qmp_client_next_event(f->c, 0, &err);
    assert_string_equal(json_string_value(json_object_get(ev, "event")), "B");
    json_decref(ev);
    assert_null(qmp_client_next_event(f->c, 10, &err));
    assert_null(err);
}

static void test_execute_error_reply(void **state)
{
    Fixture *f = *state;
    server_says(f->server, "{\"error\": {\"class\": \"DeviceNotFound\", "
                           "\"desc\": \"Device 'nope' not found\"}}\r\n");
    Error *err = NULL;
    bool lost = true;
    assert_null(qmp_client_execute(f->c, "x", NULL, 1000, &lost, &err));
    assert_false(lost);
    assert_non_null(err);
    assert_string_equal(error_get_pretty(err), "Device 'nope' not found");
    assert_int_equal(err->cls, ERROR_CLASS_DEVICE_NOT_FOUND);
    error_free(err);
    err = NULL;

    /* The raw form hands back the error object itself. */
    server_says(f->server, "{\"error\": {\"class\": \"GenericError\", "
                           "\"desc\": \"no\"}}\r\n");
    json_t *rsp = qmp_client_execute_raw(f->c, "x", NULL, 1000, &err);
    assert_null(err);
    assert_non_null(json_object_get(rsp, "error"));
    json_decref(rsp);
}

static void test_execute_timeout(void **state)
{
    Fixture *f = *state;
    Error *err = NULL;
    bool lost = false;
    assert_null(qmp_client_execute(f->c, "slow", NULL, 20, &lost, &err));
    assert_true(lost);
    assert_string_equal(error_get_pretty(err),
                        "fake did not answer slow within 20 ms");
    error_free(err);
}

static void test_connection_closed(void **state)
{
    Fixture *f = *state;
    close(f->server);
    f->server = -1;
    Error *err = NULL;
    bool lost = false;
    assert_null(qmp_client_execute(f->c, "x", NULL, 1000, &lost, &err));
    assert_true(lost);
    assert_non_null(err);
    error_free(err);
    err = NULL;
    assert_null(qmp_client_next_event(f->c, 1000, &err));
    assert_non_null(err);
    assert_string_equal(error_get_pretty(err),
                        "fake closed the QMP connection");
    error_free(err);
}

static void test_not_json(void **state)
{
    Fixture *f = *state;
    server_says(f->server, "this is not json\r\n");
    Error *err = NULL;
    assert_null(qmp_client_execute_raw(f->c, "x", NULL, 1000, &err));
    assert_non_null(err);
    assert_non_null(strstr(error_get_pretty(err),
                           "fake sent a line that is not JSON"));
    error_free(err);
}

typedef struct Seen {
    char names[8][16];
    int n;
} Seen;

static void remember(void *opaque, json_t *ev)
{
    Seen *s = opaque;
    if (s->n < 8) {
        snprintf(s->names[s->n++], sizeof(s->names[0]), "%s",
                 json_string_value(json_object_get(ev, "event")));
    }
}

static void test_dispatch_delivers_events(void **state)
{
    Fixture *f = *state;
    Seen seen = { .n = 0 };
    qmp_client_set_event_handler(f->c, remember, &seen);
    /* One event kept while a reply was awaited, one read by dispatch,
     * and one unsolicited reply that is dropped. */
    server_says(f->server, "{\"event\": \"E1\"}\r\n{\"return\": 1}\r\n");
    Error *err = NULL;
    json_t *r = qmp_client_execute(f->c, "x", NULL, 1000, NULL, &err);
    json_decref(r);
    assert_int_equal(seen.n, 0);   /* never inside execute */
    server_says(f->server, "{\"return\": {}}\r\n{\"event\": \"E2\"}\r\n");
    assert_true(qmp_client_dispatch(f->c, &err));
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.names[0], "E1");
    assert_string_equal(seen.names[1], "E2");
    /* Nothing pending: dispatch does not block and delivers nothing. */
    assert_true(qmp_client_dispatch(f->c, &err));
    assert_int_equal(seen.n, 2);
    close(f->server);
    f->server = -1;
    assert_false(qmp_client_dispatch(f->c, &err));
    assert_non_null(err);
    error_free(err);
}

static void test_bad_greeting(void **state)
{
    (void)state;
    int cfd;
    int s = pair(&cfd);
    server_says(s, "{\"return\": {}}\r\n");
    Error *err = NULL;
    assert_null(qmp_client_new_fd(cfd, "fake", 1000, &err));
    assert_string_equal(error_get_pretty(err),
                        "fake did not send a QMP greeting");
    error_free(err);
    close(s);

    /* Silence until the timeout is no greeting either. */
    s = pair(&cfd);
    err = NULL;
    assert_null(qmp_client_new_fd(cfd, "fake", 20, &err));
    assert_string_equal(error_get_pretty(err),
                        "fake did not send a QMP greeting");
    error_free(err);
    close(s);
}

static void test_negotiation_refused(void **state)
{
    (void)state;
    int cfd;
    int s = pair(&cfd);
    server_says(s, GREETING "{\"error\": {\"class\": \"GenericError\", "
                   "\"desc\": \"refused\"}}\r\n");
    Error *err = NULL;
    assert_null(qmp_client_new_fd(cfd, "fake", 1000, &err));
    assert_string_equal(error_get_pretty(err), "refused");
    error_free(err);
    close(s);
}

static void test_connect_missing_socket(void **state)
{
    (void)state;
    Error *err = NULL;
    assert_null(qmp_client_connect("/nonexistent/strata-qmp.sock", 100,
                                   &err));
    assert_string_equal(error_get_pretty(err),
                        "Cannot connect to /nonexistent/strata-qmp.sock: "
                        "No such file or directory");
    error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_execute_returns_value_and_keeps_events, setup_connected,
            teardown),
        cmocka_unit_test_setup_teardown(test_execute_error_reply,
                                        setup_connected, teardown),
        cmocka_unit_test_setup_teardown(test_execute_timeout,
                                        setup_connected, teardown),
        cmocka_unit_test_setup_teardown(test_connection_closed,
                                        setup_connected, teardown),
        cmocka_unit_test_setup_teardown(test_not_json, setup_connected,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dispatch_delivers_events,
                                        setup_connected, teardown),
        cmocka_unit_test(test_bad_greeting),
        cmocka_unit_test(test_negotiation_refused),
        cmocka_unit_test(test_connect_missing_socket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
