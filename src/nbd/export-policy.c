/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - an export's error policy: the hold queue behind a paused
 * export (see export-policy.h).
 *
 * A request that fails under "stop"/"enospc" is held by the thread that
 * ran it: the thread waits here, so the request keeps its slot, its
 * buffer and its accounting cookie, and is answered only once it has
 * really completed.  The hold queue lists the waiting threads: held
 * requests first, in the order they failed, then requests that arrived
 * while the export was paused and have not run yet.  On resume the held
 * requests are retried one at a time, in order (a retry that fails pauses
 * the export again and stays first); once none is left, the queued ones
 * are released together and run as usual.  The NBD protocol does not
 * order concurrent requests, but a client must never see a request it
 * sent after a held one take effect before it.
 */
#include "nbd/export-policy.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "block/block_int.h"
#include "nbd/nbd-int.h"
#include "nbd/protocol.h"
#include "util/cleanup.h"
#include "util/keyval.h"
#include "util/log.h"

struct ExportWaiter {
    ExportWaiter *next;
    bool held;        /* failed once; otherwise queued, never ran */
    bool in_queue;
    bool go;          /* may run (queued) or retry (held) now */
    bool failed;      /* forced stop: give up with the held error */
};

typedef enum Decision { NOT_IO_ERROR, REPORT, HOLD } Decision;

static const char *const werror_names[] = { "report", "stop", "enospc", NULL };
static const char *const rerror_names[] = { "report", "stop", NULL };
static const char *const action_names[] = { "report", "stop", "enospc" };
static const char *const io_status_names[] = { "ok", "failed", "nospace" };

bool export_policy_parse(json_t *args, ExportErrorAction *werror,
                         ExportErrorAction *rerror, Error **errp)
{
    int w, r;
    if (!opt_get_enum(args, "werror", werror_names, EXPORT_ON_ERROR_ENOSPC,
                      &w, errp) ||
        !opt_get_enum(args, "rerror", rerror_names, EXPORT_ON_ERROR_REPORT,
                      &r, errp)) {
        return false;
    }
    json_object_del(args, "werror");
    json_object_del(args, "rerror");
    *werror = (ExportErrorAction)w;
    *rerror = (ExportErrorAction)r;
    return true;
}

void export_policy_init(ExportPolicy *p, ExportErrorAction werror,
                        ExportErrorAction rerror)
{
    memset(p, 0, sizeof(*p));
    atomic_init(&p->gate, 0);
    p->werror = werror;
    p->rerror = rerror;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
}

void export_policy_destroy(ExportPolicy *p)
{
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
}

/* ---- what a failure means ---- */

static bool is_read_type(uint16_t type)
{
    return type == NBD_CMD_READ || type == NBD_CMD_CACHE;
}

/* stopping is p->stopping when the caller holds p->lock, else false
 * (the caller looks again under the lock before holding). */
static Decision decide(const ExportPolicy *p, const NbdRequest *req, int ret,
                       bool stopping)
{
    switch (req->type) {
    case NBD_CMD_READ:
    case NBD_CMD_CACHE:
    case NBD_CMD_WRITE:
    case NBD_CMD_TRIM:
    case NBD_CMD_FLUSH:
        break;
    case NBD_CMD_WRITE_ZEROES:
        /* A fast zero the storage cannot do is an answer, not an error:
         * the client falls back to writing zeroes itself. */
        if (ret == -ENOTSUP && (req->flags & NBD_CMD_FLAG_FAST_ZERO)) {
            return NOT_IO_ERROR;
        }
        break;
    default:
        return NOT_IO_ERROR;   /* block status, bad requests */
    }
    /* A request the block layer refuses as malformed fails the same way
     * however often it is retried. */
    if (ret == -EINVAL) {
        return NOT_IO_ERROR;
    }
    ExportErrorAction a = is_read_type(req->type) ? p->rerror : p->werror;
    if (stopping || a == EXPORT_ON_ERROR_REPORT) {
        return REPORT;
    }
    if (a == EXPORT_ON_ERROR_ENOSPC && ret != -ENOSPC) {
        return REPORT;
    }
    return HOLD;
}

/* BLOCK_IO_ERROR as QEMU sends it for a device: the export id stands
 * for the device, the export's node for the root node.  QEMU's
 * IoOperationType has only read and write: flush, trim and write-zeroes
 * count as writes there, and here. */
static void emit_io_error(NbdExport *exp, const NbdRequest *req, int err,
                          const char *action)
{
    char buf[128];
    const char *reason = strerror_r(err, buf, sizeof(buf));
    json_t *data = json_pack("{s:s, s:s, s:s, s:s, s:b, s:s}",
                             "device", exp->id,
                             "node-name", block_node_name(exp->bs),
                             "operation",
                             is_read_type(req->type) ? "read" : "write",
                             "action", action,
                             "nospace", err == ENOSPC,
                             "reason", reason);
    if (data) {
        block_emit_event("BLOCK_IO_ERROR", data);
    }
}

/* ---- the queue; all with p->lock held ---- */

static void update_gate_locked(ExportPolicy *p)
{
    atomic_store_explicit(&p->gate, (p->paused || p->head) ? 1 : 0,
                          memory_order_release);
}

static void insert_held_locked(ExportPolicy *p, ExportWaiter *w)
{
    ExportWaiter **link = &p->head;
    while (*link && (*link)->held) {
        link = &(*link)->next;
    }
    w->next = *link;
    *link = w;
    if (!w->next) {
        p->tail = w;
    }
    w->in_queue = true;
    p->nheld++;
}

static void append_queued_locked(ExportPolicy *p, ExportWaiter *w)
{
    w->next = NULL;
    if (p->tail) {
        p->tail->next = w;
    } else {
        p->head = w;
    }
    p->tail = w;
    w->in_queue = true;
    p->nqueued++;
}

static void remove_locked(ExportPolicy *p, ExportWaiter *w)
{
    if (!w->in_queue) {
        return;
    }
    ExportWaiter *prev = NULL;
    for (ExportWaiter *cur = p->head; cur; prev = cur, cur = cur->next) {
        if (cur == w) {
            if (prev) {
                prev->next = w->next;
            } else {
                p->head = w->next;
            }
            if (p->tail == w) {
                p->tail = prev;
            }
            break;
        }
    }
    w->in_queue = false;
    w->next = NULL;
    if (w->held) {
        p->nheld--;
    } else {
        p->nqueued--;
    }
}

/* Lets the next waiters go when the export runs: the first held request
 * alone, or, when none is held, every queued one. */
static void release_next_locked(ExportPolicy *p)
{
    if (p->paused || !p->head) {
        update_gate_locked(p);
        return;
    }
    if (p->head->held) {
        p->head->go = true;
    } else {
        while (p->head) {
            ExportWaiter *w = p->head;
            remove_locked(p, w);
            w->go = true;
        }
    }
    update_gate_locked(p);
    pthread_cond_broadcast(&p->cond);
}

static void pause_locked(ExportPolicy *p, NbdExport *exp,
                         const NbdRequest *req, int ret)
{
    if (p->paused) {
        return;     /* one event per pause */
    }
    p->paused = true;
    p->pauses++;
    p->error = -ret;
    p->operation = is_read_type(req->type) ? "read" : "write";
    p->io_status = ret == -ENOSPC ? EXPORT_IO_STATUS_NOSPACE
                                  : EXPORT_IO_STATUS_FAILED;
    update_gate_locked(p);
    log_warn("export '%s': %s failed (%s); paused with %d request(s) held",
             exp->id, p->operation, strerror(-ret), p->nheld);
    emit_io_error(exp, req, -ret, "stop");
}

/* Waits in the queue as a held request and retries when let go.
 * Returns the request's final result.  p->lock held. */
static int hold_locked(ExportPolicy *p, NbdExport *exp, NbdRequest *req,
                       ExportRunFn *run, int ret)
{
    ExportWaiter w = { .held = true };
    insert_held_locked(p, &w);
    pause_locked(p, exp, req, ret);

    for (;;) {
        while (!w.go && !w.failed) {
            pthread_cond_wait(&p->cond, &p->lock);
        }
        if (w.failed) {
            /* Forced stop: the client gets the error it would have had
             * under "report". */
            emit_io_error(exp, req, -ret, "report");
            break;
        }
        pthread_mutex_unlock(&p->lock);
        req->errmsg = NULL;
        int r = run(exp, req);
        pthread_mutex_lock(&p->lock);
        if (r >= 0) {
            ret = r;
            break;
        }
        Decision d = decide(p, req, r, p->stopping);
        ret = r;
        if (d == HOLD) {
            w.go = false;
            pause_locked(p, exp, req, r);
            continue;
        }
        if (d == REPORT) {
            emit_io_error(exp, req, -r, "report");
        }
        break;
    }
    remove_locked(p, &w);
    release_next_locked(p);
    pthread_cond_broadcast(&p->cond);   /* nbd_export_fail_held waits */
    return ret;
}

int export_policy_failed(NbdExport *exp, NbdRequest *req, ExportRunFn *run,
                         int ret)
{
    ExportPolicy *p = &exp->policy;
    Decision d = decide(p, req, ret, false);
    if (d == REPORT) {
        emit_io_error(exp, req, -ret, "report");
    }
    if (d != HOLD) {
        return ret;
    }
    LOCK_GUARD(&p->lock);
    if (p->stopping) {
        emit_io_error(exp, req, -ret, "report");
        return ret;
    }
    return hold_locked(p, exp, req, run, ret);
}

int export_policy_run_gated(NbdExport *exp, NbdRequest *req, ExportRunFn *run)
{
    ExportPolicy *p = &exp->policy;

    pthread_mutex_lock(&p->lock);
    if ((p->paused || p->head) && !p->stopping) {
        ExportWaiter w = { .held = false };
        append_queued_locked(p, &w);
        update_gate_locked(p);
        while (!w.go) {
            pthread_cond_wait(&p->cond, &p->lock);
        }
    }
    pthread_mutex_unlock(&p->lock);

    int ret = run(exp, req);
    return ret >= 0 ? ret : export_policy_failed(exp, req, run, ret);
}

/* ---- control ---- */

void export_policy_query(ExportPolicy *p, json_t *entry)
{
    LOCK_GUARD(&p->lock);
    json_object_set_new(entry, "werror",
                        json_string(action_names[p->werror]));
    json_object_set_new(entry, "rerror",
                        json_string(action_names[p->rerror]));
    json_object_set_new(entry, "io-status",
                        json_string(io_status_names[p->io_status]));
    json_object_set_new(entry, "paused", json_boolean(p->paused));
    json_object_set_new(entry, "held-requests", json_integer(p->nheld));
    json_object_set_new(entry, "queued-requests", json_integer(p->nqueued));
    json_object_set_new(entry, "pauses", json_integer((json_int_t)p->pauses));
    if (p->paused) {
        json_object_set_new(entry, "io-error",
                            json_pack("{s:s, s:s}", "operation", p->operation,
                                      "reason", strerror(p->error)));
    }
}

void export_policy_stop(ExportPolicy *p)
{
    LOCK_GUARD(&p->lock);
    p->stopping = true;
    p->paused = false;
    ExportWaiter *w = p->head;
    while (w) {
        ExportWaiter *next = w->next;
        if (!(w->held && w->go)) {   /* a running retry finishes itself */
            remove_locked(p, w);
            if (w->held) {
                w->failed = true;
            } else {
                w->go = true;
            }
        }
        w = next;
    }
    update_gate_locked(p);
    pthread_cond_broadcast(&p->cond);
}

/* Makes a storage that grew visible before held writes are retried: the
 * size of every protocol node under the export (through format and
 * filter nodes) is read again. */
static void refresh_storage(NbdExport *exp)
{
    for (BlockNode *bs = exp->bs; bs; bs = bs->file) {
        if (bs->drv->is_protocol) {
            int64_t r = block_refresh_size(bs);
            if (r < 0) {
                log_warn("export '%s': cannot re-read the size of '%s': %s",
                         exp->id, block_node_name(bs), strerror((int)-r));
            }
        }
    }
}

/* Resumes one export; true if it was paused. */
static bool resume_export(NbdExport *exp)
{
    ExportPolicy *p = &exp->policy;
    pthread_mutex_lock(&p->lock);
    bool paused = p->paused && !p->stopping;
    pthread_mutex_unlock(&p->lock);
    if (!paused) {
        return false;
    }
    refresh_storage(exp);

    LOCK_GUARD(&p->lock);
    if (!p->paused || p->stopping) {
        return false;
    }
    p->paused = false;
    p->io_status = EXPORT_IO_STATUS_OK;
    log_info("export '%s': resumed; retrying %d held request(s)", exp->id,
             p->nheld);
    release_next_locked(p);
    return true;
}

size_t nbd_export_resume_all(void)
{
    size_t n = 0, resumed = 0;
    NbdExport **list = nbd_export_list(&n);
    for (size_t i = 0; i < n; i++) {
        resumed += resume_export(list[i]);
    }
    nbd_export_list_free(list, n);
    return resumed;
}

bool nbd_export_resume(const char *id, Error **errp)
{
    size_t n = 0;
    bool found = false;
    NbdExport **list = nbd_export_list(&n);
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(list[i]->id, id)) {
            found = true;
            resume_export(list[i]);
        }
    }
    nbd_export_list_free(list, n);
    if (!found) {
        error_setg(errp, "Export '%s' is not found", id);
    }
    return found;
}

size_t nbd_export_held_requests(size_t *paused_exports)
{
    size_t n = 0, held = 0, paused = 0;
    NbdExport **list = nbd_export_list(&n);
    for (size_t i = 0; i < n; i++) {
        ExportPolicy *p = &list[i]->policy;
        LOCK_GUARD(&p->lock);
        held += (size_t)(p->nheld + p->nqueued);
        paused += p->paused;
    }
    nbd_export_list_free(list, n);
    if (paused_exports) {
        *paused_exports = paused;
    }
    return held;
}

/* How long a failed request's worker gets to send its reply after it
 * has left the queue, before the server closes the connections. */
#define REPLY_GRACE_NS (100 * 1000 * 1000L)

void nbd_export_fail_held(void)
{
    size_t n = 0;
    bool any = false;
    NbdExport **list = nbd_export_list(&n);
    for (size_t i = 0; i < n; i++) {
        ExportPolicy *p = &list[i]->policy;
        pthread_mutex_lock(&p->lock);
        size_t waiting = (size_t)(p->nheld + p->nqueued);
        pthread_mutex_unlock(&p->lock);
        if (waiting) {
            log_warn("export '%s': stopping with %zu request(s) held; they "
                     "fail with an error", list[i]->id, waiting);
            any = true;
        }
        export_policy_stop(p);
    }
    for (size_t i = 0; i < n; i++) {
        ExportPolicy *p = &list[i]->policy;
        LOCK_GUARD(&p->lock);
        while (p->head) {
            pthread_cond_wait(&p->cond, &p->lock);
        }
    }
    nbd_export_list_free(list, n);
    if (any) {
        struct timespec ts = { 0, REPLY_GRACE_NS };
        nanosleep(&ts, NULL);
    }
}
