/* strata-ctl nodes: the block node graph as a table. */
#include "strata-ctl/ctl.h"

#include <stdio.h>

#include "util/units.h"

static const char help[] =
"Usage: strata-ctl [-s SOCKET] [--json] nodes\n"
"\n"
"Lists every block node (query-named-block-nodes): name, driver, file,\n"
"virtual size, space used on storage, read-only, backing chain depth and\n"
"armed write threshold.  --json prints stratad's reply unchanged.\n";

static const char *size_or_dash(json_t *v, char *buf, size_t len)
{
    if (!json_is_integer(v)) {
        return "-";
    }
    return format_size((uint64_t)json_integer_value(v), buf, len);
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
    CtlClient *c = ctl_connect_or_report(o);
    if (!c) {
        return 1;
    }
    Error *err = NULL;
    /* Not flat: QEMU's backing_file_depth is only counted then. */
    json_t *nodes = ctl_execute(c, "query-named-block-nodes", NULL, &err);
    ctl_close(c);
    if (!nodes) {
        error_report_err(err);
        return 1;
    }
    if (o->json) {
        print_json(nodes);
        json_decref(nodes);
        return 0;
    }
    static const char *const headers[] = {
        "NODE", "DRIVER", "FILE", "SIZE", "USED", "RO", "DEPTH", "THRESHOLD",
    };
    CtlTable *t = table_new(8, headers);
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n) {
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
            size_or_dash(json_object_get(image, "virtual-size"), size,
                         sizeof(size)),
            size_or_dash(json_object_get(image, "actual-size"), used,
                         sizeof(used)),
            json_is_true(json_object_get(n, "ro")) ? "yes" : "no",
            depth,
            json_integer_value(threshold) > 0
                ? size_or_dash(threshold, thr, sizeof(thr)) : "-",
        };
        table_add(t, cells);
    }
    table_print(t);
    table_free(t);
    json_decref(nodes);
    return 0;
}
