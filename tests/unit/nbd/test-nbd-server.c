/* SPDX-License-Identifier: BSD-3-Clause */
/* The NBD server end to end with libnbd as the client, over a unix
 * socket, against in-memory nodes: export flags, every command, block
 * status, sparse reads, read-only refusal, export deletion rules and
 * many concurrent requests. */
#include <errno.h>
#include <libnbd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "memnode.h"
#include "nbd/nbd.h"
#include "nbd/protocol.h"

#define SIZE (4u * 1024 * 1024)

static char sockpath[256];
static char tmpdir[] = "/tmp/strata-nbd-test-XXXXXX";
static BlockNode *mem_rw, *mem_ro;
static int deleted_events;
static char last_deleted[64];

static void sink(const char *event, json_t *data)
{
    if (strcmp(event, "BLOCK_EXPORT_DELETED") == 0) {
        deleted_events++;
        snprintf(last_deleted, sizeof(last_deleted), "%s",
                 json_string_value(json_object_get(data, "id")));
    }
    json_decref(data);
}

static bool add_export(const char *json)
{
    Error *err = NULL;
    json_t *args = json_loads(json, 0, NULL);
    NbdExportOptions eo;
    bool ok = nbd_export_options_decode(args, &eo, &err) &&
              block_export_add(&eo, &err);
    nbd_export_options_free(&eo);
    json_decref(args);
    if (err) {
        error_free(err);
    }
    return ok;
}

static char *add_export_error(const char *json)
{
    Error *err = NULL;
    json_t *args = json_loads(json, 0, NULL);
    NbdExportOptions eo;
    bool ok = nbd_export_options_decode(args, &eo, &err) &&
              block_export_add(&eo, &err);
    nbd_export_options_free(&eo);
    json_decref(args);
    assert_false(ok);
    char *msg = strdup(error_get_pretty(err));
    error_free(err);
    return msg;
}

static int setup(void **state)
{
    assert_non_null(mkdtemp(tmpdir));
    snprintf(sockpath, sizeof(sockpath), "%s/nbd.sock", tmpdir);
    block_set_event_sink(sink);
    mem_rw = memnode_create("memrw", SIZE, false);
    mem_ro = memnode_create("memro", SIZE, true);
    assert_non_null(mem_rw);
    assert_non_null(mem_ro);

    /* Exports need a running server. */
    char *msg = add_export_error("{\"type\":\"nbd\",\"id\":\"e0\",\"node-name\":\"memrw\"}");
    assert_string_equal(msg, "NBD server not running");
    free(msg);

    json_t *args = json_pack("{s:{s:s, s:s}}", "addr", "type", "unix", "path",
                             sockpath);
    Error *err = NULL;
    NbdServerOptions so;
    assert_true(nbd_server_options_decode(args, &so, &err));
    assert_true(nbd_server_start(&so, &err));
    assert_false(nbd_server_start(&so, &err));
    assert_string_equal(error_get_pretty(err), "NBD server already running");
    error_free(err);
    nbd_server_options_free(&so);
    json_decref(args);

    assert_true(add_export("{\"type\":\"nbd\",\"id\":\"w\",\"node-name\":\"memrw\","
                           "\"name\":\"disk\",\"writable\":true,"
                           "\"description\":\"testdesc\",\"allocation-depth\":true}"));
    assert_true(add_export("{\"type\":\"nbd\",\"id\":\"r\",\"node-name\":\"memro\"}"));
    return 0;
}

static int teardown(void **state)
{
    nbd_shutdown_all();
    block_node_unref(mem_rw);
    block_node_unref(mem_ro);
    unlink(sockpath);
    rmdir(tmpdir);
    return 0;
}

static struct nbd_handle *connect_to(const char *name, bool ctx)
{
    struct nbd_handle *h = nbd_create();
    assert_non_null(h);
    nbd_set_export_name(h, name);
    if (ctx) {
        assert_int_equal(nbd_add_meta_context(h, "base:allocation"), 0);
        assert_int_equal(nbd_add_meta_context(h, "qemu:allocation-depth"), 0);
    }
    if (nbd_connect_unix(h, sockpath) == -1) {
        fail_msg("connect: %s", nbd_get_error());
    }
    return h;
}

static void test_export_errors(void **state)
{
    char *msg;

    msg = add_export_error("{\"type\":\"nbd\",\"id\":\"w\",\"node-name\":\"memrw\"}");
    assert_string_equal(msg, "Block export id 'w' is already in use");
    free(msg);
    msg = add_export_error("{\"type\":\"nbd\",\"id\":\"x\",\"node-name\":\"nosuch\"}");
    assert_string_equal(msg, "Cannot find device='' nor node-name='nosuch'");
    free(msg);
    msg = add_export_error("{\"type\":\"nbd\",\"id\":\"x\",\"node-name\":\"memro\",\"writable\":true}");
    assert_string_equal(msg, "Cannot export read-only node as writable");
    free(msg);
    msg = add_export_error("{\"type\":\"nbd\",\"id\":\"x\",\"node-name\":\"memrw\",\"name\":\"disk\"}");
    assert_string_equal(msg, "NBD server already has export named 'disk'");
    free(msg);
    msg = add_export_error("{\"type\":\"nbd\",\"id\":\"x\",\"node-name\":\"memrw\",\"name\":\"b\",\"bitmaps\":[\"b0\"]}");
    assert_string_equal(msg, "Bitmap 'b0' is not found");
    free(msg);
    msg = add_export_error("{\"type\":\"nbd\",\"id\":\"1x\",\"node-name\":\"memrw\"}");
    assert_string_equal(msg, "Invalid block export id");
    free(msg);
    msg = add_export_error("{\"type\":\"nbd\",\"node-name\":\"memrw\"}");
    assert_string_equal(msg, "Parameter 'id' is missing");
    free(msg);
    msg = add_export_error("{\"type\":\"nbd\",\"id\":\"x\",\"node-name\":\"memrw\",\"foo\":1}");
    assert_string_equal(msg, "Parameter 'foo' is unexpected");
    free(msg);

    json_t *q = block_export_query();
    assert_int_equal(json_array_size(q), 2);
    /* Newest first, as QEMU lists them. */
    assert_string_equal(json_string_value(json_object_get(json_array_get(q, 0), "id")), "r");
    assert_string_equal(json_string_value(json_object_get(json_array_get(q, 1), "node-name")), "memrw");
    json_decref(q);
    assert_true(block_export_uses_node("memro"));
    assert_false(block_export_uses_node("nosuch"));
}

static void test_flags(void **state)
{
    struct nbd_handle *h = connect_to("disk", true);
    assert_int_equal(nbd_get_size(h), SIZE);
    assert_int_equal(nbd_is_read_only(h), 0);
    assert_int_equal(nbd_can_multi_conn(h), 1);
    assert_int_equal(nbd_can_fast_zero(h), 1);
    assert_int_equal(nbd_can_trim(h), 1);
    assert_int_equal(nbd_can_cache(h), 1);
    assert_int_equal(nbd_can_df(h), 1);
    assert_int_equal(nbd_can_meta_context(h, "base:allocation"), 1);
    assert_int_equal(nbd_can_meta_context(h, "qemu:allocation-depth"), 1);
    assert_int_equal(nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM), 32 * 1024 * 1024);
    nbd_close(h);

    h = connect_to("memro", true);
    assert_int_equal(nbd_is_read_only(h), 1);
    assert_int_equal(nbd_can_trim(h), 0);
    assert_int_equal(nbd_can_zero(h), 0);
    assert_int_equal(nbd_can_flush(h), 1);
    assert_int_equal(nbd_can_meta_context(h, "qemu:allocation-depth"), 0);
    /* Writes to a read-only export fail with EINVAL, as with qsd 7.2. */
    char buf[512] = { 0 };
    assert_int_equal(nbd_set_strict_mode(h, 0), 0);
    assert_int_equal(nbd_pwrite(h, buf, sizeof(buf), 0, 0), -1);
    assert_int_equal(nbd_get_errno(), EINVAL);
    nbd_close(h);
}

typedef struct Extents {
    uint32_t v[64];
    size_t n;
} Extents;

static int extent_cb(void *opaque, const char *metacontext, uint64_t offset,
                     uint32_t *entries, size_t nr, int *error)
{
    Extents *e = opaque;
    if (strcmp(metacontext, "base:allocation") != 0) {
        return 0;
    }
    for (size_t i = 0; i < nr && e->n < 64; i++) {
        e->v[e->n++] = entries[i];
    }
    return 0;
}

static int chunk_cb(void *opaque, const void *subbuf, size_t count,
                    uint64_t offset, unsigned status, int *error)
{
    (*(int *)opaque)++;
    return 0;
}

static void test_io(void **state)
{
    struct nbd_handle *h = connect_to("disk", true);
    static uint8_t buf[256 * 1024], back[256 * 1024];

    memset(buf, 0xab, sizeof(buf));
    assert_int_equal(nbd_pwrite(h, buf, 4096, 65536, LIBNBD_CMD_FLAG_FUA), 0);
    assert_int_equal(nbd_pread(h, back, 4096, 65536, 0), 0);
    assert_memory_equal(buf, back, 4096);
    /* A read spanning a hole and data. */
    assert_int_equal(nbd_pread(h, back, 131072, 0, 0), 0);
    for (int i = 0; i < 65536; i++) {
        assert_int_equal(back[i], 0);
    }
    assert_memory_equal(back + 65536, buf, 4096);
    int chunks = 0;
    nbd_chunk_callback ccb = { .callback = chunk_cb, .user_data = &chunks };
    assert_int_equal(nbd_pread_structured(h, back, 131072, 0, ccb, 0), 0);
    assert_int_equal(chunks, 2);        /* a hole, then data */
    chunks = 0;
    assert_int_equal(nbd_pread_structured(h, back, 131072, 0, ccb,
                                          LIBNBD_CMD_FLAG_DF), 0);
    assert_int_equal(chunks, 1);        /* DF: one data chunk */
    assert_memory_equal(back + 65536, buf, 4096);

    Extents e = { .n = 0 };
    nbd_extent_callback cb = { .callback = extent_cb, .user_data = &e };
    assert_int_equal(nbd_block_status(h, 4 * 65536, 0, cb, 0), 0);
    assert_int_equal(e.n, 6);
    assert_int_equal(e.v[0], 65536);
    assert_int_equal(e.v[1], NBD_STATE_HOLE | NBD_STATE_ZERO);
    assert_int_equal(e.v[2], 65536);
    assert_int_equal(e.v[3], 0);
    assert_int_equal(e.v[4], 2 * 65536);
    assert_int_equal(e.v[5], NBD_STATE_HOLE | NBD_STATE_ZERO);

    e.n = 0;
    assert_int_equal(nbd_block_status(h, 4 * 65536, 0, cb,
                                      LIBNBD_CMD_FLAG_REQ_ONE), 0);
    assert_int_equal(e.n, 2);

    assert_int_equal(nbd_zero(h, 65536, 65536, 0), 0);
    assert_int_equal(nbd_pread(h, back, 4096, 65536, 0), 0);
    for (int i = 0; i < 4096; i++) {
        assert_int_equal(back[i], 0);
    }
    assert_int_equal(nbd_zero(h, 4096, 4096, LIBNBD_CMD_FLAG_FAST_ZERO |
                                             LIBNBD_CMD_FLAG_NO_HOLE), 0);
    assert_int_equal(nbd_pwrite(h, buf, 8192, 8192, 0), 0);
    assert_int_equal(nbd_trim(h, 65536, SIZE - 65536, 0), 0);
    assert_int_equal(nbd_flush(h, 0), 0);
    if (nbd_cache(h, SIZE, 0, 0) != 0) {
        fail_msg("cache: %s", nbd_get_error());
    }
    assert_int_equal(nbd_pread(h, back, 8192, 8192, 0), 0);
    assert_memory_equal(back, buf, 8192);

    /* Past the end: EINVAL for reads and writes (as qsd 7.2). */
    assert_int_equal(nbd_set_strict_mode(h, 0), 0);
    assert_int_equal(nbd_pread(h, back, 1024, SIZE - 512, 0), -1);
    assert_int_equal(nbd_get_errno(), EINVAL);
    assert_int_equal(nbd_pwrite(h, buf, 1024, SIZE - 512, 0), -1);
    assert_int_equal(nbd_get_errno(), EINVAL);
    /* A well-formed request after errors still works. */
    assert_int_equal(nbd_pread(h, back, 512, 0, 0), 0);
    nbd_close(h);
}

static void test_many_in_flight(void **state)
{
    struct nbd_handle *h = connect_to("disk", false);
    enum { N = 200 };
    static uint8_t bufs[N][4096];
    int64_t cookies[N];

    for (int i = 0; i < N; i++) {
        memset(bufs[i], i, 4096);
        cookies[i] = nbd_aio_pwrite(h, bufs[i], 4096, (uint64_t)i * 4096,
                                    NBD_NULL_COMPLETION, 0);
        assert_true(cookies[i] > 0);
    }
    while (nbd_aio_in_flight(h) > 0) {
        assert_int_not_equal(nbd_poll(h, -1), -1);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(nbd_aio_command_completed(h, cookies[i]), 1);
    }
    for (int i = 0; i < N; i++) {
        cookies[i] = nbd_aio_pread(h, bufs[i], 4096, (uint64_t)i * 4096,
                                   NBD_NULL_COMPLETION, 0);
    }
    while (nbd_aio_in_flight(h) > 0) {
        assert_int_not_equal(nbd_poll(h, -1), -1);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(nbd_aio_command_completed(h, cookies[i]), 1);
        assert_int_equal(bufs[i][0], (uint8_t)i);
        assert_int_equal(bufs[i][4095], (uint8_t)i);
    }
    nbd_close(h);
}

static void test_export_delete(void **state)
{
    Error *err = NULL;
    struct nbd_handle *h = connect_to("memro", false);
    json_t *safe = json_pack("{s:s}", "id", "r");

    assert_false(block_export_del(safe, &err));
    assert_string_equal(error_get_pretty(err), "export 'r' still in use");
    error_free(err);
    err = NULL;

    int before = deleted_events;
    json_t *hard = json_pack("{s:s, s:s}", "id", "r", "mode", "hard");
    assert_true(block_export_del(hard, &err));
    assert_int_equal(deleted_events, before + 1);
    assert_string_equal(last_deleted, "r");
    char buf[512];
    assert_int_equal(nbd_pread(h, buf, 512, 0, 0), -1);
    nbd_close(h);

    assert_false(block_export_del(hard, &err));
    assert_string_equal(error_get_pretty(err), "Export 'r' is not found");
    error_free(err);
    json_decref(safe);
    json_decref(hard);
    assert_false(block_export_uses_node("memro"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_errors),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_io),
        cmocka_unit_test(test_many_in_flight),
        cmocka_unit_test(test_export_delete),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
