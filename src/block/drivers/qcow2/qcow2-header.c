/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 header codec (see qcow2-format.h).
 *
 * Layout follows QEMU docs/interop/qcow2.txt.  Error messages reuse
 * QEMU's wording where QEMU has one, so users searching for a message
 * find the same explanations.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-format.h"
#include "util/cleanup.h"

#define QCOW2_MAX_SNAPSHOTS 65536
#define QCOW2_SNAPSHOT_HEADER_SIZE 40 /* fixed part of a snapshot entry */
#define QCOW2_FEATURE_NAME_ENTRY 48
#define QCOW2_FEATURE_NAME_LEN 46
#define QCOW2_BACKING_FMT_MAX 16      /* QEMU's limit, NUL included */
#define QCOW2_BITMAPS_EXT_SIZE 24

static uint32_t get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
    return ((uint64_t)get_be32(p) << 32) | get_be32(p + 4);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24;
    p[1] = v >> 16;
    p[2] = v >> 8;
    p[3] = v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, v >> 32);
    put_be32(p + 4, (uint32_t)v);
}

static char *dup_bytes_as_string(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

/* Checks a table of entries*entry_len bytes at offset: cluster aligned,
 * no arithmetic overflow (QEMU's validate_table_offset), and, when the
 * table is not empty, inside the file and clear of the header cluster. */
static bool table_ok(const Qcow2Header *h, uint64_t offset, uint64_t entries,
                     uint64_t entry_len, uint64_t file_size,
                     const char *what, Error **errp)
{
    uint64_t csize = qcow2_cluster_size(h);

    if (entries > INT64_MAX / entry_len ||
        (uint64_t)INT64_MAX - entries * entry_len < offset ||
        (offset & (csize - 1)) != 0) {
        error_setg(errp, "%s offset invalid", what);
        return false;
    }
    if (entries == 0) {
        return true;
    }
    if (offset == 0) {
        error_setg(errp, "%s offset invalid: the table overlaps the header",
                   what);
        return false;
    }
    uint64_t end = offset + entries * entry_len;
    if (end > file_size) {
        error_setg(errp, "%s offset invalid: the table (0x%" PRIx64
                   "..0x%" PRIx64 ") extends beyond the end of the file "
                   "(%" PRIu64 " bytes)", what, offset, end - 1, file_size);
        return false;
    }
    return true;
}

static bool decode_fixed(const uint8_t *buf, size_t len, Qcow2Header *h,
                         Error **errp)
{
    if (len < 8 || get_be32(buf) != QCOW2_MAGIC) {
        error_setg(errp, "Image is not in qcow2 format");
        return false;
    }
    h->version = get_be32(buf + 4);
    if (h->version < 2 || h->version > 3) {
        error_setg(errp, "Unsupported qcow2 version %" PRIu32, h->version);
        return false;
    }
    size_t need = h->version == 2 ? QCOW2_V2_HEADER_SIZE
                                  : QCOW2_V3_HEADER_SIZE;
    if (len < need) {
        error_setg(errp, "qcow2 header truncated: the file holds %zu bytes "
                   "of it, version %" PRIu32 " needs %zu",
                   len, h->version, need);
        return false;
    }

    h->backing_file_offset = get_be64(buf + 8);
    h->backing_file_size = get_be32(buf + 16);
    h->cluster_bits = get_be32(buf + 20);
    h->size = get_be64(buf + 24);
    h->crypt_method = get_be32(buf + 32);
    h->l1_size = get_be32(buf + 36);
    h->l1_table_offset = get_be64(buf + 40);
    h->refcount_table_offset = get_be64(buf + 48);
    h->refcount_table_clusters = get_be32(buf + 56);
    h->nb_snapshots = get_be32(buf + 60);
    h->snapshots_offset = get_be64(buf + 64);

    if (h->version == 2) {
        h->refcount_order = 4;
        h->header_length = QCOW2_V2_HEADER_SIZE;
    } else {
        h->incompatible_features = get_be64(buf + 72);
        h->compatible_features = get_be64(buf + 80);
        h->autoclear_features = get_be64(buf + 88);
        h->refcount_order = get_be32(buf + 96);
        h->header_length = get_be32(buf + 100);
    }
    return true;
}

static bool validate_fixed(const Qcow2Header *h, size_t len,
                           uint64_t file_size, Error **errp)
{
    if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
        h->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
        error_setg(errp, "Unsupported cluster size: 2^%" PRIu32,
                   h->cluster_bits);
        return false;
    }
    uint64_t csize = qcow2_cluster_size(h);

    if (h->version == 3) {
        if (h->header_length < QCOW2_V3_HEADER_SIZE) {
            error_setg(errp, "qcow2 header too short");
            return false;
        }
        if (h->header_length > csize) {
            error_setg(errp, "qcow2 header exceeds cluster size");
            return false;
        }
        if (h->header_length % 8 != 0) {
            error_setg(errp, "Invalid qcow2 header length %" PRIu32
                       " (must be a multiple of 8)", h->header_length);
            return false;
        }
        if (h->header_length > len) {
            error_setg(errp, "qcow2 header truncated: header length is %"
                       PRIu32 " but only %zu bytes are present",
                       h->header_length, len);
            return false;
        }
    }
    if (h->refcount_order > 6) {
        error_setg(errp, "Reference count entry width too large; may not "
                   "exceed 64 bits");
        return false;
    }
    if (h->crypt_method > 2) {
        error_setg(errp, "Unsupported encryption method %" PRIu32,
                   h->crypt_method);
        return false;
    }
    if (h->size > INT64_MAX) {
        error_setg(errp, "Image is too big");
        return false;
    }

    /* Guest clusters covered by one L1 entry: 2^(2*cluster_bits - 3). */
    unsigned l1_shift = 2 * h->cluster_bits - 3;
    uint64_t l1_needed = (h->size >> l1_shift) +
                         ((h->size & ((1ull << l1_shift) - 1)) != 0);
    if (l1_needed > INT32_MAX) {
        error_setg(errp, "Image is too big");
        return false;
    }
    if (h->l1_size > QCOW2_MAX_L1_BYTES / 8) {
        error_setg(errp, "Active L1 table too large");
        return false;
    }
    if (h->l1_size < l1_needed) {
        error_setg(errp, "L1 table is too small");
        return false;
    }
    if (!table_ok(h, h->l1_table_offset, h->l1_size, 8, file_size,
                  "Active L1 table", errp)) {
        return false;
    }

    if (h->refcount_table_clusters > (QCOW2_MAX_REFTABLE_BYTES >>
                                      h->cluster_bits)) {
        error_setg(errp, "Reference count table too large");
        return false;
    }
    if (h->refcount_table_clusters == 0) {
        error_setg(errp, "Image does not contain a reference count table");
        return false;
    }
    if (!table_ok(h, h->refcount_table_offset, h->refcount_table_clusters,
                  csize, file_size, "Reference count table", errp)) {
        return false;
    }

    if (h->nb_snapshots > QCOW2_MAX_SNAPSHOTS) {
        error_setg(errp, "Snapshot table too large");
        return false;
    }
    /* Not bounded by the file: as in QEMU, what lies past its end reads
     * as zeroes (empty entries), and the table is judged when read. */
    if (!table_ok(h, h->snapshots_offset, h->nb_snapshots,
                  QCOW2_SNAPSHOT_HEADER_SIZE, UINT64_MAX, "Snapshot table",
                  errp)) {
        return false;
    }

    if (h->backing_file_offset != 0) {
        if (h->backing_file_offset > csize) {
            error_setg(errp, "Invalid backing file offset");
            return false;
        }
        if (h->backing_file_size > QCOW2_MAX_BACKING_FILE_SIZE ||
            h->backing_file_size > csize - h->backing_file_offset) {
            error_setg(errp, "Backing file name too long");
            return false;
        }
        uint64_t end = h->backing_file_offset + h->backing_file_size;
        if (end > len || end > file_size) {
            error_setg(errp, "Backing file name at offset %" PRIu64
                       " (%" PRIu32 " bytes) extends beyond the end of the "
                       "file", h->backing_file_offset, h->backing_file_size);
            return false;
        }
    }
    return true;
}

static bool decode_compression_type(const uint8_t *buf, Qcow2Header *h,
                                    Error **errp)
{
    if (h->version == 3 && h->header_length > QCOW2_V3_HEADER_SIZE) {
        h->compression_type = buf[104];
    }
    if (h->compression_type > QCOW2_COMPRESSION_ZSTD) {
        error_setg(errp, "qcow2: unknown compression type: %u",
                   h->compression_type);
        return false;
    }
    bool bit = h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION;
    if (h->compression_type != QCOW2_COMPRESSION_ZLIB && !bit) {
        error_setg(errp, "qcow2: Compression type incompatible feature bit "
                   "must be set");
        return false;
    }
    if (h->compression_type == QCOW2_COMPRESSION_ZLIB && bit) {
        error_setg(errp, "qcow2: Compression type incompatible feature bit "
                   "must not be set");
        return false;
    }
    return true;
}

static bool keep_extension(Qcow2Header *h, uint32_t type, const uint8_t *data,
                           uint32_t len, Error **errp)
{
    Qcow2Extension *arr = realloc(h->unknown_ext,
                                  (h->nb_unknown_ext + 1) * sizeof(*arr));
    if (!arr) {
        error_setg(errp, "Out of memory reading qcow2 header extensions");
        return false;
    }
    h->unknown_ext = arr;
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) {
        error_setg(errp, "Out of memory reading qcow2 header extensions");
        return false;
    }
    memcpy(copy, data, len);
    arr[h->nb_unknown_ext++] = (Qcow2Extension){
        .type = type, .len = len, .data = copy,
    };
    return true;
}

static bool replace_string(char **dst, const uint8_t *p, size_t n,
                           Error **errp)
{
    char *s = dup_bytes_as_string(p, n);
    if (!s) {
        error_setg(errp, "Out of memory reading qcow2 header extensions");
        return false;
    }
    free(*dst);
    *dst = s;
    return true;
}

/* Extensions live between the end of the fixed header and the backing
 * file name (or the end of the first cluster).  buf holds at least end
 * bytes (the caller pads a short file with zeroes). */
static bool decode_extensions_in(const uint8_t *buf, uint64_t end,
                                 Qcow2Header *h, Error **errp)
{
    uint64_t offset = h->header_length;

    while (offset < end) {
        /* An extension header that starts in the last 8 bytes still
         * takes 8: QEMU reads it (the end marker too) and then finds it
         * sticking out of the area. */
        uint8_t ext[8] = { 0 };
        memcpy(ext, buf + offset, MIN(8, end - offset));
        uint32_t type = get_be32(ext);
        uint32_t elen = get_be32(ext + 4);
        offset += 8;
        /* As QEMU, the bounds are checked before the type is looked at:
         * even an end marker must not claim more than the area holds. */
        if (offset > end || elen > end - offset) {
            error_setg(errp, "Header extension too large");
            return false;
        }
        if (type == QCOW2_EXT_END) {
            return true;
        }
        const uint8_t *data = buf + offset;

        switch (type) {
        case QCOW2_EXT_BACKING_FMT:
            if (elen >= QCOW2_BACKING_FMT_MAX) {
                error_setg(errp, "ERROR: ext_backing_format: len=%" PRIu32
                           " too large (>=%d)", elen, QCOW2_BACKING_FMT_MAX);
                return false;
            }
            if (!replace_string(&h->backing_format, data, elen, errp)) {
                return false;
            }
            break;
        case QCOW2_EXT_FEATURE_TABLE:
            /* Regenerated on encode from the features we know. */
            break;
        case QCOW2_EXT_DATA_FILE:
            if (!replace_string(&h->data_file, data, elen, errp)) {
                return false;
            }
            break;
        case QCOW2_EXT_STRATA_PARAMS: {
            uint8_t *p = malloc(elen ? elen : 1);
            if (!p) {
                error_setg(errp, "Out of memory reading qcow2 header "
                           "extensions");
                return false;
            }
            memcpy(p, data, elen);
            free(h->strata_params);
            h->strata_params = p;
            h->strata_params_len = elen;
            break;
        }
        case QCOW2_EXT_BITMAPS:
            if (elen != QCOW2_BITMAPS_EXT_SIZE) {
                error_setg(errp, "bitmaps_ext: Invalid extension length");
                return false;
            }
            h->has_bitmaps_ext = true;
            if (!keep_extension(h, type, data, elen, errp)) {
                return false;
            }
            break;
        default:
            if (!keep_extension(h, type, data, elen, errp)) {
                return false;
            }
            break;
        }
        offset += ALIGN_UP((uint64_t)elen, 8);
    }
    return true;
}

/* A file shorter than the extension area reads as zeroes past its end,
 * as QEMU's reads do. */
static bool decode_extensions(const uint8_t *buf, size_t len, Qcow2Header *h,
                              Error **errp)
{
    uint64_t end = h->backing_file_offset ? h->backing_file_offset
                                          : qcow2_cluster_size(h);
    if (end <= len) {
        return decode_extensions_in(buf, end, h, errp);
    }
    /* end is at most one cluster (validate_fixed checked it). */
    CLEANUP_FREE uint8_t *padded = calloc(1, end);
    if (!padded) {
        error_setg(errp, "Out of memory reading qcow2 header extensions");
        return false;
    }
    memcpy(padded, buf, len);
    return decode_extensions_in(padded, end, h, errp);
}

bool qcow2_header_decode(const uint8_t *buf, size_t len, uint64_t file_size,
                         Qcow2Header *h, Error **errp)
{
    memset(h, 0, sizeof(*h));
    if (!decode_fixed(buf, len, h, errp) ||
        !validate_fixed(h, len, file_size, errp) ||
        !decode_compression_type(buf, h, errp) ||
        !decode_extensions(buf, len, h, errp)) {
        goto fail;
    }
    if (h->backing_file_offset != 0 && h->backing_file_size != 0) {
        /* Like QEMU, the name ends at the first NUL if it has one, and an
         * empty name means no backing file. */
        const uint8_t *p = buf + h->backing_file_offset;
        size_t n = strnlen((const char *)p, h->backing_file_size);
        h->backing_file = n ? dup_bytes_as_string(p, n) : NULL;
        if (n && !h->backing_file) {
            error_setg(errp, "Out of memory reading the backing file name");
            goto fail;
        }
    }
    return true;

fail:
    qcow2_header_free(h);
    return false;
}

/* --- encoding --- */

typedef struct HeaderWriter {
    uint8_t *buf;
    size_t len;
    size_t pos;
    bool overflow;
} HeaderWriter;

static void write_ext(HeaderWriter *w, uint32_t type, const void *data,
                      uint32_t elen)
{
    size_t need = 8 + ALIGN_UP((size_t)elen, 8);
    if (w->overflow || need > w->len - w->pos) {
        w->overflow = true;
        return;
    }
    put_be32(w->buf + w->pos, type);
    put_be32(w->buf + w->pos + 4, elen);
    if (elen) {
        memcpy(w->buf + w->pos + 8, data, elen);
    }
    w->pos += need; /* padding is already zero */
}

static void write_feature_table(HeaderWriter *w)
{
    /* Names and order as QEMU writes them. */
    static const struct {
        uint8_t type, bit;
        const char *name;
    } features[] = {
        { 0, 0, "dirty bit" },
        { 0, 1, "corrupt bit" },
        { 0, 2, "external data file" },
        { 0, 3, "compression type" },
        { 0, 4, "extended L2 entries" },
        { 1, 0, "lazy refcounts" },
        { 2, 0, "bitmaps" },
        { 2, 1, "raw external data" },
    };
    uint8_t table[ARRAY_SIZE(features) * QCOW2_FEATURE_NAME_ENTRY];

    memset(table, 0, sizeof(table));
    for (size_t i = 0; i < ARRAY_SIZE(features); i++) {
        uint8_t *e = table + i * QCOW2_FEATURE_NAME_ENTRY;
        e[0] = features[i].type;
        e[1] = features[i].bit;
        strncpy((char *)e + 2, features[i].name, QCOW2_FEATURE_NAME_LEN);
    }
    write_ext(w, QCOW2_EXT_FEATURE_TABLE, table, sizeof(table));
}

static void write_kept_extensions(HeaderWriter *w, const Qcow2Header *h,
                                  uint32_t only_type, bool all_others)
{
    for (size_t i = 0; i < h->nb_unknown_ext; i++) {
        const Qcow2Extension *e = &h->unknown_ext[i];
        bool special = e->type == QCOW2_EXT_CRYPTO ||
                       e->type == QCOW2_EXT_BITMAPS;
        if (all_others ? !special : e->type == only_type) {
            write_ext(w, e->type, e->data, e->len);
        }
    }
}

static void encode_fixed(const Qcow2Header *h, uint8_t *buf)
{
    put_be32(buf, QCOW2_MAGIC);
    put_be32(buf + 4, h->version);
    put_be64(buf + 8, h->backing_file_offset);
    put_be32(buf + 16, h->backing_file_size);
    put_be32(buf + 20, h->cluster_bits);
    put_be64(buf + 24, h->size);
    put_be32(buf + 32, h->crypt_method);
    put_be32(buf + 36, h->l1_size);
    put_be64(buf + 40, h->l1_table_offset);
    put_be64(buf + 48, h->refcount_table_offset);
    put_be32(buf + 56, h->refcount_table_clusters);
    put_be32(buf + 60, h->nb_snapshots);
    put_be64(buf + 64, h->snapshots_offset);
    if (h->version >= 3) {
        put_be64(buf + 72, h->incompatible_features);
        put_be64(buf + 80, h->compatible_features);
        put_be64(buf + 88, h->autoclear_features);
        put_be32(buf + 96, h->refcount_order);
        put_be32(buf + 100, h->header_length);
        buf[104] = h->compression_type;
    }
}

bool qcow2_header_encode(Qcow2Header *h, uint8_t *buf, size_t len,
                         Error **errp)
{
    if (h->version != 2 && h->version != 3) {
        error_setg(errp, "Cannot write a qcow2 version %" PRIu32 " header",
                   h->version);
        return false;
    }
    if (h->version == 2 && h->refcount_order != 4) {
        error_setg(errp, "compat=0.10 requires refcount_bits=16");
        return false;
    }
    size_t name_len = h->backing_file ? strlen(h->backing_file) : 0;
    if (name_len > QCOW2_MAX_BACKING_FILE_SIZE) {
        error_setg(errp, "Backing file name too long");
        return false;
    }
    size_t fmt_len = h->backing_format ? strlen(h->backing_format) : 0;
    if (fmt_len >= QCOW2_BACKING_FMT_MAX) {
        error_setg(errp, "Backing format name '%s' is too long",
                   h->backing_format);
        return false;
    }
    uint32_t fixed = h->version == 2 ? QCOW2_V2_HEADER_SIZE
                                     : QCOW2_HEADER_LENGTH;
    if (len < fixed) {
        error_setg(errp, "qcow2 header does not fit in %zu bytes", len);
        return false;
    }

    memset(buf, 0, len);
    HeaderWriter w = { .buf = buf, .len = len, .pos = fixed };

    /* QEMU's order (qcow2_update_header). */
    if (h->backing_format) {
        write_ext(&w, QCOW2_EXT_BACKING_FMT, h->backing_format,
                  (uint32_t)fmt_len);
    }
    if (h->data_file) {
        write_ext(&w, QCOW2_EXT_DATA_FILE, h->data_file,
                  (uint32_t)strlen(h->data_file));
    }
    write_kept_extensions(&w, h, QCOW2_EXT_CRYPTO, false);
    /* QEMU leaves the table out with clusters of 4 KiB and less, so that
     * it cannot crowd out the backing file name. */
    if (h->version >= 3 && qcow2_cluster_size(h) > 4096) {
        write_feature_table(&w);
    }
    write_kept_extensions(&w, h, QCOW2_EXT_BITMAPS, false);
    write_kept_extensions(&w, h, 0, true);
    if (h->strata_params) {
        write_ext(&w, QCOW2_EXT_STRATA_PARAMS, h->strata_params,
                  h->strata_params_len);
    }
    write_ext(&w, QCOW2_EXT_END, NULL, 0);
    if (w.overflow || name_len > w.len - w.pos) {
        error_setg(errp, "qcow2 header extensions and backing file name do "
                   "not fit in the first cluster (%zu bytes)", len);
        memset(buf, 0, len);
        return false;
    }

    if (name_len) {
        memcpy(buf + w.pos, h->backing_file, name_len);
        h->backing_file_offset = w.pos;
    } else {
        h->backing_file_offset = 0;
    }
    h->backing_file_size = (uint32_t)name_len;
    h->header_length = fixed;
    encode_fixed(h, buf);
    return true;
}

void qcow2_header_free(Qcow2Header *h)
{
    if (!h) {
        return;
    }
    free(h->backing_file);
    free(h->backing_format);
    free(h->data_file);
    free(h->strata_params);
    for (size_t i = 0; i < h->nb_unknown_ext; i++) {
        free(h->unknown_ext[i].data);
    }
    free(h->unknown_ext);
    memset(h, 0, sizeof(*h));
}
