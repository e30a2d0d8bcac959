/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for the file and raw drivers through the public API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../test-tmpdir.h"
#include "block/block_core.h"
#include "util/keyval.h"

#include "filefmt.h"


static char *path(const char *name)
{
    static char buf[256];
    snprintf(buf, sizeof(buf), "%s/%s", test_dir, name);
    return buf;
}

static void create_raw(const char *file, const char *opts_kv)
{
    Error *err = NULL;
    json_t *opts = keyval_parse(opts_kv, NULL, &err);
    assert_non_null(opts);
    if (!block_create("raw", file, opts, &err)) {
        fail_msg("create: %s", error_get_pretty(err));
    }
    json_decref(opts);
}

static BlockNode *open_img(const char *file, const char *fmt, int flags)
{
    Error *err = NULL;
    BlockNode *bs = block_open_image(file, fmt, flags, &err);
    if (!bs) {
        fail_msg("open %s: %s", file, error_get_pretty(err));
    }
    return bs;
}

static void test_create_rw(void **state)
{
    char *f = path("a.img");
    create_raw(f, "size=1M");
    struct stat st;
    assert_int_equal(stat(f, &st), 0);
    assert_int_equal(st.st_size, 1 << 20);

    BlockNode *bs = open_img(f, NULL, BLOCK_O_RDWR);
    assert_string_equal(block_node_driver_name(bs), "raw");
    assert_string_equal(block_node_driver_name(bs->file), "file");
    assert_int_equal(block_node_size(bs), 1 << 20);
    assert_true(block_node_name(bs)[0] == '#');

    char buf[4096], out[4096];
    memset(buf, 0xab, sizeof(buf));
    assert_int_equal(block_write(bs, 4096, sizeof(buf), buf, BLOCK_REQ_FUA), 0);
    assert_int_equal(block_read(bs, 4096, sizeof(out), out, 0), 0);
    assert_memory_equal(buf, out, sizeof(buf));
    /* Unaligned, byte granular. */
    assert_int_equal(block_write(bs, 4097, 3, "xyz", 0), 0);
    assert_int_equal(block_read(bs, 4096, 5, out, 0), 0);
    assert_memory_equal(out, "\xabxyz\xab", 5);

    /* Bounds. */
    assert_int_equal(block_read(bs, (1 << 20) - 1, 2, out, 0), -EIO);
    assert_int_equal(block_write(bs, 1 << 20, 1, out, 0), -EIO);
    assert_int_equal(block_read(bs, UINT64_MAX - 1, 2, out, 0), -EINVAL);
    assert_int_equal(block_write(bs, 0, 0, out, 0), 0);

    /* Block status: data where written (the first block too, which
     * create writes as QEMU does), zero (hole) elsewhere. */
    uint64_t pnum, map;
    BlockNode *file;
    int ret = block_status(bs, 0, 1 << 20, &pnum, &map, &file);
    assert_true(ret >= 0);
    assert_true(ret & BLOCK_STATUS_DATA);
    assert_true(ret & BLOCK_STATUS_ALLOCATED);
    assert_int_equal(pnum, 8192);
    ret = block_status(bs, 8192, 1 << 20, &pnum, &map, &file);
    assert_true(ret & BLOCK_STATUS_ZERO);
    assert_int_equal(pnum, (1 << 20) - 8192);
    ret = block_status(bs, 4096, 1 << 20, &pnum, &map, &file);
    assert_true(ret & BLOCK_STATUS_DATA);
    assert_true(ret & BLOCK_STATUS_OFFSET_VALID);
    assert_int_equal(map, 4096);
    assert_ptr_equal(file, bs->file);
    int depth = -1;
    ret = block_status_above(bs, NULL, 4096, 1 << 20, &pnum, NULL, NULL, &depth);
    assert_true(ret & BLOCK_STATUS_DATA);
    assert_int_equal(depth, 1);

    /* Write zeroes with unmap only deallocates with discard=unmap; it
     * reads back as zeroes either way. */
    assert_int_equal(block_write_zeroes(bs, 4096, 4096, BLOCK_REQ_MAY_UNMAP), 0);
    assert_int_equal(block_read(bs, 4096, 4096, out, 0), 0);
    memset(buf, 0, sizeof(buf));
    assert_memory_equal(buf, out, 4096);
    assert_int_equal(block_discard(bs, 0, 4096), 0);
    assert_int_equal(block_flush(bs), 0);
    assert_true(block_allocated_file_size(bs) >= 0);

    Error *err = NULL;
    assert_true(block_truncate(bs, 2 << 20, false, PREALLOC_OFF, &err));
    assert_int_equal(block_node_size(bs), 2 << 20);
    assert_int_equal(stat(f, &st), 0);
    assert_int_equal(st.st_size, 2 << 20);
    block_node_unref(bs);
}

static void test_refresh_size(void **state)
{
    char *f = path("grow.img");
    create_raw(f, "size=64k");
    BlockNode *bs = open_img(f, "raw", BLOCK_O_RDWR);
    assert_int_equal(truncate(f, 128 * 1024), 0);
    assert_int_equal(block_refresh_size(bs), 128 * 1024);
    assert_int_equal(block_node_size(bs), 128 * 1024);
    assert_int_equal(block_node_size(bs->file), 128 * 1024);
    block_node_unref(bs);
}

/* A format that keeps metadata in its file (like qcow2) for lock tests. */
static bool meta_open(BlockNode *bs, json_t *opts, int flags, Error **errp)
{
    bs->file = block_open_child(bs, opts, "file", flags, errp);
    if (!bs->file) {
        return false;
    }
    bs->total_size = block_node_size(bs->file);
    return true;
}

static const BlockDriver meta_driver = {
    .format_name = "test-meta",
    .is_format = true,
    .has_metadata = true,
    .supports_backing = true,
    .open = meta_open,
    .pread = filefmt_pread,
};

static BlockNode *open_meta(const char *file, int flags, Error **errp)
{
    return filefmt_open(&meta_driver, file, flags, errp);
}

/* Which of QEMU's lock bytes another process would see taken:
 * "100 101 201" etc. */
static const char *held_bytes(const char *file)
{
    static char out[64];
    int fd = open(file, O_RDONLY);
    out[0] = '\0';
    for (int base = 100; base <= 200; base += 100) {
        for (int i = 0; i < 4; i++) {
            struct flock fl = { .l_whence = SEEK_SET, .l_start = base + i,
                                .l_len = 1, .l_type = F_WRLCK };
            assert_int_equal(fcntl(fd, F_OFD_GETLK, &fl), 0);
            if (fl.l_type != F_UNLCK) {
                snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%d",
                         out[0] ? " " : "", base + i);
            }
        }
    }
    close(fd);
    return out;
}

static void expect_lock_error_(BlockNode *bs, Error *err, const char *what,
                               const char *file)
{
    char want[512];
    assert_null(bs);
    snprintf(want, sizeof(want), "Failed to get %s lock", what);
    assert_non_null(err);
    assert_string_equal(error_get_pretty(err), want);
    snprintf(want, sizeof(want), "Is another process using the image "
             "[%s]?\n", file);
    assert_non_null(err->hint);
    assert_string_equal(err->hint, want);
    error_free(err);
}

/* The open must run before err is read. */
#define expect_lock_error(call, err, what, file)                           \
    do {                                                                   \
        BlockNode *bs_ = (call);                                           \
        expect_lock_error_(bs_, err, what, file);                          \
    } while (0)

static void test_locking(void **state)
{
    char *f = path("lock.img");
    create_raw(f, "size=64k");
    Error *err = NULL;

    /* Lock bytes exactly as QEMU 7.2 takes them (seen in /proc/locks with
     * qemu-io): qcow2 rw 100 101 103 201 203, qcow2 ro 100 201 203,
     * raw rw 100 101, raw ro 100, force-share 100. */
    BlockNode *bs = open_meta(f, BLOCK_O_RDWR, &err);
    assert_non_null(bs);
    assert_string_equal(held_bytes(f), "100 101 103 201 203");
    /* OFD locks conflict between open file descriptions even in one
     * process, so a second open behaves like another process. */
    expect_lock_error(open_meta(f, BLOCK_O_RDWR, &err), err, "\"write\"", f);
    err = NULL;
    expect_lock_error(open_meta(f, 0, &err), err, "shared \"write\"", f);
    err = NULL;
    expect_lock_error(block_open_image(f, "raw", BLOCK_O_RDWR, &err), err,
                      "\"write\"", f);
    err = NULL;
    BlockNode *shared = open_meta(f, BLOCK_O_FORCE_SHARE, &err);
    assert_non_null(shared);
    block_node_unref(shared);
    /* A raw reader, like qemu-img info on a raw image, does not care. */
    shared = open_img(f, "raw", 0);
    block_node_unref(shared);
    /* create refuses to truncate an image in use */
    json_t *o = json_pack("{s:I}", "size", (json_int_t)4096);
    assert_false(block_create("file", f, o, &err));
    assert_non_null(strstr(error_get_pretty(err), "lock"));
    error_free(err);
    err = NULL;
    json_decref(o);
    block_node_unref(bs);
    assert_string_equal(held_bytes(f), "");

    bs = open_meta(f, 0, &err);
    assert_string_equal(held_bytes(f), "100 201 203");
    BlockNode *bs2 = open_meta(f, 0, &err);
    assert_non_null(bs2);
    expect_lock_error(open_meta(f, BLOCK_O_RDWR, &err), err, "\"write\"", f);
    err = NULL;
    block_node_unref(bs);
    block_node_unref(bs2);

    bs = open_meta(f, BLOCK_O_FORCE_SHARE, &err);
    assert_string_equal(held_bytes(f), "100");
    bs2 = open_meta(f, BLOCK_O_RDWR, &err);
    assert_non_null(bs2);
    block_node_unref(bs2);
    block_node_unref(bs);

    /* raw shares writes, as QEMU's raw does. */
    bs = open_img(f, "raw", BLOCK_O_RDWR);
    assert_string_equal(held_bytes(f), "100 101");
    bs2 = open_img(f, "raw", BLOCK_O_RDWR);
    expect_lock_error(open_meta(f, 0, &err), err, "shared \"write\"", f);
    err = NULL;
    block_node_unref(bs2);
    block_node_unref(bs);
    bs = open_img(f, "raw", 0);
    assert_string_equal(held_bytes(f), "100");
    block_node_unref(bs);

    /* A file node given by name to a metadata format takes its locks. */
    json_t *opts = json_pack("{s:s, s:s, s:s}", "driver", "file",
                             "node-name", "lockf", "filename", f);
    BlockNode *fnode = block_node_open(opts, &err);
    json_decref(opts);
    assert_non_null(fnode);
    /* As in QEMU, a node nobody uses needs no permission: no locks. */
    assert_string_equal(held_bytes(f), "");
    opts = json_pack("{s:s}", "file", "lockf");
    bs = block_node_open_driver(&meta_driver, opts, BLOCK_O_RDWR, &err);
    json_decref(opts);
    assert_non_null(bs);
    assert_string_equal(held_bytes(f), "100 101 103 201 203");
    block_node_unref(bs);
    block_node_unref(fnode);

    /* A user (an NBD export) of a raw node: its permissions reach the
     * file, as qsd's writable raw export holds 100, 101 and 203. */
    opts = json_pack("{s:s, s:{s:s, s:s}}", "driver", "raw", "file",
                     "driver", "file", "filename", f);
    bs = block_node_open(opts, &err);
    json_decref(opts);
    assert_non_null(bs);
    assert_string_equal(held_bytes(f), "");
    uint64_t exp_perm = BLOCK_PERM_CONSISTENT_READ | BLOCK_PERM_WRITE;
    uint64_t exp_shared = BLOCK_PERM_ALL & ~(uint64_t)BLOCK_PERM_RESIZE;
    assert_true(block_node_add_perm(bs, exp_perm, exp_shared, &err));
    assert_string_equal(held_bytes(f), "100 101 203");
    assert_true(block_node_add_perm(bs, BLOCK_PERM_CONSISTENT_READ, exp_shared,
                                    &err));
    block_node_del_perm(bs, exp_perm, exp_shared);
    assert_string_equal(held_bytes(f), "100 203");
    /* Another process's resize (a qcow2 writer) now conflicts. */
    expect_lock_error(open_meta(f, BLOCK_O_RDWR, &err), err, "\"resize\"", f);
    err = NULL;
    block_node_del_perm(bs, BLOCK_PERM_CONSISTENT_READ, exp_shared);
    assert_string_equal(held_bytes(f), "");
    block_node_unref(bs);

    /* locking=off takes no locks */
    bs = open_meta(f, BLOCK_O_RDWR, &err);
    opts = json_pack("{s:s, s:s, s:s}", "driver", "file", "filename", f,
                     "locking", "off");
    BlockNode *nolock = block_node_open(opts, &err);
    assert_non_null(nolock);
    json_decref(opts);
    block_node_unref(nolock);
    block_node_unref(bs);
}

static void test_raw_window(void **state)
{
    char *f = path("win.img");
    create_raw(f, "size=1M");
    Error *err = NULL;
    json_t *opts = keyval_parse("driver=raw,node-name=win,offset=65536,"
                                "size=131072,file.driver=file,file.filename=",
                                NULL, &err);
    json_object_set_new(json_object_get(opts, "file"), "filename", json_string(f));
    BlockNode *bs = block_node_open(opts, &err);
    if (!bs) {
        fail_msg("%s", error_get_pretty(err));
    }
    assert_int_equal(block_node_size(bs), 131072);
    assert_ptr_equal(block_node_find("win"), bs);
    assert_int_equal(block_write(bs, 0, 4, "abcd", 0), 0);
    char out[4];
    assert_int_equal(block_read(bs->file, 65536, 4, out, 0), 0);
    assert_memory_equal(out, "abcd", 4);
    assert_int_equal(block_write(bs, 131072, 1, "x", 0), -EIO);
    assert_false(block_truncate(bs, 4096, false, PREALLOC_OFF, &err));
    assert_string_equal(error_get_pretty(err), "Cannot resize fixed-size raw disks");
    error_free(err);
    err = NULL;
    block_node_unref(bs);
    assert_null(block_node_find("win"));

    json_object_set_new(opts, "size", json_string("1000"));
    assert_null(block_node_open(opts, &err));
    assert_string_equal(error_get_pretty(err), "Specified size is not multiple of 512");
    error_free(err);
    err = NULL;
    json_object_set_new(opts, "size", json_string("1048576"));
    assert_null(block_node_open(opts, &err));
    assert_string_equal(error_get_pretty(err), "The sum of offset (65536) and size "
                        "(1048576) has to be smaller or equal to the  actual size "
                        "of the containing file (1048576)");
    error_free(err);
    err = NULL;
    json_object_del(opts, "size");
    json_object_set_new(opts, "offset", json_string("2097152"));
    assert_null(block_node_open(opts, &err));
    assert_string_equal(error_get_pretty(err), "Offset (2097152) cannot be greater "
                        "than size of the containing file (1048576)");
    error_free(err);
    json_decref(opts);
}

static void test_direct(void **state)
{
    char *f = path("direct.img");
    create_raw(f, "size=1M");
    Error *err = NULL;
    BlockNode *bs = block_open_image(f, "raw", BLOCK_O_RDWR | BLOCK_O_NOCACHE, &err);
    if (!bs) {
        /* tmpfs has no O_DIRECT */
        assert_non_null(strstr(error_get_pretty(err), "O_DIRECT"));
        error_free(err);
        skip();
    }
    assert_true(bs->file->cache_direct);
    assert_true(bs->file->request_alignment >= 512);
    char buf[1000];
    memset(buf, 'q', sizeof(buf));
    assert_int_equal(block_write(bs, 100, sizeof(buf), buf, 0), 0);
    char out[1200];
    assert_int_equal(block_read(bs, 0, sizeof(out), out, 0), 0);
    for (int i = 0; i < 1200; i++) {
        assert_int_equal(out[i], i >= 100 && i < 1100 ? 'q' : 0);
    }
    block_node_unref(bs);
}

static void test_errors(void **state)
{
    Error *err = NULL;
    assert_null(block_open_image(path("nope.img"), "raw", 0, &err));
    char want[512];
    snprintf(want, sizeof(want), "Could not open '%s': No such file or directory",
             path("nope.img"));
    assert_string_equal(error_get_pretty(err), want);
    error_free(err);
    err = NULL;

    json_t *o = json_pack("{s:s}", "size", "1M");
    json_object_set_new(o, "bogus", json_string("1"));
    assert_false(block_create("raw", path("c.img"), o, &err));
    assert_string_equal(error_get_pretty(err), "Invalid parameter 'bogus'");
    error_free(err);
    err = NULL;
    json_decref(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_rw),
        cmocka_unit_test(test_refresh_size),
        cmocka_unit_test(test_locking),
        cmocka_unit_test(test_raw_window),
        cmocka_unit_test(test_direct),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, test_tmpdir_setup, test_tmpdir_teardown);
}
