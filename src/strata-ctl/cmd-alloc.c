/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-ctl alloc: space use of every node at a glance. */
#include "strata-ctl/ctl.h"

#include <stdio.h>

#include "util/units.h"

static const char help[] =
"Usage: strata-ctl [-s SOCKET] [--json] alloc [NODE]\n"
"\n"
"Shows, for every block node (or NODE), from query-block-allocation:\n"
"virtual size, allocation (highest host offset in use), physical size\n"
"of the file or device, free space left on it, and the armed write\n"
"threshold.  The daemon reads no data to answer.  --json prints\n"
"stratad's reply unchanged.\n";

static void alloc_row(CtlTable *t, json_t *n)
{
    char cap[32], alloc[32], phys[32], free_[32], thr[32];
    json_t *a = json_object_get(n, "allocation");
    json_t *p = json_object_get(n, "physical");
    json_t *threshold = json_object_get(n, "write-threshold");
    const char *free_cell = "-";
    if (json_is_integer(a) && json_is_integer(p)) {
        json_int_t f = json_integer_value(p) - json_integer_value(a);
        free_cell = f > 0 ? format_size((uint64_t)f, free_, sizeof(free_))
                          : "0 B";
    }
    const char *thr_cell = "-";
    if (json_integer_value(threshold) == -1) {
        thr_cell = "max";
    } else if (json_integer_value(threshold) > 0) {
        thr_cell = size_cell(threshold, thr, sizeof(thr));
    }
    const char *cells[] = {
        json_string_value(json_object_get(n, "node-name")),
        json_string_value(json_object_get(n, "driver")),
        size_cell(json_object_get(n, "capacity"), cap, sizeof(cap)),
        size_cell(a, alloc, sizeof(alloc)),
        size_cell(p, phys, sizeof(phys)),
        free_cell,
        thr_cell,
    };
    table_add(t, cells);
}

int cmd_alloc(const CtlOptions *o, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv, help)) {
        return 0;
    }
    if (argc > 2) {
        fprintf(stderr, "%s", help);
        return 1;
    }
    json_t *args = argc == 2 ? json_pack("{s:s}", "node-name", argv[1]) : NULL;
    json_t *nodes = ctl_query(o, "query-block-allocation", args);
    json_decref(args);
    if (!nodes) {
        return 1;
    }
    static const char *const headers[] = {
        "NODE", "DRIVER", "CAPACITY", "ALLOCATION", "PHYSICAL", "FREE",
        "THRESHOLD",
    };
    ctl_print_list(o, nodes, 7, headers, alloc_row);
    json_decref(nodes);
    return 0;
}
