/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-ctl exports: the block exports as a table. */
#include "strata-ctl/ctl.h"

#include <stdio.h>

static const char help[] =
"Usage: strata-ctl [-s SOCKET] [--json] exports\n"
"\n"
"Lists the block exports (query-block-exports): id, type, node and\n"
"whether it is shutting down.  --json prints stratad's reply unchanged.\n";

static void export_row(CtlTable *t, json_t *e)
{
    const char *cells[] = {
        json_string_value(json_object_get(e, "id")),
        json_string_value(json_object_get(e, "type")),
        json_string_value(json_object_get(e, "node-name")),
        json_is_true(json_object_get(e, "shutting-down")) ? "yes" : "no",
    };
    table_add(t, cells);
}

int cmd_exports(const CtlOptions *o, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv, help)) {
        return 0;
    }
    if (argc != 1) {
        fprintf(stderr, "%s", help);
        return 1;
    }
    json_t *exports = ctl_query(o, "query-block-exports", NULL);
    if (!exports) {
        return 1;
    }
    static const char *const headers[] = { "ID", "TYPE", "NODE",
                                           "SHUTTING-DOWN" };
    ctl_print_list(o, exports, 4, headers, export_row);
    json_decref(exports);
    return 0;
}
