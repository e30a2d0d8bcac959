/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QEMU's "null-co" and "null-aio" protocol drivers: a node of
 * a given size (1 GiB unless "size" says otherwise) that stores nothing.
 * Writes succeed and are dropped; reads give zeroes.  QEMU leaves the
 * read buffer untouched unless "read-zeroes" is on; strata always
 * zeroes it (never hands out stale memory), and reports the data as
 * zero only when "read-zeroes" is on, as QEMU's block status does.
 * "latency-ns" delays every request.  Tests and benchmarks use it as a
 * bottomless disk: `null-co://`, `driver=null-co,size=64M`.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/block_core.h"
#include "util/cleanup.h"
#include "util/keyval.h"

typedef struct NullState {
    uint64_t latency_ns;
    bool read_zeroes;
} NullState;

/* Only "null-co://" (or "null-aio://") names the driver; options do
 * the rest. */
static bool null_parse_filename(const char *filename, json_t *opts,
                                Error **errp)
{
    const char *drv = json_string_value(json_object_get(opts, "driver"));
    char want[32];
    snprintf(want, sizeof(want), "%s://", drv ? drv : "null-co");
    if (strcmp(filename, want) != 0) {
        error_setg(errp, "The only allowed filename for this driver is '%s'",
                   want);
        return false;
    }
    json_object_del(opts, "filename");
    return true;
}

static bool null_open(BlockNode *bs, json_t *opts, int flags, Error **errp)
{
    NullState *s = bs->opaque;
    uint64_t size, latency;
    if (!opt_get_size(opts, "size", 1ull << 30, &size, errp) ||
        !opt_get_uint64(opts, "latency-ns", 0, &latency, errp) ||
        !opt_get_bool(opts, "read-zeroes", false, &s->read_zeroes, errp)) {
        return false;
    }
    if (size > INT64_MAX) {
        error_setg(errp, "Parameter 'size' expects a non-negative number "
                   "below 2^63");
        return false;
    }
    if (latency > INT64_MAX) {
        error_setg(errp, "latency-ns is invalid");
        return false;
    }
    json_object_del(opts, "size");
    json_object_del(opts, "latency-ns");
    json_object_del(opts, "read-zeroes");
    /* A name given as an option ("filename": "null-co://") is ignored,
     * as QEMU ignores it. */
    json_object_del(opts, "filename");
    s->latency_ns = latency;
    atomic_store(&bs->total_size, size);
    return true;
}

static int null_delay(BlockNode *bs)
{
    NullState *s = bs->opaque;
    if (s->latency_ns) {
        struct timespec ts = {
            .tv_sec = (time_t)(s->latency_ns / 1000000000u),
            .tv_nsec = (long)(s->latency_ns % 1000000000u),
        };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        }
    }
    return 0;
}

static int null_pread(BlockNode *bs, uint64_t offset, uint64_t bytes,
                      void *buf, int flags)
{
    memset(buf, 0, bytes);
    return null_delay(bs);
}

static int null_pwrite(BlockNode *bs, uint64_t offset, uint64_t bytes,
                       const void *buf, int flags)
{
    return null_delay(bs);
}

static int null_pwrite_zeroes(BlockNode *bs, uint64_t offset, uint64_t bytes,
                              int flags)
{
    return null_delay(bs);
}

static int null_flush(BlockNode *bs)
{
    return null_delay(bs);
}

static int null_block_status(BlockNode *bs, uint64_t offset, uint64_t bytes,
                             uint64_t *pnum, uint64_t *map, BlockNode **file)
{
    NullState *s = bs->opaque;
    *pnum = bytes;
    if (map) {
        *map = offset;
    }
    if (file) {
        *file = bs;
    }
    return BLOCK_STATUS_OFFSET_VALID |
           (s->read_zeroes ? BLOCK_STATUS_ZERO | BLOCK_STATUS_ALLOCATED : 0);
}

static int64_t null_allocated_size(BlockNode *bs)
{
    return 0;
}

static const char *const null_strong_options[] = { "size", "read-zeroes",
                                                   NULL };

/* "null-co://" while only the driver, a filename or the latency were
 * given; any other option needs "json:". */
static char *null_exact_filename(BlockNode *bs, const json_t *full)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)full, key, v) {
        if (strcmp(key, "driver") && strcmp(key, "filename") &&
            strcmp(key, "latency-ns")) {
            return NULL;
        }
    }
    char *out = NULL;
    if (asprintf(&out, "%s://", bs->drv->format_name) < 0) {
        return NULL;
    }
    return out;
}

#define NULL_DRIVER_CALLBACKS                              \
    .state_size = sizeof(NullState),                       \
    .is_protocol = true,                                   \
    .no_image_info = true,                                 \
    .parse_filename = null_parse_filename,                 \
    .strong_options = null_strong_options,                 \
    .exact_filename = null_exact_filename,                 \
    .open = null_open,                                     \
    .pread = null_pread,                                   \
    .pwrite = null_pwrite,                                 \
    .pwrite_zeroes = null_pwrite_zeroes,                   \
    .flush = null_flush,                                   \
    .block_status = null_block_status,                     \
    .get_allocated_file_size = null_allocated_size

const BlockDriver bdrv_null_co = {
    .format_name = "null-co",
    NULL_DRIVER_CALLBACKS,
};

const BlockDriver bdrv_null_aio = {
    .format_name = "null-aio",
    NULL_DRIVER_CALLBACKS,
};
