/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 image creation (block_create("qcow2", ...)).
 *
 * Options are spelled as `qemu-img create -o` spells them, and refused
 * with QEMU's messages.  The image is laid out by qcow2-create-layout.c
 * exactly as qemu-img lays it out, then written through a `file` node.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "block/drivers/qcow2/qcow2-create-layout.h"
#include "block/drivers/qcow2/qcow2-format.h"
#include "block/drivers/qcow2/qcow2.h"
#include "util/cleanup.h"
#include "util/keyval.h"

/* qemu-img's list, in the order it prints set options.  Encryption is
 * listed (qemu-img knows it) and refused below with a clear message. */
const BlockCreateOpt qcow2_create_opts[] = {
    { "encryption", BLOCK_OPT_BOOL, "Encrypt the image with format 'aes'. "
      "(Deprecated in favor of encrypt.format=aes)", NULL },
    { "encrypt.format", BLOCK_OPT_STRING,
      "Encrypt the image, format choices: 'aes', 'luks'", NULL },
    { "encrypt.key-secret", BLOCK_OPT_STRING,
      "ID of secret providing qcow AES key or LUKS passphrase", NULL },
    { "encrypt.cipher-alg", BLOCK_OPT_STRING,
      "Name of encryption cipher algorithm", NULL },
    { "encrypt.cipher-mode", BLOCK_OPT_STRING,
      "Name of encryption cipher mode", NULL },
    { "encrypt.ivgen-alg", BLOCK_OPT_STRING, "Name of IV generator algorithm",
      NULL },
    { "encrypt.ivgen-hash-alg", BLOCK_OPT_STRING,
      "Name of IV generator hash algorithm", NULL },
    { "encrypt.hash-alg", BLOCK_OPT_STRING,
      "Name of encryption hash algorithm", NULL },
    { "encrypt.iter-time", BLOCK_OPT_NUMBER,
      "Time to spend in PBKDF in milliseconds", NULL },
    { "cluster_size", BLOCK_OPT_SIZE, "qcow2 cluster size", "65536" },
    { "extended_l2", BLOCK_OPT_BOOL, "Extended L2 tables", "off" },
    { "preallocation", BLOCK_OPT_STRING, "Preallocation mode (allowed "
      "values: off, metadata, falloc, full)", NULL },
    { "compression_type", BLOCK_OPT_STRING,
      "Compression method used for image cluster compression", "zlib" },
    { "size", BLOCK_OPT_SIZE, "Virtual disk size", NULL },
    { "compat", BLOCK_OPT_STRING, "Compatibility level (v2 [0.10] or v3 "
      "[1.1])", NULL },
    { "backing_file", BLOCK_OPT_STRING, "File name of a base image", NULL },
    { "backing_fmt", BLOCK_OPT_STRING, "Image format of the base image",
      NULL },
    { "data_file", BLOCK_OPT_STRING, "File name of an external data file",
      NULL },
    { "data_file_raw", BLOCK_OPT_BOOL,
      "The external data file must stay valid as a raw image", NULL },
    { "lazy_refcounts", BLOCK_OPT_BOOL, "Postpone refcount updates", "off" },
    { "refcount_bits", BLOCK_OPT_NUMBER,
      "Width of a reference count entry in bits", "16" },
    { NULL },
};

static const char *const compat_names[] = { "0.10", "v2", "1.1", "v3", NULL };
static const char *const compression_names[] = { "zlib", "zstd", NULL };

/* Options we recognise but cannot honour: a clear refusal each. */
static bool refuse_unsupported(json_t *opts, Error **errp)
{
    const char *key;
    json_t *val;

    json_object_foreach(opts, key, val) {
        if (strcmp(key, "encryption") == 0) {
            /* encryption=off asks for what strata makes anyway. */
            bool on = false;
            if (!opt_get_bool(opts, key, false, &on, errp)) {
                return false;
            }
            if (on) {
                error_setg(errp, "Encrypted qcow2 images (%s) are not "
                           "supported by strata", key);
                return false;
            }
        } else if (strncmp(key, "encrypt", 7) == 0) {
            error_setg(errp, "Encrypted qcow2 images (%s) are not supported "
                       "by strata", key);
            return false;
        }
    }
    json_object_del(opts, "encryption");
    return true;
}

/* Any encryption option, listed or not (QAPI nests them as an
 * "encrypt" object), gets the refusal of encryption rather than
 * "Invalid parameter". */
static bool known_opt(const char *key)
{
    for (const BlockCreateOpt *o = qcow2_create_opts; o->name; o++) {
        if (strcmp(key, o->name) == 0) {
            return true;
        }
    }
    return strcmp(key, "encrypt") == 0 || strncmp(key, "encrypt.", 8) == 0;
}

static bool parse_opts(json_t *opts, Qcow2CreateParams *p, Error **errp)
{
    const char *key;
    json_t *val;

    json_object_foreach(opts, key, val) {
        if (!known_opt(key)) {
            error_setg(errp, "Invalid parameter '%s'", key);
            return false;
        }
    }
    if (!refuse_unsupported(opts, errp)) {
        return false;
    }

    uint64_t size, cluster_size, refcount_bits;
    int compat, prealloc, ctype;
    bool lazy, extl2, data_raw;
    if (!json_object_get(opts, "size")) {
        error_setg(errp, "Image creation needs a size parameter");
        return false;
    }
    if (!opt_get_size(opts, "size", 0, &size, errp) ||
        !opt_get_size(opts, "cluster_size", 65536, &cluster_size, errp)) {
        return false;
    }
    /* QEMU names the QAPI members in these two messages. */
    if (json_is_string(json_object_get(opts, "compat")) &&
        !opt_get_enum(opts, "compat", compat_names, 2, &compat, NULL)) {
        error_setg(errp, "Parameter 'version' does not accept value '%s'",
                   json_string_value(json_object_get(opts, "compat")));
        return false;
    }
    if (!opt_get_enum(opts, "compat", compat_names, 2, &compat, errp)) {
        return false;
    }
    if (json_is_string(json_object_get(opts, "compression_type")) &&
        !opt_get_enum(opts, "compression_type", compression_names, 0, &ctype,
                      NULL)) {
        error_setg(errp, "Parameter 'compression-type' does not accept "
                   "value '%s'",
                   json_string_value(json_object_get(opts,
                                                     "compression_type")));
        return false;
    }
    if (!opt_get_enum(opts, "compression_type", compression_names, 0, &ctype,
                      errp) ||
        !opt_get_enum(opts, "preallocation", prealloc_mode_names,
                      PREALLOC_OFF, &prealloc, errp) ||
        !opt_get_bool(opts, "lazy_refcounts", false, &lazy, errp) ||
        !opt_get_bool(opts, "extended_l2", false, &extl2, errp) ||
        !opt_get_uint64(opts, "refcount_bits", 16, &refcount_bits, errp) ||
        !opt_get_str(opts, "backing_file", NULL, &p->backing_file, errp) ||
        !opt_get_str(opts, "backing_fmt", NULL, &p->backing_fmt, errp) ||
        !opt_get_str(opts, "data_file", NULL, &p->data_file, errp) ||
        !opt_get_bool(opts, "data_file_raw", false, &data_raw, errp)) {
        return false;
    }

    if (extl2 && compat < 2) {
        error_setg(errp, "Extended L2 entries are only supported with "
                   "compatibility level 1.1 and above (use version=v3 or "
                   "greater)");
        return false;
    }
    if (cluster_size < 512 || cluster_size > (2u << 20) ||
        (cluster_size & (cluster_size - 1))) {
        error_setg(errp, "Cluster size must be a power of two between 512 "
                   "and 2048k");
        return false;
    }
    /* A subcluster (a 32nd of a cluster) is at least a sector. */
    if (extl2 && cluster_size < 512 * QCOW2_EXTL2_SUBCLUSTERS) {
        error_setg(errp, "Extended L2 entries are only supported with "
                   "cluster sizes of at least %u bytes",
                   512 * QCOW2_EXTL2_SUBCLUSTERS);
        return false;
    }
    if (refcount_bits == 0 || refcount_bits > 64 ||
        (refcount_bits & (refcount_bits - 1))) {
        error_setg(errp, "Refcount width must be a power of two and may not "
                   "exceed 64 bits");
        return false;
    }
    p->version = compat < 2 ? 2 : 3;
    if (p->version == 2 && refcount_bits != 16) {
        error_setg(errp, "Different refcount widths than 16 bits require "
                   "compatibility level 1.1 or above (use version=v3 or "
                   "greater)");
        return false;
    }
    if (p->version == 2 && lazy) {
        error_setg(errp, "Lazy refcounts only supported with compatibility "
                   "level 1.1 and above (use version=v3 or greater)");
        return false;
    }
    if (p->version == 2 && ctype != QCOW2_COMPRESSION_ZLIB) {
        error_setg(errp, "Non-zlib compression type is only supported with "
                   "compatibility level 1.1 and above (use version=v3 or "
                   "greater)");
        return false;
    }
    if (p->backing_file && !p->backing_file[0]) {
        p->backing_file = NULL;
    }
    if (p->backing_fmt && !p->backing_file) {
        error_setg(errp, "Backing format cannot be used without backing "
                   "file");
        return false;
    }
    if (p->backing_file && prealloc != PREALLOC_OFF && !extl2) {
        error_setg(errp, "Backing file and preallocation can only be used at "
                   "the same time if extended_l2 is on");
        return false;
    }
    if (p->backing_file && strlen(p->backing_file) >
                           QCOW2_MAX_BACKING_FILE_SIZE) {
        error_setg(errp, "Backing file name too long");
        return false;
    }

    if (p->data_file && !p->data_file[0]) {
        p->data_file = NULL;
    }
    if (data_raw && !p->data_file) {
        error_setg(errp, "data-file-raw requires data-file");
        return false;
    }
    if (data_raw && p->backing_file) {
        error_setg(errp, "Backing file and data-file-raw cannot be used at "
                   "the same time");
        return false;
    }
    /* As QEMU: the tables map every cluster 1:1, so the image reads
     * what the raw data file holds. */
    if (data_raw && prealloc == PREALLOC_OFF) {
        prealloc = PREALLOC_METADATA;
    }
    if (p->data_file && p->version < 3) {
        error_setg(errp, "External data files are only supported with "
                   "compatibility level 1.1 and above (use version=v3 or "
                   "greater)");
        return false;
    }
    p->data_file_raw = data_raw;

    p->size = ALIGN_UP(size, (uint64_t)512);
    if (p->size < size || p->size > INT64_MAX) {
        error_setg(errp, "The image size is too large for file format "
                   "'qcow2'");
        return false;
    }
    p->cluster_bits = (uint32_t)__builtin_ctzll(cluster_size);
    p->refcount_order = (uint32_t)__builtin_ctzll(refcount_bits);
    p->prealloc = (PreallocMode)prealloc;
    p->lazy_refcounts = lazy;
    p->extended_l2 = extl2;
    p->compression_type = (uint8_t)ctype;
    return true;
}

static bool write_layout(BlockNode *file, const char *filename,
                         const Qcow2Layout *l, PreallocMode prealloc,
                         Error **errp)
{
    int ret;

    /* Size the file first so every write lands inside it; for
     * falloc/full the data area is allocated by the file driver.  Not
     * exact, as QEMU: a block device larger than the image is fine. */
    if (l->data_end > l->data_start) {
        if (!block_truncate(file, l->data_start, false, PREALLOC_OFF, errp) ||
            !block_truncate(file, l->data_end, false, prealloc, errp)) {
            return false;
        }
    }
    if (l->file_size > l->data_end &&
        !block_truncate(file, l->file_size, false, PREALLOC_OFF, errp)) {
        return false;
    }

    for (size_t i = 0; i < l->nb_bufs; i++) {
        const Qcow2LayoutBuf *b = &l->bufs[i];
        ret = block_write(file, b->offset, b->len, b->data, 0);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not write qcow2 metadata to "
                             "'%s' at offset %" PRIu64, filename, b->offset);
            return false;
        }
    }
    CLEANUP_FREE uint8_t *buf = malloc(l->cluster_size);
    if (!buf) {
        error_setg(errp, "Out of memory creating '%s'", filename);
        return false;
    }
    for (size_t i = 0; i < l->nb_l2; i++) {
        qcow2_layout_fill_l2(l, &l->l2[i], buf);
        ret = block_write(file, l->l2[i].offset, l->cluster_size, buf, 0);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not write an L2 table to "
                             "'%s'", filename);
            return false;
        }
    }
    ret = block_flush(file);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not flush '%s'", filename);
        return false;
    }
    return true;
}

/* Lays the image out on file, an open protocol node (blockdev-create:
 * the node exists already and keeps what lies past the new image, as
 * with QEMU). */
bool qcow2_create_on_node(BlockNode *file, json_t *opts, Error **errp)
{
    json_t *copy = json_deep_copy(opts);
    Qcow2CreateParams p = { 0 };
    Qcow2Layout l = { 0 };
    bool ok = false;

    if (!copy) {
        error_setg(errp, "Out of memory");
        return false;
    }
    if (parse_opts(copy, &p, errp) && qcow2_layout_build(&p, &l, errp)) {
        ok = write_layout(file, block_node_name(file), &l, p.prealloc, errp);
    }
    qcow2_layout_free(&l);
    json_decref(copy);
    return ok;
}

/* As qemu-img: the data file is a new file of the virtual size (its
 * space allocated for preallocation=falloc/full). */
static bool create_data_file(const char *name, const Qcow2CreateParams *p,
                             Error **errp)
{
    PreallocMode mode = p->prealloc == PREALLOC_METADATA ? PREALLOC_OFF
                                                         : p->prealloc;
    json_t *fopts = json_pack("{s:I, s:s}", "size", (json_int_t)p->size,
                              "preallocation", prealloc_mode_names[mode]);
    if (!fopts) {
        error_setg(errp, "Out of memory creating '%s'", name);
        return false;
    }
    bool ok = block_create("file", name, fopts, errp);
    json_decref(fopts);
    return ok;
}

bool qcow2_create(const char *filename, json_t *opts, Error **errp)
{
    json_t *copy = json_deep_copy(opts);
    Qcow2CreateParams p = { 0 };
    Qcow2Layout l = { 0 };
    BlockNode *file = NULL;
    bool ok = false;

    if (!copy) {
        error_setg(errp, "Out of memory creating '%s'", filename);
        return false;
    }
    if (!parse_opts(copy, &p, errp) || !qcow2_layout_build(&p, &l, errp)) {
        goto out;
    }

    json_t *fopts = json_pack("{s:I}", "size", (json_int_t)0);
    ok = fopts && block_create("file", filename, fopts, errp);
    json_decref(fopts);
    if (!ok) {
        goto out;
    }
    ok = false;
    json_t *nopts = json_pack("{s:s, s:s}", "driver", "file",
                              "filename", filename);
    file = nopts ? block_node_open(nopts, errp) : NULL;
    json_decref(nopts);
    if (!file) {
        goto out;
    }
    /* The data lives elsewhere: the image file holds metadata only. */
    ok = write_layout(file, filename, &l,
                      p.data_file ? PREALLOC_OFF : p.prealloc, errp) &&
         (!p.data_file || create_data_file(p.data_file, &p, errp));

out:
    if (file) {
        block_node_unref(file);
    }
    qcow2_layout_free(&l);
    json_decref(copy);
    return ok;
}
