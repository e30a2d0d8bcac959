/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the job core: registry, QEMU's state machine and verbs, the
 * job thread, and the hand-over of a finished job to the main thread
 * (see job.h). */
#include "jobs/job.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/cleanup.h"
#include "util/keyval.h"
#include "util/log.h"

#define JOB_MAX_NODES 8
/* QEMU's rate-limit slice. */
#define SLICE_NS (100 * 1000 * 1000ULL)

struct Job {
    char *id;
    const JobDriver *drv;
    void *opaque;

    JobStatus status;
    bool busy;
    int pause_count;
    bool user_paused;
    bool error_paused;            /* held by the block user after "stop" */
    bool cancelled;
    bool force_cancel;
    bool woken;                   /* a sleep should end early */
    bool auto_finalize, auto_dismiss;
    bool finalizing;
    int ignored_error;            /* first error "ignore" let pass */
    BlockIoStatus io_status;

    uint64_t speed;
    bool adaptive;                /* effective_speed set by a controller */
    uint64_t effective_speed;
    uint64_t slice_start, slice_end, dispatched;
    uint64_t current, total;

    int ret;
    char *error;

    pthread_t thread;
    bool thread_started;
    pthread_cond_t cond;

    BlockUser *user;
    BlockNode *nodes[JOB_MAX_NODES];
    int nnodes;
    BlockPermHold *holds[JOB_MAX_NODES];
    int nholds;

    Job *next;
};

typedef struct MainItem {
    Job *job;
    struct MainItem *next;
} MainItem;

static pthread_mutex_t jobs_lock = PTHREAD_MUTEX_INITIALIZER;
/* Broadcast on every transition (a verb waiting for the job to act). */
static pthread_cond_t state_cond = PTHREAD_COND_INITIALIZER;
static Job *jobs;
static MainItem *main_head, *main_tail;
static void (*main_notify)(void);

/* QEMU's JobSTT: from (row) -> to (column). */
static const bool transition_table[JOB_STATUS__MAX][JOB_STATUS__MAX] = {
    /*                      U, C, R, P, Y, S, W, D, X, E, N */
    [JOB_STATUS_UNDEFINED] = {0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    [JOB_STATUS_CREATED]   = {0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1},
    [JOB_STATUS_RUNNING]   = {0, 0, 0, 1, 1, 0, 1, 0, 1, 0, 0},
    [JOB_STATUS_PAUSED]    = {0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0},
    [JOB_STATUS_READY]     = {0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 0},
    [JOB_STATUS_STANDBY]   = {0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0},
    [JOB_STATUS_WAITING]   = {0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0},
    [JOB_STATUS_PENDING]   = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0},
    [JOB_STATUS_ABORTING]  = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0},
    [JOB_STATUS_CONCLUDED] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
    [JOB_STATUS_NULL]      = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
};

/* QEMU 7.2's JobVerbTable: verb (row) allowed in state (column). */
static const bool verb_table[JOB_VERB__MAX][JOB_STATUS__MAX] = {
    /*                      U, C, R, P, Y, S, W, D, X, E, N */
    [JOB_VERB_CANCEL]    = {0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
    [JOB_VERB_PAUSE]     = {0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    [JOB_VERB_RESUME]    = {0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    [JOB_VERB_SET_SPEED] = {0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    [JOB_VERB_COMPLETE]  = {0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0},
    [JOB_VERB_DISMISS]   = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0},
    [JOB_VERB_FINALIZE]  = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0},
};

static const char *const status_names[JOB_STATUS__MAX] = {
    "undefined", "created", "running", "paused", "ready", "standby",
    "waiting", "pending", "aborting", "concluded", "null",
};

static const char *const verb_names[JOB_VERB__MAX] = {
    "cancel", "pause", "resume", "set-speed", "complete", "dismiss",
    "finalize",
};

const char *job_status_name(JobStatus status)
{
    return status < JOB_STATUS__MAX ? status_names[status] : "undefined";
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- state ---- */

static void transition_locked(Job *job, JobStatus to)
{
    if (!transition_table[job->status][to]) {
        log_warn("job '%s': unexpected transition %s -> %s", job->id,
                 job_status_name(job->status), job_status_name(to));
    }
    job->status = to;
    pthread_cond_broadcast(&state_cond);
    json_t *data = json_pack("{s:s, s:s}", "status", job_status_name(to),
                             "id", job->id);
    if (data) {
        block_emit_event("JOB_STATUS_CHANGE", data);
    }
}

static bool apply_verb_locked(Job *job, JobVerb verb, Error **errp)
{
    if (verb_table[verb][job->status]) {
        return true;
    }
    error_setg(errp, "Job '%s' in state '%s' cannot accept command verb '%s'",
               job->id, job_status_name(job->status), verb_names[verb]);
    return false;
}

/* BLOCK_JOB_COMPLETED and BLOCK_JOB_CANCELLED, members in QEMU's order. */
static void emit_end_locked(Job *job, bool cancelled)
{
    if (job->drv->not_block_job) {
        return;
    }
    json_t *data = json_pack("{s:s, s:I, s:I, s:I, s:s}",
                             "device", job->id,
                             "len", (json_int_t)job->total,
                             "offset", (json_int_t)job->current,
                             "speed", (json_int_t)job->speed,
                             "type", job->drv->type);
    if (data && !cancelled && job->error) {
        json_object_set_new(data, "error", json_string(job->error));
    }
    if (data) {
        block_emit_event(cancelled ? "BLOCK_JOB_CANCELLED"
                                   : "BLOCK_JOB_COMPLETED", data);
    }
}

/* ---- registry ---- */

static Job *find_locked(const char *id)
{
    for (Job *j = jobs; j; j = j->next) {
        if (!strcmp(j->id, id)) {
            return j;
        }
    }
    return NULL;
}

Job *job_find(const char *id)
{
    LOCK_GUARD(&jobs_lock);
    return id ? find_locked(id) : NULL;
}

void job_foreach(void (*fn)(Job *job, void *opaque), void *opaque)
{
    LOCK_GUARD(&jobs_lock);
    for (Job *j = jobs; j; j = j->next) {
        fn(j, opaque);
    }
}

Job *job_create(const JobDriver *drv, const JobOptions *o, void *opaque,
                Error **errp)
{
    const char *id = o->id ? o->id : "";
    Job *job = NULL;
    pthread_mutex_lock(&jobs_lock);
    if (!id_wellformed(id)) {
        error_setg(errp, "Invalid job ID '%s'", id);
    } else if (find_locked(id)) {
        error_setg(errp, "Job ID '%s' already in use", id);
    } else {
        job = calloc(1, sizeof(*job));
        if (job && !(job->id = strdup(id))) {
            free(job);
            job = NULL;
        }
        if (!job) {
            error_setg(errp, "Out of memory creating job '%s'", id);
        }
    }
    if (!job) {
        pthread_mutex_unlock(&jobs_lock);
        if (drv->free) {
            Job tmp = { .opaque = opaque };
            drv->free(&tmp);
        }
        return NULL;
    }
    job->drv = drv;
    job->opaque = opaque;
    job->auto_finalize = o->auto_finalize;
    job->auto_dismiss = o->auto_dismiss;
    job->speed = o->speed;
    pthread_cond_init(&job->cond, NULL);
    /* Newest first, as QEMU lists them. */
    job->next = jobs;
    jobs = job;
    transition_locked(job, JOB_STATUS_CREATED);
    pthread_mutex_unlock(&jobs_lock);
    return job;
}

/* Unlinks and frees a job that reached null (main thread, lock held
 * by the caller, who must not touch job afterwards). */
static void free_locked(Job *job)
{
    for (Job **p = &jobs; *p; p = &(*p)->next) {
        if (*p == job) {
            *p = job->next;
            break;
        }
    }
    pthread_mutex_unlock(&jobs_lock);
    if (job->drv->free) {
        job->drv->free(job);
    }
    pthread_cond_destroy(&job->cond);
    free(job->error);
    free(job->id);
    free(job);
    pthread_mutex_lock(&jobs_lock);
}

static void release_locked(Job *job);

static void dismiss_locked(Job *job)
{
    /* As QEMU, the job holds its nodes (busy) until it is dismissed. */
    release_locked(job);
    transition_locked(job, JOB_STATUS_NULL);
    free_locked(job);
}

/* ---- the end of a job (main thread) ---- */

/* Calls a driver callback without the jobs lock: it may do I/O and graph
 * changes, and query jobs. */
#define UNLOCKED(stmt)                      \
    do {                                    \
        pthread_mutex_unlock(&jobs_lock);   \
        stmt;                               \
        pthread_mutex_lock(&jobs_lock);     \
    } while (0)

/* A concluded job holds nothing: its user (permissions) and its nodes
 * are released, so the nodes are no longer busy even if the job waits
 * to be dismissed. */
static void release_locked(Job *job)
{
    BlockUser *user = job->user;
    BlockNode *nodes[JOB_MAX_NODES];
    BlockPermHold *holds[JOB_MAX_NODES];
    int n = job->nnodes, nh = job->nholds;
    memcpy(nodes, job->nodes, sizeof(nodes));
    memcpy(holds, job->holds, sizeof(holds));
    job->user = NULL;
    job->nnodes = 0;
    job->nholds = 0;
    pthread_mutex_unlock(&jobs_lock);
    block_user_free(user);
    for (int i = 0; i < nh; i++) {
        block_perm_release(holds[i]);
    }
    for (int i = 0; i < n; i++) {
        block_node_unref(nodes[i]);
    }
    pthread_mutex_lock(&jobs_lock);
}

static void conclude_locked(Job *job)
{
    if (job->drv->clean) {
        UNLOCKED(job->drv->clean(job));
    }
    transition_locked(job, JOB_STATUS_CONCLUDED);
    if (job->auto_dismiss) {
        dismiss_locked(job);
    }
}

static void abort_locked(Job *job)
{
    bool cancelled = job->cancelled;
    transition_locked(job, JOB_STATUS_ABORTING);
    if (job->drv->abort) {
        UNLOCKED(job->drv->abort(job));
    }
    emit_end_locked(job, cancelled);
    if (cancelled && !job->error) {
        job->error = strdup(strerror(ECANCELED));
    }
    conclude_locked(job);
}

static void finalize_locked(Job *job)
{
    job->finalizing = true;
    int ret = 0;
    Error *err = NULL;
    if (job->drv->prepare) {
        UNLOCKED(ret = job->drv->prepare(job, &err));
    }
    if (ret < 0) {
        free(job->error);
        job->error = strdup(err ? error_get_pretty(err) : strerror(-ret));
        error_free(err);
        job->ret = ret;
        abort_locked(job);
        return;
    }
    if (job->drv->commit) {
        UNLOCKED(job->drv->commit(job));
    }
    emit_end_locked(job, false);
    conclude_locked(job);
}

/* The job's thread has returned. */
static void completed_locked(Job *job)
{
    if (job->thread_started) {
        UNLOCKED(pthread_join(job->thread, NULL));
        job->thread_started = false;
    }
    if (job->cancelled || job->ret < 0) {
        abort_locked(job);
        return;
    }
    transition_locked(job, JOB_STATUS_WAITING);
    transition_locked(job, JOB_STATUS_PENDING);
    if (job->auto_finalize) {
        finalize_locked(job);
        return;
    }
    json_t *data = job->drv->not_block_job
                   ? NULL : json_pack("{s:s, s:s}", "type", job->drv->type,
                                      "id", job->id);
    if (data) {
        block_emit_event("BLOCK_JOB_PENDING", data);
    }
}

void job_set_main_notify(void (*notify)(void))
{
    LOCK_GUARD(&jobs_lock);
    main_notify = notify;
}

int job_run_main_pending(void)
{
    int n = 0;
    pthread_mutex_lock(&jobs_lock);
    while (main_head) {
        MainItem *it = main_head;
        main_head = it->next;
        if (!main_head) {
            main_tail = NULL;
        }
        completed_locked(it->job);
        free(it);
        n++;
    }
    pthread_mutex_unlock(&jobs_lock);
    return n;
}

static void *job_thread(void *opaque)
{
    Job *job = opaque;
    Error *err = NULL;
    int ret = job->drv->run(job, &err);
    MainItem *it = calloc(1, sizeof(*it));

    pthread_mutex_lock(&jobs_lock);
    job->ret = ret < 0 ? ret : 0;
    if (ret < 0 && !job->cancelled) {
        job->error = strdup(err ? error_get_pretty(err) : strerror(-ret));
    }
    job->busy = false;
    if (it) {
        it->job = job;
        if (main_tail) {
            main_tail->next = it;
        } else {
            main_head = it;
        }
        main_tail = it;
    }
    void (*notify)(void) = main_notify;
    pthread_mutex_unlock(&jobs_lock);
    error_free(err);
    if (!it) {
        log_error("job '%s': out of memory handing the job's end to the "
                  "main thread", job->id);
    }
    if (notify) {
        notify();
    }
    return NULL;
}

bool job_start(Job *job, Error **errp)
{
    LOCK_GUARD(&jobs_lock);
    transition_locked(job, JOB_STATUS_RUNNING);
    job->busy = true;
    int ret = pthread_create(&job->thread, NULL, job_thread, job);
    if (ret != 0) {
        job->busy = false;
        job->ret = -ret;
        job->error = strdup(strerror(ret));
        error_setg_errno(errp, ret, "Cannot start job '%s'", job->id);
        abort_locked(job);
        return false;
    }
    job->thread_started = true;
    return true;
}

/* ---- verbs (main thread) ---- */

bool job_user_pause(Job *job, Error **errp)
{
    LOCK_GUARD(&jobs_lock);
    if (!apply_verb_locked(job, JOB_VERB_PAUSE, errp)) {
        return false;
    }
    if (job->user_paused) {
        error_setg(errp, "Job is already paused");
        return false;
    }
    job->user_paused = true;
    job->pause_count++;
    job->woken = true;
    pthread_cond_broadcast(&job->cond);
    /* QEMU pauses a job that is waiting (rate limit, sleep) before the
     * command returns; a busy job pauses at its next pause point, and
     * the reply does not wait for that. */
    if (!job->busy && job->status == JOB_STATUS_RUNNING &&
        job->thread_started) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        while (job->status == JOB_STATUS_RUNNING && job->pause_count > 0 &&
               !job->cancelled &&
               pthread_cond_timedwait(&state_cond, &jobs_lock, &ts) == 0) {
        }
    }
    return true;
}

bool job_user_resume(Job *job, Error **errp)
{
    pthread_mutex_lock(&jobs_lock);
    if (!apply_verb_locked(job, JOB_VERB_RESUME, errp)) {
        pthread_mutex_unlock(&jobs_lock);
        return false;
    }
    if (!job->user_paused || job->pause_count <= 0) {
        error_setg(errp, "Can't resume a job that was not paused");
        pthread_mutex_unlock(&jobs_lock);
        return false;
    }
    job->user_paused = false;
    job->pause_count--;
    job->io_status = BLOCK_IO_STATUS_OK;
    bool retry = job->error_paused;
    job->error_paused = false;
    /* As QEMU, the job runs again before the command returns (its
     * thread leaves the pause point on its own). */
    if (job->pause_count == 0 && job->status == JOB_STATUS_PAUSED) {
        transition_locked(job, JOB_STATUS_RUNNING);
        job->busy = true;
    }
    BlockUser *user = job->user;
    pthread_cond_broadcast(&job->cond);
    pthread_mutex_unlock(&jobs_lock);
    /* The request that failed is retried now (it waits in the user's
     * hold queue, on the job's thread). */
    if (retry && user) {
        block_user_resume(user);
    }
    return true;
}

bool job_user_cancel(Job *job, bool force, Error **errp)
{
    pthread_mutex_lock(&jobs_lock);
    if (!apply_verb_locked(job, JOB_VERB_CANCEL, errp)) {
        pthread_mutex_unlock(&jobs_lock);
        return false;
    }
    job->cancelled = true;
    job->force_cancel |= force;
    job->woken = true;
    pthread_cond_broadcast(&job->cond);
    if (job->status == JOB_STATUS_CREATED || job->status == JOB_STATUS_PENDING) {
        /* Nothing runs: it ends here (QEMU answers after the events). */
        abort_locked(job);
        pthread_mutex_unlock(&jobs_lock);
        return true;
    }
    BlockUser *user = job->user;
    pthread_mutex_unlock(&jobs_lock);
    /* A request held after an error gives up, so the thread can end. */
    if (user) {
        block_user_stop(user);
    }
    return true;
}

bool job_set_speed(Job *job, int64_t speed, Error **errp)
{
    LOCK_GUARD(&jobs_lock);
    if (!apply_verb_locked(job, JOB_VERB_SET_SPEED, errp)) {
        return false;
    }
    if (speed < 0) {
        error_setg(errp, "Parameter 'speed' expects a non-negative value");
        return false;
    }
    job->speed = (uint64_t)speed;
    job->woken = true;
    pthread_cond_broadcast(&job->cond);
    return true;
}

bool job_complete(Job *job, Error **errp)
{
    LOCK_GUARD(&jobs_lock);
    if (!apply_verb_locked(job, JOB_VERB_COMPLETE, errp)) {
        return false;
    }
    /* No strata job has a ready state yet (stream never becomes ready). */
    error_setg(errp, "The active block job '%s' cannot be completed",
               job->id);
    return false;
}

bool job_finalize(Job *job, Error **errp)
{
    LOCK_GUARD(&jobs_lock);
    if (!apply_verb_locked(job, JOB_VERB_FINALIZE, errp)) {
        return false;
    }
    finalize_locked(job);
    return true;
}

bool job_dismiss(Job *job, Error **errp)
{
    LOCK_GUARD(&jobs_lock);
    if (!apply_verb_locked(job, JOB_VERB_DISMISS, errp)) {
        return false;
    }
    dismiss_locked(job);
    return true;
}

void job_get_info(Job *job, JobInfo *info)
{
    LOCK_GUARD(&jobs_lock);
    *info = (JobInfo){
        .id = job->id,
        .type = job->drv->type,
        .status = job->status,
        .busy = job->busy,
        .paused = job->pause_count > 0,
        .user_paused = job->user_paused,
        .ready = job->status == JOB_STATUS_READY ||
                 job->status == JOB_STATUS_STANDBY,
        .auto_finalize = job->auto_finalize,
        .auto_dismiss = job->auto_dismiss,
        .current = job->current,
        .total = job->total,
        .speed = job->speed,
        .adaptive = job->adaptive,
        .current_speed = job->adaptive ? job->effective_speed : job->speed,
        .io_status = job->io_status,
        .error = job->error,
        .block_job = !job->drv->not_block_job,
    };
}

void job_cancel_all_sync(void)
{
    for (;;) {
        Job *to_cancel = NULL;
        pthread_mutex_lock(&jobs_lock);
        if (!jobs) {
            pthread_mutex_unlock(&jobs_lock);
            return;
        }
        for (Job *j = jobs; j; j = j->next) {
            if (j->status == JOB_STATUS_CONCLUDED) {
                dismiss_locked(j);      /* the list changed: look again */
                break;
            }
            if (!j->cancelled && verb_table[JOB_VERB_CANCEL][j->status]) {
                to_cancel = j;
                break;
            }
        }
        pthread_mutex_unlock(&jobs_lock);
        if (to_cancel) {
            Error *err = NULL;
            job_user_cancel(to_cancel, true, &err);
            error_free(err);
        } else if (job_run_main_pending() == 0) {
            /* Cancelled jobs are still winding down on their threads. */
            struct timespec ts = { 0, 5 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
    }
}

bool job_node_busy(BlockNode *bs, Error **errp)
{
    LOCK_GUARD(&jobs_lock);
    for (Job *j = jobs; j; j = j->next) {
        for (int i = 0; i < j->nnodes; i++) {
            if (j->nodes[i] == bs) {
                error_setg(errp, "Node '%s' is busy: block device is in use "
                           "by block job: %s", block_node_name(bs),
                           j->drv->type);
                return true;
            }
        }
    }
    return false;
}

/* ---- for drivers ---- */

void *job_opaque(Job *job)
{
    return job->opaque;
}

const char *job_id(Job *job)
{
    return job->id;
}

void job_add_node(Job *job, BlockNode *bs)
{
    LOCK_GUARD(&jobs_lock);
    if (job->nnodes < JOB_MAX_NODES) {
        block_node_ref(bs);
        job->nodes[job->nnodes++] = bs;
    }
}

bool job_hold_node(Job *job, BlockNode *bs, const char *role, uint64_t perm,
                   uint64_t shared, Error **errp)
{
    char desc[160];
    snprintf(desc, sizeof(desc), "%s job '%s'", job->drv->type, job->id);
    BlockPermHold *h = block_perm_hold(bs, perm, shared, desc, role, errp);
    if (!h) {
        return false;
    }
    LOCK_GUARD(&jobs_lock);
    if (job->nholds == JOB_MAX_NODES) {
        block_perm_release(h);
        return true;    /* as job_add_node: the first nodes are kept */
    }
    job->holds[job->nholds++] = h;
    return true;
}

/* BLOCK_JOB_ERROR {device, operation, action}; "stop" pauses the job
 * until the user resumes it (the failed request waits in the user's hold
 * queue meanwhile). */
static void job_user_error(BlockUser *user, BlockReqType type, int err,
                           const char *action, void *opaque)
{
    Job *job = opaque;
    LOCK_GUARD(&jobs_lock);
    if (!strcmp(action, "ignore") && job->ignored_error == 0) {
        job->ignored_error = -err;
    }
    /* QEMU sends the error before the job shows as paused. */
    json_t *data = json_pack("{s:s, s:s, s:s}", "device", job->id,
                             "operation",
                             block_req_is_read(type) ? "read" : "write",
                             "action", action);
    if (data) {
        block_emit_event("BLOCK_JOB_ERROR", data);
    }
    if (!strcmp(action, "stop")) {
        job->user_paused = true;
        job->error_paused = true;
        job->pause_count++;
        job->io_status = err == ENOSPC ? BLOCK_IO_STATUS_NOSPACE
                                       : BLOCK_IO_STATUS_FAILED;
        if (job->status == JOB_STATUS_RUNNING) {
            transition_locked(job, JOB_STATUS_PAUSED);
        }
        job->busy = false;
    }
}

BlockUser *job_add_user(Job *job, BlockNode *bs, uint64_t perm,
                        uint64_t shared, const char *on_error, Error **errp)
{
    static const unsigned all = (1u << BLOCK_ERROR_ACTION__MAX) - 1;
    BlockErrorAction werror = BLOCK_ERROR_ACTION_REPORT;
    BlockErrorAction rerror = BLOCK_ERROR_ACTION_REPORT;
    if (on_error && !strcmp(on_error, "auto")) {
        werror = BLOCK_ERROR_ACTION_ENOSPC;
    } else if (on_error &&
               !block_error_action_parse(on_error, all, "on-error", &werror,
                                         errp)) {
        return NULL;
    } else {
        rerror = werror;
    }
    BlockUserOptions uo = {
        .id = job->id,
        .kind = BLOCK_USER_JOB,
        .perm = perm,
        .shared = shared,
        .werror = werror,
        .rerror = rerror,
        .origin = BLOCK_ORIGIN_JOB,
        .error_fn = job_user_error,
        .error_opaque = job,
    };
    BlockUser *u = block_user_new(bs, &uo, errp);
    if (u) {
        LOCK_GUARD(&jobs_lock);
        job->user = u;
    }
    return u;
}

int job_ignored_error(Job *job)
{
    LOCK_GUARD(&jobs_lock);
    return job->ignored_error;
}

void job_discard(Job *job)
{
    LOCK_GUARD(&jobs_lock);
    if (job->status == JOB_STATUS_CREATED) {
        dismiss_locked(job);
    }
}

bool job_is_cancelled(Job *job)
{
    LOCK_GUARD(&jobs_lock);
    return job->cancelled;
}

bool job_pause_point(Job *job)
{
    LOCK_GUARD(&jobs_lock);
    while (job->pause_count > 0 && !job->cancelled) {
        if (job->status == JOB_STATUS_RUNNING) {
            transition_locked(job, JOB_STATUS_PAUSED);
        }
        job->busy = false;
        pthread_cond_wait(&job->cond, &jobs_lock);
    }
    if (job->status == JOB_STATUS_PAUSED) {
        transition_locked(job, JOB_STATUS_RUNNING);
    }
    job->busy = true;
    return job->cancelled;
}

/* Waits until deadline (CLOCK_REALTIME for the condition variable) or a
 * wake-up; jobs_lock held. */
static void sleep_locked(Job *job, uint64_t ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t t = (uint64_t)ts.tv_nsec + ns;
    ts.tv_sec += (time_t)(t / 1000000000ULL);
    ts.tv_nsec = (long)(t % 1000000000ULL);
    job->woken = false;
    job->busy = false;
    while (!job->woken && !job->cancelled && job->pause_count == 0) {
        if (pthread_cond_timedwait(&job->cond, &jobs_lock, &ts) == ETIMEDOUT) {
            break;
        }
    }
    job->busy = true;
}

void job_sleep_ns(Job *job, uint64_t ns)
{
    LOCK_GUARD(&jobs_lock);
    sleep_locked(job, ns);
}

void job_rate_wait(Job *job, uint64_t bytes)
{
    LOCK_GUARD(&jobs_lock);
    for (;;) {
        uint64_t limit = job->adaptive ? job->effective_speed : job->speed;
        if (limit == 0 || job->cancelled || job->pause_count > 0) {
            job->dispatched = 0;
            return;
        }
        uint64_t now = now_ns();
        if (now >= job->slice_end) {
            job->slice_start = now;
            job->slice_end = now + SLICE_NS;
            job->dispatched = 0;
        }
        job->dispatched += bytes;
        bytes = 0;
        double quota = (double)limit * SLICE_NS / 1e9;
        double slices = (double)job->dispatched / (quota > 0 ? quota : 1);
        if (slices < 1) {
            return;
        }
        /* Over the slice's share: the work done so far is paid for by
         * waiting until as many slices have passed as it used. */
        job->slice_end = job->slice_start + (uint64_t)(slices * SLICE_NS);
        if (job->slice_end <= now) {
            return;
        }
        sleep_locked(job, job->slice_end - now);
        uint64_t after = job->adaptive ? job->effective_speed : job->speed;
        if (!job->woken || after == limit) {
            return;
        }
        /* The speed changed while sleeping: start a new slice with it. */
        job->slice_end = 0;
    }
}

void job_set_effective_speed(Job *job, uint64_t rate)
{
    LOCK_GUARD(&jobs_lock);
    job->adaptive = true;
    job->effective_speed = rate;
}

uint64_t job_get_speed(Job *job)
{
    LOCK_GUARD(&jobs_lock);
    return job->speed;
}

void job_progress_set_total(Job *job, uint64_t total)
{
    LOCK_GUARD(&jobs_lock);
    job->total = total;
}

void job_progress_add(Job *job, uint64_t done)
{
    LOCK_GUARD(&jobs_lock);
    job->current += done;
}
