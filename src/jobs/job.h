/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - block jobs: QEMU's job state machine, verbs and events.
 *
 * A job runs its driver's run callback on a thread of its own; every
 * transition that changes the graph or ends the job (prepare, commit,
 * abort, clean, the completion events) happens on the main thread,
 * which the daemon wakes through job_set_main_notify().  The states,
 * the transitions allowed between them, which verb is allowed in which
 * state, and the texts of the errors are QEMU 7.2's, so a manager driving
 * qemu-storage-daemon's job API drives strata's unchanged:
 *
 *   created -> running -> waiting -> pending -> concluded -> null
 *   (paused while paused; aborting on cancel or error)
 *
 * Events: JOB_STATUS_CHANGE {status, id} on every transition;
 * BLOCK_JOB_PENDING {type, id} when auto-finalize is off;
 * BLOCK_JOB_COMPLETED / BLOCK_JOB_CANCELLED {device, len, offset, speed,
 * type, error?}; BLOCK_JOB_ERROR {device, operation, action} for I/O
 * errors under the job's on-error policy.
 *
 * Locking: one mutex guards every job's state; a job's thread waits on
 * its own condition variable (pause, sleep, rate limit) and is woken by
 * the verbs.  Main-thread functions are marked; the rest may be called
 * from the job's thread.
 */
#ifndef STRATA_JOBS_JOB_H
#define STRATA_JOBS_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"
#include "block/user.h"
#include "util/error.h"

typedef struct Job Job;

/* QEMU's JobStatus, in QEMU's order. */
typedef enum JobStatus {
    JOB_STATUS_UNDEFINED,
    JOB_STATUS_CREATED,
    JOB_STATUS_RUNNING,
    JOB_STATUS_PAUSED,
    JOB_STATUS_READY,
    JOB_STATUS_STANDBY,
    JOB_STATUS_WAITING,
    JOB_STATUS_PENDING,
    JOB_STATUS_ABORTING,
    JOB_STATUS_CONCLUDED,
    JOB_STATUS_NULL,
    JOB_STATUS__MAX,
} JobStatus;

/* QEMU 7.2's JobVerb. */
typedef enum JobVerb {
    JOB_VERB_CANCEL,
    JOB_VERB_PAUSE,
    JOB_VERB_RESUME,
    JOB_VERB_SET_SPEED,
    JOB_VERB_COMPLETE,
    JOB_VERB_DISMISS,
    JOB_VERB_FINALIZE,
    JOB_VERB__MAX,
} JobVerb;

const char *job_status_name(JobStatus status);

typedef struct JobDriver {
    /* QEMU's JobType name: "stream". */
    const char *type;
    /* Not a block job (QEMU's "create"): no BLOCK_JOB_* events, not in
     * query-block-jobs, unknown to the block-job-* verbs. */
    bool not_block_job;
    /* The job's work, on its own thread.  Calls job_pause_point() between
     * pieces of work and returns early (any value) once it returns true;
     * updates progress with job_progress_*; limits its rate with
     * job_rate_wait().  Returns 0 when done, -errno on failure, with a
     * message in errp when it has one (else strerror is used). */
    int (*run)(Job *job, Error **errp);
    /* Main thread, after run succeeded and the job is being finalized:
     * the changes that may still fail (e.g. rewriting an image header).
     * Returns 0 or -errno; a failure aborts the job.  Optional. */
    int (*prepare)(Job *job, Error **errp);
    /* Main thread: the job succeeded; make its result visible (swap
     * graph links).  Cannot fail.  Optional. */
    void (*commit)(Job *job);
    /* Main thread: the job failed or was cancelled; undo what is
     * undoable.  Optional. */
    void (*abort)(Job *job);
    /* Main thread, after commit or abort: release what the job held for
     * its run (users, nodes).  Optional. */
    void (*clean)(Job *job);
    /* Frees the driver's state (job_opaque) when the job goes away. */
    void (*free)(Job *job);
} JobDriver;

typedef struct JobOptions {
    const char *id;
    bool auto_finalize;           /* default true */
    bool auto_dismiss;            /* default true */
    uint64_t speed;               /* bytes/s, 0 = unlimited */
} JobOptions;

/* ---- main thread ---- */

/* Checks the id (QEMU's rules: "Invalid job ID 'x'", "Job ID 'x' already
 * in use"), creates the job in state created and emits its event.  The
 * driver's state (opaque) belongs to the job from then on, also when
 * this fails (driver->free is called). */
Job *job_create(const JobDriver *drv, const JobOptions *o, void *opaque,
                Error **errp);
/* created -> null: drops a job whose setup failed before it started. */
void job_discard(Job *job);
/* created -> running: starts the job's thread. */
bool job_start(Job *job, Error **errp);

/* The verbs, with QEMU's errors ("Job 'x' in state 'y' cannot accept
 * command verb 'z'", "Job is already paused", ...). */
bool job_user_pause(Job *job, Error **errp);
bool job_user_resume(Job *job, Error **errp);
bool job_user_cancel(Job *job, bool force, Error **errp);
bool job_set_speed(Job *job, int64_t speed, Error **errp);
bool job_complete(Job *job, Error **errp);
bool job_finalize(Job *job, Error **errp);
bool job_dismiss(Job *job, Error **errp);

/* The job with this id, or NULL. */
Job *job_find(const char *id);
/* Calls fn for every job, in creation order, under the jobs lock (fn
 * must not call job functions that take it: use job_get_info). */
void job_foreach(void (*fn)(Job *job, void *opaque), void *opaque);

typedef struct JobInfo {
    const char *id;
    const char *type;
    JobStatus status;
    bool busy;
    bool paused;                  /* QEMU: a pause is requested or held */
    bool user_paused;             /* paused by a verb or an error stop */
    bool ready;
    bool auto_finalize, auto_dismiss;
    uint64_t current, total;      /* progress (offset, len) */
    uint64_t speed;
    bool adaptive;                /* a controller sets the rate */
    uint64_t current_speed;       /* the rate in force */
    BlockIoStatus io_status;
    const char *error;            /* the failure's message, or NULL */
    bool block_job;               /* see JobDriver.not_block_job */
} JobInfo;

/* A snapshot of job (strings point into the job; valid on the main
 * thread until the next job call there). */
void job_get_info(Job *job, JobInfo *info);

/* Cancels every job and waits until each has ended and been freed
 * (daemon shutdown). */
void job_cancel_all_sync(void);

/* Whether a job holds node (QEMU's "Node 'x' is busy: block device is in
 * use by block job: stream"); fills errp with that text. */
bool job_node_busy(BlockNode *bs, Error **errp);

/* How the main thread learns that jobs have work for it: notify is
 * called (any thread) whenever job_run_main_pending() has something to
 * do; the daemon wakes its poll loop with it.  Without a notifier,
 * callers (tests) call job_run_main_pending() themselves. */
void job_set_main_notify(void (*notify)(void));
/* Runs the main-thread work the jobs' threads left (their completions).
 * Returns how many items ran. */
int job_run_main_pending(void);

/* ---- for drivers ---- */

void *job_opaque(Job *job);
const char *job_id(Job *job);

/* Declares that job uses node: another job on it fails as busy until the
 * job is freed. */
void job_add_node(Job *job, BlockNode *bs);
/* Holds QEMU's permissions on bs for the job's life (QEMU's
 * block_job_add_bdrv): the job takes perm and shares only shared; a
 * conflict names "TYPE job 'ID' (uses node 'bs' as 'ROLE' child)".
 * Needs a node added with job_add_node first (the reference). */
bool job_hold_node(Job *job, BlockNode *bs, const char *role, uint64_t perm,
                   uint64_t shared, Error **errp);

/* Creates the job's block user on bs: origin job, the job id as device
 * in events, werror/rerror from on_error (QEMU's BlockdevOnError:
 * "auto" is report for reads and enospc for writes), and errors reported
 * as BLOCK_JOB_ERROR; "stop" pauses the job (io-status failed) until it
 * is resumed, which retries.  The job keeps and frees the user. */
BlockUser *job_add_user(Job *job, BlockNode *bs, uint64_t perm,
                        uint64_t shared, const char *on_error, Error **errp);

/* Between pieces of work: waits while the job is paused; true when the
 * job was cancelled (run should return). */
bool job_pause_point(Job *job);
bool job_is_cancelled(Job *job);
/* The first error that on-error "ignore" let pass (-errno), or 0: the
 * job then ends with that error although it did all its work, as QEMU's
 * do. */
int job_ignored_error(Job *job);
/* Sleeps ns nanoseconds, waking early on cancel or pause. */
void job_sleep_ns(Job *job, uint64_t ns);
/* After bytes of work: sleeps as long as the speed limit asks (QEMU's
 * 100 ms slices), waking early on cancel, pause or a speed change. */
void job_rate_wait(Job *job, uint64_t bytes);
uint64_t job_get_speed(Job *job);
/* An adaptive controller's rate: job_rate_wait follows it instead of
 * speed (which stays the ceiling) from now on. */
void job_set_effective_speed(Job *job, uint64_t rate);

void job_progress_set_total(Job *job, uint64_t total);
void job_progress_add(Job *job, uint64_t done);

#endif
