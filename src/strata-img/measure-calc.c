/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img - the arithmetic behind `measure` (see measure-calc.h).
 *
 * Everything is unsigned 64-bit: sizes near 2^63 (a source, which is
 * not checked against the L1 limit) wrap as QEMU's arithmetic does
 * instead of hitting undefined behaviour.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "block/block.h"
#include "strata-img/img-common.h"
#include "strata-img/measure-calc.h"
#include "util/cleanup.h"
#include "util/error.h"

#define MIN_CLUSTER_BITS 9
#define MAX_CLUSTER_BITS 21
#define SUBCLUSTERS_PER_CLUSTER 32
#define L1E_SIZE 8
#define L2E_SIZE_NORMAL 8
#define L2E_SIZE_EXTENDED 16
#define REFTABLE_ENTRY_SIZE 8
#define MAX_L1_BYTES (32u << 20)

static uint64_t round_up(uint64_t n, uint64_t align)
{
    return DIV_ROUND_UP(n, align) * align;
}

static bool is_pow2(uint64_t n)
{
    return n && !(n & (n - 1));
}

static const char *opt_str(json_t *opts, const char *key)
{
    json_t *v = json_object_get(opts, key);
    return v && json_is_string(v) ? json_string_value(v) : NULL;
}

static uint64_t opt_uint(json_t *opts, const char *key, uint64_t def)
{
    json_t *v = json_object_get(opts, key);
    return v && json_is_integer(v) ? (uint64_t)json_integer_value(v) : def;
}

/* QemuOpts' booleans: the value was checked when it was parsed. */
static bool opt_bool(json_t *opts, const char *key)
{
    const char *s = opt_str(opts, key);
    return s && (!strcmp(s, "on") || !strcmp(s, "yes") || !strcmp(s, "true") ||
                 !strcmp(s, "y"));
}

static bool secret_defined(json_t *secrets, const char *id)
{
    size_t i;
    json_t *v;

    json_array_foreach(secrets, i, v) {
        if (!strcmp(json_string_value(v), id)) {
            return true;
        }
    }
    return false;
}

/* Bytes of the LUKS header (partition header and eight key slots of
 * 4000 anti-forensic stripes of the master key each) that a qcow2 image
 * encrypted with opts' cipher puts before its data; 0 after printing an
 * error.  Only the key length of the cipher matters. */
static uint64_t luks_header_size(json_t *opts, json_t *secrets)
{
    static const struct { const char *name; unsigned key; } algs[] = {
        { "aes-128", 16 }, { "aes-192", 24 }, { "aes-256", 32 },
        { "twofish-128", 16 }, { "twofish-192", 24 }, { "twofish-256", 32 },
        { "serpent-128", 16 }, { "serpent-192", 24 }, { "serpent-256", 32 },
    };
    static const char *const modes[] = { "ecb", "cbc", "xts", "ctr", NULL };
    const char *alg = opt_str(opts, "encrypt.cipher-alg");
    const char *mode = opt_str(opts, "encrypt.cipher-mode");
    const char *secret = opt_str(opts, "encrypt.key-secret");
    unsigned key = 0;

    for (size_t i = 0; alg && i < ARRAY_SIZE(algs); i++) {
        if (!strcmp(alg, algs[i].name)) {
            key = algs[i].key;
        }
    }
    if (alg && !key) {
        error_report("Parameter 'cipher-alg' does not accept value '%s'", alg);
        return 0;
    }
    bool mode_ok = !mode;
    for (int i = 0; mode && modes[i]; i++) {
        mode_ok |= !strcmp(mode, modes[i]);
    }
    if (!mode_ok) {
        error_report("Parameter 'cipher-mode' does not accept value '%s'",
                     mode);
        return 0;
    }
    if (!secret) {
        error_report("Parameter 'encrypt.key-secret' is required for cipher");
        return 0;
    }
    if (!secret_defined(secrets, secret)) {
        error_report("No secret with id '%s'", secret);
        return 0;
    }
    uint64_t master_key = (alg ? key : 32) * (!mode || !strcmp(mode, "xts")
                                              ? 2 : 1);
    /* Slots start after the first 4 KiB; each is rounded up to 512-byte
     * sectors and then to a multiple of those 4 KiB. */
    uint64_t slot_sectors = round_up(DIV_ROUND_UP(master_key * 4000, 512), 8);
    return (8 + 8 * slot_sectors) * 512;
}

static bool qcow2_target(json_t *opts, json_t *secrets, MeasureTarget *t)
{
    t->extended_l2 = opt_bool(opts, "extended_l2");

    uint64_t cs = opt_uint(opts, "cluster_size", 65536);
    if (!is_pow2(cs) || cs < (1u << MIN_CLUSTER_BITS) ||
        cs > (1u << MAX_CLUSTER_BITS)) {
        error_report("Cluster size must be a power of two between %d and "
                     "%dk", 1 << MIN_CLUSTER_BITS,
                     1 << (MAX_CLUSTER_BITS - 10));
        return false;
    }
    if (t->extended_l2 &&
        cs < (1u << MIN_CLUSTER_BITS) * SUBCLUSTERS_PER_CLUSTER) {
        error_report("Extended L2 entries are only supported with cluster "
                     "sizes of at least %u bytes",
                     (1u << MIN_CLUSTER_BITS) * SUBCLUSTERS_PER_CLUSTER);
        return false;
    }
    t->cluster_size = cs;

    /* Only QEMU's two spellings: create's v2/v3 aliases are not read
     * here. */
    const char *compat = opt_str(opts, "compat");
    if (!compat || !strcmp(compat, "1.1")) {
        t->version = 3;
    } else if (!strcmp(compat, "0.10")) {
        t->version = 2;
    } else {
        error_report("Invalid compatibility level: '%s'", compat);
        return false;
    }

    uint64_t rb = opt_uint(opts, "refcount_bits", 16);
    if (rb > 64 || !is_pow2(rb)) {
        error_report("Refcount width must be a power of two and may not "
                     "exceed 64 bits");
        return false;
    }
    if (t->version < 3 && rb != 16) {
        error_report("Different refcount widths than 16 bits require "
                     "compatibility level 1.1 or above (use compat=1.1 or "
                     "greater)");
        return false;
    }
    t->refcount_order = (unsigned)__builtin_ctzll(rb);

    const char *pa = opt_str(opts, "preallocation");
    if (pa && strcmp(pa, "off") && strcmp(pa, "metadata") &&
        strcmp(pa, "falloc") && strcmp(pa, "full")) {
        error_report("invalid parameter value: %s", pa);
        return false;
    }
    t->full_prealloc = pa && (!strcmp(pa, "falloc") || !strcmp(pa, "full"));
    t->has_backing = opt_str(opts, "backing_file") != NULL;

    const char *enc = opt_str(opts, "encrypt.format");
    if (enc && !strcmp(enc, "luks")) {
        uint64_t header = luks_header_size(opts, secrets);
        if (!header) {
            return false;
        }
        t->luks_header = round_up(header, cs);
    }
    return true;
}

bool measure_target_from_opts(const char *fmt, json_t *opts,
                              json_t *secrets, MeasureTarget *t)
{
    *t = (MeasureTarget) { .qcow2 = !strcmp(fmt, "qcow2") };
    t->size = opt_uint(opts, "size", 0);
    return t->qcow2 ? qcow2_target(opts, secrets, t) : true;
}

/* Refcount blocks and table for clusters clusters, themselves counted:
 * iterate to the fixed point where they cover themselves too. */
static uint64_t refcount_metadata_size(uint64_t clusters, uint64_t cs,
                                       unsigned refcount_order)
{
    uint64_t per_table_cluster = cs / REFTABLE_ENTRY_SIZE;
    uint64_t per_block = cs * 8 >> refcount_order;
    uint64_t table = 0, blocks = 0, n = 0, last;

    do {
        last = n;
        blocks = DIV_ROUND_UP(clusters + table + blocks, per_block);
        table = DIV_ROUND_UP(blocks, per_table_cluster);
        n = clusters + blocks + table;
    } while (n != last);
    return (blocks + table) * cs;
}

uint64_t measure_qcow2_full_size(uint64_t total, uint64_t cs,
                                 unsigned refcount_order, bool extended_l2)
{
    uint64_t l2e = extended_l2 ? L2E_SIZE_EXTENDED : L2E_SIZE_NORMAL;
    uint64_t aligned = round_up(total, cs);
    uint64_t meta = cs; /* header */

    uint64_t nl2e = round_up(aligned / cs, cs / l2e);
    meta += nl2e * l2e;
    uint64_t nl1e = round_up(nl2e * l2e / cs, cs / L1E_SIZE);
    meta += nl1e * L1E_SIZE;
    meta += refcount_metadata_size((meta + aligned) / cs, cs, refcount_order);
    return meta + aligned;
}

/* Bytes of data clusters the copy allocates: every target cluster that
 * a data run of the source touches; zeroes (and holes) cost nothing. */
static bool source_required(BlockNode *src, uint64_t cs, uint64_t *out)
{
    uint64_t ssize = block_node_size(src);
    uint64_t required = 0;
    uint64_t pnum = 0;

    for (uint64_t offset = 0; offset < ssize; offset += pnum) {
        int ret = block_status_above(src, NULL, offset, ssize - offset,
                                     &pnum, NULL, NULL, NULL);
        if (ret < 0) {
            error_report("Unable to get block status: %s", strerror(-ret));
            return false;
        }
        if (ret & BLOCK_STATUS_ZERO) {
            continue;
        }
        if ((ret & (BLOCK_STATUS_DATA | BLOCK_STATUS_ALLOCATED)) ==
            (BLOCK_STATUS_DATA | BLOCK_STATUS_ALLOCATED)) {
            /* The rest of the last cluster is allocated anyway: skip it,
             * and count the head of the first cluster too. */
            pnum = round_up(offset + pnum, cs) - offset;
            required += offset % cs + pnum;
        }
    }
    *out = required;
    return true;
}

/* Persistent bitmaps can be copied only out of a qcow2 v3 image. */
static bool source_has_bitmap_support(BlockNode *src)
{
    if (strcmp(block_node_driver_name(src), "qcow2") != 0) {
        return false;
    }
    json_t *info = block_node_specific_info(src);
    const char *compat = json_string_value(
        json_object_get(json_object_get(info, "data"), "compat"));
    bool v3 = compat && strcmp(compat, "0.10") != 0;
    json_decref(info);
    return v3;
}

bool measure_compute(const MeasureTarget *t, BlockNode *src,
                     MeasureResult *r)
{
    *r = (MeasureResult) { 0 };
    if (!t->qcow2) {
        r->required = src ? block_node_size(src) : round_up(t->size, 512);
        r->fully_allocated = r->required;
        return true;
    }

    uint64_t cs = t->cluster_size;
    uint64_t vsize = round_up(t->size, cs);
    uint64_t l2e = t->extended_l2 ? L2E_SIZE_EXTENDED : L2E_SIZE_NORMAL;
    uint64_t l2_tables = DIV_ROUND_UP(vsize / cs, cs / l2e);
    if (l2_tables * L1E_SIZE > MAX_L1_BYTES) {
        error_report("The image size is too large (try using a larger "
                     "cluster size)");
        return false;
    }

    uint64_t required = 0;
    if (src) {
        vsize = round_up(block_node_size(src), cs);
        if (t->has_backing) {
            /* What the new backing file shares with the source is
             * unknown: assume nothing. */
            required = vsize;
        } else if (!source_required(src, cs, &required)) {
            return false;
        }
    }
    if (t->full_prealloc) {
        required = vsize;
    }
    r->fully_allocated = t->luks_header +
                         measure_qcow2_full_size(vsize, cs, t->refcount_order,
                                                 t->extended_l2);
    /* The metadata of the fully allocated image stays counted: an
     * overestimate, as QEMU's. */
    r->required = r->fully_allocated - vsize + required;
    r->has_bitmaps = t->version >= 3 && src && source_has_bitmap_support(src);
    if (r->has_bitmaps) {
        int64_t n = block_node_bitmaps_copy_size(src, cs);
        if (n < 0) {
            error_report("Unable to read the bitmap directory: %s",
                         strerror((int)-n));
            return false;
        }
        r->bitmaps = (uint64_t)n;
    }
    return true;
}
