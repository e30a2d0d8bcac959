/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-thinp - settings from the command line and a key=value file.
 * The same keys serve both: --chunk 1G is chunk=1G in the file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata-thinp/thinp.h"
#include "util/cleanup.h"
#include "util/units.h"

void thinp_config_init(ThinpConfig *c)
{
    *c = (ThinpConfig) {
        .policy = {
            .chunk = 1024ull * 1024 * 1024,
            .free_percent = 50,
            .max_factor = 1.1,
        },
        .poll_interval_ms = 10000,
    };
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(list[i]);
    }
    free(list);
}

void thinp_config_free(ThinpConfig *c)
{
    free_list(c->sockets, c->nsockets);
    free_list(c->volumes, c->nvolumes);
    free_list(c->copying, c->ncopying);
    free(c->extend_cmd);
}

static bool list_add(char ***list, size_t *n, const char *value, Error **errp)
{
    char **l = realloc(*list, (*n + 1) * sizeof(*l));
    if (!l) {
        error_setg(errp, "Out of memory");
        return false;
    }
    *list = l;
    if (!(l[*n] = strdup(value))) {
        error_setg(errp, "Out of memory");
        return false;
    }
    (*n)++;
    return true;
}

bool thinp_config_has(char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(list[i], name)) {
            return true;
        }
    }
    return false;
}

static bool parse_seconds(const char *value, unsigned *ms, Error **errp)
{
    char *end;
    errno = 0;
    double s = strtod(value, &end);
    if (errno || end == value || *end || s < 0.01 || s > 86400) {
        error_setg(errp, "poll-interval '%s' must be a number of seconds "
                   "between 0.01 and 86400", value);
        return false;
    }
    *ms = (unsigned)(s * 1000 + 0.5);
    return true;
}

bool thinp_config_set(ThinpConfig *c, const char *key, const char *value,
                      Error **errp)
{
    if (!strcmp(key, "socket")) {
        return list_add(&c->sockets, &c->nsockets, value, errp);
    }
    if (!strcmp(key, "volume")) {
        return list_add(&c->volumes, &c->nvolumes, value, errp);
    }
    if (!strcmp(key, "copying")) {
        return list_add(&c->copying, &c->ncopying, value, errp);
    }
    if (!strcmp(key, "chunk")) {
        uint64_t v;
        if (!parse_size(value, &v, errp)) {
            error_prepend(errp, "chunk: ");
            return false;
        }
        if (v < 1024 * 1024) {
            error_setg(errp, "chunk '%s' is smaller than 1 MiB", value);
            return false;
        }
        c->policy.chunk = v;
        return true;
    }
    if (!strcmp(key, "free-percent")) {
        uint64_t v;
        if (!parse_uint(value, 99, &v, errp)) {
            error_prepend(errp, "free-percent: ");
            return false;
        }
        c->policy.free_percent = (unsigned)v;
        return true;
    }
    if (!strcmp(key, "max-factor")) {
        char *end;
        double f = strtod(value, &end);
        if (end == value || *end || !(f >= 1.0 && f <= 100.0)) {
            error_setg(errp, "max-factor '%s' must be a number from 1 to 100",
                       value);
            return false;
        }
        c->policy.max_factor = f;
        return true;
    }
    if (!strcmp(key, "poll-interval")) {
        return parse_seconds(value, &c->poll_interval_ms, errp);
    }
    if (!strcmp(key, "extend-cmd")) {
        free(c->extend_cmd);
        c->extend_cmd = *value ? strdup(value) : NULL;
        return true;
    }
    error_setg(errp, "unknown setting '%s'", key);
    return false;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' ||
                 s[n - 1] == '\r')) {
        s[--n] = '\0';
    }
    return s;
}

bool thinp_config_load(ThinpConfig *c, const char *path, Error **errp)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        error_setg_errno(errp, errno, "Cannot open config file '%s'", path);
        return false;
    }
    CLEANUP_FREE char *line = NULL;
    size_t cap = 0;
    unsigned lineno = 0;
    bool ok = true;
    while (ok && getline(&line, &cap, f) >= 0) {
        lineno++;
        char *s = trim(line);
        if (!*s || *s == '#') {
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            error_setg(errp, "%s:%u: expected key=value", path, lineno);
            ok = false;
            break;
        }
        *eq = '\0';
        Error *err = NULL;
        if (!thinp_config_set(c, trim(s), trim(eq + 1), &err)) {
            error_setg(errp, "%s:%u: %s", path, lineno,
                       error_get_pretty(err));
            error_free(err);
            ok = false;
        }
    }
    fclose(f);
    return ok;
}
