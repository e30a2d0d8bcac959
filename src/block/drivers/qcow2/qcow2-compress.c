/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 compressed clusters: zlib raw deflate (window bits 12,
 * as QEMU writes them) and zstd frames, selected by the header's
 * compression_type.  Compressed data is followed on disk by whatever
 * shares its last sector, so decompression stops once the cluster is
 * complete instead of requiring the input to end exactly.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "block/drivers/qcow2/qcow2.h"

/* QEMU uses a 4 KiB window (-12: raw deflate without zlib header). */
#define QCOW2_ZLIB_WINDOW_BITS (-12)
/* Scratch buffers up to this size stay with their thread; bigger ones
 * (2 MiB clusters) are allocated per call, where the allocation is small
 * next to the work on the cluster. */
#define QCOW2_SCRATCH_KEEP (512u << 10)

/* Per-thread compression state.  Setting up a deflate stream allocates
 * and clears about 270 KiB, more than compressing a 64 KiB cluster
 * costs, so streams and contexts are made once per thread and reset
 * between clusters. */
typedef struct CompressCtx {
    z_stream deflate;
    z_stream inflate;
    bool deflate_ready;
    bool inflate_ready;
    ZSTD_CCtx *zstd_c;
    ZSTD_DCtx *zstd_d;
    void *scratch[QCOW2_SCRATCH_COUNT];
    size_t scratch_size[QCOW2_SCRATCH_COUNT];
    bool scratch_busy[QCOW2_SCRATCH_COUNT];
} CompressCtx;

static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;
static bool ctx_key_ok;

static void ctx_free(void *opaque)
{
    CompressCtx *c = opaque;
    if (c->deflate_ready) {
        deflateEnd(&c->deflate);
    }
    if (c->inflate_ready) {
        inflateEnd(&c->inflate);
    }
    ZSTD_freeCCtx(c->zstd_c);
    ZSTD_freeDCtx(c->zstd_d);
    for (unsigned i = 0; i < QCOW2_SCRATCH_COUNT; i++) {
        free(c->scratch[i]);
    }
    free(c);
}

static void ctx_key_init(void)
{
    ctx_key_ok = pthread_key_create(&ctx_key, ctx_free) == 0;
}

static CompressCtx *thread_ctx(void)
{
    pthread_once(&ctx_once, ctx_key_init);
    if (!ctx_key_ok) {
        return NULL;
    }
    CompressCtx *c = pthread_getspecific(ctx_key);
    if (!c) {
        c = calloc(1, sizeof(*c));
        if (c && pthread_setspecific(ctx_key, c) != 0) {
            free(c);
            c = NULL;
        }
    }
    return c;
}

void *qcow2_scratch_get(unsigned slot, size_t size)
{
    CompressCtx *c = slot < QCOW2_SCRATCH_COUNT ? thread_ctx() : NULL;
    if (!c || size > QCOW2_SCRATCH_KEEP || c->scratch_busy[slot]) {
        /* A nested user of the slot (through a backing chain) gets its
         * own buffer. */
        void *p = NULL;
        return posix_memalign(&p, 4096, size ? size : 1) == 0 ? p : NULL;
    }
    if (c->scratch_size[slot] < size) {
        size_t want = (size + 4095) & ~(size_t)4095;
        void *p = NULL;
        if (posix_memalign(&p, 4096, want) != 0) {
            return NULL;
        }
        free(c->scratch[slot]);
        c->scratch[slot] = p;
        c->scratch_size[slot] = want;
    }
    c->scratch_busy[slot] = true;
    return c->scratch[slot];
}

void qcow2_scratch_put(unsigned slot, void *buf)
{
    CompressCtx *c = slot < QCOW2_SCRATCH_COUNT && ctx_key_ok
                     ? pthread_getspecific(ctx_key) : NULL;
    if (c && buf && buf == c->scratch[slot]) {
        c->scratch_busy[slot] = false;
    } else {
        free(buf);
    }
}

static int64_t zlib_compress(const void *in, size_t in_len, void *out,
                             size_t max_out)
{
    CompressCtx *c = thread_ctx();
    if (!c) {
        return -ENOMEM;
    }
    z_stream *strm = &c->deflate;
    if (!c->deflate_ready) {
        memset(strm, 0, sizeof(*strm));
        if (deflateInit2(strm, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
                         QCOW2_ZLIB_WINDOW_BITS, 9,
                         Z_DEFAULT_STRATEGY) != Z_OK) {
            return -ENOMEM;
        }
        c->deflate_ready = true;
    } else if (deflateReset(strm) != Z_OK) {
        return -EIO;
    }
    strm->next_in = (Bytef *)in;
    strm->avail_in = in_len;
    strm->next_out = out;
    strm->avail_out = max_out;
    int ret = deflate(strm, Z_FINISH);
    if (ret == Z_STREAM_END) {
        return (int64_t)(max_out - strm->avail_out);
    }
    if (ret == Z_OK || ret == Z_BUF_ERROR) {
        return 0; /* did not fit: not worth compressing */
    }
    return -EIO;
}

static int zlib_decompress(const void *in, size_t in_len, void *out,
                           size_t out_len)
{
    CompressCtx *c = thread_ctx();
    if (!c) {
        return -ENOMEM;
    }
    z_stream *strm = &c->inflate;
    if (!c->inflate_ready) {
        memset(strm, 0, sizeof(*strm));
        if (inflateInit2(strm, QCOW2_ZLIB_WINDOW_BITS) != Z_OK) {
            return -ENOMEM;
        }
        c->inflate_ready = true;
    } else if (inflateReset(strm) != Z_OK) {
        return -EIO;
    }
    strm->next_in = (Bytef *)in;
    strm->avail_in = in_len;
    strm->next_out = out;
    strm->avail_out = out_len;
    int ret = inflate(strm, Z_FINISH);
    /* Z_BUF_ERROR with a full output: the cluster is complete and the
     * rest of the input is the padding of the last sector. */
    if ((ret != Z_STREAM_END && ret != Z_BUF_ERROR) || strm->avail_out != 0) {
        return -EIO;
    }
    return 0;
}

static int64_t zstd_compress(const void *in, size_t in_len, void *out,
                             size_t max_out)
{
    CompressCtx *c = thread_ctx();
    if (!c || (!c->zstd_c && !(c->zstd_c = ZSTD_createCCtx()))) {
        return -ENOMEM;
    }
    size_t ret = ZSTD_compressCCtx(c->zstd_c, out, max_out, in, in_len,
                                   ZSTD_CLEVEL_DEFAULT);
    if (ZSTD_isError(ret)) {
        if (ZSTD_getErrorCode(ret) == ZSTD_error_dstSize_tooSmall) {
            return 0;
        }
        return -EIO;
    }
    return ret >= max_out ? 0 : (int64_t)ret;
}

static int zstd_decompress(const void *in, size_t in_len, void *out,
                           size_t out_len)
{
    CompressCtx *c = thread_ctx();
    if (!c || (!c->zstd_d && !(c->zstd_d = ZSTD_createDCtx()))) {
        return -ENOMEM;
    }
    ZSTD_DCtx *dctx = c->zstd_d;
    /* A previous malformed cluster may have left a frame half decoded. */
    ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
    ZSTD_inBuffer input = { in, in_len, 0 };
    ZSTD_outBuffer output = { out, out_len, 0 };
    /* QEMU may split a cluster over several frames; keep going until the
     * cluster is complete. */
    while (output.pos < output.size) {
        size_t last_in = input.pos, last_out = output.pos;
        size_t ret = ZSTD_decompressStream(dctx, &output, &input);
        if (ZSTD_isError(ret)) {
            return -EIO;
        }
        if (output.pos < output.size && input.pos == input.size) {
            return -EIO; /* input ended before the cluster did */
        }
        if (input.pos == last_in && output.pos == last_out) {
            return -EIO; /* no progress: malformed */
        }
    }
    return 0;
}

int64_t qcow2_compress(int type, const void *in, size_t in_len, void *out,
                       size_t max_out)
{
    switch (type) {
    case QCOW2_COMPRESSION_ZLIB:
        return zlib_compress(in, in_len, out, max_out);
    case QCOW2_COMPRESSION_ZSTD:
        return zstd_compress(in, in_len, out, max_out);
    default:
        return -ENOTSUP;
    }
}

int qcow2_decompress(int type, const void *in, size_t in_len, void *out,
                     size_t out_len)
{
    switch (type) {
    case QCOW2_COMPRESSION_ZLIB:
        return zlib_decompress(in, in_len, out, out_len);
    case QCOW2_COMPRESSION_ZSTD:
        return zstd_decompress(in, in_len, out, out_len);
    default:
        return -ENOTSUP;
    }
}
