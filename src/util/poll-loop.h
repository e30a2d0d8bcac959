/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the main thread's poll loop: file descriptors and timers.
 *
 * Single-threaded: every function except poll_loop_quit must be called
 * from the thread that runs the loop.  Other threads hand work to the
 * loop through an EventQueue (util/event-queue.h).  Callbacks may add
 * or remove fds and timers, including their own, while they run.
 */
#ifndef STRATA_UTIL_POLL_LOOP_H
#define STRATA_UTIL_POLL_LOOP_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

typedef struct PollLoop PollLoop;

/* revents as returned by poll(2) (POLLIN, POLLOUT, POLLHUP, POLLERR). */
typedef void PollFdFn(int fd, short revents, void *opaque);
typedef void PollTimerFn(void *opaque);

PollLoop *poll_loop_new(Error **errp);
/* Frees the loop; fds are not closed (their owners close them). */
void poll_loop_free(PollLoop *loop);

/* Watches fd for events (POLLIN/POLLOUT).  An fd may be added once. */
bool poll_loop_add_fd(PollLoop *loop, int fd, short events, PollFdFn *fn,
                      void *opaque, Error **errp);
/* Changes the events watched on fd (e.g. adds POLLOUT while output is
 * pending). */
void poll_loop_set_events(PollLoop *loop, int fd, short events);
/* Stops watching fd; its callback is not called again. */
void poll_loop_remove_fd(PollLoop *loop, int fd);

/* One-shot timer firing after delay_ms.  Returns an id > 0. */
uint64_t poll_loop_add_timer(PollLoop *loop, uint64_t delay_ms,
                             PollTimerFn *fn, void *opaque);
/* Cancels a pending timer; unknown or fired ids are ignored. */
void poll_loop_cancel_timer(PollLoop *loop, uint64_t id);

/* Runs one iteration: waits up to timeout_ms (-1 = until something
 * happens, bounded by the next timer), then dispatches.  Returns false
 * once poll_loop_quit has been called. */
bool poll_loop_iterate(PollLoop *loop, int timeout_ms);
/* Iterates until poll_loop_quit. */
void poll_loop_run(PollLoop *loop);
/* Makes poll_loop_run return.  Safe from any thread and from signal
 * handlers. */
void poll_loop_quit(PollLoop *loop);
bool poll_loop_quitting(PollLoop *loop);

/* Monotonic clock in milliseconds. */
uint64_t poll_loop_now_ms(void);

#endif
