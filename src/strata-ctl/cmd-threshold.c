/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-ctl threshold: arm (or clear) a node's write threshold. */
#include "strata-ctl/ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/units.h"

static const char help[] =
"Usage: strata-ctl [-s SOCKET] threshold NODE SIZE|PERCENT%\n"
"\n"
"Arms NODE's write threshold (block-set-write-threshold): one\n"
"BLOCK_WRITE_THRESHOLD event when a write ends past it, then it is off.\n"
"SIZE is a byte offset with an optional unit (10G, 512M); PERCENT% is a\n"
"share of the node's current physical size (query-block-allocation),\n"
"sent as bytes.  0 clears the threshold.  Thin-provisioning managers set\n"
"it on the protocol node, where host allocation shows.\n";

/* Current physical size of node, or 0 with an error reported. */
static uint64_t physical_size(QmpClient *c, const char *node)
{
    Error *err = NULL;
    json_t *args = json_pack("{s:s}", "node-name", node);
    json_t *list = ctl_execute(c, "query-block-allocation", args, &err);
    json_decref(args);
    if (!list) {
        error_report_err(err);
        return 0;
    }
    json_t *phys = json_object_get(json_array_get(list, 0), "physical");
    uint64_t v = json_is_integer(phys) ? (uint64_t)json_integer_value(phys)
                                       : 0;
    json_decref(list);
    if (v == 0) {
        error_report("node '%s' reports no physical size; give the "
                     "threshold in bytes", node);
    }
    return v;
}

static bool parse_percent(const char *arg, double *pct)
{
    char *end;
    double v = strtod(arg, &end);
    if (end == arg || strcmp(end, "%") || !(v >= 0 && v <= 100)) {
        return false;
    }
    *pct = v;
    return true;
}

int cmd_threshold(const CtlOptions *o, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv, help)) {
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "%s", help);
        return 1;
    }
    const char *node = argv[1], *arg = argv[2];
    bool percent = arg[0] && arg[strlen(arg) - 1] == '%';
    double pct = 0;
    uint64_t bytes = 0;
    if (percent) {
        if (!parse_percent(arg, &pct)) {
            error_report("invalid percentage '%s': expected 0%% to 100%%",
                         arg);
            return 1;
        }
    } else {
        Error *err = NULL;
        if (!parse_size(arg, &bytes, &err)) {
            error_report_err(err);
            return 1;
        }
    }
    QmpClient *c = ctl_connect_or_report(o);
    if (!c) {
        return 1;
    }
    if (percent) {
        uint64_t phys = physical_size(c, node);
        if (phys == 0) {
            qmp_client_close(c);
            return 1;
        }
        bytes = (uint64_t)((double)phys * pct / 100.0);
        if (bytes == 0 && pct > 0) {
            bytes = 1;   /* 0 would clear it */
        }
    }
    Error *err = NULL;
    json_t *args = json_pack("{s:s, s:I}", "node-name", node,
                             "write-threshold", (json_int_t)bytes);
    json_t *r = ctl_execute(c, "block-set-write-threshold", args, &err);
    json_decref(args);
    qmp_client_close(c);
    if (!r) {
        error_report_err(err);
        return 1;
    }
    json_decref(r);
    if (o->json) {
        json_t *out = json_pack("{s:s, s:I}", "node-name", node,
                                "write-threshold", (json_int_t)bytes);
        print_json(out);
        json_decref(out);
    } else if (bytes == 0) {
        printf("%s: write threshold cleared\n", node);
    } else {
        char buf[32];
        printf("%s: write threshold armed at %llu bytes (%s)\n", node,
               (unsigned long long)bytes, format_size(bytes, buf, sizeof(buf)));
    }
    return 0;
}
