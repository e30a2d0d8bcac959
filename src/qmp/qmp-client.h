/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - a QMP client (strata-ctl, strata-thinp, tests).
 *
 * Speaks to a QMP server on a unix socket: reads the greeting,
 * negotiates capabilities, runs commands and collects events.  Events
 * that arrive while a reply is awaited are kept, in order, and handed
 * out later (qmp_client_next_event, or the handler from
 * qmp_client_dispatch), so an event handler never runs in the middle of
 * another command.  Blocking use: connect, execute, next_event.  Poll
 * loop use: watch qmp_client_fd for POLLIN and call qmp_client_dispatch.
 *
 * Timeouts are in milliseconds; QMP_CLIENT_WAIT_FOREVER waits forever. */
#ifndef STRATA_QMP_QMP_CLIENT_H
#define STRATA_QMP_QMP_CLIENT_H

#include <jansson.h>
#include <stdbool.h>

#include "util/error.h"

#define QMP_CLIENT_WAIT_FOREVER (-1)

typedef struct QmpClient QmpClient;
/* ev is borrowed: the handler takes a reference if it keeps it. */
typedef void QmpClientEventFn(void *opaque, json_t *ev);

/* Connects to path, reads the greeting and negotiates, waiting up to
 * timeout_ms for each answer. */
QmpClient *qmp_client_connect(const char *path, int timeout_ms, Error **errp);
/* The same on a connected stream socket (taken over, closed on failure);
 * name is what messages call the peer. */
QmpClient *qmp_client_new_fd(int fd, const char *name, int timeout_ms,
                             Error **errp);
void qmp_client_close(QmpClient *c);
int qmp_client_fd(const QmpClient *c);
/* Where qmp_client_dispatch delivers events (NULL: they stay queued for
 * qmp_client_next_event). */
void qmp_client_set_event_handler(QmpClient *c, QmpClientEventFn *fn,
                                  void *opaque);

/* Runs cmd (args borrowed, may be NULL) and returns the whole reply
 * object, {"return": ...} or {"error": ...}.  NULL with errp when the
 * connection failed or no reply came within timeout_ms: the connection
 * is then out of step and should be closed. */
json_t *qmp_client_execute_raw(QmpClient *c, const char *cmd, json_t *args,
                               int timeout_ms, Error **errp);
/* Like qmp_client_execute_raw but returns the "return" value (new
 * reference), or NULL with errp: the server's error description (class
 * kept when known), or why the connection failed, in which case *lost is
 * set (lost may be NULL). */
json_t *qmp_client_execute(QmpClient *c, const char *cmd, json_t *args,
                           int timeout_ms, bool *lost, Error **errp);
/* Returns the next event (new reference), waiting up to timeout_ms.
 * NULL with *errp unset on timeout, set when the connection failed. */
json_t *qmp_client_next_event(QmpClient *c, int timeout_ms, Error **errp);
/* Reads what is available without blocking, then delivers every queued
 * event to the handler.  False (errp) when the connection is closed or
 * sent something that is not JSON. */
bool qmp_client_dispatch(QmpClient *c, Error **errp);

#endif
