/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP object-add and object-del (the work is crypto/object.c),
 * and qom-list for the /objects container. */
#include <string.h>

#include "crypto/object.h"
#include "qmp/monitor.h"
#include "qmp/qapi-schema.h"
#include "qmp/qmp-args.h"
#include "qmp/qmp-internal.h"

/* ObjectOptions: QEMU's object types, each with its properties. */
static json_t *cmd_object_add(json_t *args, Error **errp)
{
    return object_add(args, errp) ? json_object() : NULL;
}

bool qmp_object_add(json_t *opts, bool keyval, Error **errp)
{
    bool ok = keyval ? qmp_args_check_keyval(opts, "", qapi_ObjectOptions,
                                             errp)
                     : qmp_args_check(opts, "", qapi_ObjectOptions, errp);
    return ok && object_add(opts, errp);
}

static json_t *cmd_object_del(json_t *args, Error **errp)
{
    const char *id = json_string_value(json_object_get(args, "id"));
    return object_del(id, errp) ? json_object() : NULL;
}

/* Only the container that holds user-created objects is browsable. */
static json_t *cmd_qom_list(json_t *args, Error **errp)
{
    const char *path = json_string_value(json_object_get(args, "path"));
    if (strcmp(path, "/objects") != 0 && strcmp(path, "/objects/") != 0) {
        error_setg(errp, "Device '%s' not found", path);
        return NULL;
    }
    json_t *list = json_array();
    json_array_append_new(list, json_pack("{s:s, s:s}", "name", "type",
                                          "type", "string"));
    json_t *objs = object_list_json();
    json_array_extend(list, objs);
    json_decref(objs);
    return list;
}

void qmp_register_object_commands(void)
{
    qmp_register_command_args("object-add", cmd_object_add,
                              qapi_ObjectOptions);
    qmp_register_command_args("object-del", cmd_object_del,
                              qapi_object_del_arg);
    qmp_register_command_args("qom-list", cmd_qom_list, qapi_qom_list_arg);
}
