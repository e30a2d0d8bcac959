/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests: listening and connecting stream sockets (util/sockets.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/sockets.h"

static char dir[64];

static int make_dir(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/strata-sockets-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    return rmdir(dir);
}

static void test_unix_listen_connect(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "%s/s.sock", dir);
    /* A stale file from an earlier run is replaced. */
    int stale = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(stale >= 0);
    close(stale);

    Error *err = NULL;
    /* Owner only, even under a permissive umask. */
    mode_t old = umask(0);
    int lfd = unix_socket_listen(path, 4, SOCK_NONBLOCK, &err);
    umask(old);
    assert_null(err);
    assert_true(lfd >= 0);
    assert_true(fcntl(lfd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(lfd, F_GETFD) & FD_CLOEXEC);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);

    int cfd = unix_socket_connect(path, 0, &err);
    assert_null(err);
    assert_true(cfd >= 0);
    int afd = accept(lfd, NULL, NULL);
    assert_true(afd >= 0);
    assert_int_equal(write(cfd, "x", 1), 1);
    char c = 0;
    assert_int_equal(read(afd, &c, 1), 1);
    assert_int_equal(c, 'x');
    close(afd);
    close(cfd);
    close(lfd);
    unlink(path);

    /* No temporary file is left beside it. */
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
    assert_int_not_equal(access(tmp, F_OK), 0);
}

static void test_unix_errors(void **state)
{
    (void)state;
    char path[200];
    memset(path, 'a', sizeof(path) - 1);
    path[0] = '/';
    path[sizeof(path) - 1] = '\0';
    Error *err = NULL;
    assert_int_equal(unix_socket_listen(path, 4, 0, &err), -1);
    assert_non_null(strstr(error_get_pretty(err), "is too long"));
    error_free(err);
    err = NULL;

    char missing[128];
    snprintf(missing, sizeof(missing), "%s/none/s.sock", dir);
    assert_int_equal(unix_socket_listen(missing, 4, 0, &err), -1);
    assert_non_null(strstr(error_get_pretty(err), "Failed to bind socket to"));
    error_free(err);
    err = NULL;

    assert_int_equal(unix_socket_connect(missing, 0, &err), -1);
    char want[200];
    snprintf(want, sizeof(want),
             "Cannot connect to %s: No such file or directory", missing);
    assert_string_equal(error_get_pretty(err), want);
    error_free(err);
}

static void test_inet_listen(void **state)
{
    (void)state;
    Error *err = NULL;
    int lfd = inet_socket_listen("127.0.0.1", "0", 4, 0, &err);
    assert_null(err);
    assert_true(lfd >= 0);
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
    assert_int_not_equal(ntohs(sin.sin_port), 0);

    /* The port is taken now: a second listener on it fails. */
    char port[16];
    snprintf(port, sizeof(port), "%u", (unsigned)ntohs(sin.sin_port));
    assert_int_equal(inet_socket_listen("127.0.0.1", port, 4, 0, &err), -1);
    assert_non_null(strstr(error_get_pretty(err),
                           "Failed to bind socket to 127.0.0.1:"));
    error_free(err);
    err = NULL;
    close(lfd);

    /* A numeric host that is not an address is refused without DNS. */
    assert_int_equal(inet_socket_listen("127.0.0.1", "no-such-service-x",
                                        4, 0, &err), -1);
    assert_non_null(strstr(error_get_pretty(err),
                           "address resolution failed"));
    error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unix_listen_connect),
        cmocka_unit_test(test_unix_errors),
        cmocka_unit_test(test_inet_listen),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
