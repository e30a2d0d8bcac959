/* strata-ctl - shared declarations: the QMP client, output helpers and
 * one entry point per subcommand. */
#ifndef STRATA_CTL_CTL_H
#define STRATA_CTL_CTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

/* ---- client.c: a QMP client on a unix socket ---- */
typedef struct CtlClient CtlClient;

/* Connects, reads the greeting and negotiates capabilities. */
CtlClient *ctl_connect(const char *path, Error **errp);
void ctl_close(CtlClient *c);
/* Runs a command and returns the whole reply object ({"return"} or
 * {"error"}); events that arrive meanwhile are kept for ctl_next_event.
 * NULL with errp set when the connection fails. */
json_t *ctl_execute_raw(CtlClient *c, const char *cmd, json_t *args,
                        Error **errp);
/* Like ctl_execute_raw but returns the "return" value, or NULL with the
 * server's error message in errp. */
json_t *ctl_execute(CtlClient *c, const char *cmd, json_t *args,
                    Error **errp);
/* Waits up to timeout_ms (-1 = forever) for the next event.  Returns
 * NULL with *errp unset on timeout, with errp set when the connection
 * is lost. */
json_t *ctl_next_event(CtlClient *c, int timeout_ms, Error **errp);

/* ---- output.c ---- */
typedef struct CtlTable CtlTable;
CtlTable *table_new(size_t ncols, const char *const *headers);
/* Adds a row of ncols strings (copied). */
void table_add(CtlTable *t, const char *const *cells);
void table_print(CtlTable *t);
void table_free(CtlTable *t);
/* Prints v as indented JSON on stdout. */
void print_json(json_t *v);

/* ---- global options every subcommand sees ---- */
typedef struct CtlOptions {
    const char *socket;
    bool json;
} CtlOptions;

/* ---- subcommands: argc/argv start at the subcommand's name ---- */
int cmd_qmp(const CtlOptions *o, int argc, char **argv);
int cmd_nodes(const CtlOptions *o, int argc, char **argv);
int cmd_exports(const CtlOptions *o, int argc, char **argv);
int cmd_events(const CtlOptions *o, int argc, char **argv);
int cmd_threshold(const CtlOptions *o, int argc, char **argv);
int cmd_alloc(const CtlOptions *o, int argc, char **argv);
int cmd_stats(const CtlOptions *o, int argc, char **argv);

/* Connects or prints why not; NULL means exit 1. */
CtlClient *ctl_connect_or_report(const CtlOptions *o);
/* True (after printing the subcommand's help) if argv asks for help. */
bool ctl_wants_help(int argc, char **argv, const char *help);

#endif
