/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-ctl - shared declarations: the QMP client, output helpers and
 * one entry point per subcommand. */
#ifndef STRATA_CTL_CTL_H
#define STRATA_CTL_CTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "qmp/qmp-client.h"
#include "util/error.h"

/* ---- global options every subcommand sees ---- */
typedef struct CtlOptions {
    const char *socket;
    bool json;
} CtlOptions;

/* ---- output.c ---- */
typedef struct CtlTable CtlTable;
CtlTable *table_new(size_t ncols, const char *const *headers);
/* Adds a row of ncols strings (copied). */
void table_add(CtlTable *t, const char *const *cells);
void table_print(CtlTable *t);
void table_free(CtlTable *t);
/* Fills one table row from one element of a QMP reply's list. */
typedef void CtlRowFn(CtlTable *t, json_t *item);
/* Prints list as a table: headers, then row() for each element. */
void table_print_list(json_t *list, size_t ncols, const char *const *headers,
                      CtlRowFn *row);
/* Prints list unchanged as JSON with --json, else as table_print_list. */
void ctl_print_list(const CtlOptions *o, json_t *list, size_t ncols,
                    const char *const *headers, CtlRowFn *row);
/* A size cell: "10 GiB" for an integer, "-" for anything else. */
const char *size_cell(json_t *v, char *buf, size_t len);
/* Prints v as indented JSON on stdout. */
void print_json(json_t *v);

/* ---- subcommands: argc/argv start at the subcommand's name ---- */
int cmd_qmp(const CtlOptions *o, int argc, char **argv);
int cmd_nodes(const CtlOptions *o, int argc, char **argv);
int cmd_exports(const CtlOptions *o, int argc, char **argv);
int cmd_events(const CtlOptions *o, int argc, char **argv);
int cmd_threshold(const CtlOptions *o, int argc, char **argv);
int cmd_alloc(const CtlOptions *o, int argc, char **argv);
int cmd_stats(const CtlOptions *o, int argc, char **argv);
int cmd_stream(const CtlOptions *o, int argc, char **argv);
int cmd_jobs(const CtlOptions *o, int argc, char **argv);
int cmd_job(const CtlOptions *o, int argc, char **argv);
int cmd_params(const CtlOptions *o, int argc, char **argv);

/* Connects or prints why not; NULL means exit 1. */
QmpClient *ctl_connect_or_report(const CtlOptions *o);
/* Connects, runs cmd (args borrowed, may be NULL) and disconnects:
 * the "return" value, or NULL (exit 1) after printing why. */
json_t *ctl_query(const CtlOptions *o, const char *cmd, json_t *args);
/* Runs cmd on c: the "return" value or NULL with the server's error. */
json_t *ctl_execute(QmpClient *c, const char *cmd, json_t *args,
                    Error **errp);
/* True (after printing the subcommand's help) if argv asks for help. */
bool ctl_wants_help(int argc, char **argv, const char *help);

#endif
