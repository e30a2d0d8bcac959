/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP commands of block jobs: block-stream, query-jobs,
 * query-block-jobs, the job-* verbs and their block-job-* forms, with
 * QEMU 7.2's arguments, replies and errors (the job-* forms answer
 * "Job not found", the block-job-* forms DeviceNotActive "Block job 'x'
 * not found"). */
#include <string.h>

#include "jobs/job.h"
#include "jobs/stream.h"
#include "qmp/qapi-schema.h"
#include "qmp/qmp-args.h"
#include "qmp/monitor.h"
#include "qmp/qmp-internal.h"
#include "util/event-queue.h"

static const QmpArgSpec stream_args[] = {
    QMP_ARG_INHERIT(qapi_block_stream_arg),
    /* strata: the rate follows the clients (docs/stream.md). */
    { "adaptive-speed", QMP_ARG_BOOL, .optional = true },
    { NULL },
};

static json_t *cmd_block_stream(json_t *args, Error **errp)
{
    StreamOptions o = {
        .job_id = qmp_arg_str(args, "job-id", NULL),
        .device = qmp_arg_str(args, "device", ""),
        .base = qmp_arg_str(args, "base", NULL),
        .base_node = qmp_arg_str(args, "base-node", NULL),
        .bottom = qmp_arg_str(args, "bottom", NULL),
        .backing_file = qmp_arg_str(args, "backing-file", NULL),
        .has_speed = json_object_get(args, "speed") != NULL,
        .speed = qmp_arg_int(args, "speed", 0),
        .on_error = qmp_arg_str(args, "on-error", "report"),
        .filter_node_name = qmp_arg_str(args, "filter-node-name", NULL),
        .auto_finalize = qmp_arg_bool(args, "auto-finalize", true),
        .auto_dismiss = qmp_arg_bool(args, "auto-dismiss", true),
        .adaptive_speed = qmp_arg_bool(args, "adaptive-speed", false),
    };
    return stream_start(&o, errp) ? json_object() : NULL;
}

static const char *const io_status_names[] = { "ok", "failed", "nospace" };

/* BlockJobInfo, members in the order QEMU 7.2 prints them. */
static void add_block_job(Job *job, void *opaque)
{
    JobInfo i;
    job_get_info(job, &i);
    if (!i.block_job) {
        return;
    }
    json_t *e = json_pack("{s:b, s:s, s:s, s:b, s:b, s:I, s:I, s:s, s:b, "
                          "s:I, s:b, s:s}",
                          "auto-finalize", i.auto_finalize,
                          "io-status", io_status_names[i.io_status],
                          "device", i.id,
                          "auto-dismiss", i.auto_dismiss,
                          "busy", i.busy,
                          "len", (json_int_t)i.total,
                          "offset", (json_int_t)i.current,
                          "status", job_status_name(i.status),
                          "paused", i.paused,
                          "speed", (json_int_t)i.speed,
                          "ready", i.ready,
                          "type", i.type);
    if (e && i.error) {
        json_object_set_new(e, "error", json_string(i.error));
    }
    /* strata: the rate an adaptive job copies at now; speed is its
     * ceiling. */
    if (e && i.adaptive) {
        json_object_set_new(e, "adaptive-speed", json_true());
        json_object_set_new(e, "current-speed",
                            json_integer((json_int_t)i.current_speed));
    }
    if (e) {
        json_array_append_new(opaque, e);
    }
}

/* JobInfo. */
static void add_job(Job *job, void *opaque)
{
    JobInfo i;
    job_get_info(job, &i);
    json_t *e = json_pack("{s:I, s:s, s:I, s:s, s:s}",
                          "current-progress", (json_int_t)i.current,
                          "status", job_status_name(i.status),
                          "total-progress", (json_int_t)i.total,
                          "type", i.type,
                          "id", i.id);
    if (e && i.error) {
        json_object_set_new(e, "error", json_string(i.error));
    }
    if (e) {
        json_array_append_new(opaque, e);
    }
}

/* job_foreach holds the jobs lock; collect first, then describe. */
typedef struct JobList {
    Job *jobs[256];
    size_t n;
} JobList;

static void collect(Job *job, void *opaque)
{
    JobList *l = opaque;
    if (l->n < sizeof(l->jobs) / sizeof(l->jobs[0])) {
        l->jobs[l->n++] = job;
    }
}

static json_t *list_jobs(void (*add)(Job *job, void *opaque))
{
    JobList l = { .n = 0 };
    job_foreach(collect, &l);
    json_t *list = json_array();
    for (size_t i = 0; list && i < l.n; i++) {
        add(l.jobs[i], list);
    }
    return list;
}

static json_t *cmd_query_block_jobs(json_t *args, Error **errp)
{
    return list_jobs(add_block_job);
}

static json_t *cmd_query_jobs(json_t *args, Error **errp)
{
    return list_jobs(add_job);
}

/* ---- the verbs ---- */

static Job *find_job(json_t *args, Error **errp)
{
    Job *job = job_find(qmp_arg_str(args, "id", ""));
    if (!job) {
        error_setg(errp, "Job not found");
    }
    return job;
}

static Job *find_block_job(const char *id, Error **errp)
{
    Job *job = job_find(id);
    JobInfo i;
    if (job) {
        job_get_info(job, &i);
    }
    if (!job || !i.block_job) {
        job = NULL;
        error_set(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE,
                  "Block job '%s' not found", id);
    }
    return job;
}

typedef bool VerbFn(Job *job, Error **errp);

static json_t *job_verb(json_t *args, Error **errp, VerbFn *fn)
{
    Job *job = find_job(args, errp);
    return job && fn(job, errp) ? json_object() : NULL;
}

static bool cancel_soft(Job *job, Error **errp)
{
    return job_user_cancel(job, false, errp);
}

static json_t *cmd_job_pause(json_t *a, Error **e) { return job_verb(a, e, job_user_pause); }
static json_t *cmd_job_resume(json_t *a, Error **e) { return job_verb(a, e, job_user_resume); }
static json_t *cmd_job_cancel(json_t *a, Error **e) { return job_verb(a, e, cancel_soft); }
static json_t *cmd_job_complete(json_t *a, Error **e) { return job_verb(a, e, job_complete); }
static json_t *cmd_job_finalize(json_t *a, Error **e) { return job_verb(a, e, job_finalize); }
static json_t *cmd_job_dismiss(json_t *a, Error **e) { return job_verb(a, e, job_dismiss); }

/* block-job-* forms named by "device" (finalize and dismiss by "id"). */
static json_t *block_job_verb(json_t *args, Error **errp, const char *key,
                              VerbFn *fn)
{
    Job *job = find_block_job(qmp_arg_str(args, key, ""), errp);
    return job && fn(job, errp) ? json_object() : NULL;
}

static json_t *cmd_block_job_pause(json_t *a, Error **e)
{
    return block_job_verb(a, e, "device", job_user_pause);
}

static json_t *cmd_block_job_resume(json_t *a, Error **e)
{
    return block_job_verb(a, e, "device", job_user_resume);
}

static json_t *cmd_block_job_complete(json_t *a, Error **e)
{
    return block_job_verb(a, e, "device", job_complete);
}

static json_t *cmd_block_job_finalize(json_t *a, Error **e)
{
    return block_job_verb(a, e, "id", job_finalize);
}

static json_t *cmd_block_job_dismiss(json_t *a, Error **e)
{
    return block_job_verb(a, e, "id", job_dismiss);
}

static json_t *cmd_block_job_cancel(json_t *args, Error **errp)
{
    const char *device = qmp_arg_str(args, "device", "");
    bool force = qmp_arg_bool(args, "force", false);
    Job *job = find_block_job(device, errp);
    if (!job) {
        return NULL;
    }
    JobInfo i;
    job_get_info(job, &i);
    /* QEMU's block-job-cancel (not job-cancel) leaves a paused job alone
     * unless forced. */
    if (i.user_paused && !force) {
        error_setg(errp, "The block job for device '%s' is currently paused",
                   device);
        return NULL;
    }
    return job_user_cancel(job, force, errp) ? json_object() : NULL;
}

static json_t *cmd_block_job_set_speed(json_t *args, Error **errp)
{
    Job *job = find_block_job(qmp_arg_str(args, "device", ""), errp);
    return job && job_set_speed(job, qmp_arg_int(args, "speed", 0), errp)
           ? json_object() : NULL;
}

#define REGISTER(name, fn, args) qmp_register_command_args(name, fn, args)

void qmp_register_job_commands(void)
{
    REGISTER("block-stream", cmd_block_stream, stream_args);
    REGISTER("query-jobs", cmd_query_jobs, qmp_no_args);
    REGISTER("query-block-jobs", cmd_query_block_jobs, qmp_no_args);
    REGISTER("job-pause", cmd_job_pause, qapi_job_pause_arg);
    REGISTER("job-resume", cmd_job_resume, qapi_job_resume_arg);
    REGISTER("job-cancel", cmd_job_cancel, qapi_job_cancel_arg);
    REGISTER("job-complete", cmd_job_complete, qapi_job_complete_arg);
    REGISTER("job-finalize", cmd_job_finalize, qapi_job_finalize_arg);
    REGISTER("job-dismiss", cmd_job_dismiss, qapi_job_dismiss_arg);
    REGISTER("block-job-set-speed", cmd_block_job_set_speed,
             qapi_block_job_set_speed_arg);
    REGISTER("block-job-pause", cmd_block_job_pause,
             qapi_block_job_pause_arg);
    REGISTER("block-job-resume", cmd_block_job_resume,
             qapi_block_job_resume_arg);
    REGISTER("block-job-cancel", cmd_block_job_cancel,
             qapi_block_job_cancel_arg);
    REGISTER("block-job-complete", cmd_block_job_complete,
             qapi_block_job_complete_arg);
    REGISTER("block-job-finalize", cmd_block_job_finalize,
             qapi_block_job_finalize_arg);
    REGISTER("block-job-dismiss", cmd_block_job_dismiss,
             qapi_block_job_dismiss_arg);
}

/* ---- the main thread's side ---- */

static EventQueue *job_queue;

static void run_pending(void *item, void *opaque)
{
    (void)item;
    job_run_main_pending();
}

static void free_item(void *item)
{
    (void)item;
}

/* Any thread: a job has finished its run; wake the poll loop. */
static void notify_main(void)
{
    if (job_queue) {
        /* Any non-NULL item: the handler only looks at the jobs. */
        event_queue_push(job_queue, (void *)1);
    }
}

bool qmp_jobs_init(PollLoop *loop, Error **errp)
{
    job_queue = event_queue_new(loop, run_pending, free_item, NULL, errp);
    if (!job_queue) {
        return false;
    }
    job_set_main_notify(notify_main);
    return true;
}

void qmp_jobs_shutdown(void)
{
    job_cancel_all_sync();
    job_set_main_notify(NULL);
    if (job_queue) {
        event_queue_free(job_queue);
        job_queue = NULL;
    }
}
