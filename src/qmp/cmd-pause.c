/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP commands of the export error policy: QEMU's `cont`
 * (resumes every paused export), strata's `block-export-resume {id}`,
 * and the check that makes `quit` refuse while requests are held. */
#include <stdio.h>

#include "block/user.h"
#include "nbd/nbd.h"
#include "qmp/qmp-args.h"
#include "qmp/qmp-internal.h"

static const QmpArgSpec no_args[] = { { NULL } };

/* QEMU's cont takes no arguments and succeeds when nothing is paused. */
static json_t *cmd_cont(json_t *args, Error **errp)
{
    if (!qmp_args_check(args, "", no_args, errp)) {
        return NULL;
    }
    block_user_resume_all();
    return json_object();
}

static const QmpArgSpec resume_args[] = {
    { "id", QMP_ARG_STR },
    { NULL },
};

static json_t *cmd_block_export_resume(json_t *args, Error **errp)
{
    if (!qmp_args_check(args, "", resume_args, errp)) {
        return NULL;
    }
    if (!nbd_export_resume(qmp_arg_str(args, "id", ""), errp)) {
        return NULL;
    }
    return json_object();
}

bool qmp_quit_allowed(Error **errp)
{
    size_t paused = 0;
    size_t held = block_user_held_requests(&paused);
    if (held == 0) {
        return true;
    }
    error_setg(errp, "%zu request%s held by %zu paused export%s: resume "
               "with 'cont' (after extending the storage), or use 'quit' "
               "with \"force\": true to fail them", held,
               held == 1 ? " is" : "s are", paused, paused == 1 ? "" : "s");
    return false;
}

void qmp_register_pause_commands(void)
{
    qmp_register_command("cont", cmd_cont);
    qmp_register_command("block-export-resume", cmd_block_export_resume);
}
