/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for the NBD handshake and wire helpers: a client speaks to
 * nbd_conn_serve() over a socketpair.  No export exists, so these cover
 * the option haggling that does not need a block node. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "nbd/nbd-int.h"
#include "nbd/protocol.h"

typedef struct Pair {
    int client;
    int server;
    NbdConn conn;
    NbdConn client_conn;      /* the client end, for the wire helpers */
    pthread_t thread;
} Pair;

static void *serve_main(void *opaque)
{
    Pair *p = opaque;
    nbd_conn_serve(&p->conn);
    shutdown(p->server, SHUT_RDWR);
    return NULL;
}

static void pair_start(Pair *p)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    p->client = sv[0];
    p->server = sv[1];
    nbd_conn_init(&p->conn, p->server);
    nbd_conn_init(&p->client_conn, p->client);
    assert_int_equal(pthread_create(&p->thread, NULL, serve_main, p), 0);
}

static void pair_end(Pair *p)
{
    shutdown(p->client, SHUT_RDWR);
    pthread_join(p->thread, NULL);
    nbd_conn_destroy(&p->conn);
    nbd_conn_destroy(&p->client_conn);
    close(p->client);
    close(p->server);
}

static void greet(Pair *p)
{
    uint8_t buf[18];
    assert_int_equal(nbd_read_full(&p->client_conn, buf, 18), 0);
    assert_true(nbd_get64(buf) == NBD_MAGIC);
    assert_true(nbd_get64(buf + 8) == NBD_IHAVEOPT);
    assert_int_equal(nbd_get16(buf + 16), 3);
    nbd_put32(buf, 3);
    assert_int_equal(nbd_write_full(&p->client_conn, buf, 4), 0);
}

static void send_opt(Pair *p, uint32_t opt, const void *data, uint32_t len)
{
    uint8_t hdr[16];
    nbd_put64(hdr, NBD_IHAVEOPT);
    nbd_put32(hdr + 8, opt);
    nbd_put32(hdr + 12, len);
    assert_int_equal(nbd_write_full(&p->client_conn, hdr, 16), 0);
    if (len) {
        assert_int_equal(nbd_write_full(&p->client_conn, data, len), 0);
    }
}

/* Reads one option reply; returns its type and copies the payload. */
static uint32_t recv_rep(Pair *p, uint32_t opt, char *data, size_t cap)
{
    uint8_t hdr[20];
    assert_int_equal(nbd_read_full(&p->client_conn, hdr, 20), 0);
    assert_true(nbd_get64(hdr) == NBD_REP_MAGIC);
    assert_int_equal(nbd_get32(hdr + 8), opt);
    uint32_t len = nbd_get32(hdr + 16);
    assert_true(len < cap);
    assert_int_equal(nbd_read_full(&p->client_conn, data, len), 0);
    data[len] = '\0';
    return nbd_get32(hdr + 12);
}

static void expect_error(Pair *p, uint32_t opt, uint32_t type, const char *msg)
{
    char buf[8192];
    assert_int_equal(recv_rep(p, opt, buf, sizeof(buf)), type);
    assert_string_equal(buf, msg);
}

static void test_options_without_exports(void **state)
{
    Pair p;
    char buf[256];
    (void)state;

    pair_start(&p);
    greet(&p);

    send_opt(&p, NBD_OPT_LIST, NULL, 0);
    assert_int_equal(recv_rep(&p, NBD_OPT_LIST, buf, sizeof(buf)), NBD_REP_ACK);

    send_opt(&p, 99, "abc", 3);
    expect_error(&p, 99, NBD_REP_ERR_UNSUP, "Unsupported option 99 (<unknown>)");

    send_opt(&p, NBD_OPT_EXTENDED_HEADERS, NULL, 0);
    expect_error(&p, NBD_OPT_EXTENDED_HEADERS, NBD_REP_ERR_UNSUP,
                 "Unsupported option 11 (<unknown>)");

    send_opt(&p, NBD_OPT_STARTTLS, NULL, 0);
    expect_error(&p, NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY, "TLS not configured");

    send_opt(&p, NBD_OPT_LIST, "x", 1);
    expect_error(&p, NBD_OPT_LIST, NBD_REP_ERR_INVALID,
                 "option 'list' has unexpected length");

    uint8_t go[4 + 6 + 2];
    nbd_put32(go, 6);
    memcpy(go + 4, "nosuch", 6);
    nbd_put16(go + 10, 0);
    send_opt(&p, NBD_OPT_GO, go, sizeof(go));
    expect_error(&p, NBD_OPT_GO, NBD_REP_ERR_UNKNOWN,
                 "export 'nosuch' not present");

    /* Name length larger than the payload. */
    send_opt(&p, NBD_OPT_INFO, go, 8);
    expect_error(&p, NBD_OPT_INFO, NBD_REP_ERR_INVALID,
                 "Inconsistent lengths in option info");

    nbd_put32(go, 5000);
    send_opt(&p, NBD_OPT_INFO, go, sizeof(go));
    expect_error(&p, NBD_OPT_INFO, NBD_REP_ERR_INVALID,
                 "Invalid name length: 5000");

    uint8_t meta[4 + 6 + 4];
    nbd_put32(meta, 6);
    memcpy(meta + 4, "nosuch", 6);
    nbd_put32(meta + 10, 0);
    send_opt(&p, NBD_OPT_SET_META_CONTEXT, meta, sizeof(meta));
    expect_error(&p, NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_INVALID,
                 "request option 'set meta context' when structured reply "
                 "is not negotiated");

    send_opt(&p, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    assert_int_equal(recv_rep(&p, NBD_OPT_STRUCTURED_REPLY, buf, sizeof(buf)),
                     NBD_REP_ACK);
    send_opt(&p, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    expect_error(&p, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID,
                 "structured reply already negotiated");

    send_opt(&p, NBD_OPT_SET_META_CONTEXT, meta, sizeof(meta));
    expect_error(&p, NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_UNKNOWN,
                 "export 'nosuch' not present");

    /* Very long names are cut to 80 characters in the message. */
    uint8_t longgo[4 + 100 + 2];
    nbd_put32(longgo, 100);
    memset(longgo + 4, 'a', 100);
    nbd_put16(longgo + 104, 0);
    send_opt(&p, NBD_OPT_GO, longgo, sizeof(longgo));
    char expect[128];
    snprintf(expect, sizeof(expect), "export '%.80s...' not present",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    expect_error(&p, NBD_OPT_GO, NBD_REP_ERR_UNKNOWN, expect);

    send_opt(&p, NBD_OPT_ABORT, NULL, 0);
    assert_int_equal(recv_rep(&p, NBD_OPT_ABORT, buf, sizeof(buf)), NBD_REP_ACK);
    /* The server hangs up after ABORT. */
    assert_int_equal(nbd_read_full(&p.client_conn, buf, 1), -ECONNRESET);
    pair_end(&p);
}

static void test_bad_magic_disconnects(void **state)
{
    Pair p;
    uint8_t buf[16] = { 0 };
    (void)state;

    pair_start(&p);
    greet(&p);
    nbd_put64(buf, 0x1234);
    assert_int_equal(nbd_write_full(&p.client_conn, buf, 16), 0);
    assert_int_equal(nbd_read_full(&p.client_conn, buf, 1), -ECONNRESET);
    pair_end(&p);
}

static void test_oversized_option_disconnects(void **state)
{
    Pair p;
    uint8_t buf[16];
    (void)state;

    pair_start(&p);
    greet(&p);
    nbd_put64(buf, NBD_IHAVEOPT);
    nbd_put32(buf + 8, NBD_OPT_INFO);
    nbd_put32(buf + 12, NBD_MAX_BUFFER_SIZE + 1);
    assert_int_equal(nbd_write_full(&p.client_conn, buf, 16), 0);
    assert_int_equal(nbd_read_full(&p.client_conn, buf, 1), -ECONNRESET);
    pair_end(&p);
}

static void test_unknown_client_flags(void **state)
{
    Pair p;
    uint8_t buf[18];
    (void)state;

    pair_start(&p);
    assert_int_equal(nbd_read_full(&p.client_conn, buf, 18), 0);
    nbd_put32(buf, 0x10);
    assert_int_equal(nbd_write_full(&p.client_conn, buf, 4), 0);
    assert_int_equal(nbd_read_full(&p.client_conn, buf, 1), -ECONNRESET);
    pair_end(&p);
}

static void test_errno_mapping(void **state)
{
    (void)state;
    assert_int_equal(nbd_errno_to_wire(0), 0);
    assert_int_equal(nbd_errno_to_wire(-EPERM), NBD_EPERM);
    assert_int_equal(nbd_errno_to_wire(-EROFS), NBD_EPERM);
    assert_int_equal(nbd_errno_to_wire(-EIO), NBD_EIO);
    assert_int_equal(nbd_errno_to_wire(-ENOMEM), NBD_ENOMEM);
    assert_int_equal(nbd_errno_to_wire(-ENOSPC), NBD_ENOSPC);
    assert_int_equal(nbd_errno_to_wire(-EDQUOT), NBD_ENOSPC);
    assert_int_equal(nbd_errno_to_wire(-EOVERFLOW), NBD_EOVERFLOW);
    assert_int_equal(nbd_errno_to_wire(-ENOTSUP), NBD_ENOTSUP);
    assert_int_equal(nbd_errno_to_wire(-ESHUTDOWN), NBD_ESHUTDOWN);
    assert_int_equal(nbd_errno_to_wire(-EINVAL), NBD_EINVAL);
    assert_int_equal(nbd_errno_to_wire(-EBADF), NBD_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options_without_exports),
        cmocka_unit_test(test_bad_magic_disconnects),
        cmocka_unit_test(test_oversized_option_disconnects),
        cmocka_unit_test(test_unknown_client_flags),
        cmocka_unit_test(test_errno_mapping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
