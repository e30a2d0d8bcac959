/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - an export's error policy (QEMU's werror/rerror): under
 * "stop" (any I/O error) or "enospc" (ENOSPC only) a failing request is
 * held instead of failed, the export pauses, and `cont` or
 * block-export-resume retries the held requests in order.
 *
 * The state lives inside NbdExport.  When nothing is paused, a request
 * costs one atomic load (export_policy_run); everything else is in
 * export-policy.c.  Lock order: the export registry's lock, then a
 * policy's lock; the policy code never takes the registry lock while
 * holding its own.
 */
#ifndef STRATA_NBD_EXPORT_POLICY_H
#define STRATA_NBD_EXPORT_POLICY_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct NbdExport;
struct NbdRequest;

/* QEMU's BlockdevOnError values an export accepts. */
typedef enum ExportErrorAction {
    EXPORT_ON_ERROR_REPORT,
    EXPORT_ON_ERROR_STOP,
    EXPORT_ON_ERROR_ENOSPC,
} ExportErrorAction;

/* QEMU's BlockDeviceIoStatus. */
typedef enum ExportIoStatus {
    EXPORT_IO_STATUS_OK,
    EXPORT_IO_STATUS_FAILED,
    EXPORT_IO_STATUS_NOSPACE,
} ExportIoStatus;

typedef struct ExportWaiter ExportWaiter;

/* Members are private to export-policy.c. */
typedef struct ExportPolicy {
    /* Non-zero while the export is paused or requests wait in the hold
     * queue: the only member the fast path reads. */
    atomic_int gate;
    ExportErrorAction werror;
    ExportErrorAction rerror;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    ExportWaiter *head, *tail;  /* held requests first, then queued ones */
    int nheld;                  /* waiters that failed and wait for a retry */
    int nqueued;                /* waiters that have not run yet */
    bool paused;
    bool stopping;              /* forced stop: report errors, fail held */
    ExportIoStatus io_status;
    const char *operation;      /* of the error that paused the export */
    int error;                  /* its errno (positive) */
    uint64_t pauses;            /* pauses since the export was added */
} ExportPolicy;

typedef int ExportRunFn(struct NbdExport *exp, struct NbdRequest *req);

/* Parses "werror" and "rerror" from block-export-add's arguments (or
 * --export's key=value strings) and removes them from args.  Defaults:
 * werror=enospc, rerror=report. */
bool export_policy_parse(json_t *args, ExportErrorAction *werror,
                         ExportErrorAction *rerror, Error **errp);
void export_policy_init(ExportPolicy *p, ExportErrorAction werror,
                        ExportErrorAction rerror);
void export_policy_destroy(ExportPolicy *p);

/* The slow paths of export_policy_run. */
int export_policy_run_gated(struct NbdExport *exp, struct NbdRequest *req,
                            ExportRunFn *run);
int export_policy_failed(struct NbdExport *exp, struct NbdRequest *req,
                         ExportRunFn *run, int ret);

/* Runs one request under the export's error policy: returns its result,
 * after holding and retrying it as long as the policy says so. */
static inline int export_policy_run(ExportPolicy *p, struct NbdExport *exp,
                                    struct NbdRequest *req, ExportRunFn *run)
{
    if (__builtin_expect(atomic_load_explicit(&p->gate,
                                              memory_order_acquire) != 0, 0)) {
        return export_policy_run_gated(exp, req, run);
    }
    int ret = run(exp, req);
    if (__builtin_expect(ret >= 0, 1)) {
        return ret;
    }
    return export_policy_failed(exp, req, run, ret);
}

/* Adds the policy's members to a query-block-exports entry: "werror",
 * "rerror", "io-status", "paused", "held-requests", "queued-requests",
 * "pauses", and "io-error" {"operation", "reason"} while paused. */
void export_policy_query(ExportPolicy *p, json_t *entry);

/* Forced stop of one export (hard delete, server stop): held requests
 * fail with their error, queued ones run, and from now on errors are
 * reported.  Does not wait. */
void export_policy_stop(ExportPolicy *p);

/* ---- for QMP and the daemon (main thread) ---- */

/* cont: resumes every paused export (after re-reading the size of the
 * storage under it); returns how many were paused. */
size_t nbd_export_resume_all(void);
/* block-export-resume: resumes one export by id; not paused is not an
 * error.  Error "Export 'x' is not found". */
bool nbd_export_resume(const char *id, Error **errp);
/* Requests that wait in hold queues, over all exports (quit refuses
 * while there are any); *paused_exports (may be NULL) is set to the
 * number of paused exports. */
size_t nbd_export_held_requests(size_t *paused_exports);
/* Forced stop of every export, then waits until their waiting requests
 * have left the hold queues and had a moment to send their replies, so
 * clients see the errors before the connections close. */
void nbd_export_fail_held(void);

#endif
