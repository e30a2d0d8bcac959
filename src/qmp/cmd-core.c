/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP commands of the monitor itself: qmp_capabilities,
 * query-version, query-commands, quit. */
#include "qmp/qapi-schema.h"
#include "qmp/qmp-args.h"
#include "qmp/qmp-internal.h"

#include <string.h>

bool qmp_capabilities_parse(json_t *args, bool *oob, Error **errp)
{
    if (!qmp_args_check(args, "", qapi_qmp_capabilities_arg, errp)) {
        return false;
    }
    *oob = false;
    size_t i;
    json_t *cap;
    json_array_foreach(json_object_get(args, "enable"), i, cap) {
        if (!strcmp(json_string_value(cap), "oob")) {
            *oob = true;
        }
    }
    return true;
}

/* Reached only after negotiation: the session handles it before. */
static json_t *cmd_qmp_capabilities(json_t *args, Error **errp)
{
    error_set(errp, ERROR_CLASS_COMMAND_NOT_FOUND,
              "Capabilities negotiation is already complete, command ignored");
    return NULL;
}

static json_t *cmd_query_version(json_t *args, Error **errp)
{
    return qmp_version_info();
}

static json_t *cmd_query_commands(json_t *args, Error **errp)
{
    return qmp_command_list();
}

/* QEMU's quit has no arguments.  strata: "force" stops even while
 * export requests are held (they fail to their clients); without it,
 * quit refuses then. */
static const QmpArgSpec quit_args[] = {
    { "force", QMP_ARG_BOOL, .optional = true },
    { NULL },
};

static json_t *cmd_quit(json_t *args, Error **errp)
{
    if (!qmp_arg_bool(args, "force", false) && !qmp_quit_allowed(errp)) {
        return NULL;
    }
    qmp_monitor_request_quit();
    return json_object();
}

void qmp_register_core_commands(void)
{
    qmp_register_command_args("qmp_capabilities", cmd_qmp_capabilities,
                              qapi_qmp_capabilities_arg);
    qmp_register_command_args("query-version", cmd_query_version,
                              qmp_no_args);
    qmp_register_command_args("query-commands", cmd_query_commands,
                              qmp_no_args);
    qmp_register_command_args("quit", cmd_quit, quit_args);
}
