/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the QMP command registry. */
#include "qmp/qmp-internal.h"
#include "qmp/qmp-args.h"

#include <stdlib.h>
#include <string.h>

#include "util/log.h"

typedef struct QmpCommand {
    char *name;
    QmpCommandFn *fn;
    const QmpArgSpec *args;     /* NULL: the handler checks them */
    struct QmpCommand *next;
} QmpCommand;

/* Written at startup only (single-threaded), read on the main thread. */
static QmpCommand *commands;

void qmp_register_command(const char *name, QmpCommandFn *fn)
{
    qmp_register_command_args(name, fn, NULL);
}

void qmp_register_command_args(const char *name, QmpCommandFn *fn,
                               const QmpArgSpec *args)
{
    for (QmpCommand *c = commands; c; c = c->next) {
        if (!strcmp(c->name, name)) {
            c->fn = fn;
            c->args = args;
            return;
        }
    }
    QmpCommand *c = calloc(1, sizeof(*c));
    if (!c || !(c->name = strdup(name))) {
        free(c);
        log_error("Out of memory registering QMP command %s", name);
        return;
    }
    c->fn = fn;
    c->args = args;
    /* Appending keeps query-commands in registration order. */
    QmpCommand **p = &commands;
    while (*p) {
        p = &(*p)->next;
    }
    *p = c;
}

QmpCommandFn *qmp_find_command(const char *name, const QmpArgSpec **args)
{
    for (QmpCommand *c = commands; c; c = c->next) {
        if (!strcmp(c->name, name)) {
            *args = c->args;
            return c->fn;
        }
    }
    *args = NULL;
    return NULL;
}

json_t *qmp_command_list(void)
{
    json_t *list = json_array();
    for (QmpCommand *c = commands; c; c = c->next) {
        json_array_append_new(list, json_pack("{s:s}", "name", c->name));
    }
    return list;
}

void qmp_unregister_all_commands(void)
{
    while (commands) {
        QmpCommand *c = commands;
        commands = c->next;
        free(c->name);
        free(c);
    }
}
