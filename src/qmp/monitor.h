/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the QMP monitor service of stratad: listening sockets,
 * clients, and event broadcast, all on the main thread's poll loop.
 *
 * Each listening socket (a --chardev with a --monitor on it) accepts
 * any number of clients at once; each client negotiates on its own and
 * receives events once negotiated.  A client that does not read its
 * replies is dropped when its output exceeds the cap, never waited for.
 */
#ifndef STRATA_QMP_MONITOR_H
#define STRATA_QMP_MONITOR_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "util/error.h"
#include "util/poll-loop.h"

/* Default per-client output cap; STRATA_QMP_MAX_OUTPUT (bytes) in the
 * environment overrides it. */
#define QMP_MONITOR_MAX_OUTPUT (8u << 20)
/* Clients beyond this many at once are refused. */
#define QMP_MONITOR_MAX_CLIENTS 256

/* Registers every QMP command and starts the event queue on loop.
 * Call once, before any monitor is attached. */
bool qmp_monitor_init(PollLoop *loop, Error **errp);

/* Serves QMP on listen_fd, a listening unix socket (the monitor owns it
 * from now on; path, if not NULL, is unlinked at shutdown). */
bool qmp_monitor_attach(int listen_fd, const char *path, bool pretty,
                        Error **errp);

/* Writes what is pending to each client (briefly waiting for slow
 * ones), closes every client and listener, removes the socket files
 * and stops event delivery.  Events emitted afterwards are dropped. */
void qmp_monitor_shutdown(void);

/* Opens a node from blockdev-add options and holds it for the monitor
 * (QMP blockdev-add and --blockdev), after checking them against QEMU's
 * BlockdevOptions.  keyval: the options come from the command line's
 * key=value form, where every value is a string (QEMU's keyval rules). */
bool qmp_blockdev_add(json_t *opts, bool keyval, Error **errp);
/* --nbd-server: starts the NBD server after checking opts against
 * QEMU's NbdServerOptions; keyval as for qmp_blockdev_add. */
bool qmp_nbd_server_start_option(json_t *opts, bool keyval, Error **errp);
/* block-export-add (--export), after checking opts against QEMU's
 * BlockExportOptions and strata's members; keyval as above. */
bool qmp_block_export_add(json_t *opts, bool keyval, Error **errp);
/* object-add (--object), after checking opts against QEMU's
 * ObjectOptions; keyval as for qmp_blockdev_add. */
bool qmp_object_add(json_t *opts, bool keyval, Error **errp);
/* Drops the monitor's references on the nodes it owns (shutdown). */
void qmp_blockdev_release_all(void);
/* Wires the jobs' hand-over to the main thread into loop (called by
 * qmp_monitor_init). */
bool qmp_jobs_init(PollLoop *loop, Error **errp);
/* Cancels every job, waits for each to end, and unwires them. */
void qmp_jobs_shutdown(void);

/* Number of connected clients (tests, strata-ctl diagnostics). */
size_t qmp_monitor_client_count(void);

#endif
