/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - transaction (QEMU 7.2's qapi/transaction.json): actions of
 * type blockdev-snapshot, blockdev-snapshot-sync and abort, all or
 * nothing (see transaction.h).  The other action types QEMU has are
 * refused before anything is prepared. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qmp/qapi-schema.h"
#include "qmp/qmp-internal.h"
#include "qmp/transaction.h"
#include "util/cleanup.h"

void qmp_error_drop_hint(Error **errp)
{
    if (!errp || !*errp) {
        return;
    }
    const char *msg = error_get_pretty(*errp);
    const char *nl = strchr(msg, '\n');
    if (!nl) {
        return;
    }
    Error *short_err = NULL;
    error_set(&short_err, (*errp)->cls, "%.*s", (int)(nl - msg), msg);
    error_free(*errp);
    *errp = short_err;
}

/* ---- abort: QEMU's action for testing failure paths ---- */

static bool abort_prepare(TxnAction *a, Error **errp)
{
    (void)a;
    error_setg(errp, "Transaction aborted using Abort action");
    return false;
}

static const QmpArgSpec no_members[] = { { NULL } };

static const TxnActionOps txn_abort = {
    .type = "abort",
    .args = no_members,
    .prepare = abort_prepare,
};

/* QEMU 7.2's TransactionActionKind, in its order. */
static const char *const action_kinds[] = {
    "abort", "block-dirty-bitmap-add", "block-dirty-bitmap-remove",
    "block-dirty-bitmap-clear", "block-dirty-bitmap-enable",
    "block-dirty-bitmap-disable", "block-dirty-bitmap-merge",
    "blockdev-backup", "blockdev-snapshot",
    "blockdev-snapshot-internal-sync", "blockdev-snapshot-sync",
    "drive-backup", NULL,
};

static const TxnActionOps *find_ops(const char *type)
{
    static const TxnActionOps *const ops[] = {
        &txn_abort, &txn_blockdev_snapshot, &txn_blockdev_snapshot_sync,
    };
    for (size_t i = 0; i < ARRAY_SIZE(ops); i++) {
        if (!strcmp(ops[i]->type, type)) {
            return ops[i];
        }
    }
    return NULL;
}

static const QmpArgSpec action_base[] = {
    { "type", QMP_ARG_ENUM, .choices = action_kinds },
    { "data", QMP_ARG_OBJECT },
    { NULL },
};

/* Checks every action before any is prepared, as QEMU's input visitor
 * does with the whole command. */
static bool check_actions(json_t *actions, Error **errp)
{
    size_t i;
    json_t *e;
    json_array_foreach(actions, i, e) {
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "actions[%zu].", i);
        if (!json_is_object(e)) {
            error_setg(errp, "Invalid parameter type for 'actions[%zu]', "
                       "expected: object", i);
            return false;
        }
        if (!qmp_args_check(e, prefix, action_base, errp)) {
            return false;
        }
        const char *type = json_string_value(json_object_get(e, "type"));
        const TxnActionOps *ops = find_ops(type);
        if (!ops) {
            continue;   /* refused by qmp_transaction_run */
        }
        char dprefix[80];
        snprintf(dprefix, sizeof(dprefix), "%sdata.", prefix);
        if (!qmp_args_check(json_object_get(e, "data"), dprefix, ops->args,
                           errp)) {
            return false;
        }
    }
    return true;
}

bool qmp_transaction_run(json_t *actions, bool grouped, Error **errp)
{
    size_t n = json_array_size(actions);
    for (size_t i = 0; i < n; i++) {
        const char *type = json_string_value(
            json_object_get(json_array_get(actions, i), "type"));
        if (!find_ops(type)) {
            error_setg(errp, "Transaction action '%s' is not supported by "
                       "strata", type);
            return false;
        }
    }
    TxnAction *st = calloc(n ? n : 1, sizeof(*st));
    if (!st) {
        error_setg(errp, "Out of memory");
        return false;
    }
    /* No client request runs from the first change to the last undo:
     * a write that reached an overlay taken off again would be lost. */
    BlockQuiesce *quiet = block_quiesce_all_users();
    size_t prepared = 0;
    bool ok = true;
    for (; prepared < n; prepared++) {
        json_t *e = json_array_get(actions, prepared);
        TxnAction *a = &st[prepared];
        a->ops = find_ops(json_string_value(json_object_get(e, "type")));
        a->data = json_object_get(e, "data");
        a->grouped = grouped;
        if (!a->ops->prepare(a, errp)) {
            qmp_error_drop_hint(errp);
            ok = false;
            prepared++;     /* a failed prepare is cleaned too */
            break;
        }
    }
    if (ok) {
        for (size_t i = 0; i < prepared; i++) {
            if (st[i].ops->commit) {
                st[i].ops->commit(&st[i]);
            }
        }
    } else {
        for (size_t i = prepared; i-- > 0;) {
            if (st[i].ops->abort) {
                st[i].ops->abort(&st[i]);
            }
        }
    }
    for (size_t i = 0; i < prepared; i++) {
        if (st[i].ops->clean) {
            st[i].ops->clean(&st[i]);
        }
    }
    block_unquiesce_all_users(quiet);
    free(st);
    return ok;
}

static const char *const completion_modes[] = { "individual", "grouped",
                                                NULL };

static const QmpArgSpec properties_members[] = {
    { "completion-mode", QMP_ARG_ENUM, .optional = true,
      .choices = completion_modes },
    { NULL },
};

static const QmpArgSpec transaction_args[] = {
    { "actions", QMP_ARG_ARRAY, .elem = QMP_ARG_ANY },
    { "properties", QMP_ARG_OBJECT, .optional = true },
    { NULL },
};

static json_t *cmd_transaction(json_t *args, Error **errp)
{
    if (!qmp_args_check(args, "", transaction_args, errp) ||
        !check_actions(json_object_get(args, "actions"), errp)) {
        return NULL;
    }
    json_t *props = json_object_get(args, "properties");
    if (props && !qmp_args_check(props, "properties.", properties_members,
                                errp)) {
        return NULL;
    }
    bool grouped = props && !strcmp(qmp_arg_str(props, "completion-mode",
                                                "individual"), "grouped");
    return qmp_transaction_run(json_object_get(args, "actions"), grouped,
                               errp) ? json_object() : NULL;
}

void qmp_register_transaction_commands(void)
{
    /* QEMU's TransactionAction, every kind, checked before the handler
     * (which refuses the kinds strata does not have). */
    qmp_register_command_args("transaction", cmd_transaction,
                              qapi_transaction_arg);
}
