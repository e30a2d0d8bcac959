/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - what the QMP monitor's files share (not for other modules). */
#ifndef STRATA_QMP_QMP_INTERNAL_H
#define STRATA_QMP_QMP_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "qmp/qmp.h"
#include "qmp/qmp-args.h"

/* ---- json-out.c ---- */
/* Formats v as QEMU does on the wire: one line, ", " and ": "
 * separators, non-ASCII as \uXXXX (upper-case hex), ending in CRLF.
 * pretty: indented over several lines (--monitor pretty=on).
 * Returns a malloc'd string or NULL. */
char *qmp_format_json(json_t *v, bool pretty, size_t *len);

/* ---- commands.c: the registry ---- */
/* The handler of command name, and in *args the description of its
 * arguments (NULL when the handler checks them itself). */
QmpCommandFn *qmp_find_command(const char *name, const QmpArgSpec **args);
/* Result of query-commands: [{"name": ...}, ...]. */
json_t *qmp_command_list(void);
/* Empties the registry (tests, fuzzing). */
void qmp_unregister_all_commands(void);

/* ---- session.c: the protocol state of one client ---- */
typedef struct QmpSession QmpSession;
/* Writes one formatted message (CRLF included). */
typedef void QmpWriteFn(void *opaque, const char *buf, size_t len);

QmpSession *qmp_session_new(QmpWriteFn *write, void *opaque, bool pretty);
void qmp_session_free(QmpSession *s);
/* Sends the {"QMP": ...} greeting. */
void qmp_session_greet(QmpSession *s);
/* Consumes client bytes; every complete request is answered. */
void qmp_session_feed(QmpSession *s, const char *buf, size_t len);
bool qmp_session_negotiated(const QmpSession *s);
/* Formats and writes msg (borrowed). */
void qmp_session_send(QmpSession *s, json_t *msg);
/* {"qemu": {"micro", "minor", "major"}, "package": "strata X.Y.Z"} */
json_t *qmp_version_info(void);

/* ---- monitor.c ---- */
/* Asks the daemon to shut down once the current replies are written
 * (the quit command). */
void qmp_monitor_request_quit(void);
bool qmp_monitor_quit_requested(void);
/* Builds {"timestamp", "event", "data"} for now; takes data. */
json_t *qmp_event_build(const char *name, json_t *data);

/* ---- cmd-core.c ---- */
/* Checks qmp_capabilities' arguments ({"enable"?: ["oob"]}); *oob is
 * set when out-of-band execution is requested. */
bool qmp_capabilities_parse(json_t *args, bool *oob, Error **errp);

/* ---- command tables (cmd-*.c) ---- */
void qmp_register_core_commands(void);
void qmp_register_block_commands(void);
void qmp_register_export_commands(void);
void qmp_register_stats_commands(void);
void qmp_register_thinp_commands(void);
/* cont, block-export-resume (cmd-pause.c). */
void qmp_register_pause_commands(void);
void qmp_register_job_commands(void);
/* object-add, object-del, qom-list (cmd-objects.c). */
void qmp_register_object_commands(void);
/* image-params, block-set-image-params (cmd-params.c). */
struct BlockNode;
struct ImageParams;
void qmp_register_params_commands(void);
/* blockdev-create (cmd-create.c); blockdev-snapshot, blockdev-snapshot-
 * sync (cmd-snapshot.c); transaction (cmd-transaction.c). */
void qmp_register_create_commands(void);
void qmp_register_snapshot_commands(void);
void qmp_register_transaction_commands(void);
/* QEMU's op blocker on a backing node: "Node 'x' is busy: node is used
 * as backing hd of 'y'" when a node links to bs as its backing. */
bool qmp_node_backing_blocked(struct BlockNode *bs, Error **errp);
/* The image parameters in force on a node blockdev-add created, or
 * NULL for another node (cmd-block.c). */
struct ImageParams *qmp_node_params(struct BlockNode *bs);
/* False, with the reason, while export requests are held (quit). */
bool qmp_quit_allowed(Error **errp);

#endif
