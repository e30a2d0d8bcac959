/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the block-stream job.
 *
 * The job walks the top image in chunks.  A chunk the top image holds
 * is skipped; a chunk that a layer between the top and the base holds
 * is copied into the top with block_copy_on_read(), which serialises
 * the copy against client writes so a write made during the stream is
 * never overwritten with the template's older data; a chunk that only
 * the base (or nobody) holds stays where it is.  Progress counts both,
 * so it jumps over what needs no copy, as QEMU's does.  A restarted
 * stream therefore copies only what is not yet local.
 *
 * At the end (main thread) the header's backing link is rewritten to
 * the base (or removed), then the graph link is swapped under drain;
 * intermediate nodes nobody else holds are closed with it.
 */
#include "jobs/stream.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "block/block.h"
#include "block/accounting.h"
#include "jobs/job.h"
#include "jobs/rate-control.h"
#include "util/cleanup.h"
#include "util/keyval.h"
#include "util/log.h"

/* QEMU's chunk: the unit of progress, pausing and rate limiting. */
#define STREAM_CHUNK (512 * 1024)

typedef struct StreamJob {
    BlockNode *top;               /* referenced through job_add_node */
    BlockNode *base;              /* not copied from; NULL = whole chain */
    char *backing_file;           /* for the header when base is set */
    char *backing_fmt;
    bool cor_enabled;
    /* QEMU's copy-on-read filter above the top for the job's life: the
     * top's users (exports) read through it, so what a client reads is
     * copied too. */
    BlockNode *filter;
    bool adaptive;
    uint64_t delay_ns;            /* before the first copy */
    RateControl rc;               /* when adaptive */
    BlockUser *user;
} StreamJob;

typedef struct CopyCtx {
    BlockNode *top, *base;
    uint64_t offset, bytes;
} CopyCtx;

static int copy_chunk(void *opaque)
{
    CopyCtx *c = opaque;
    return block_copy_on_read(c->top, c->base, c->offset, c->bytes, NULL);
}

/* Whether [offset, offset + *n) needs a copy; shrinks *n to the run with
 * one answer.  1 copy, 0 skip, -errno. */
static int needs_copy(StreamJob *s, uint64_t offset, uint64_t *n)
{
    uint64_t pnum = 0;
    int depth = 0;
    int ret = block_status_above(s->top, s->base, offset, *n, &pnum, NULL,
                                 NULL, &depth);
    if (ret < 0) {
        return ret;
    }
    *n = pnum;
    return depth > 1;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* What the top node's clients (not the job) have done so far. */
static RateSample client_sample(BlockNode *top)
{
    RateSample r = { 0 };
    BlockAcct *acct = block_node_acct(top);
    if (acct) {
        BlockAcctOpStats st[BLOCK_ACCT__MAX];
        block_acct_get_origin_stats(acct, BLOCK_ORIGIN_CLIENT, st);
        r.ops = st[BLOCK_ACCT_READ].ops + st[BLOCK_ACCT_WRITE].ops;
        r.total_time_ns = st[BLOCK_ACCT_READ].total_time_ns +
                          st[BLOCK_ACCT_WRITE].total_time_ns;
    }
    return r;
}

/* Between chunks: a new decision every period. */
static void adapt(Job *job, StreamJob *s, RateControl *rc, uint64_t *next)
{
    uint64_t now = mono_ns();
    if (now < *next) {
        return;
    }
    *next = now + RATE_CONTROL_PERIOD_NS;
    rc->ceiling = job_get_speed(job) ? job_get_speed(job) : rc->ceiling;
    RateDecision d = rate_control_update(rc, now, client_sample(s->top));
    job_set_effective_speed(job, d.rate);
    if (d.pause_ns) {
        job_sleep_ns(job, d.pause_ns);
    }
}

/* An adaptive job yields the CPU to the clients at once: at the lowest
 * priority, the scheduler hands the job only what the daemon's request
 * threads leave over, within microseconds, far faster than any rate
 * decision.  (SCHED_IDLE would starve the job while it holds a range a
 * client write waits for; nice 19 still lets it through.)  The rate
 * controller then only has to watch what the scheduler cannot see: the
 * storage and the link to the template. */
static void lower_cpu_priority(void)
{
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), 19) != 0) {
        log_warn("stream: cannot lower the job's CPU priority: %s",
                 strerror(errno));
    }
}

static int stream_run(Job *job, Error **errp)
{
    StreamJob *s = job_opaque(job);
    uint64_t len = block_node_size(s->top);
    int error = 0;
    uint64_t next_decision = 0;

    /* An image's prefetch-delay: the guest boots first. */
    for (uint64_t end = mono_ns() + s->delay_ns; mono_ns() < end;) {
        if (job_pause_point(job)) {
            return 0;       /* cancelled: the core ends the job */
        }
        job_sleep_ns(job, MIN(end - mono_ns(), 100 * 1000 * 1000ULL));
    }
    if (s->adaptive && s->delay_ns) {
        /* What the clients did during the delay is the history the
         * controller starts from. */
        rate_control_init(&s->rc, job_get_speed(job), s->rc.seed, mono_ns(),
                          client_sample(s->top));
        job_set_effective_speed(job, s->rc.rate);
    }
    if (s->adaptive) {
        lower_cpu_priority();
        /* The first decision needs a period of the clients to judge. */
        next_decision = mono_ns() + RATE_CONTROL_PERIOD_NS;
    }

    job_progress_set_total(job, len);
    for (uint64_t offset = 0; offset < len;) {
        if (job_pause_point(job)) {
            break;
        }
        if (s->adaptive) {
            adapt(job, s, &s->rc, &next_decision);
        }
        uint64_t n = MIN((uint64_t)STREAM_CHUNK, len - offset);
        int ret = needs_copy(s, offset, &n);
        bool copy = ret > 0;
        if (copy) {
            CopyCtx c = { s->top, s->base, offset, n };
            /* Under the job's on-error policy: "stop" holds this request
             * (the job pauses) and retries it on resume; "ignore"
             * completes it and the job remembers the error. */
            ret = block_user_run(s->user, BLOCK_REQ_READ, 0, n, copy_chunk,
                                 &c);
        }
        if (ret < 0) {
            error = ret;
            break;
        }
        offset += n;
        job_progress_add(job, n);
        if (copy) {
            job_rate_wait(job, n);
        }
    }
    if (error == 0) {
        error = job_ignored_error(job);
    }
    if (error < 0 && !job_is_cancelled(job)) {
        error_setg(errp, "%s", strerror(-error));
    }
    return error;
}

/* The header first: it may fail, and then nothing has changed. */
static int stream_prepare(Job *job, Error **errp)
{
    StreamJob *s = job_opaque(job);
    if (!block_node_backing(s->top)) {
        return 0;
    }
    if (!block_change_backing_file(s->top, s->base ? s->backing_file : NULL,
                                   s->base ? s->backing_fmt : NULL, errp)) {
        return -EIO;
    }
    return 0;
}

static void stream_commit(Job *job)
{
    StreamJob *s = job_opaque(job);
    Error *err = NULL;
    if (!block_node_set_backing(s->top, s->base, &err)) {
        /* The base is in top's chain: this cannot close a cycle. */
        error_free(err);
    }
}

/* The top's users go back to it, and the filter closes. */
static void remove_filter(StreamJob *s)
{
    if (!s->filter) {
        return;
    }
    Error *err = NULL;
    if (!block_node_replace(s->filter, s->top, &err)) {
        /* Only memory can fail here: the users held these permissions
         * on the top before. */
        log_error("stream: cannot take out the filter '%s': %s",
                  block_node_name(s->filter), error_get_pretty(err));
        error_free(err);
    }
    block_node_unref(s->filter);
    s->filter = NULL;
}

/* QEMU's bdrv_insert_node of a copy-on-read filter whose bottom is the
 * node just above the base (base_overlay). */
static BlockNode *insert_filter(BlockNode *top, BlockNode *base,
                                const char *name, Error **errp)
{
    BlockNode *bottom = top;
    while (block_node_backing(bottom) && block_node_backing(bottom) != base) {
        bottom = block_node_backing(bottom);
    }
    CLEANUP_JSON json_t *opts = json_pack(
        "{s:s, s:s, s:s}", "driver", "copy-on-read",
        "file", block_node_name(top), "bottom", block_node_name(bottom));
    if (name) {
        json_object_set_new(opts, "node-name", json_string(name));
    }
    BlockNode *f = block_node_open(opts, errp);
    if (!f) {
        error_prepend(errp, "Could not create node: ");
        return NULL;
    }
    if (!block_node_replace(top, f, errp)) {
        block_node_unref(f);
        f = NULL;
    }
    return f;
}

static void stream_clean(Job *job)
{
    StreamJob *s = job_opaque(job);
    remove_filter(s);
    if (s->cor_enabled) {
        block_cor_disable(s->top);
        s->cor_enabled = false;
    }
    if (s->base) {
        block_node_unref(s->base);
        s->base = NULL;
    }
}

static void stream_state_free(StreamJob *s)
{
    if (s) {
        remove_filter(s);
        if (s->base) {
            block_node_unref(s->base);
        }
        free(s->backing_file);
        free(s->backing_fmt);
        free(s);
    }
}

static void stream_free(Job *job)
{
    stream_state_free(job_opaque(job));
}

static const JobDriver stream_driver = {
    .type = "stream",
    .run = stream_run,
    .prepare = stream_prepare,
    .commit = stream_commit,
    .clean = stream_clean,
    .free = stream_free,
};

/* The node of bs's chain (below bs) whose filename is name, as QEMU's
 * bdrv_find_backing_image compares it. */
static BlockNode *find_backing_image(BlockNode *bs, const char *name)
{
    for (BlockNode *n = block_node_backing(bs); n; n = block_node_backing(n)) {
        if (!strcmp(block_node_filename(n), name)) {
            return n;
        }
    }
    return NULL;
}

static bool chain_contains(BlockNode *top, BlockNode *n)
{
    for (BlockNode *c = top; c; c = block_node_backing(c)) {
        if (c == n) {
            return true;
        }
    }
    return false;
}

bool stream_start(const StreamOptions *o, Error **errp)
{
    if (o->base && o->base_node) {
        error_setg(errp, "'base' and 'base-node' cannot be specified at the "
                   "same time");
        return false;
    }
    if (o->base && o->bottom) {
        error_setg(errp, "'base' and 'bottom' cannot be specified at the same "
                   "time");
        return false;
    }
    if (o->bottom && o->base_node) {
        error_setg(errp, "'bottom' and 'base-node' cannot be specified at the "
                   "same time");
        return false;
    }
    BlockNode *bs = block_node_find(o->device);
    if (!bs) {
        error_setg(errp, "Cannot find device='%s' nor node-name='%s'",
                   o->device, o->device);
        return false;
    }
    BlockNode *base = NULL;
    if (o->base) {
        base = find_backing_image(bs, o->base);
        if (!base) {
            error_setg(errp, "Can't find '%s' in the backing chain", o->base);
            return false;
        }
    }
    if (o->base_node) {
        base = block_node_find(o->base_node);
        if (!base) {
            error_setg(errp, "Cannot find device='' nor node-name='%s'",
                       o->base_node);
            return false;
        }
        if (base == bs || !chain_contains(bs, base)) {
            error_setg(errp, "Node '%s' is not a backing image of '%s'",
                       o->base_node, o->device);
            return false;
        }
    }
    if (o->bottom) {
        BlockNode *bottom = block_node_find(o->bottom);
        if (!bottom) {
            error_setg(errp, "Cannot find device='' nor node-name='%s'",
                       o->bottom);
            return false;
        }
        if (block_node_is_filter(bottom)) {
            error_setg(errp, "Node '%s' is a filter, use a non-filter node as "
                       "'bottom'", o->bottom);
            return false;
        }
        if (!chain_contains(bs, bottom)) {
            error_setg(errp, "Node '%s' is not in a chain starting from '%s'",
                       o->bottom, o->device);
            return false;
        }
        base = block_node_backing(bottom);
    }
    /* Every node from the top down to the base is the job's. */
    for (BlockNode *n = bs; n && n != base; n = block_node_backing(n)) {
        if (job_node_busy(n, errp)) {
            return false;
        }
    }
    if (!base && o->backing_file) {
        error_setg(errp, "backing file specified, but streaming the entire "
                   "chain");
        return false;
    }

    StreamJob *s = calloc(1, sizeof(*s));
    if (!s) {
        error_setg(errp, "Out of memory");
        return false;
    }
    s->top = bs;
    s->adaptive = o->adaptive_speed;
    s->delay_ns = o->delay_ns;
    if (base) {
        block_node_ref(base);
        s->base = base;
        s->backing_file = strdup(o->backing_file ? o->backing_file
                                                 : block_node_filename(base));
        s->backing_fmt = strdup(block_node_driver_name(base));
    }
    s->filter = insert_filter(bs, base, o->filter_node_name, errp);
    if (!s->filter) {
        stream_state_free(s);
        return false;
    }
    if (s->adaptive) {
        block_cor_filter_set_copying(s->filter, false);
    }
    JobOptions jo = {
        .id = o->job_id ? o->job_id : "",
        .auto_finalize = o->auto_finalize,
        .auto_dismiss = o->auto_dismiss,
    };
    Job *job = job_create(&stream_driver, &jo, s, errp);
    if (!job) {
        return false;       /* job_create freed s (and the filter) */
    }
    /* As QEMU, a bad speed is found after the job exists: it goes from
     * created straight to null. */
    if (o->has_speed && !job_set_speed(job, o->speed, errp)) {
        job_discard(job);
        return false;
    }
    job_add_node(job, s->filter);
    for (BlockNode *n = bs; n && n != base; n = block_node_backing(n)) {
        job_add_node(job, n);
    }
    /* The nodes below the top leave the chain when the job ends, and the
     * job reads each block of them once: nobody may write or resize them
     * meanwhile (QEMU's "intermediate node" links). */
    for (BlockNode *n = block_node_backing(bs); n && n != base;
         n = block_node_backing(n)) {
        if (!job_hold_node(job, n, "intermediate node", 0,
                           BLOCK_PERM_CONSISTENT_READ |
                           BLOCK_PERM_WRITE_UNCHANGED, errp)) {
            job_discard(job);
            return false;
        }
    }
    /* QEMU reports the length as soon as the job exists. */
    job_progress_set_total(job, block_node_size(bs));
    s->user = job_add_user(job, bs, BLOCK_PERM_CONSISTENT_READ |
                           BLOCK_PERM_WRITE_UNCHANGED, BLOCK_PERM_ALL,
                           o->on_error, errp);
    if (!s->user) {
        job_discard(job);
        return false;
    }
    if (s->adaptive) {
        /* Seeded per job and daemon so that daemons sharing a template
         * server pick different back-offs; in force (and shown) before
         * the job starts. */
        rate_control_init(&s->rc, job_get_speed(job),
                          (uint32_t)(mono_ns() ^ (uintptr_t)job ^
                                     (uint32_t)getpid()),
                          mono_ns(), client_sample(bs));
        job_set_effective_speed(job, s->rc.rate);
    }
    block_cor_enable(bs);
    s->cor_enabled = true;
    return job_start(job, errp);
}
