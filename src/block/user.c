/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - users of nodes: permissions, error policy with its hold
 * queue, io-status and accounting (see user.h for the rules).
 *
 * The hold queue lists waiting threads: held requests first, in the
 * order they failed, then requests that arrived while the user was
 * paused and have not run yet.  Waiters live on their threads' stacks.
 */
#include "block/user.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_core.h"
#include "util/cleanup.h"
#include "util/log.h"

typedef struct Waiter {
    struct Waiter *next;
    bool held;        /* failed once; otherwise queued, never ran */
    bool in_queue;
    bool go;          /* may run (queued) or retry (held) now */
    bool failed;      /* forced stop: give up with the held error */
} Waiter;

struct BlockUser {
    /* Non-zero while paused or while requests wait in the queue: the
     * only member the fast path reads. */
    atomic_int gate;
    /* Read-held by every run of a request, write-held while the user is
     * moved to another node (block_user_set_node): a request sees one
     * node from start to end.  Writers first, so a busy client cannot
     * keep a graph change waiting. */
    pthread_rwlock_t node_lock;
    bool quiesced;            /* node_lock write-held by the main thread */
    BlockNode *bs;
    char *id;
    BlockUserKind kind;
    uint64_t perm, shared;
    BlockErrorAction werror, rerror;
    BlockOrigin origin;
    BlockAcct *acct;
    BlockUserErrorFn *error_fn;
    void *error_opaque;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    Waiter *head, *tail;
    int nheld, nqueued;
    bool paused;
    bool stopping;            /* forced stop: report errors, fail held */
    BlockIoStatus io_status;
    const char *operation;
    int error;
    uint64_t pauses;

    /* Registry (registry_lock): the owner's reference plus one per
     * snapshot that works on the user outside the registry lock. */
    int refcnt;
    BlockUser *next;
};

typedef enum Decision { NOT_IO_ERROR, REPORT, IGNORE, HOLD } Decision;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static BlockUser *users;

static const char *const action_names[BLOCK_ERROR_ACTION__MAX] = {
    [BLOCK_ERROR_ACTION_REPORT] = "report",
    [BLOCK_ERROR_ACTION_IGNORE] = "ignore",
    [BLOCK_ERROR_ACTION_ENOSPC] = "enospc",
    [BLOCK_ERROR_ACTION_STOP] = "stop",
};

const char *block_error_action_name(BlockErrorAction action)
{
    return action < BLOCK_ERROR_ACTION__MAX ? action_names[action] : "report";
}

bool block_error_action_parse(const char *name, unsigned allowed,
                              const char *what, BlockErrorAction *out,
                              Error **errp)
{
    for (int a = 0; a < BLOCK_ERROR_ACTION__MAX; a++) {
        if ((allowed & (1u << a)) && !strcmp(name, action_names[a])) {
            *out = (BlockErrorAction)a;
            return true;
        }
    }
    error_setg(errp, "Parameter '%s' does not accept value '%s'", what, name);
    return false;
}

const char *block_io_status_name(BlockIoStatus status)
{
    static const char *const names[] = { "ok", "failed", "nospace" };
    return status <= BLOCK_IO_STATUS_NOSPACE ? names[status] : "ok";
}

/* ---- lifetime ---- */

BlockUser *block_user_new(BlockNode *bs, const BlockUserOptions *o,
                          Error **errp)
{
    BlockUser *u = calloc(1, sizeof(*u));
    char *id = strdup(o->id ? o->id : "");
    if (!u || !id) {
        error_setg(errp, "Out of memory");
        free(u);
        free(id);
        block_acct_free(o->acct);
        return NULL;
    }
    if (!block_node_add_perm(bs, o->perm, o->shared, errp)) {
        free(u);
        free(id);
        block_acct_free(o->acct);
        return NULL;
    }
    block_node_ref(bs);
    atomic_init(&u->gate, 0);
    u->bs = bs;
    u->id = id;
    u->kind = o->kind;
    u->perm = o->perm;
    u->shared = o->shared;
    u->werror = o->werror;
    u->rerror = o->rerror;
    u->origin = o->origin;
    u->acct = o->acct;
    u->error_fn = o->error_fn;
    u->error_opaque = o->error_opaque;
    pthread_mutex_init(&u->lock, NULL);
    pthread_cond_init(&u->cond, NULL);
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&u->node_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    u->refcnt = 1;

    LOCK_GUARD(&registry_lock);
    u->next = users;
    users = u;
    return u;
}

static void user_destroy(BlockUser *u)
{
    block_node_del_perm(u->bs, u->perm, u->shared);
    block_node_unref(u->bs);
    block_acct_free(u->acct);
    pthread_rwlock_destroy(&u->node_lock);
    pthread_cond_destroy(&u->cond);
    pthread_mutex_destroy(&u->lock);
    free(u->id);
    free(u);
}

/* Snapshots (control paths on any thread) hold references; the owner's
 * free unlinks the user so no new snapshot finds it, then waits for the
 * snapshots to let go, so the node is released by the time
 * block_user_free returns (a blockdev-del right after an export is
 * deleted must find the node unused). */
static pthread_cond_t registry_cond = PTHREAD_COND_INITIALIZER;

static void user_unref(BlockUser *u)
{
    LOCK_GUARD(&registry_lock);
    u->refcnt--;
    pthread_cond_broadcast(&registry_cond);
}

void block_user_free(BlockUser *u)
{
    if (!u) {
        return;
    }
    pthread_mutex_lock(&registry_lock);
    for (BlockUser **p = &users; *p; p = &(*p)->next) {
        if (*p == u) {
            *p = u->next;
            break;
        }
    }
    while (u->refcnt > 1) {
        pthread_cond_wait(&registry_cond, &registry_lock);
    }
    pthread_mutex_unlock(&registry_lock);
    user_destroy(u);
}

BlockNode *block_user_node(const BlockUser *u)
{
    return u->bs;
}

void block_user_node_name(BlockUser *u, char *buf, size_t size)
{
    RDLOCK_GUARD(&u->node_lock);
    snprintf(buf, size, "%s", block_node_name(u->bs));
}

bool block_user_set_node(BlockUser *u, BlockNode *bs, Error **errp)
{
    if (bs == u->bs) {
        return true;
    }
    if (!block_node_add_perm(bs, u->perm, u->shared, errp)) {
        return false;
    }
    block_node_ref(bs);
    BlockNode *old = u->bs;
    if (u->quiesced) {
        u->bs = bs;     /* no request runs: the lock is ours already */
    } else {
        WRLOCK_GUARD(&u->node_lock);
        u->bs = bs;
    }
    block_node_del_perm(old, u->perm, u->shared);
    block_node_unref(old);
    return true;
}

void block_user_quiesce(BlockUser *u)
{
    pthread_rwlock_wrlock(&u->node_lock);
    u->quiesced = true;
}

void block_user_unquiesce(BlockUser *u)
{
    u->quiesced = false;
    pthread_rwlock_unlock(&u->node_lock);
}

/* One run of a request, on the node the user has for all of it. */
static inline int run_on_node(BlockUser *u, BlockUserRunFn *run,
                              void *opaque)
{
    pthread_rwlock_rdlock(&u->node_lock);
    int ret = run(opaque);
    pthread_rwlock_unlock(&u->node_lock);
    return ret;
}

BlockUserKind block_user_kind(const BlockUser *u)
{
    return u->kind;
}

const char *block_user_id(const BlockUser *u)
{
    return u->id;
}

BlockAcct *block_user_acct(const BlockUser *u)
{
    return u->acct;
}

/* Every user, each with a reference; free with snapshot_free. */
static BlockUser **snapshot(size_t *count)
{
    LOCK_GUARD(&registry_lock);
    size_t n = 0;
    for (BlockUser *u = users; u; u = u->next) {
        n++;
    }
    BlockUser **list = calloc(n ? n : 1, sizeof(*list));
    if (!list) {
        *count = 0;
        return NULL;
    }
    /* Oldest first: resumes happen in the order users were created. */
    size_t i = n;
    for (BlockUser *u = users; u; u = u->next) {
        u->refcnt++;
        list[--i] = u;
    }
    *count = n;
    return list;
}

static void snapshot_free(BlockUser **list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        user_unref(list[i]);
    }
    free(list);
}

void block_user_foreach(BlockUserKind kind,
                        void (*fn)(BlockUser *u, void *opaque), void *opaque)
{
    size_t n = 0;
    BlockUser **list = snapshot(&n);
    for (size_t i = 0; i < n; i++) {
        if (list[i]->kind == kind) {
            fn(list[i], opaque);
        }
    }
    snapshot_free(list, n);
}

/* ---- what a failure means ---- */

/* stopping is u->stopping when the caller holds u->lock, else false
 * (the caller looks again under the lock before holding). */
static Decision decide(const BlockUser *u, BlockReqType type, int req_flags,
                       int ret, bool stopping)
{
    switch (type) {
    case BLOCK_REQ_READ:
    case BLOCK_REQ_CACHE:
    case BLOCK_REQ_WRITE:
    case BLOCK_REQ_DISCARD:
    case BLOCK_REQ_FLUSH:
        break;
    case BLOCK_REQ_WRITE_ZEROES:
        /* A fast zero the storage cannot do is an answer, not an error:
         * the caller falls back to writing zeroes itself. */
        if (ret == -ENOTSUP && (req_flags & BLOCK_REQ_NO_FALLBACK)) {
            return NOT_IO_ERROR;
        }
        break;
    default:
        return NOT_IO_ERROR;
    }
    /* A request the block layer refuses as malformed fails the same way
     * however often it is retried. */
    if (ret == -EINVAL) {
        return NOT_IO_ERROR;
    }
    BlockErrorAction a = block_req_is_read(type) ? u->rerror : u->werror;
    if (stopping || a == BLOCK_ERROR_ACTION_REPORT) {
        return REPORT;
    }
    if (a == BLOCK_ERROR_ACTION_IGNORE) {
        return IGNORE;
    }
    if (a == BLOCK_ERROR_ACTION_ENOSPC && ret != -ENOSPC) {
        return REPORT;
    }
    return HOLD;
}

/* QEMU's IoOperationType has only read and write: flush, discard and
 * write-zeroes are writes there, and here. */
static const char *operation_name(BlockReqType type)
{
    return block_req_is_read(type) ? "read" : "write";
}

/* BLOCK_IO_ERROR as QEMU sends it for a device: the user id stands for
 * the device, the user's node for the root node. */
static void report_error(BlockUser *u, BlockReqType type, int err,
                         const char *action)
{
    if (u->error_fn) {
        u->error_fn(u, type, err, action, u->error_opaque);
        return;
    }
    char buf[128];
    const char *reason = strerror_r(err, buf, sizeof(buf));
    json_t *data = json_pack("{s:s, s:s, s:s, s:s, s:b, s:s}",
                             "device", u->id,
                             "node-name", block_node_name(u->bs),
                             "operation", operation_name(type),
                             "action", action,
                             "nospace", err == ENOSPC,
                             "reason", reason);
    if (data) {
        block_emit_event("BLOCK_IO_ERROR", data);
    }
}

/* ---- the queue; all with u->lock held ---- */

static void update_gate_locked(BlockUser *u)
{
    atomic_store_explicit(&u->gate, (u->paused || u->head) ? 1 : 0,
                          memory_order_release);
}

static void insert_held_locked(BlockUser *u, Waiter *w)
{
    Waiter **link = &u->head;
    while (*link && (*link)->held) {
        link = &(*link)->next;
    }
    w->next = *link;
    *link = w;
    if (!w->next) {
        u->tail = w;
    }
    w->in_queue = true;
    u->nheld++;
}

static void append_queued_locked(BlockUser *u, Waiter *w)
{
    w->next = NULL;
    if (u->tail) {
        u->tail->next = w;
    } else {
        u->head = w;
    }
    u->tail = w;
    w->in_queue = true;
    u->nqueued++;
}

static void remove_locked(BlockUser *u, Waiter *w)
{
    if (!w->in_queue) {
        return;
    }
    Waiter *prev = NULL;
    for (Waiter *cur = u->head; cur; prev = cur, cur = cur->next) {
        if (cur == w) {
            if (prev) {
                prev->next = w->next;
            } else {
                u->head = w->next;
            }
            if (u->tail == w) {
                u->tail = prev;
            }
            break;
        }
    }
    w->in_queue = false;
    w->next = NULL;
    if (w->held) {
        u->nheld--;
    } else {
        u->nqueued--;
    }
}

/* Lets the next waiters go when the user runs: the first held request
 * alone, or, when none is held, every queued one. */
static void release_next_locked(BlockUser *u)
{
    if (u->paused || !u->head) {
        update_gate_locked(u);
        return;
    }
    if (u->head->held) {
        u->head->go = true;
    } else {
        while (u->head) {
            Waiter *w = u->head;
            remove_locked(u, w);
            w->go = true;
        }
    }
    update_gate_locked(u);
    pthread_cond_broadcast(&u->cond);
}

/* Returns true when this call paused the user (the caller reports the
 * error after dropping the lock: one event per pause). */
static bool pause_locked(BlockUser *u, BlockReqType type, int ret)
{
    if (u->paused) {
        return false;
    }
    u->paused = true;
    u->pauses++;
    u->error = -ret;
    u->operation = operation_name(type);
    u->io_status = ret == -ENOSPC ? BLOCK_IO_STATUS_NOSPACE
                                  : BLOCK_IO_STATUS_FAILED;
    update_gate_locked(u);
    log_warn("'%s': %s failed (%s); paused with %d request(s) held",
             u->id, u->operation, strerror(-ret), u->nheld);
    return true;
}

/* Waits in the queue as a held request and retries when let go.
 * Returns the request's final result.  u->lock held. */
static int hold_locked(BlockUser *u, BlockReqType type, int req_flags,
                       BlockUserRunFn *run, void *opaque, int ret)
{
    Waiter w = { .held = true };
    insert_held_locked(u, &w);
    if (pause_locked(u, type, ret)) {
        pthread_mutex_unlock(&u->lock);
        report_error(u, type, -ret, "stop");
        pthread_mutex_lock(&u->lock);
    }

    for (;;) {
        while (!w.go && !w.failed) {
            pthread_cond_wait(&u->cond, &u->lock);
        }
        if (w.failed) {
            /* Forced stop: the caller gets the error it would have had
             * under "report". */
            pthread_mutex_unlock(&u->lock);
            report_error(u, type, -ret, "report");
            pthread_mutex_lock(&u->lock);
            break;
        }
        pthread_mutex_unlock(&u->lock);
        int r = run_on_node(u, run, opaque);
        pthread_mutex_lock(&u->lock);
        if (r >= 0) {
            ret = r;
            break;
        }
        Decision d = decide(u, type, req_flags, r, u->stopping);
        ret = r;
        if (d == HOLD) {
            w.go = false;
            if (pause_locked(u, type, r)) {
                pthread_mutex_unlock(&u->lock);
                report_error(u, type, -r, "stop");
                pthread_mutex_lock(&u->lock);
            }
            continue;
        }
        if (d == REPORT || d == IGNORE) {
            pthread_mutex_unlock(&u->lock);
            report_error(u, type, -r, d == IGNORE ? "ignore" : "report");
            pthread_mutex_lock(&u->lock);
            if (d == IGNORE) {
                ret = 0;
            }
        }
        break;
    }
    remove_locked(u, &w);
    release_next_locked(u);
    pthread_cond_broadcast(&u->cond);   /* block_user_fail_held_all waits */
    return ret;
}

static int policy_failed(BlockUser *u, BlockReqType type, int req_flags,
                         BlockUserRunFn *run, void *opaque, int ret)
{
    Decision d = decide(u, type, req_flags, ret, false);
    if (d == REPORT || d == IGNORE) {
        report_error(u, type, -ret, d == IGNORE ? "ignore" : "report");
        return d == IGNORE ? 0 : ret;
    }
    if (d != HOLD) {
        return ret;
    }
    pthread_mutex_lock(&u->lock);
    if (u->stopping) {
        pthread_mutex_unlock(&u->lock);
        report_error(u, type, -ret, "report");
        return ret;
    }
    ret = hold_locked(u, type, req_flags, run, opaque, ret);
    pthread_mutex_unlock(&u->lock);
    return ret;
}

static int policy_run_gated(BlockUser *u, BlockReqType type, int req_flags,
                            BlockUserRunFn *run, void *opaque)
{
    pthread_mutex_lock(&u->lock);
    if ((u->paused || u->head) && !u->stopping) {
        Waiter w = { .held = false };
        append_queued_locked(u, &w);
        update_gate_locked(u);
        while (!w.go) {
            pthread_cond_wait(&u->cond, &u->lock);
        }
    }
    pthread_mutex_unlock(&u->lock);

    int ret = run_on_node(u, run, opaque);
    return ret >= 0 ? ret
                    : policy_failed(u, type, req_flags, run, opaque, ret);
}

static inline int policy_run(BlockUser *u, BlockReqType type, int req_flags,
                             BlockUserRunFn *run, void *opaque)
{
    if (__builtin_expect(atomic_load_explicit(&u->gate,
                                              memory_order_acquire) != 0, 0)) {
        return policy_run_gated(u, type, req_flags, run, opaque);
    }
    int ret = run_on_node(u, run, opaque);
    if (__builtin_expect(ret >= 0, 1)) {
        return ret;
    }
    return policy_failed(u, type, req_flags, run, opaque, ret);
}

/* ---- running requests ---- */

bool block_user_would_wait(BlockUser *u)
{
    return atomic_load_explicit(&u->gate, memory_order_acquire) != 0;
}

int block_user_run(BlockUser *u, BlockReqType type, int req_flags,
                   uint64_t bytes, BlockUserRunFn *run, void *opaque)
{
    BlockOrigin saved = block_origin_set(u->origin);
    BlockAcctType at = u->acct ? block_req_acct_type(type) : BLOCK_ACCT_NONE;
    int ret;
    if (at == BLOCK_ACCT_NONE) {
        ret = policy_run(u, type, req_flags, run, opaque);
    } else {
        BlockAcctCookie cookie;
        block_acct_start_origin(u->acct, &cookie, at,
                                at == BLOCK_ACCT_FLUSH ? 0 : bytes, u->origin);
        ret = policy_run(u, type, req_flags, run, opaque);
        if (ret < 0) {
            block_acct_failed(u->acct, &cookie);
        } else {
            block_acct_done(u->acct, &cookie);
        }
    }
    block_origin_set(saved);
    return ret;
}

void block_user_invalid(BlockUser *u, BlockReqType type)
{
    if (u->acct) {
        block_acct_invalid(u->acct, block_req_acct_type(type));
    }
}

typedef struct SimpleReq {
    BlockUser *u;
    BlockReqType type;
    uint64_t offset, bytes;
    void *buf;
    const void *cbuf;
    int flags;
} SimpleReq;

static int simple_run(void *opaque)
{
    SimpleReq *r = opaque;
    BlockNode *bs = r->u->bs;
    switch (r->type) {
    case BLOCK_REQ_READ:
        return block_read(bs, r->offset, r->bytes, r->buf, r->flags);
    case BLOCK_REQ_WRITE:
        return block_write(bs, r->offset, r->bytes, r->cbuf, r->flags);
    case BLOCK_REQ_WRITE_ZEROES:
        return block_write_zeroes(bs, r->offset, r->bytes, r->flags);
    case BLOCK_REQ_DISCARD:
        return block_discard(bs, r->offset, r->bytes);
    case BLOCK_REQ_FLUSH:
        return block_flush(bs);
    default:
        return -EINVAL;
    }
}

static int simple(BlockUser *u, BlockReqType type, uint64_t offset,
                  uint64_t bytes, void *buf, const void *cbuf, int flags)
{
    SimpleReq r = { u, type, offset, bytes, buf, cbuf, flags };
    return block_user_run(u, type, flags, bytes, simple_run, &r);
}

int block_user_read(BlockUser *u, uint64_t offset, uint64_t bytes, void *buf,
                    int flags)
{
    return simple(u, BLOCK_REQ_READ, offset, bytes, buf, NULL, flags);
}

int block_user_write(BlockUser *u, uint64_t offset, uint64_t bytes,
                     const void *buf, int flags)
{
    return simple(u, BLOCK_REQ_WRITE, offset, bytes, NULL, buf, flags);
}

int block_user_write_zeroes(BlockUser *u, uint64_t offset, uint64_t bytes,
                            int flags)
{
    return simple(u, BLOCK_REQ_WRITE_ZEROES, offset, bytes, NULL, NULL, flags);
}

int block_user_discard(BlockUser *u, uint64_t offset, uint64_t bytes)
{
    return simple(u, BLOCK_REQ_DISCARD, offset, bytes, NULL, NULL, 0);
}

int block_user_flush(BlockUser *u)
{
    return simple(u, BLOCK_REQ_FLUSH, 0, 0, NULL, NULL, 0);
}

/* ---- control ---- */

void block_user_get_status(BlockUser *u, BlockUserStatus *st)
{
    LOCK_GUARD(&u->lock);
    *st = (BlockUserStatus){
        .werror = u->werror,
        .rerror = u->rerror,
        .io_status = u->io_status,
        .paused = u->paused,
        .held = u->nheld,
        .queued = u->nqueued,
        .pauses = u->pauses,
        .operation = u->paused ? u->operation : NULL,
        .error = u->error,
    };
}

size_t block_user_stop(BlockUser *u)
{
    LOCK_GUARD(&u->lock);
    size_t waiting = (size_t)(u->nheld + u->nqueued);
    u->stopping = true;
    u->paused = false;
    Waiter *w = u->head;
    while (w) {
        Waiter *next = w->next;
        if (!(w->held && w->go)) {   /* a running retry finishes itself */
            remove_locked(u, w);
            if (w->held) {
                w->failed = true;
            } else {
                w->go = true;
            }
        }
        w = next;
    }
    update_gate_locked(u);
    pthread_cond_broadcast(&u->cond);
    return waiting;
}

void block_user_wait_unheld(BlockUser *u)
{
    LOCK_GUARD(&u->lock);
    while (u->head) {
        pthread_cond_wait(&u->cond, &u->lock);
    }
}

/* Makes a storage that grew visible before held writes are retried: the
 * size of every protocol node under the user's node (through format and
 * filter nodes) is read again. */
static void refresh_storage(BlockUser *u)
{
    for (BlockNode *bs = u->bs; bs; bs = bs->file) {
        if (bs->drv->is_protocol) {
            int64_t r = block_refresh_size(bs);
            if (r < 0) {
                log_warn("'%s': cannot re-read the size of '%s': %s", u->id,
                         block_node_name(bs), strerror((int)-r));
            }
        }
    }
}

bool block_user_resume(BlockUser *u)
{
    pthread_mutex_lock(&u->lock);
    bool paused = u->paused && !u->stopping;
    pthread_mutex_unlock(&u->lock);
    if (!paused) {
        return false;
    }
    refresh_storage(u);

    LOCK_GUARD(&u->lock);
    if (!u->paused || u->stopping) {
        return false;
    }
    u->paused = false;
    u->io_status = BLOCK_IO_STATUS_OK;
    log_info("'%s': resumed; retrying %d held request(s)", u->id, u->nheld);
    release_next_locked(u);
    return true;
}

size_t block_user_resume_all(void)
{
    size_t n = 0, resumed = 0;
    BlockUser **list = snapshot(&n);
    for (size_t i = 0; i < n; i++) {
        /* A job stopped by an error is resumed with job-resume, as in
         * QEMU, not by cont. */
        if (list[i]->kind != BLOCK_USER_JOB) {
            resumed += block_user_resume(list[i]);
        }
    }
    snapshot_free(list, n);
    return resumed;
}

size_t block_user_held_requests(size_t *paused_users)
{
    size_t n = 0, held = 0, paused = 0;
    BlockUser **list = snapshot(&n);
    for (size_t i = 0; i < n; i++) {
        BlockUser *u = list[i];
        if (u->kind == BLOCK_USER_JOB) {
            continue;    /* jobs are cancelled at quit, not waited for */
        }
        LOCK_GUARD(&u->lock);
        held += (size_t)(u->nheld + u->nqueued);
        paused += u->paused;
    }
    snapshot_free(list, n);
    if (paused_users) {
        *paused_users = paused;
    }
    return held;
}
