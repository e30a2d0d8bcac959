/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP monitor: command registry and events.
 *
 * Command handlers run on the main thread.  A handler receives the
 * "arguments" object (an empty object when absent) and returns the
 * result (a new reference; json_object() for "{}") or NULL with errp
 * set.  The arguments are described by a table (qmp/qmp-args.h) given
 * at registration: the monitor checks them against it, with QEMU's
 * texts and order of checks, before the handler runs.
 */
#ifndef STRATA_QMP_QMP_H
#define STRATA_QMP_QMP_H

#include <jansson.h>
#include <stdbool.h>

#include "util/error.h"

typedef json_t *QmpCommandFn(json_t *args, Error **errp);

struct QmpArgSpec;

/* Registers a command whose arguments args describes (a member table;
 * qmp_no_args for none); names follow QEMU's.  Called at startup. */
void qmp_register_command_args(const char *name, QmpCommandFn *fn,
                               const struct QmpArgSpec *args);
/* Registers a command whose handler checks its arguments itself (with
 * qmp_args_check()). */
void qmp_register_command(const char *name, QmpCommandFn *fn);

/* Broadcasts {"timestamp", "event", "data"} to every negotiated monitor
 * client.  Safe from any thread; takes ownership of data (may be NULL). */
void qmp_event_emit(const char *name, json_t *data);

#endif
