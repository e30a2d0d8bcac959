/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP commands of the export error policy: QEMU's `cont`
 * (resumes every paused export), strata's `block-export-resume {id}`,
 * and the check that makes `quit` refuse while requests are held. */
#include <stdio.h>

#include "block/user.h"
#include "nbd/nbd.h"
#include "qmp/qmp-args.h"
#include "qmp/qmp-internal.h"

/* QEMU's cont takes no arguments and succeeds when nothing is paused. */
static json_t *cmd_cont(json_t *args, Error **errp)
{
    block_user_resume_all();
    return json_object();
}

static const QmpArgSpec resume_args[] = {
    { "id", QMP_ARG_STR },
    { NULL },
};

static json_t *cmd_block_export_resume(json_t *args, Error **errp)
{
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
    qmp_register_command_args("cont", cmd_cont, qmp_no_args);
    qmp_register_command_args("block-export-resume", cmd_block_export_resume,
                              resume_args);
}
