/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for block/open.c and block/graph.c: generic options with
 * QEMU's messages, node names, backing chains, json: filenames. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
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
    static char buf[4][256];
    static int n;
    char *b = buf[n++ % 4];
    snprintf(b, 256, "%s/%s", test_dir, name);
    return b;
}

static void write_file(const char *file, const char *content)
{
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs(content, f);
    /* pad to 64 KiB so nodes have a size */
    assert_int_equal(ftruncate(fileno(f), 65536), 0);
    fclose(f);
}

static char *open_error(const char *kv)
{
    static char msg[512];
    Error *err = NULL;
    json_t *opts = keyval_parse(kv, NULL, &err);
    assert_non_null(opts);
    BlockNode *bs = block_node_open(opts, &err);
    json_decref(opts);
    if (bs) {
        fail_msg("open of '%s' succeeded", kv);
    }
    snprintf(msg, sizeof(msg), "%s", error_get_pretty(err));
    error_free(err);
    return msg;
}

static BlockNode *open_ok(const char *kv)
{
    Error *err = NULL;
    json_t *opts = keyval_parse(kv, NULL, &err);
    assert_non_null(opts);
    BlockNode *bs = block_node_open(opts, &err);
    json_decref(opts);
    if (!bs) {
        fail_msg("open of '%s': %s", kv, error_get_pretty(err));
    }
    return bs;
}

static void test_generic_errors(void **state)
{
    char kv[512];
    const char *f = path("g.img");
    write_file(f, "");
#define K(fmt, ...) (snprintf(kv, sizeof(kv), fmt, __VA_ARGS__), kv)
    /* Texts as qemu-storage-daemon 7.2 prints them. */
    assert_string_equal(open_error(K("driver=file,filename=%s,read-only=foo", f)),
                        "Parameter 'read-only' expects 'on' or 'off'");
    assert_string_equal(open_error(K("driver=file,filename=%s,discard=foo", f)),
                        "Parameter 'discard' does not accept value 'foo'");
    assert_string_equal(open_error(K("driver=file,filename=%s,foo=bar", f)),
                        "Parameter 'foo' is unexpected");
    assert_string_equal(open_error(K("driver=file,node-name=1a,filename=%s", f)),
                        "Invalid node-name: '1a'");
    assert_string_equal(open_error(K("driver=file,node-name=abcdefghijabcdefghij"
                                     "abcdefghijab,filename=%s", f)),
                        "Node name too long");
    assert_string_equal(open_error(K("driver=file,filename=%s,force-share=on", f)),
                        "force-share=on can only be used with read-only images");
    assert_string_equal(open_error(K("driver=file,filename=%s,locking=maybe", f)),
                        "Parameter 'locking' does not accept value 'maybe'");
    assert_string_equal(open_error(K("driver=file,filename=%s,cache.direct=x", f)),
                        "Parameter 'cache.direct' expects 'on' or 'off'");
    assert_string_equal(open_error(K("driver=file,filename=%s,aio=native", f)),
                        "aio=native was specified, but it requires cache.direct=on, "
                        "which was not specified.");
    assert_string_equal(open_error(K("driver=file,filename=%s,aio=bad", f)),
                        "Parameter 'aio' does not accept value 'bad'");
    assert_string_equal(open_error("driver=nope,node-name=a"),
                        "Parameter 'driver' does not accept value 'nope'");
    assert_string_equal(open_error("node-name=a"), "Parameter 'driver' is missing");
    assert_string_equal(open_error("driver=file,node-name=a"),
                        "Parameter 'filename' is missing");
    assert_string_equal(open_error("driver=raw,node-name=a,file=nope"),
                        "Cannot find device='nope' nor node-name='nope'");
    assert_string_equal(open_error("driver=raw,node-name=a"),
                        "A block device must be specified for \"file\"");
    assert_string_equal(open_error(K("driver=raw,file.driver=file,file.filename=%s,"
                                     "offset=2M", f)),
                        "Parameter 'offset' expects integer");
    assert_string_equal(open_error(K("driver=raw,file.driver=file,file.filename=%s,"
                                     "file.bogus=1", f)),
                        "Parameter 'bogus' is unexpected");

    BlockNode *a = open_ok(K("driver=file,node-name=a,filename=%s", f));
    assert_string_equal(open_error(K("driver=file,node-name=a,filename=%s,"
                                     "locking=off", f)),
                        "Duplicate nodes with node-name='a'");
    /* Generic options land on the node and are inherited by children. */
    BlockNode *r = open_ok(K("driver=raw,node-name=r,read-only=on,force-share=on,"
                             "discard=unmap,cache.no-flush=on,detect-zeroes=off,"
                             "file.driver=file,file.filename=%s", f));
    assert_true(r->read_only && r->force_share && r->no_flush);
    assert_int_equal(r->discard, BLOCK_DISCARD_UNMAP);
    assert_true(r->file->read_only && r->file->force_share && r->file->no_flush);
    assert_int_equal(r->file->discard, BLOCK_DISCARD_UNMAP);
    assert_true(r->file->implicit_name);
    assert_int_equal(r->file->parents, 1);
    assert_string_equal(r->filename, f);
    block_node_unref(r);
    block_node_unref(a);
#undef K
}

typedef struct CountArg { int n; } CountArg;
static bool count_node(BlockNode *bs, void *opaque)
{
    ((CountArg *)opaque)->n++;
    return true;
}

static void test_graph(void **state)
{
    const char *f = path("graph.img");
    write_file(f, "");
    char kv[300];
    snprintf(kv, sizeof(kv), "driver=file,node-name=gf,filename=%s", f);
    BlockNode *file = open_ok(kv);
    BlockNode *raw = open_ok("driver=raw,node-name=gr,file=gf");
    assert_ptr_equal(raw->file, file);
    assert_int_equal(file->parents, 1);
    assert_int_equal(file->refcnt, 2);
    CountArg c = { 0 };
    block_graph_foreach(count_node, &c);
    assert_int_equal(c.n, 2);
    /* The raw node keeps the file node alive. */
    block_node_unref(file);
    assert_ptr_equal(block_node_find("gf"), file);
    block_node_unref(raw);
    assert_null(block_node_find("gf"));
    assert_null(block_node_find("gr"));
    c.n = 0;
    block_graph_foreach(count_node, &c);
    assert_int_equal(c.n, 0);
}

/* A format whose first bytes name its backing file: "B:<fmt>:<name>\n". */
static bool chain_open(BlockNode *bs, json_t *opts, int flags, Error **errp)
{
    bs->file = block_open_child(bs, opts, "file", flags, errp);
    if (!bs->file) {
        return false;
    }
    char buf[256] = { 0 };
    if (block_read(bs->file, 0, sizeof(buf) - 1, buf, 0) < 0) {
        error_setg(errp, "read failed");
        return false;
    }
    if (strncmp(buf, "B:", 2) == 0) {
        char *fmt = buf + 2;
        char *name = strchr(fmt, ':');
        *name++ = '\0';
        *strchr(name, '\n') = '\0';
        bs->backing_format = *fmt ? strdup(fmt) : NULL;
        bs->backing_file = strdup(name);
    }
    bs->total_size = block_node_size(bs->file);
    return true;
}

static const BlockDriver chain_driver = {
    .format_name = "test-chain",
    .is_format = true,
    .supports_backing = true,
    .open = chain_open,
    .pread = filefmt_pread,
};

static BlockNode *open_chain(const char *file, int flags, Error **errp)
{
    return filefmt_open(&chain_driver, file, flags, errp);
}

static void test_backing_chain(void **state)
{
    Error *err = NULL;
    assert_int_equal(mkdir(path("sub"), 0755), 0);
    write_file(path("sub/base.raw"), "");
    /* Relative names are relative to the overlay's directory. */
    write_file(path("sub/mid.img"), "B:raw:base.raw\n");
    char content[300];
    write_file(path("top.img"), "B::sub/mid.img\n");
    (void)content;

    /* top's backing has no format: probed (raw here, the test format is
     * not registered), so build the chain by hand for mid. */
    BlockNode *mid = open_chain(path("sub/mid.img"), BLOCK_O_RDWR, &err);
    if (!mid) {
        fail_msg("%s", error_get_pretty(err));
    }
    assert_non_null(mid->backing);
    assert_string_equal(block_node_driver_name(mid->backing), "raw");
    assert_string_equal(mid->backing->filename, path("sub/base.raw"));
    assert_true(mid->backing->read_only);
    assert_true(mid->backing->implicit_name);
    assert_int_equal(mid->backing->parents, 1);
    assert_false(mid->read_only);
    /* The backing is the one the image names: a plain name, and the
     * relative backing name resolves against the file's directory. */
    assert_string_equal(mid->filename, path("sub/mid.img"));
    char *full = block_full_backing_filename(mid, &err);
    assert_string_equal(full, path("sub/base.raw"));
    free(full);
    block_node_unref(mid);

    /* NO_BACKING leaves it closed. */
    mid = open_chain(path("sub/mid.img"), BLOCK_O_NO_BACKING, &err);
    assert_non_null(mid);
    assert_null(mid->backing);
    assert_string_equal(mid->backing_file, "base.raw");
    block_node_unref(mid);

    /* "backing": null means none; a node name links that node. */
    json_t *o = json_pack("{s:n, s:{s:s, s:s}}", "backing", "file", "driver",
                          "file", "filename", path("sub/mid.img"));
    mid = block_node_open_driver(&chain_driver, o, 0, &err);
    assert_non_null(mid);
    assert_null(mid->backing);
    /* Overriding the image's backing takes a json: name. */
    char jname[512];
    snprintf(jname, sizeof(jname), "json:{\"backing\": null, \"driver\": "
             "\"test-chain\", \"file\": {\"driver\": \"file\", \"filename\": "
             "\"%s\"}}", path("sub/mid.img"));
    assert_string_equal(mid->filename, jname);
    block_node_unref(mid);
    json_decref(o);

    /* Missing backing file: QEMU's prefix. */
    write_file(path("orphan.img"), "B:raw:nope.raw\n");
    assert_null(open_chain(path("orphan.img"), 0, &err));
    char want[512];
    snprintf(want, sizeof(want), "Could not open backing file: Could not open "
             "'%s': No such file or directory", path("nope.raw"));
    assert_string_equal(error_get_pretty(err), want);
    error_free(err);
    err = NULL;

    write_file(path("badfmt.img"), "B:foo:base.raw\n");
    assert_null(open_chain(path("badfmt.img"), 0, &err));
    assert_string_equal(error_get_pretty(err),
                        "Could not open backing file: Unknown driver 'foo'");
    error_free(err);
    err = NULL;
}

static void test_backing_loop(void **state)
{
    Error *err = NULL;
    /* A chain of registered formats cannot loop through the test driver,
     * so loop through a "json:" backing name using test-chain... which is
     * not registered either: use the loop check on self-reference. */
    write_file(path("self.img"), "B:raw:self.img\n");
    assert_null(open_chain(path("self.img"), 0, &err));
    assert_non_null(strstr(error_get_pretty(err), "forms a loop"));
    error_free(err);
}

static void test_json_filename_and_probe(void **state)
{
    Error *err = NULL;
    const char *f = path("j.img");
    write_file(f, "");
    char name[512];
    snprintf(name, sizeof(name), "json:{\"driver\":\"raw\",\"file.driver\":\"file\","
             "\"file.filename\":\"%s\"}", f);
    BlockNode *bs = block_open_image(name, NULL, 0, &err);
    if (!bs) {
        fail_msg("%s", error_get_pretty(err));
    }
    assert_string_equal(block_node_driver_name(bs), "raw");
    /* QEMU's bdrv_refresh_filename: opening the plain name rebuilds the
     * node, so that is its name. */
    assert_string_equal(bs->filename, f);
    assert_true(bs->read_only);
    block_node_unref(bs);

    /* Strong options (raw's offset) need JSON, in QEMU's text and key
     * order, with the values as the json: name wrote them. */
    char want[512];
    snprintf(name, sizeof(name), "json:{\"driver\":\"raw\",\"offset\":\"0\","
             "\"file\":{\"filename\":\"%s\",\"locking\":\"off\"}}", f);
    bs = block_open_image(name, NULL, 0, &err);
    if (!bs) {
        fail_msg("%s", error_get_pretty(err));
    }
    snprintf(want, sizeof(want), "json:{\"offset\": \"0\", \"driver\": \"raw\", "
             "\"file\": {\"driver\": \"file\", \"filename\": \"%s\"}}", f);
    assert_string_equal(bs->filename, want);
    block_node_unref(bs);

    /* Through blockdev-add, QAPI types the number. */
    json_t *opts = json_pack("{s:s, s:s, s:{s:s, s:s}}", "driver", "raw",
                             "offset", "0", "file", "driver", "file",
                             "filename", f);
    bs = block_node_open(opts, &err);
    json_decref(opts);
    if (!bs) {
        fail_msg("%s", error_get_pretty(err));
    }
    snprintf(want, sizeof(want), "json:{\"offset\": 0, \"driver\": \"raw\", "
             "\"file\": {\"driver\": \"file\", \"filename\": \"%s\"}}", f);
    assert_string_equal(bs->filename, want);
    block_node_unref(bs);

    assert_null(block_open_image("json:{\"filename\":\"x\"}", NULL, 0, &err));
    assert_string_equal(error_get_pretty(err), "Must specify either driver or file");
    error_free(err);
    err = NULL;

    snprintf(name, sizeof(name), "json:{\"file\":{\"filename\":\"%s\"}}", f);
    bs = block_open_image(name, NULL, 0, &err);
    assert_non_null(bs);
    assert_string_equal(block_node_driver_name(bs), "raw");
    block_node_unref(bs);

    assert_null(block_open_image("json:{\"driver\":\"raw\"}", NULL, 0, &err));
    assert_string_equal(error_get_pretty(err),
                        "A block device must be specified for \"file\"");
    error_free(err);
    err = NULL;

    assert_string_equal(block_probe_format(f, &err), "raw");
    FILE *fp = fopen(path("q.img"), "w");
    fwrite("QFI\xfb\0\0\0\3", 1, 8, fp);
    fclose(fp);
    if (block_find_driver("qcow2")) {
        assert_string_equal(block_probe_format(path("q.img"), &err), "qcow2");
    }
    assert_null(block_probe_format(path("none"), &err));
    error_free(err);
    err = NULL;

    /* force-share needs read-only */
    assert_null(block_open_image(f, "raw", BLOCK_O_RDWR | BLOCK_O_FORCE_SHARE, &err));
    assert_string_equal(error_get_pretty(err),
                        "force-share=on can only be used with read-only images");
    error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generic_errors),
        cmocka_unit_test(test_graph),
        cmocka_unit_test(test_backing_chain),
        cmocka_unit_test(test_backing_loop),
        cmocka_unit_test(test_json_filename_and_probe),
    };
    return cmocka_run_group_tests(tests, test_tmpdir_setup, test_tmpdir_teardown);
}
