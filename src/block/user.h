/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - a user of a node (QEMU's BlockBackend): an NBD export, a
 * block job, a tool.
 *
 * The user owns what belongs to one consumer of a node rather than to
 * the node: the permissions it took, its error policy (QEMU's
 * werror/rerror for devices, on-error for jobs), its io-status, the
 * origin its requests are accounted under, and optionally its own
 * accounting (what an export's client saw).  Two users of the same node
 * have independent policies: one can hold a failed write while the
 * other reports the same failure at once.
 *
 * Error policy: under "stop" (any I/O error) or "enospc" (ENOSPC only) a
 * failing request is held, not failed.  The thread that ran it waits in
 * the user's hold queue, so the request keeps its buffer and accounting
 * cookie and is answered only once it has really completed; the user
 * pauses and reports the error (BLOCK_IO_ERROR, or the user's own event
 * for jobs).  Requests that arrive while paused queue behind the held
 * ones.  block_user_resume() re-reads the size of the storage below the
 * node, then retries the held requests one at a time in order (a retry
 * that fails pauses again and stays first), and only then lets the
 * queued ones run: a caller never sees a request it sent after a held
 * one take effect before it.  "ignore" completes the failed request as
 * if it had succeeded (QEMU's semantics; jobs use it to skip a range).
 *
 * When nothing is paused a request costs one atomic load on top of the
 * accounting.  Lock order: the user registry's lock, then a user's
 * lock.
 */
#ifndef STRATA_BLOCK_USER_H
#define STRATA_BLOCK_USER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block/accounting.h"
#include "block/block.h"
#include "util/error.h"

typedef struct BlockUser BlockUser;

/* QEMU's BlockdevOnError, in QEMU's enum order. */
typedef enum BlockErrorAction {
    BLOCK_ERROR_ACTION_REPORT,
    BLOCK_ERROR_ACTION_IGNORE,
    BLOCK_ERROR_ACTION_ENOSPC,
    BLOCK_ERROR_ACTION_STOP,
    BLOCK_ERROR_ACTION__MAX,
} BlockErrorAction;

/* "report", "ignore", "enospc", "stop". */
const char *block_error_action_name(BlockErrorAction action);
/* Parses a name into *out.  allowed is a mask of 1 << action; a name
 * outside it fails like an unknown one: "Parameter 'what' does not
 * accept value 'x'" (QEMU's text). */
bool block_error_action_parse(const char *name, unsigned allowed,
                              const char *what, BlockErrorAction *out,
                              Error **errp);

/* QEMU's BlockDeviceIoStatus. */
typedef enum BlockIoStatus {
    BLOCK_IO_STATUS_OK,
    BLOCK_IO_STATUS_FAILED,
    BLOCK_IO_STATUS_NOSPACE,
} BlockIoStatus;

/* "ok", "failed", "nospace". */
const char *block_io_status_name(BlockIoStatus status);

/* Reports one error decision: action is "report", "ignore" or "stop".
 * Called on the thread that ran the request, without the user's lock. */
typedef void BlockUserErrorFn(BlockUser *user, BlockReqType type, int err,
                              const char *action, void *opaque);

typedef enum BlockUserKind {
    BLOCK_USER_EXPORT,             /* a client's view: an export */
    BLOCK_USER_JOB,
    BLOCK_USER_OTHER,              /* tools, tests */
} BlockUserKind;

typedef struct BlockUserOptions {
    /* Names the user in events and logs (QEMU's device name: the export
     * id, the job id).  Copied. */
    const char *id;
    BlockUserKind kind;
    uint64_t perm;                 /* BLOCK_PERM_* taken on the node */
    uint64_t shared;               /* and what others may still do */
    BlockErrorAction werror;       /* writes, write-zeroes, discard, flush */
    BlockErrorAction rerror;       /* reads and cache */
    BlockOrigin origin;            /* what the node's accounting calls it */
    /* The user's own accounting (NULL: none).  Ownership passes to the
     * user, also when block_user_new fails. */
    BlockAcct *acct;
    /* NULL: BLOCK_IO_ERROR {device: id, node-name, operation, action,
     * nospace, reason}, as QEMU sends it for a device. */
    BlockUserErrorFn *error_fn;
    void *error_opaque;
} BlockUserOptions;

/* Takes a reference on bs and the permissions; fails, taking nothing,
 * when another process holds conflicting ones. */
BlockUser *block_user_new(BlockNode *bs, const BlockUserOptions *o,
                          Error **errp);
/* Gives back the permissions and the node reference.  No request may be
 * running on the user (the caller has stopped it and waited). */
void block_user_free(BlockUser *u);

/* The user's node.  Stable on the main thread (where graph changes
 * run) and inside a request's run callback; other threads copy the
 * name with block_user_node_name. */
BlockNode *block_user_node(const BlockUser *u);
void block_user_node_name(BlockUser *u, char *buf, size_t size);
/* Moves the user to bs (a graph change: a filter inserted above its
 * node, an overlay on top of it): takes the user's permissions on bs,
 * waits until no request of the user is running, switches, and gives
 * the old node's permissions and reference back.  Requests see either
 * node for their whole run.  Main thread. */
bool block_user_set_node(BlockUser *u, BlockNode *bs, Error **errp);
/* Waits until no request of u runs and holds new ones back until
 * block_user_unquiesce (QEMU's drained section, seen from a user): a
 * transaction of graph changes keeps every user still from its first
 * change to its last undo, so no client write lands in an overlay that
 * is taken away again.  block_user_set_node works on a quiesced user;
 * block_user_node_name waits.  Main thread. */
void block_user_quiesce(BlockUser *u);
void block_user_unquiesce(BlockUser *u);
BlockUserKind block_user_kind(const BlockUser *u);
const char *block_user_id(const BlockUser *u);
/* NULL when the user keeps no accounting of its own. */
BlockAcct *block_user_acct(const BlockUser *u);

/* Calls fn for every user of the given kind, oldest first, each held
 * alive for the call (not under a lock: fn may query and do I/O).  Any
 * thread.  This is how /metrics and query-blockstats find what exports
 * saw without knowing what an export is. */
void block_user_foreach(BlockUserKind kind,
                        void (*fn)(BlockUser *u, void *opaque), void *opaque);

/* ---- running requests ---- */

/* Does the request's I/O on the node; returns 0 or -errno.  May be called
 * again (a retry after resume), so it must redo the whole request. */
typedef int BlockUserRunFn(void *opaque);

/* Runs one request of the given type under the user's policy and
 * accounting: counted as `bytes` in the user's accounting, run as the
 * user's origin, and held/retried as the policy says.  req_flags are the
 * BLOCK_REQ_* flags of the request (a write-zeroes with NO_FALLBACK that
 * fails with -ENOTSUP is an answer, not an error).  Returns the final
 * result.  Any thread. */
int block_user_run(BlockUser *u, BlockReqType type, int req_flags,
                   uint64_t bytes, BlockUserRunFn *run, void *opaque);
/* Counts a request the caller rejected before any I/O (bad range,
 * read-only, bad flags) in the user's accounting. */
void block_user_invalid(BlockUser *u, BlockReqType type);

/* One block-layer call each, through block_user_run. */
int block_user_read(BlockUser *u, uint64_t offset, uint64_t bytes, void *buf,
                    int flags);
int block_user_write(BlockUser *u, uint64_t offset, uint64_t bytes,
                     const void *buf, int flags);
int block_user_write_zeroes(BlockUser *u, uint64_t offset, uint64_t bytes,
                            int flags);
int block_user_discard(BlockUser *u, uint64_t offset, uint64_t bytes);
int block_user_flush(BlockUser *u);

/* ---- control (main thread) ---- */

typedef struct BlockUserStatus {
    BlockErrorAction werror, rerror;
    BlockIoStatus io_status;
    bool paused;
    int held;                     /* failed, waiting for a retry */
    int queued;                   /* arrived while paused, not run yet */
    uint64_t pauses;              /* since the user was created */
    const char *operation;        /* "read"/"write" of the error that
                                     paused it; NULL when not paused */
    int error;                    /* its errno (positive) */
} BlockUserStatus;

void block_user_get_status(BlockUser *u, BlockUserStatus *st);

/* Resumes a paused user; true if it was paused. */
bool block_user_resume(BlockUser *u);
/* QEMU's cont: resumes every paused user but jobs' (job-resume does
 * those); returns how many were. */
size_t block_user_resume_all(void);
/* True while a new request would wait before it runs (the user is
 * paused, or requests are queued behind held ones).  A hint: the state
 * may change as soon as it is read. */
bool block_user_would_wait(BlockUser *u);
/* Requests waiting in hold queues over all users; *paused (may be NULL)
 * gets the number of paused users. */
size_t block_user_held_requests(size_t *paused);
/* Forced stop of one user: held requests fail with their error, queued
 * ones run, and errors are reported from now on.  Returns how many
 * requests were waiting.  Does not wait for them. */
size_t block_user_stop(BlockUser *u);
/* Waits until no request is left in u's hold queue (after a stop). */
void block_user_wait_unheld(BlockUser *u);

#endif
