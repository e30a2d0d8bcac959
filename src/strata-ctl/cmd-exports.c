/* strata-ctl exports: the block exports as a table. */
#include "strata-ctl/ctl.h"

#include <stdio.h>

static const char help[] =
"Usage: strata-ctl [-s SOCKET] [--json] exports\n"
"\n"
"Lists the block exports (query-block-exports): id, type, node and\n"
"whether it is shutting down.  --json prints stratad's reply unchanged.\n";

int cmd_exports(const CtlOptions *o, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv, help)) {
        return 0;
    }
    if (argc != 1) {
        fprintf(stderr, "%s", help);
        return 1;
    }
    CtlClient *c = ctl_connect_or_report(o);
    if (!c) {
        return 1;
    }
    Error *err = NULL;
    json_t *exports = ctl_execute(c, "query-block-exports", NULL, &err);
    ctl_close(c);
    if (!exports) {
        error_report_err(err);
        return 1;
    }
    if (o->json) {
        print_json(exports);
        json_decref(exports);
        return 0;
    }
    static const char *const headers[] = { "ID", "TYPE", "NODE",
                                           "SHUTTING-DOWN" };
    CtlTable *t = table_new(4, headers);
    size_t i;
    json_t *e;
    json_array_foreach(exports, i, e) {
        const char *cells[] = {
            json_string_value(json_object_get(e, "id")),
            json_string_value(json_object_get(e, "type")),
            json_string_value(json_object_get(e, "node-name")),
            json_is_true(json_object_get(e, "shutting-down")) ? "yes" : "no",
        };
        table_add(t, cells);
    }
    table_print(t);
    table_free(t);
    json_decref(exports);
    return 0;
}
