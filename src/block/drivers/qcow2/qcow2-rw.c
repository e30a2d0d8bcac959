/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 data path: reads, writes with allocation and
 * copy-on-write, compressed clusters, and in-flight allocation tracking.
 *
 * The image lock is taken to look up or change mappings and released
 * for guest data I/O.  An allocating write registers its guest clusters
 * as in flight, allocates host clusters at the end of the image, writes
 * the data (with the copy-on-write parts) unlocked, then publishes the
 * new L2 entries.  Readers therefore see the old mapping until the data
 * is complete, never a half-written cluster.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-io.h"
#include "block/drivers/qcow2/qcow2-subcluster.h"
#include "util/cleanup.h"
#include "util/log.h"

/* Above this a write with copy-on-write parts is split into the head
 * cluster, the middle (written straight from the caller's buffer) and
 * the tail cluster instead of being merged into one bounce buffer. */
#define QCOW2_MERGE_LIMIT (1u << 20)
/* Below this many bytes of zero copy-on-write, writing zeroes from a
 * buffer is cheaper than asking the storage to zero a range. */
#define QCOW2_ZERO_COW_MIN (32u << 10)

static bool ranges_overlap(uint64_t a, uint64_t an, uint64_t b, uint64_t bn)
{
    return a < b + bn && b < a + an;
}

void qcow2_inflight_wait_locked(BDRVQcow2State *s, uint64_t first, uint64_t nb)
{
    for (;;) {
        bool busy = false;
        for (Qcow2InflightAlloc *a = s->inflight; a; a = a->next) {
            if (ranges_overlap(first, nb, a->first_cluster, a->nb_clusters)) {
                busy = true;
                break;
            }
        }
        if (!busy) {
            return;
        }
        pthread_cond_wait(&s->alloc_cond, &s->lock);
    }
}

int qcow2_inflight_add_locked(BDRVQcow2State *s, uint64_t first, uint64_t nb,
                              Qcow2InflightAlloc *slot)
{
    slot->first_cluster = first;
    slot->nb_clusters = nb;
    slot->next = s->inflight;
    s->inflight = slot;
    return 0;
}

void qcow2_inflight_remove_locked(BDRVQcow2State *s, Qcow2InflightAlloc *slot)
{
    for (Qcow2InflightAlloc **p = &s->inflight; *p; p = &(*p)->next) {
        if (*p == slot) {
            *p = slot->next;
            break;
        }
    }
    pthread_cond_broadcast(&s->alloc_cond);
}

int qcow2_read_compressed(BlockNode *bs, uint64_t l2e, void *out)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2CompressedDesc d;
    qcow2_compressed_decode(l2e, s->cluster_bits, &d);
    /* The last compressed cluster of an image may end inside its last
     * sector, before the end of the descriptor's range. */
    uint64_t file_size = block_node_size(bs->file);
    if (d.host_offset >= file_size) {
        log_error("qcow2: %s: compressed cluster at %#" PRIx64
                  " lies beyond the end of the file", bs->filename,
                  d.host_offset);
        return -EIO;
    }
    uint64_t len = MIN(d.size, file_size - d.host_offset);
    uint8_t *in = qcow2_scratch_get(QCOW2_SCRATCH_COMPRESSED, len);
    if (!in) {
        return -ENOMEM;
    }
    int ret = block_read(bs->file, d.host_offset, len, in, 0);
    if (ret == 0) {
        ret = qcow2_decompress(s->compression_type, in, len, out,
                               s->cluster_size);
        if (ret < 0) {
            log_error("qcow2: %s: compressed cluster at %#" PRIx64
                      " is malformed", bs->filename, d.host_offset);
        }
    }
    qcow2_scratch_put(QCOW2_SCRATCH_COMPRESSED, in);
    return ret;
}

int qcow2_read_compressed_part(BlockNode *bs, uint64_t l2e, uint64_t offset,
                               uint64_t len, uint8_t *buf)
{
    BDRVQcow2State *s = bs->opaque;
    if (offset == 0 && len == s->cluster_size) {
        return qcow2_read_compressed(bs, l2e, buf);
    }
    uint8_t *cluster = qcow2_scratch_get(QCOW2_SCRATCH_CLUSTER,
                                         s->cluster_size);
    if (!cluster) {
        return -ENOMEM;
    }
    int ret = qcow2_read_compressed(bs, l2e, cluster);
    if (ret == 0) {
        memcpy(buf, cluster + offset, len);
    }
    qcow2_scratch_put(QCOW2_SCRATCH_CLUSTER, cluster);
    return ret;
}

/* Fills buf with what guest range [offset, offset+len) -- inside one run
 * of the mapping l2e describes, starting at guest offset run_start --
 * reads as now. */
static int read_old(BlockNode *bs, uint64_t l2e, uint64_t run_start,
                    uint64_t offset, uint64_t len, uint8_t *buf)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t size = block_node_size(bs);
    switch (qcow2_cluster_type(s, l2e)) {
    case QCOW2_CLUSTER_UNALLOCATED: {
        uint64_t in = offset < size ? MIN(len, size - offset) : 0;
        memset(buf + in, 0, len - in);
        return in ? block_read_backing(bs, offset, in, buf) : 0;
    }
    case QCOW2_CLUSTER_ZERO_PLAIN:
    case QCOW2_CLUSTER_ZERO_ALLOC:
        memset(buf, 0, len);
        return 0;
    case QCOW2_CLUSTER_NORMAL:
        return block_read(s->data_file,
                          (l2e & QCOW2_L2E_OFFSET_MASK) + (offset - run_start),
                          len, buf, 0);
    case QCOW2_CLUSTER_COMPRESSED:
        return qcow2_read_compressed_part(bs, l2e, offset - run_start, len,
                                          buf);
    }
    return -EIO;
}

int qcow2_co_pread(BlockNode *bs, uint64_t offset, uint64_t bytes, void *buf,
                   int flags)
{
    BDRVQcow2State *s = bs->opaque;
    if (s->extended_l2) {
        return qcow2_sc_pread(bs, offset, bytes, buf);
    }
    uint8_t *p = buf;
    while (bytes > 0) {
        if (atomic_load(&s->broken)) {
            return -EIO;
        }
        uint64_t in_cluster = offset & (s->cluster_size - 1);
        uint64_t want = DIV_ROUND_UP(in_cluster + bytes, s->cluster_size);
        uint64_t l2e, nb;
        int ret;
        {
            LOCK_GUARD(&s->lock);
            ret = qcow2_get_cluster_locked(bs, offset, want, &l2e, &nb);
        }
        if (ret < 0) {
            return ret;
        }
        uint64_t cur = MIN(bytes, nb * s->cluster_size - in_cluster);
        ret = read_old(bs, l2e, offset - in_cluster, offset, cur, p);
        if (ret < 0) {
            return ret;
        }
        offset += cur;
        bytes -= cur;
        p += cur;
    }
    return 0;
}

static int write_split(BlockNode *bs, uint64_t old_l2e, uint64_t run_start,
                       uint64_t host, uint64_t n, uint64_t head,
                       uint64_t len, const uint8_t *data, uint8_t *bounce);

/* Writes guest data plus the copy-on-write parts of a newly mapped run:
 * host clusters [host, host + n*cs) will map guest clusters from
 * run_start; the guest data covers [run_start+head, +len). */
static int write_allocated(BlockNode *bs, uint64_t old_l2e, uint64_t run_start,
                           uint64_t host, uint64_t n, uint64_t head,
                           uint64_t len, const uint8_t *data)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t total = n * cs;
    uint64_t tail = total - head - len;
    int ret;

    if (head == 0 && tail == 0) {
        return block_write(s->data_file, host, len, data, 0);
    }
    /* When the copy-on-write parts are zeroes, let the storage zero the
     * new clusters cheaply (as QEMU does) and write only the data.  The
     * clusters are not visible to readers until the L2 update. */
    Qcow2ClusterType old_type = qcow2_cluster_type(s, old_l2e);
    if (head + tail >= QCOW2_ZERO_COW_MIN &&
        (old_type == QCOW2_CLUSTER_ZERO_PLAIN ||
        old_type == QCOW2_CLUSTER_ZERO_ALLOC ||
         (old_type == QCOW2_CLUSTER_UNALLOCATED && !bs->backing))) {
        if (block_write_zeroes(s->data_file, host, total,
                               BLOCK_REQ_NO_FALLBACK) == 0) {
            return block_write(s->data_file, host + head, len, data, 0);
        }
    }
    if (n == 1 || total <= QCOW2_MERGE_LIMIT) {
        uint8_t *bounce = qcow2_scratch_get(QCOW2_SCRATCH_BOUNCE, total);
        if (!bounce) {
            return -ENOMEM;
        }
        if (head && tail) {
            /* One read of the whole run (as QEMU does) instead of two:
             * the part the data replaces costs less than a request. */
            ret = read_old(bs, old_l2e, run_start, run_start, total, bounce);
            tail = 0;
        } else {
            ret = head ? read_old(bs, old_l2e, run_start, run_start, head,
                                  bounce)
                       : 0;
        }
        memcpy(bounce + head, data, len);
        if (ret == 0 && tail) {
            ret = read_old(bs, old_l2e, run_start, run_start + head + len,
                           tail, bounce + head + len);
        }
        if (ret == 0) {
            ret = block_write(s->data_file, host, total, bounce, 0);
        }
        qcow2_scratch_put(QCOW2_SCRATCH_BOUNCE, bounce);
        return ret;
    }
    uint8_t *bounce = qcow2_scratch_get(QCOW2_SCRATCH_BOUNCE, cs);
    if (!bounce) {
        return -ENOMEM;
    }
    ret = write_split(bs, old_l2e, run_start, host, n, head, len, data,
                      bounce);
    qcow2_scratch_put(QCOW2_SCRATCH_BOUNCE, bounce);
    return ret;
}

/* write_allocated for several clusters: merges only the first and last
 * one (in bounce, one cluster) and writes the middle from data. */
static int write_split(BlockNode *bs, uint64_t old_l2e, uint64_t run_start,
                       uint64_t host, uint64_t n, uint64_t head,
                       uint64_t len, const uint8_t *data, uint8_t *bounce)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t total = n * cs;
    uint64_t tail = total - head - len;
    int ret = 0;
    uint64_t done = 0; /* bytes of data written */
    if (head) {
        ret = read_old(bs, old_l2e, run_start, run_start, head, bounce);
        if (ret < 0) {
            return ret;
        }
        memcpy(bounce + head, data, cs - head);
        ret = block_write(s->data_file, host, cs, bounce, 0);
        if (ret < 0) {
            return ret;
        }
        done = cs - head;
    }
    uint64_t middle_end = tail ? total - cs : total; /* host-relative */
    uint64_t pos = head + done;                      /* host-relative */
    if (middle_end > pos) {
        ret = block_write(s->data_file, host + pos, middle_end - pos, data + done,
                          0);
        if (ret < 0) {
            return ret;
        }
        done += middle_end - pos;
    }
    if (tail) {
        uint64_t in_last = len - done;
        memcpy(bounce, data + done, in_last);
        ret = read_old(bs, old_l2e, run_start, run_start + total - tail, tail,
                       bounce + in_last);
        if (ret < 0) {
            return ret;
        }
        ret = block_write(s->data_file, host + total - cs, cs, bounce, 0);
    }
    return ret;
}

/* Publishes n new L2 entries host | COPIED for guest clusters from
 * first_guest.  The references the old entries held are dropped at the
 * next cache flush, after the L2 table is on disk (a crash must not
 * leave an on-disk L2 entry pointing at a free cluster). */
static int publish_l2_locked(BlockNode *bs, uint64_t first_guest,
                             uint64_t host, uint64_t n, bool reuse,
                             bool *published)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t l1_index = first_guest >> (s->cluster_bits + s->l2_bits);
    uint64_t l2_index = (first_guest >> s->cluster_bits) & (s->l2_entries - 1);
    void *table;
    int ret = qcow2_get_l2_for_write_locked(bs, l1_index, &table);
    if (ret < 0) {
        return ret;
    }
    uint64_t old_small[16];
    CLEANUP_FREE uint64_t *old_big = NULL;
    uint64_t *old = old_small;
    if (n > ARRAY_SIZE(old_small)) {
        old = old_big = calloc(n, sizeof(uint64_t));
        if (!old) {
            qcow2_cache_put(s->l2_cache, table);
            return -ENOMEM;
        }
    }
    bool need_free = false;
    for (uint64_t i = 0; i < n; i++) {
        old[i] = qcow2_l2_get(s, table, l2_index + i);
        qcow2_l2_set(s, table, l2_index + i,
                     (host + i * s->cluster_size) | QCOW2_OFLAG_COPIED);
        Qcow2ClusterType t = qcow2_cluster_type(s, old[i]);
        if (!reuse && (t == QCOW2_CLUSTER_NORMAL || t == QCOW2_CLUSTER_ZERO_ALLOC
                       || t == QCOW2_CLUSTER_COMPRESSED)) {
            need_free = true;
        }
    }
    qcow2_cache_mark_dirty(s->l2_cache, table);
    qcow2_cache_put(s->l2_cache, table);
    *published = true;
    for (uint64_t i = 0; need_free && ret == 0 && i < n; i++) {
        Qcow2ClusterType t = qcow2_cluster_type(s, old[i]);
        if (t == QCOW2_CLUSTER_NORMAL || t == QCOW2_CLUSTER_ZERO_ALLOC ||
            t == QCOW2_CLUSTER_COMPRESSED) {
            ret = qcow2_defer_free_locked(bs, old[i]);
        }
    }
    return ret;
}

/* Writes one piece that stays within one L2 table and one mapping run;
 * returns the number of bytes written or -errno. */
static int64_t write_piece(BlockNode *bs, uint64_t offset, uint64_t bytes,
                           const uint8_t *buf, int flags, bool *meta_changed)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t cluster = offset >> s->cluster_bits;
    uint64_t in_cluster = offset & (cs - 1);
    uint64_t l2_room = s->l2_entries - (cluster & (s->l2_entries - 1));
    uint64_t want = MIN(DIV_ROUND_UP(in_cluster + bytes, cs), l2_room);
    uint64_t l2e, nb, host;
    Qcow2InflightAlloc slot;
    int ret;

    pthread_mutex_lock(&s->lock);
    qcow2_inflight_wait_locked(s, cluster, want);
    ret = qcow2_get_cluster_locked(bs, offset, want, &l2e, &nb);
    if (ret < 0) {
        pthread_mutex_unlock(&s->lock);
        return ret;
    }
    uint64_t cur = MIN(bytes, nb * cs - in_cluster);
    Qcow2ClusterType type = qcow2_cluster_type(s, l2e);

    if (type == QCOW2_CLUSTER_NORMAL && (l2e & QCOW2_OFLAG_COPIED)) {
        host = (l2e & QCOW2_L2E_OFFSET_MASK) + in_cluster;
        ret = qcow2_check_data_write_locked(bs, host, cur);
        pthread_mutex_unlock(&s->lock);
        if (ret < 0) {
            return ret;
        }
        ret = block_write(s->data_file, host, cur, buf,
                          flags & BLOCK_REQ_FUA);
        return ret < 0 ? ret : (int64_t)cur;
    }

    uint64_t n = DIV_ROUND_UP(in_cluster + cur, cs);
    bool reuse = type == QCOW2_CLUSTER_ZERO_ALLOC && (l2e & QCOW2_OFLAG_COPIED);
    bool fresh = false;     /* host clusters newly allocated for us */
    bool published = false; /* the L2 entries point at them */
    qcow2_inflight_add_locked(s, cluster, n, &slot);
    ret = qcow2_mark_dirty_locked(bs);
    if (ret == 0) {
        if (reuse) {
            host = l2e & QCOW2_L2E_OFFSET_MASK;
            ret = qcow2_check_data_write_locked(bs, host, n * cs);
        } else {
            /* The L2 table first, as QEMU does, so that images written
             * by strata are laid out as qemu-io would lay them out. */
            void *table;
            ret = qcow2_get_l2_for_write_locked(
                bs, cluster >> s->l2_bits, &table);
            if (ret == 0) {
                qcow2_cache_put(s->l2_cache, table);
                ret = qcow2_alloc_data_locked(bs, cluster, n, &host, &fresh);
            }
            if (ret == 0) {
                ret = qcow2_check_data_write_locked(bs, host, n * cs);
                /* An overlap with metadata marked the image corrupt:
                 * leave its refcounts alone for check to judge. */
                fresh = fresh && ret == 0;
            }
        }
    }
    pthread_mutex_unlock(&s->lock);

    if (ret == 0) {
        ret = write_allocated(bs, l2e, cluster << s->cluster_bits, host, n,
                              in_cluster, cur, buf);
    }

    pthread_mutex_lock(&s->lock);
    if (ret == 0) {
        ret = publish_l2_locked(bs, cluster << s->cluster_bits, host, n, reuse,
                                &published);
        *meta_changed = true;
    }
    if (ret < 0 && fresh && !published) {
        /* Nothing references the new clusters: give them back, or every
         * retry of a write held on ENOSPC would leak its allocation.
         * The write's own error is what the caller must see. */
        qcow2_free_new_clusters_locked(bs, host, n);
    }
    qcow2_inflight_remove_locked(s, &slot);
    pthread_mutex_unlock(&s->lock);
    return ret < 0 ? ret : (int64_t)cur;
}

int qcow2_co_pwrite(BlockNode *bs, uint64_t offset, uint64_t bytes,
                    const void *buf, int flags)
{
    BDRVQcow2State *s = bs->opaque;
    if (s->metadata_only) {
        return -EROFS;
    }
    const uint8_t *p = buf;
    bool meta_changed = false;
    while (bytes > 0) {
        if (atomic_load(&s->broken)) {
            return -EIO;
        }
        int64_t n = s->extended_l2
            ? qcow2_sc_write_piece(bs, offset, bytes, p, flags, &meta_changed)
            : write_piece(bs, offset, bytes, p, flags, &meta_changed);
        if (n < 0) {
            return (int)n;
        }
        offset += (uint64_t)n;
        bytes -= (uint64_t)n;
        p += n;
    }
    if ((flags & BLOCK_REQ_FUA) && meta_changed) {
        int ret = qcow2_flush_data_file(bs);
        if (ret == 0) {
            ret = qcow2_flush_caches(bs);
        }
        return ret < 0 ? ret : block_flush(bs->file);
    }
    return 0;
}

static int write_compressed(BlockNode *bs, uint64_t offset, const void *out,
                            uint64_t clen);

int qcow2_co_pwrite_compressed(BlockNode *bs, uint64_t offset, uint64_t bytes,
                               const void *buf)
{
    BDRVQcow2State *s = bs->opaque;
    if (s->metadata_only) {
        return -EROFS;
    }
    /* As QEMU: an external data file holds each cluster at its guest
     * offset, where a compressed cluster has no place. */
    if (qcow2_has_data_file(s)) {
        return -ENOTSUP;
    }
    uint64_t cs = s->cluster_size;
    if (atomic_load(&s->broken)) {
        return -EIO;
    }
    if ((offset & (cs - 1)) || bytes == 0 || bytes > cs) {
        return -EINVAL;
    }
    /* The output slot stays taken until the data is written; the input
     * slot only while compressing (a short last cluster is padded). */
    uint8_t *out = qcow2_scratch_get(QCOW2_SCRATCH_COMPRESSED, cs);
    if (!out) {
        return -ENOMEM;
    }
    int64_t clen;
    if (bytes == cs) {
        clen = qcow2_compress(s->compression_type, buf, cs, out, cs - 1);
    } else {
        uint8_t *in = qcow2_scratch_get(QCOW2_SCRATCH_CLUSTER, cs);
        if (!in) {
            qcow2_scratch_put(QCOW2_SCRATCH_COMPRESSED, out);
            return -ENOMEM;
        }
        memcpy(in, buf, bytes);
        memset(in + bytes, 0, cs - bytes);
        clen = qcow2_compress(s->compression_type, in, cs, out, cs - 1);
        qcow2_scratch_put(QCOW2_SCRATCH_CLUSTER, in);
    }
    if (clen <= 0) {
        qcow2_scratch_put(QCOW2_SCRATCH_COMPRESSED, out);
        if (clen < 0) {
            return (int)clen;
        }
        /* Does not shrink: store it as a normal cluster. */
        return qcow2_co_pwrite(bs, offset, bytes, buf, 0);
    }
    int ret = write_compressed(bs, offset, out, clen);
    qcow2_scratch_put(QCOW2_SCRATCH_COMPRESSED, out);
    return ret;
}

/* Allocates room for clen compressed bytes at the end of the image,
 * writes them and maps the guest cluster at offset to them. */
static int write_compressed(BlockNode *bs, uint64_t offset, const void *out,
                            uint64_t clen)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cluster = offset >> s->cluster_bits;
    uint64_t l1_index = cluster >> s->l2_bits;
    uint64_t l2_index = cluster & (s->l2_entries - 1);
    Qcow2InflightAlloc slot;
    uint64_t host = 0;
    int ret;

    pthread_mutex_lock(&s->lock);
    qcow2_inflight_wait_locked(s, cluster, 1);
    void *table;
    ret = qcow2_get_l2_for_write_locked(bs, l1_index, &table);
    if (ret < 0) {
        pthread_mutex_unlock(&s->lock);
        return ret;
    }
    uint64_t old = qcow2_l2_get(s, table, l2_index);
    qcow2_cache_put(s->l2_cache, table);
    if (old & QCOW2_L2E_OFFSET_MASK) {
        /* As QEMU: compressed clusters are only written to unallocated
         * space (convert -c, backup targets). */
        pthread_mutex_unlock(&s->lock);
        return -EIO;
    }
    qcow2_inflight_add_locked(s, cluster, 1, &slot);
    ret = qcow2_mark_dirty_locked(bs);
    bool fresh = false;
    if (ret == 0) {
        ret = qcow2_alloc_bytes_locked(bs, clen, &host);
    }
    if (ret == 0) {
        ret = qcow2_check_data_write_locked(bs, host, clen);
        fresh = ret == 0;
    }
    pthread_mutex_unlock(&s->lock);

    if (ret == 0) {
        ret = block_write(bs->file, host, clen, out, 0);
    }

    pthread_mutex_lock(&s->lock);
    if (ret == 0) {
        uint64_t l2e = qcow2_compressed_encode(host, clen,
                                               s->cluster_bits);
        ret = l2e ? qcow2_get_l2_for_write_locked(bs, l1_index, &table)
                  : -EFBIG;
        if (ret == 0) {
            qcow2_l2_set(s, table, l2_index, l2e);
            if (s->extended_l2) {
                /* Compressed clusters have no subclusters. */
                qcow2_l2_bitmap_set(table, l2_index, 0);
            }
            qcow2_cache_mark_dirty(s->l2_cache, table);
            qcow2_cache_put(s->l2_cache, table);
            fresh = false;
        }
    }
    if (ret < 0 && fresh) {
        /* Unreferenced: drop the reference taken for it.  A packed host
         * cluster left at refcount 0 is not packed into again. */
        qcow2_update_refcount_locked(bs, host, clen, -1);
    }
    qcow2_inflight_remove_locked(s, &slot);
    pthread_mutex_unlock(&s->lock);
    return ret;
}
