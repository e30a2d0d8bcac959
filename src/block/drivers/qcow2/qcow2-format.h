/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 on-disk format (QEMU docs/interop/qcow2.txt).
 *
 * Everything on disk is big-endian.  struct Qcow2Header is the decoded,
 * host-endian header plus the header extensions we interpret; extensions
 * we do not interpret are kept as raw bytes so a rewrite preserves them.
 */
#ifndef STRATA_QCOW2_FORMAT_H
#define STRATA_QCOW2_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <endian.h>

#include "util/error.h"

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */

#define QCOW2_V2_HEADER_SIZE 72
#define QCOW2_V3_HEADER_SIZE 104 /* minimum header_length for v3 */
#define QCOW2_HEADER_LENGTH 112  /* what we (and QEMU) write */

#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_MAX_BACKING_FILE_SIZE 1023
#define QCOW2_MAX_L1_BYTES (32u << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
#define QCOW2_MAX_HOST_OFFSET ((1ull << 56) - 1)

/* Incompatible feature bits. */
#define QCOW2_INCOMPAT_DIRTY        (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT      (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE    (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION  (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2        (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN        0x1full
/* Compatible feature bits. */
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)
/* Autoclear feature bits. */
#define QCOW2_AUTOCLEAR_BITMAPS     (1ull << 0)
#define QCOW2_AUTOCLEAR_DATA_RAW    (1ull << 1)

#define QCOW2_CRYPT_NONE 0
#define QCOW2_COMPRESSION_ZLIB 0
#define QCOW2_COMPRESSION_ZSTD 1

/* Header extension types. */
#define QCOW2_EXT_END           0x00000000u
#define QCOW2_EXT_BACKING_FMT   0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857u
#define QCOW2_EXT_BITMAPS       0x23852875u
#define QCOW2_EXT_CRYPTO        0x0537be77u
#define QCOW2_EXT_DATA_FILE     0x44415441u
/* strata image parameters (ignored and preserved by QEMU). */
#define QCOW2_EXT_STRATA_PARAMS 0x53545241u /* "STRA" */

/* L1 / L2 / refcount table entries. */
#define QCOW2_OFLAG_COPIED     (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO       (1ull << 0)
#define QCOW2_L1E_OFFSET_MASK  0x00fffffffffffe00ull
#define QCOW2_L2E_OFFSET_MASK  0x00fffffffffffe00ull
#define QCOW2_REFT_OFFSET_MASK 0xfffffffffffffe00ull
#define QCOW2_L1E_RESERVED     0x7f000000000001ffull
#define QCOW2_L2E_STD_RESERVED 0x3f000000000001feull

/* Extended L2 entries: each L2 entry is followed by a 64-bit bitmap
 * for the 32 subclusters of its cluster; bit n says subcluster n is
 * allocated, bit 32 + n that it reads as zeroes. */
#define QCOW2_EXTL2_SUBCLUSTERS     32
#define QCOW2_L2_BITMAP_ALL_ALLOC   0x00000000ffffffffull
#define QCOW2_L2_BITMAP_ALL_ZEROES  0xffffffff00000000ull
/* Bits [from, to) of the allocation half, and of the zero half. */
#define QCOW2_SC_ALLOC_RANGE(from, to) \
    ((to) > (from) ? ((~0ull >> (64 - (to) + (from))) << (from)) : 0)
#define QCOW2_SC_ZERO_RANGE(from, to) (QCOW2_SC_ALLOC_RANGE(from, to) << 32)

/* A header extension we keep verbatim. */
typedef struct Qcow2Extension {
    uint32_t type;
    uint32_t len;
    uint8_t *data;
} Qcow2Extension;

typedef struct Qcow2Header {
    uint32_t version;               /* 2 or 3 */
    uint64_t backing_file_offset;
    uint32_t backing_file_size;
    uint32_t cluster_bits;
    uint64_t size;                  /* virtual size */
    uint32_t crypt_method;
    uint32_t l1_size;
    uint64_t l1_table_offset;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    /* v3 (v2 images decode with these at their implied values) */
    uint64_t incompatible_features;
    uint64_t compatible_features;
    uint64_t autoclear_features;
    uint32_t refcount_order;        /* v2: 4 */
    uint32_t header_length;         /* v2: 72 */
    uint8_t compression_type;       /* 0 zlib, 1 zstd */

    /* Interpreted extensions. */
    char *backing_file;             /* NULL if none */
    char *backing_format;           /* NULL if no extension */
    char *data_file;                /* external data file name, or NULL */
    bool has_bitmaps_ext;
    uint8_t *strata_params;         /* QCOW2_EXT_STRATA_PARAMS payload */
    uint32_t strata_params_len;

    /* Extensions kept verbatim (unknown types, bitmaps, crypto...). */
    Qcow2Extension *unknown_ext;
    size_t nb_unknown_ext;
} Qcow2Header;

/* Decodes and validates the header in buf (the first cluster of the
 * image, len bytes; file_size is the image file's size).  Checks magic,
 * version, cluster_bits, header_length, refcount_order, offsets
 * (aligned, inside the file, no overflow), table sizes against the
 * implementation limits, backing file name length, and the extensions'
 * framing.  Messages name what is wrong, e.g. "Unsupported qcow2
 * version 4" or "L1 table offset invalid".  Does not judge feature
 * bits (the caller decides what it can open).  Free with
 * qcow2_header_free. */
bool qcow2_header_decode(const uint8_t *buf, size_t len, uint64_t file_size,
                         Qcow2Header *h, Error **errp);

/* Encodes h into buf (len bytes, normally one cluster): the fixed
 * header (v2 or v3 per h->version), then extensions in QEMU's order
 * (backing format, feature-name table for v3, data file, bitmaps and the
 * other kept extensions, strata params), the end marker, and the
 * backing file name right after; sets h->backing_file_offset/size and
 * h->header_length accordingly.  Fails if it does not fit in len. */
bool qcow2_header_encode(Qcow2Header *h, uint8_t *buf, size_t len,
                         Error **errp);

void qcow2_header_free(Qcow2Header *h);

/* Big-endian fields read from a byte buffer (snapshot tables, check). */
static inline uint64_t qcow2_be64_at(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return be64toh(v);
}

static inline uint32_t qcow2_be32_at(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return be32toh(v);
}

static inline uint64_t qcow2_cluster_size(const Qcow2Header *h)
{
    return 1ull << h->cluster_bits;
}

#endif
