/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - blkdebug's rules file, in QEMU's config-file syntax:
 *
 *   # a comment
 *   [inject-error]
 *   event = "read_aio"
 *   errno = "5"
 *
 * Lines are read as QEMU reads them (at most 1023 bytes each; names up
 * to 63 bytes, values up to 1023; a section header starts in column
 * 0).  Values stay strings, as options given on a command line do; the
 * driver checks them like its other options.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "block/drivers/inject.h"
#include "util/cleanup.h"

static const char *const inject_keys[] = {
    "event", "state", "iotype", "errno", "sector", "once", "immediately",
    NULL,
};
static const char *const set_state_keys[] = {
    "event", "state", "new_state", NULL,
};

static bool known(const char *const *keys, const char *key)
{
    for (; *keys; keys++) {
        if (strcmp(*keys, key) == 0) {
            return true;
        }
    }
    return false;
}

/* Appends a new section object to *list; returns it (borrowed). */
static json_t *new_section(json_t **list)
{
    if (!*list && !(*list = json_array())) {
        return NULL;
    }
    json_t *obj = json_object();
    if (obj && json_array_append_new(*list, obj) < 0) {
        return NULL;
    }
    return obj;
}

bool inject_read_config(const char *path, json_t **inject_error,
                        json_t **set_state, Error **errp)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        error_setg_errno(errp, errno, "Could not read blkdebug config file");
        return false;
    }
    char line[1024], group[64], arg[64], value[1024];
    json_t *section = NULL;
    const char *const *keys = NULL;
    bool ok = true;
    while (ok && fgets(line, sizeof(line), f)) {
        if (line[0] == '\n' || line[0] == '#') {
            continue;
        }
        if (line[0] == '[' &&
            (sscanf(line, "[%63s \"%1023[^\"]\"]", group, value) == 2 ||
             sscanf(line, "[%63[^]]]", group) == 1)) {
            if (strcmp(group, "inject-error") == 0) {
                section = new_section(inject_error);
                keys = inject_keys;
            } else if (strcmp(group, "set-state") == 0) {
                section = new_section(set_state);
                keys = set_state_keys;
            } else {
                error_setg(errp, "There is no option group '%s'", group);
                ok = false;
            }
            if (ok && !section) {
                error_setg(errp, "Out of memory");
                ok = false;
            }
            continue;
        }
        value[0] = '\0';
        if (sscanf(line, " %63s = \"%1023[^\"]\"", arg, value) == 2 ||
            sscanf(line, " %63s = \"\"", arg) == 1) {
            if (!section) {
                error_setg(errp, "no group defined");
                ok = false;
            } else if (!known(keys, arg)) {
                error_setg(errp, "Invalid parameter '%s'", arg);
                ok = false;
            } else {
                json_object_set_new(section, arg, json_string(value));
            }
            continue;
        }
        error_setg(errp, "parse error");
        ok = false;
    }
    if (ok && ferror(f)) {
        error_setg_errno(errp, errno, "Cannot read config file");
        ok = false;
    }
    fclose(f);
    return ok;
}
