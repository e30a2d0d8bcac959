/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP monitor: command registry and events.
 *
 * Command handlers run on the main thread.  A handler receives the
 * "arguments" object (an empty object when absent) and returns the
 * result (a new reference; json_object() for "{}") or NULL with errp
 * set.  Argument checking uses qmp_args_*() so error texts are QEMU's.
 */
#ifndef STRATA_QMP_QMP_H
#define STRATA_QMP_QMP_H

#include <jansson.h>
#include <stdbool.h>

#include "util/error.h"

typedef json_t *QmpCommandFn(json_t *args, Error **errp);

/* Registers a command; names follow QEMU's.  Called at startup. */
void qmp_register_command(const char *name, QmpCommandFn *fn);

/* Broadcasts {"timestamp", "event", "data"} to every negotiated monitor
 * client.  Safe from any thread; takes ownership of data (may be NULL). */
void qmp_event_emit(const char *name, json_t *data);

#endif
