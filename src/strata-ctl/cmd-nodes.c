/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-ctl nodes: the block node graph as a table. */
#include "strata-ctl/ctl.h"

#include <stdio.h>

static const char help[] =
"Usage: strata-ctl [-s SOCKET] [--json] nodes\n"
"\n"
"Lists every block node (query-named-block-nodes): name, driver, file,\n"
"virtual size, space used on storage, read-only, backing chain depth and\n"
"armed write threshold.  --json prints stratad's reply unchanged.\n";

static void node_row(CtlTable *t, json_t *n)
{
    json_t *image = json_object_get(n, "image");
    char size[32], used[32], thr[32], depth[16];
    json_t *threshold = json_object_get(n, "write_threshold");
    snprintf(depth, sizeof(depth), "%lld",
             (long long)json_integer_value(
                 json_object_get(n, "backing_file_depth")));
    const char *cells[] = {
        json_string_value(json_object_get(n, "node-name")),
        json_string_value(json_object_get(n, "drv")),
        json_string_value(json_object_get(n, "file")),
        size_cell(json_object_get(image, "virtual-size"), size, sizeof(size)),
        size_cell(json_object_get(image, "actual-size"), used, sizeof(used)),
        json_is_true(json_object_get(n, "ro")) ? "yes" : "no",
        depth,
        json_integer_value(threshold) > 0
            ? size_cell(threshold, thr, sizeof(thr)) : "-",
    };
    table_add(t, cells);
}

int cmd_nodes(const CtlOptions *o, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv, help)) {
        return 0;
    }
    if (argc != 1) {
        fprintf(stderr, "%s", help);
        return 1;
    }
    /* Not flat: QEMU's backing_file_depth is only counted then. */
    json_t *nodes = ctl_query(o, "query-named-block-nodes", NULL);
    if (!nodes) {
        return 1;
    }
    static const char *const headers[] = {
        "NODE", "DRIVER", "FILE", "SIZE", "USED", "RO", "DEPTH", "THRESHOLD",
    };
    ctl_print_list(o, nodes, 8, headers, node_row);
    json_decref(nodes);
    return 0;
}
