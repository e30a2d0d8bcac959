/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-ctl params: show or change a node's image parameters live
 * (query-image-params, block-set-image-params). */
#include "strata-ctl/ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
"Usage: strata-ctl [-s SOCKET] params NODE [--persist] [KEY=VALUE...]\n"
"\n"
"Without KEY=VALUE, shows NODE's image parameters: those the image\n"
"stores, those in force, whether copy-on-read is on and the prefetch job.\n"
"With them, changes the parameters live: copy-on-read=on|off at once,\n"
"prefetch=on-open starts the prefetch now and prefetch=off cancels it,\n"
"prefetch-rate=RATE|adaptive re-rates it.  --persist also stores them in\n"
"the image, for the next open.  See docs/image-params.md.\n";

static void show_set(const char *label, json_t *set)
{
    const char *key;
    json_t *v;
    if (!set || json_object_size(set) == 0) {
        printf("%-14s (none)\n", label);
        return;
    }
    json_object_foreach(set, key, v) {
        char *s = json_is_string(v) ? strdup(json_string_value(v))
                                    : json_dumps(v, JSON_ENCODE_ANY);
        printf("%-14s %s=%s\n", label, key, s ? s : "?");
        free(s);
        label = "";
    }
}

int cmd_params(const CtlOptions *o, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv, help)) {
        return 0;
    }
    const char *node = NULL;
    bool persist = false;
    json_t *params = json_object();
    for (int i = 1; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        if (!strcmp(argv[i], "--persist")) {
            persist = true;
        } else if (!node && !eq) {
            node = argv[i];
        } else if (eq && eq != argv[i]) {
            char key[128];
            snprintf(key, sizeof(key), "%.*s", (int)(eq - argv[i]), argv[i]);
            json_object_set_new(params, key, json_string(eq + 1));
        } else {
            fprintf(stderr, "%s", help);
            json_decref(params);
            return 1;
        }
    }
    if (!node) {
        fprintf(stderr, "%s", help);
        json_decref(params);
        return 1;
    }
    if (json_object_size(params) == 0) {
        json_decref(params);
        if (persist) {
            error_report("--persist needs KEY=VALUE to store");
            return 1;
        }
        json_t *args = json_pack("{s:s}", "node-name", node);
        json_t *r = ctl_query(o, "query-image-params", args);
        json_decref(args);
        if (!r) {
            return 1;
        }
        if (o->json) {
            print_json(r);
        } else {
            show_set("stored:", json_object_get(r, "stored"));
            if (json_object_get(r, "stored-error")) {
                printf("%-14s %s\n", "", json_string_value(
                           json_object_get(r, "stored-error")));
            }
            show_set("in force:", json_object_get(r, "in-force"));
            printf("%-14s %s\n", "copy-on-read:",
                   json_is_true(json_object_get(r, "copy-on-read"))
                   ? "on" : "off");
            json_t *job = json_object_get(r, "prefetch-job");
            printf("%-14s %s\n", "prefetch:",
                   job ? json_string_value(job) : "no job");
        }
        json_decref(r);
        return 0;
    }
    json_t *args = json_pack("{s:s, s:o, s:b}", "node-name", node, "params",
                             params, "persist", persist);
    json_t *r = ctl_query(o, "block-set-image-params", args);
    json_decref(args);
    if (!r) {
        return 1;
    }
    json_decref(r);
    if (!o->json) {
        printf("%s: parameters changed%s\n", node,
               persist ? " and stored in the image" : "");
    }
    return 0;
}
