/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img - the parallel copy engine behind convert.
 *
 * One thread hands out chunks (under a lock) from the block status of
 * the sources: data runs of up to CHUNK_DATA_MAX bytes, zero runs and
 * runs left to the target's backing file.  Worker threads read their
 * chunk, then write it; unless -W, writes happen in chunk order (a
 * worker waits for its turn after reading), which keeps a qcow2 target
 * laid out in guest order as qemu-img does, while reads overlap.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata-img/convert-copy.h"
#include "util/cleanup.h"
#include "util/error.h"

#define CHUNK_DATA_MAX (2u << 20)
#define CHUNK_ZERO_MAX (1ull << 30)
#define MAX_WORKERS 16

typedef enum ChunkKind { CHUNK_DATA, CHUNK_ZERO, CHUNK_SKIP } ChunkKind;

typedef struct Chunk {
    int src;
    uint64_t src_off;
    uint64_t dst_off;
    uint64_t len;
    ChunkKind kind;
    uint64_t seq;
    char *notes;        /* --salvage warnings, printed at its turn */
} Chunk;

typedef struct CopyState {
    const ConvertParams *p;
    pthread_mutex_t lock;
    pthread_cond_t turn;
    uint64_t total;

    /* Chunk hand-out position and cached status (guarded by lock). */
    int cur_src;
    uint64_t cur_off;
    uint64_t dst_base;
    uint64_t st_end;
    ChunkKind st_kind;
    uint64_t next_seq;

    char *notes;        /* warnings of the status in hand, for the next
                           chunk claimed */
    uint64_t write_seq; /* next chunk allowed to write (in order) */
    int err;            /* first error, -errno */
} CopyState;

static bool buf_is_zero(const uint8_t *buf, size_t len)
{
    return len == 0 || (buf[0] == 0 && memcmp(buf, buf + 1, len - 1) == 0);
}

/* What the copy does with the run of src starting at off, and its length
 * in *pnum.  Returns 0 or -errno (reported). */
/* Appends a --salvage warning to *notes (printed when its chunk's turn
 * comes, so the warnings come in the order of the image), or prints it
 * at once when notes is NULL. */
static void salvage_warn(char **notes, const char *what, uint64_t off, int err)
{
    if (!notes) {
        warn_report("error while reading %soffset %" PRIu64 ": %s", what, off,
                    strerror(-err));
        return;
    }
    char *more = NULL;
    if (asprintf(&more, "%s%s: warning: error while reading %soffset %" PRIu64
                 ": %s\n", *notes ? *notes : "", error_get_progname(), what,
                 off, strerror(-err)) >= 0) {
        free(*notes);
        *notes = more;
    }
}

static void salvage_flush(char **notes)
{
    if (*notes) {
        fputs(*notes, stderr);
        free(*notes);
        *notes = NULL;
    }
}

static int chunk_kind_at(const ConvertParams *p, BlockNode *src, uint64_t off,
                         uint64_t size, ChunkKind *kind, uint64_t *pnum,
                         char **notes)
{
    int st;
    uint64_t len = size - off;

    for (;;) {
        *pnum = 0;
        if (p->target_has_backing) {
            st = block_status(src, off, len, pnum, NULL, NULL);
        } else {
            st = block_status_above(src, NULL, off, len, pnum, NULL, NULL,
                                    NULL);
        }
        if (st >= 0 || !p->salvage) {
            break;
        }
        /* --salvage, as qemu-img: narrow the range down to the sector
         * that fails, and read that sector as data. */
        if (len > 512) {
            len = DIV_ROUND_UP(DIV_ROUND_UP(len, 512), 4) * 512;
            continue;
        }
        salvage_warn(notes, "block status at ", off, st);
        *kind = CHUNK_DATA;
        *pnum = MIN((uint64_t)512, size - off);
        return 0;
    }
    if (st < 0) {
        error_report("error while reading block status at offset %" PRIu64
                     ": %s", off, strerror(-st));
        return st;
    }
    if (*pnum == 0) {
        error_report("error while reading block status at offset %" PRIu64
                     ": no progress", off);
        return -EIO;
    }
    /* As qemu-img, a run ends on a cluster boundary of the source (a
     * sector at least) unless it is shorter, so reads stay aligned; this
     * also places qemu-img's progress steps. */
    uint64_t align = MAX((uint64_t)block_node_cluster_size(src), 512);
    uint64_t tail = (off + *pnum) % align;
    if (*pnum > tail) {
        *pnum -= tail;
    }
    if (st & BLOCK_STATUS_ZERO) {
        *kind = CHUNK_ZERO;
    } else if ((st & BLOCK_STATUS_DATA) || !p->target_has_backing) {
        *kind = CHUNK_DATA;
    } else {
        *kind = CHUNK_SKIP;
    }
    return 0;
}

/* Progress counts the bytes that are really copied (data, and zeroes
 * too under -S 0), as qemu-img's does, so a mostly empty disk does not
 * race to 100% over its holes. */
static bool chunk_counts_for_progress(const ConvertParams *p, ChunkKind kind)
{
    return kind == CHUNK_DATA || (kind == CHUNK_ZERO && p->min_sparse == 0);
}

/* The total for the progress meter: one pass over the sources' block
 * status before the copy, as qemu-img makes. */
static int progress_total(const ConvertParams *p, uint64_t *total)
{
    *total = 0;
    for (int i = 0; i < p->nsrc; i++) {
        uint64_t size = block_node_size(p->src[i]);
        for (uint64_t off = 0; off < size;) {
            ChunkKind kind;
            uint64_t pnum;
            int r = chunk_kind_at(p, p->src[i], off, size, &kind, &pnum,
                                  NULL);
            if (r < 0) {
                return r;
            }
            if (chunk_counts_for_progress(p, kind)) {
                *total += pnum;
            }
            off += pnum;
        }
    }
    return 0;
}

/* Called with s->lock held.  Returns 0 and fills c, 1 when everything
 * has been handed out, or -errno. */
static int claim_chunk(CopyState *s, Chunk *c)
{
    const ConvertParams *p = s->p;
    BlockNode *src;
    uint64_t size;

    for (;;) {
        if (s->cur_src >= p->nsrc) {
            return 1;
        }
        src = p->src[s->cur_src];
        size = block_node_size(src);
        if (s->cur_off < size) {
            break;
        }
        s->dst_base += size;
        s->cur_src++;
        s->cur_off = 0;
        s->st_end = 0;
    }

    if (s->st_end <= s->cur_off) {
        uint64_t pnum = 0;
        int r = chunk_kind_at(p, src, s->cur_off, size, &s->st_kind, &pnum,
                              &s->notes);
        if (r < 0) {
            return r;
        }
        s->st_end = s->cur_off + pnum;
    }

    ChunkKind kind = s->st_kind;
    uint64_t len = s->st_end - s->cur_off;
    /* Past the end of the target's backing file it reads as zeroes
     * already, so zero runs there are left unallocated (as qemu-img
     * does); runs are split at that end. */
    uint64_t tb = p->target_backing_size;
    uint64_t dst_off = s->dst_base + s->cur_off;
    if (dst_off < tb && tb - dst_off < len) {
        len = tb - dst_off;
    } else if (dst_off >= tb && kind == CHUNK_ZERO) {
        kind = CHUNK_SKIP;
    }
    /* Under -S 0 zeroes are written out like data, in data-sized
     * pieces (which also gives qemu-img's progress steps). */
    len = MIN(len, kind == CHUNK_DATA || p->min_sparse == 0 ? CHUNK_DATA_MAX
                                                            : CHUNK_ZERO_MAX);

    if (p->compressed && p->dst_cluster) {
        /* Compressed writes are whole clusters, so chunks are cut as
         * qemu-img cuts them: a run of at least a cluster is cut down to
         * whole clusters; a shorter one (a cluster only partly zero or
         * left to a backing file, or the partial cluster at the end) is
         * copied as one data cluster, and becomes a zero write if it is
         * all zero. */
        uint64_t cl = p->dst_cluster;
        uint64_t start = s->dst_base + s->cur_off;
        uint64_t src_end = s->dst_base + size;
        if (len < cl) {
            kind = CHUNK_DATA;
            len = MIN(cl, src_end - start);
        } else {
            len = ALIGN_DOWN(len, cl);
        }
    }

    *c = (Chunk) {
        .src = s->cur_src,
        .src_off = s->cur_off,
        .dst_off = s->dst_base + s->cur_off,
        .len = len,
        .kind = kind,
        .seq = s->next_seq++,
        .notes = s->notes,
    };
    s->notes = NULL;
    s->cur_off += len;
    return 0;
}

static int write_zero_run(const ConvertParams *p, uint64_t off, uint64_t len)
{
    int flags;

    if (p->has_zero_init) {
        return 0;
    }
    /* As qemu-img, which opens the target with unmap unless -S 0 asks
     * for a fully allocated one.  Above a backing file the range still
     * reads as zeroes: qcow2 leaves zero clusters there. */
    flags = p->min_sparse ? BLOCK_REQ_MAY_UNMAP : 0;
    return block_write_zeroes(p->dst, off, len, flags);
}

static int write_compressed(const ConvertParams *p, const Chunk *c,
                            const uint8_t *buf)
{
    for (uint64_t i = 0; i < c->len;) {
        uint64_t n = MIN(c->len - i, (uint64_t)p->dst_cluster);
        int r;
        if (buf_is_zero(buf + i, n)) {
            r = write_zero_run(p, c->dst_off + i, n);
        } else {
            r = block_write_compressed(p->dst, c->dst_off + i, n, buf + i);
        }
        if (r < 0) {
            return r;
        }
        i += n;
    }
    return 0;
}

/* Writes data runs and leaves out (or writes as zeroes) the granules
 * that are all zero. */
static int write_sparse(const ConvertParams *p, const Chunk *c,
                        const uint8_t *buf)
{
    uint64_t g = MAX(p->min_sparse, (uint64_t)p->dst_cluster);
    uint64_t pos = 0;

    while (pos < c->len) {
        uint64_t run_start = pos;
        bool zero = false;
        bool first = true;
        while (pos < c->len) {
            uint64_t abs = c->dst_off + pos;
            uint64_t next = MIN(c->len, (abs / g + 1) * g - c->dst_off);
            bool z = buf_is_zero(buf + pos, next - pos);
            if (first) {
                zero = z;
                first = false;
            } else if (z != zero) {
                break;
            }
            pos = next;
        }
        int r = zero ? write_zero_run(p, c->dst_off + run_start,
                                      pos - run_start)
                     : block_write(p->dst, c->dst_off + run_start,
                                   pos - run_start, buf + run_start, 0);
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

static int write_chunk(const ConvertParams *p, const Chunk *c,
                       const uint8_t *buf)
{
    switch (c->kind) {
    case CHUNK_SKIP:
        return 0;
    case CHUNK_ZERO:
        return write_zero_run(p, c->dst_off, c->len);
    case CHUNK_DATA:
        break;
    }
    if (p->compressed) {
        return write_compressed(p, c, buf);
    }
    if (p->min_sparse == 0) {
        return block_write(p->dst, c->dst_off, c->len, buf, 0);
    }
    return write_sparse(p, c, buf);
}

static void set_error(CopyState *s, int err)
{
    LOCK_GUARD(&s->lock);
    if (!s->err) {
        s->err = err;
    }
    pthread_cond_broadcast(&s->turn);
}

/* --salvage: the chunk could not be read whole; reads it a sector at a
 * time and gives the sectors that fail as zeroes, with a warning each. */
static void salvage_read(const ConvertParams *p, Chunk *c, uint8_t *buf)
{
    for (uint64_t i = 0; i < c->len; i += 512) {
        uint64_t n = MIN((uint64_t)512, c->len - i);
        int r = block_read(p->src[c->src], c->src_off + i, n, buf + i, 0);
        if (r < 0) {
            salvage_warn(&c->notes, "", c->src_off + i, r);
            memset(buf + i, 0, n);
        }
    }
}

static void *worker(void *opaque)
{
    CopyState *s = opaque;
    const ConvertParams *p = s->p;
    size_t bufsize = MAX((size_t)CHUNK_DATA_MAX, (size_t)p->dst_cluster);
    uint8_t *buf = NULL;

    if (posix_memalign((void **)&buf, 4096, bufsize) != 0) {
        set_error(s, -ENOMEM);
        return NULL;
    }
    for (;;) {
        Chunk c;
        int r;

        pthread_mutex_lock(&s->lock);
        r = s->err ? 1 : claim_chunk(s, &c);
        if (r < 0 && !s->err) {
            s->err = r;
            pthread_cond_broadcast(&s->turn);
        }
        pthread_mutex_unlock(&s->lock);
        if (r != 0) {
            break;
        }

        r = 0;
        if (c.kind == CHUNK_DATA) {
            ratelimit_wait(p->rate, c.len);
            r = block_read(p->src[c.src], c.src_off, c.len, buf, 0);
            if (r < 0 && p->salvage) {
                salvage_read(p, &c, buf);
                r = 0;
            } else if (r < 0) {
                error_report("error while reading at byte %" PRIu64 ": %s",
                             c.src_off, strerror(-r));
            }
        } else if (c.kind == CHUNK_ZERO && p->min_sparse == 0) {
            /* -S 0: zeroes are written as data, as qemu-img does, so
             * the target ends up fully allocated. */
            memset(buf, 0, c.len);
            c.kind = CHUNK_DATA;
        }
        if (!p->out_of_order) {
            pthread_mutex_lock(&s->lock);
            while (s->write_seq != c.seq && !s->err) {
                pthread_cond_wait(&s->turn, &s->lock);
            }
            bool failed = s->err != 0;
            pthread_mutex_unlock(&s->lock);
            if (failed) {
                free(c.notes);
                break;
            }
        }
        salvage_flush(&c.notes);
        if (r == 0) {
            r = write_chunk(p, &c, buf);
            if (r < 0) {
                error_report("error while writing at byte %" PRIu64 ": %s",
                             c.dst_off, strerror(-r));
            }
        }
        if (r < 0) {
            set_error(s, r);
            break;
        }
        /* In order, the meter moves before the next chunk may write, so
         * the steps it prints are the same on every run. */
        if (chunk_counts_for_progress(p, c.kind)) {
            img_progress_add(p->progress, c.len, s->total);
        }
        if (!p->out_of_order) {
            LOCK_GUARD(&s->lock);
            s->write_seq++;
            pthread_cond_broadcast(&s->turn);
        }
    }
    free(buf);
    return NULL;
}

int convert_copy(const ConvertParams *p)
{
    CopyState s = { .p = p };
    pthread_t threads[MAX_WORKERS];
    int n = MAX(1, MIN(p->workers, MAX_WORKERS));
    int started = 0;

    /* qemu-img always walks the sources once before copying; the walk
     * shows, with --salvage, as a first round of block-status warnings. */
    if (img_progress_enabled(p->progress) || p->salvage) {
        int r = progress_total(p, &s.total);
        if (r < 0) {
            return r;
        }
    }
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.turn, NULL);
    for (int i = 0; i < n; i++) {
        if (pthread_create(&threads[i], NULL, worker, &s) != 0) {
            break;
        }
        started++;
    }
    if (started == 0) {
        worker(&s); /* no threads available: copy on this one */
    }
    for (int i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    pthread_cond_destroy(&s.turn);
    pthread_mutex_destroy(&s.lock);
    free(s.notes);

    if (s.err == 0) {
        int r = block_flush(p->dst);
        if (r < 0) {
            error_report("error while flushing the target: %s", strerror(-r));
            return 1;
        }
    }
    return s.err ? 1 : 0;
}
