/* SPDX-License-Identifier: BSD-3-Clause */
/* stratad - process plumbing: pidfile, daemonizing, signals. */
#ifndef STRATAD_DAEMON_H
#define STRATAD_DAEMON_H

#include <stdbool.h>

#include "util/error.h"
#include "util/poll-loop.h"

/* Creates and locks path and writes our pid, as QEMU does; the file is
 * removed by pidfile_remove. */
bool pidfile_write(const char *path, Error **errp);
void pidfile_remove(void);

/* Forks.  The parent waits until the child calls daemon_ready (exit 0)
 * or exits (exit 1, the child has printed why), then exits.  Returns
 * false in the child only if fork itself failed. */
bool daemon_start(Error **errp);
/* In the child: detaches from the terminal and releases the parent. */
void daemon_ready(void);

/* Blocks SIGTERM, SIGINT and SIGHUP in every thread (call before any
 * thread starts) and ignores SIGPIPE. */
void signals_block(void);
/* Makes those signals quit the loop, through a signalfd. */
bool signals_watch(PollLoop *loop, Error **errp);
/* Name of the signal that ended the loop, or NULL. */
const char *signals_received(void);
void signals_cleanup(PollLoop *loop);

#endif
