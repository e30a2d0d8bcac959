/* strata - qcow2 compressed clusters: zlib raw deflate (window bits 12,
 * as QEMU writes them) and zstd frames, selected by the header's
 * compression_type.  Compressed data is followed on disk by whatever
 * shares its last sector, so decompression stops once the cluster is
 * complete instead of requiring the input to end exactly.
 */
#include <errno.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "block/drivers/qcow2/qcow2.h"

/* QEMU uses a 4 KiB window (-12: raw deflate without zlib header). */
#define QCOW2_ZLIB_WINDOW_BITS (-12)

static int64_t zlib_compress(const void *in, size_t in_len, void *out,
                             size_t max_out)
{
    z_stream strm;
    memset(&strm, 0, sizeof(strm));
    if (deflateInit2(&strm, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
                     QCOW2_ZLIB_WINDOW_BITS, 9, Z_DEFAULT_STRATEGY) != Z_OK) {
        return -ENOMEM;
    }
    strm.next_in = (Bytef *)in;
    strm.avail_in = in_len;
    strm.next_out = out;
    strm.avail_out = max_out;
    int ret = deflate(&strm, Z_FINISH);
    int64_t result;
    if (ret == Z_STREAM_END) {
        result = max_out - strm.avail_out;
    } else if (ret == Z_OK || ret == Z_BUF_ERROR) {
        result = 0; /* did not fit: not worth compressing */
    } else {
        result = -EIO;
    }
    deflateEnd(&strm);
    return result;
}

static int zlib_decompress(const void *in, size_t in_len, void *out,
                           size_t out_len)
{
    z_stream strm;
    memset(&strm, 0, sizeof(strm));
    if (inflateInit2(&strm, QCOW2_ZLIB_WINDOW_BITS) != Z_OK) {
        return -ENOMEM;
    }
    strm.next_in = (Bytef *)in;
    strm.avail_in = in_len;
    strm.next_out = out;
    strm.avail_out = out_len;
    int ret = inflate(&strm, Z_FINISH);
    int result = 0;
    /* Z_BUF_ERROR with a full output: the cluster is complete and the
     * rest of the input is the padding of the last sector. */
    if ((ret != Z_STREAM_END && ret != Z_BUF_ERROR) || strm.avail_out != 0) {
        result = -EIO;
    }
    inflateEnd(&strm);
    return result;
}

static int64_t zstd_compress(const void *in, size_t in_len, void *out,
                             size_t max_out)
{
    size_t ret = ZSTD_compress(out, max_out, in, in_len, ZSTD_CLEVEL_DEFAULT);
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
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    if (!dctx) {
        return -ENOMEM;
    }
    ZSTD_inBuffer input = { in, in_len, 0 };
    ZSTD_outBuffer output = { out, out_len, 0 };
    int result = 0;
    /* QEMU may split a cluster over several frames; keep going until the
     * cluster is complete. */
    while (output.pos < output.size) {
        size_t last_in = input.pos, last_out = output.pos;
        size_t ret = ZSTD_decompressStream(dctx, &output, &input);
        if (ZSTD_isError(ret)) {
            result = -EIO;
            break;
        }
        if (output.pos < output.size && input.pos == input.size) {
            result = -EIO; /* input ended before the cluster did */
            break;
        }
        if (input.pos == last_in && output.pos == last_out) {
            result = -EIO; /* no progress: malformed */
            break;
        }
    }
    ZSTD_freeDCtx(dctx);
    return result;
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
