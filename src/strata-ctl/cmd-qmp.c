/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-ctl qmp COMMAND [JSON-ARGS]: one raw QMP command. */
#include "strata-ctl/ctl.h"

#include <stdio.h>
#include <stdlib.h>

static const char help[] =
"Usage: strata-ctl [-s SOCKET] qmp COMMAND [JSON-ARGUMENTS]\n"
"\n"
"Runs one QMP command and prints stratad's reply as it came\n"
"({\"return\": ...} or {\"error\": ...}).  Exit status 1 on an error reply.\n"
"\n"
"Example:\n"
"  strata-ctl qmp block-export-del '{\"id\": \"e0\"}'\n";

int cmd_qmp(const CtlOptions *o, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv, help)) {
        return 0;
    }
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "%s", help);
        return 1;
    }
    json_t *args = NULL;
    if (argc == 3) {
        json_error_t jerr;
        args = json_loads(argv[2], 0, &jerr);
        if (!json_is_object(args)) {
            error_report("arguments must be a JSON object: %s",
                         args ? "got another JSON type" : jerr.text);
            json_decref(args);
            return 1;
        }
    }
    QmpClient *c = ctl_connect_or_report(o);
    if (!c) {
        json_decref(args);
        return 1;
    }
    Error *err = NULL;
    json_t *rsp = qmp_client_execute_raw(c, argv[1], args,
                                         QMP_CLIENT_WAIT_FOREVER, &err);
    json_decref(args);
    qmp_client_close(c);
    if (!rsp) {
        error_report_err(err);
        return 1;
    }
    char *s = json_dumps(rsp, JSON_PRESERVE_ORDER
                              | (o->json ? JSON_COMPACT : JSON_INDENT(2)));
    printf("%s\n", s ? s : "");
    free(s);
    int rc = json_object_get(rsp, "error") ? 1 : 0;
    json_decref(rsp);
    return rc;
}
