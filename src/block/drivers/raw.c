/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the "raw" format driver: the file's bytes, optionally a
 * window of them (offset, size), with QEMU's raw-format options and
 * messages. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_core.h"
#include "util/cleanup.h"
#include "util/keyval.h"

typedef struct RawState {
    uint64_t offset;
    uint64_t size;
    bool has_size;
} RawState;

/* offset and size are QAPI integers (no suffixes) that QEMU then reads as
 * sizes, so negative numbers get the size message. */
static bool raw_get_int(json_t *opts, const char *key, uint64_t *out,
                        bool *present, Error **errp)
{
    json_t *v = json_object_get(opts, key);
    *present = v != NULL;
    *out = 0;
    if (!v) {
        return true;
    }
    bool negative = (json_is_integer(v) && json_integer_value(v) < 0) ||
                    (json_is_string(v) && json_string_value(v)[0] == '-');
    if (!negative) {
        if (json_is_string(v) || json_is_integer(v)) {
            if (!opt_get_uint64(opts, key, 0, out, errp)) {
                return false;
            }
            return true;
        }
        error_setg(errp, "Invalid parameter type for '%s', expected: integer", key);
        return false;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        (void)strtoll(s, &end, 0);
        if (*end || end == s) {
            error_setg(errp, "Parameter '%s' expects integer", key);
            return false;
        }
    }
    error_setg(errp, "Parameter '%s' expects a non-negative number below "
               "2^64", key);
    error_append_hint(errp, "Optional suffix k, M, G, T, P or E means kilo-, "
                      "mega-, giga-, tera-, peta-\nand exabytes, "
                      "respectively.\n");
    return false;
}

/* Recomputes the window against the current size of the file child. */
static bool raw_apply_window(BlockNode *bs, Error **errp)
{
    RawState *s = bs->opaque;
    uint64_t fsize = block_node_size(bs->file);
    if (s->offset > fsize) {
        error_setg(errp, "Offset (%" PRIu64 ") cannot be greater than size of "
                   "the containing file (%" PRIu64 ")", s->offset, fsize);
        return false;
    }
    if (s->has_size) {
        if (s->size > fsize - s->offset) {
            error_setg(errp, "The sum of offset (%" PRIu64 ") and size (%" PRIu64
                       ") has to be smaller or equal to the  actual size of the "
                       "containing file (%" PRIu64 ")", s->offset, s->size, fsize);
            return false;
        }
        bs->total_size = s->size;
    } else {
        bs->total_size = fsize - s->offset;
    }
    return true;
}

static bool raw_open(BlockNode *bs, json_t *opts, int flags, Error **errp)
{
    RawState *s = bs->opaque;
    bool has_offset;

    if (!raw_get_int(opts, "offset", &s->offset, &has_offset, errp) ||
        !raw_get_int(opts, "size", &s->size, &s->has_size, errp)) {
        return false;
    }
    json_object_del(opts, "offset");
    json_object_del(opts, "size");
    if (s->has_size && s->size % 512) {
        error_setg(errp, "Specified size is not multiple of 512");
        return false;
    }
    bs->file = block_open_child(bs, opts, "file", flags, errp);
    if (!bs->file) {
        return false;
    }
    if (!raw_apply_window(bs, errp)) {
        return false;
    }
    /* Alignment is the file's business: the core's RMW on the file node
     * handles it; pass requests through unchanged. */
    bs->request_alignment = 1;
    return true;
}

static int raw_pread(BlockNode *bs, uint64_t offset, uint64_t bytes,
                     void *buf, int flags)
{
    RawState *s = bs->opaque;
    return block_read(bs->file, offset + s->offset, bytes, buf, flags);
}

static int raw_pwrite(BlockNode *bs, uint64_t offset, uint64_t bytes,
                      const void *buf, int flags)
{
    RawState *s = bs->opaque;
    return block_write(bs->file, offset + s->offset, bytes, buf, flags);
}

static int raw_pwrite_zeroes(BlockNode *bs, uint64_t offset, uint64_t bytes,
                             int flags)
{
    RawState *s = bs->opaque;
    return block_write_zeroes(bs->file, offset + s->offset, bytes, flags);
}

static int raw_pdiscard(BlockNode *bs, uint64_t offset, uint64_t bytes)
{
    RawState *s = bs->opaque;
    return block_discard(bs->file, offset + s->offset, bytes);
}

static int raw_block_status(BlockNode *bs, uint64_t offset, uint64_t bytes,
                            uint64_t *pnum, uint64_t *map, BlockNode **file)
{
    RawState *s = bs->opaque;
    int ret = block_status(bs->file, offset + s->offset, bytes, pnum, map, file);
    if (ret == -EIO && offset + s->offset >= block_node_size(bs->file)) {
        /* The file shrank under us: what is gone reads as zeroes. */
        *pnum = bytes;
        return BLOCK_STATUS_ZERO;
    }
    if (ret < 0) {
        return ret;
    }
    return ret & ~(BLOCK_STATUS_EOF | BLOCK_STATUS_ALLOCATED);
}

static int64_t raw_refresh_size(BlockNode *bs)
{
    RawState *s = bs->opaque;
    int64_t fsize = block_refresh_size(bs->file);
    if (fsize < 0) {
        return fsize;
    }
    if (s->has_size) {
        return (int64_t)s->size;
    }
    if ((uint64_t)fsize < s->offset) {
        return 0;
    }
    return fsize - (int64_t)s->offset;
}

static bool raw_truncate(BlockNode *bs, uint64_t size, bool exact,
                         PreallocMode prealloc, Error **errp)
{
    RawState *s = bs->opaque;
    if (s->has_size) {
        error_setg(errp, "Cannot resize fixed-size raw disks");
        return false;
    }
    if (size > UINT64_MAX - s->offset) {
        error_setg(errp, "Image size is too large");
        return false;
    }
    if (!block_truncate(bs->file, size + s->offset, exact, prealloc, errp)) {
        return false;
    }
    bs->total_size = size;
    return true;
}

/* The rest are the file driver's, which creates the image. */
static const BlockCreateOpt raw_create_opts[] = {
    { "size", BLOCK_OPT_SIZE, "Virtual disk size", NULL },
    { NULL },
};

static bool raw_create(const char *filename, json_t *opts, Error **errp)
{
    /* The image is whole sectors, as qemu-img makes it: "create -f raw
     * x 1000" gives a 1024-byte file. */
    json_t *size = json_object_get(opts, "size");
    if (json_is_integer(size) && json_integer_value(size) > 0 &&
        json_integer_value(size) <= INT64_MAX - 511) {
        json_object_set_new(opts, "size", json_integer(
            (json_integer_value(size) + 511) / 512 * 512));
    }
    return block_create("file", filename, opts, errp);
}

static int raw_probe(const uint8_t *buf, size_t len, const char *filename)
{
    /* Anything is raw; every other format scores higher. */
    return 1;
}

/* A window changes what the node reads. */
static const char *const raw_strong_options[] = { "offset", "size", NULL };

const BlockDriver bdrv_raw = {
    .format_name = "raw",
    .state_size = sizeof(RawState),
    .is_format = true,
    .probe_fallback = true,
    .strong_options = raw_strong_options,
    .probe = raw_probe,
    .open = raw_open,
    .pread = raw_pread,
    .pwrite = raw_pwrite,
    .pwrite_zeroes = raw_pwrite_zeroes,
    .pdiscard = raw_pdiscard,
    .block_status = raw_block_status,
    .refresh_size = raw_refresh_size,
    .truncate = raw_truncate,
    .create = raw_create,
    .create_opts = raw_create_opts,
};
