/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the transaction command and its actions (cmd-transaction.c,
 * cmd-snapshot.c).
 *
 * A transaction prepares every action in order; if all succeed, each is
 * committed, otherwise each prepared action is aborted in reverse order.
 * Then every action is cleaned up.  blockdev-snapshot and
 * blockdev-snapshot-sync run as a transaction of one action, as QEMU's
 * do, so their checks and texts are the same either way.
 */
#ifndef STRATA_QMP_TRANSACTION_H
#define STRATA_QMP_TRANSACTION_H

#include <jansson.h>
#include <stdbool.h>

#include "block/block.h"
#include "qmp/qmp-args.h"
#include "util/error.h"

typedef struct TxnAction TxnAction;

typedef struct TxnActionOps {
    const char *type;               /* QEMU's TransactionActionKind */
    const QmpArgSpec *args;         /* the members of "data" */
    /* Checks and makes the change, undoably.  False with errp set. */
    bool (*prepare)(TxnAction *a, Error **errp);
    /* Every action prepared: make the change final.  Optional. */
    void (*commit)(TxnAction *a);
    /* A later action failed: undo prepare's change.  Optional. */
    void (*abort)(TxnAction *a);
    /* After commit or abort (or a failed prepare): release what prepare
     * took.  Optional. */
    void (*clean)(TxnAction *a);
} TxnActionOps;

struct TxnAction {
    const TxnActionOps *ops;
    json_t *data;                   /* borrowed, already checked */
    bool grouped;                   /* completion-mode grouped */
    /* The snapshot actions' state. */
    BlockNode *old_bs, *new_bs;
    bool appended;
};

extern const TxnActionOps txn_blockdev_snapshot;
extern const TxnActionOps txn_blockdev_snapshot_sync;

/* Runs the actions (a checked "actions" array) all or nothing. */
bool qmp_transaction_run(json_t *actions, bool grouped, Error **errp);

/* QMP errors carry no hints: the lines a message has after its first
 * (the CLI's "Is another process using the image [x]?") go. */
void qmp_error_drop_hint(Error **errp);

#endif
