/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - hands items from any thread to the poll loop's thread.
 *
 * A mutex-protected FIFO plus an eventfd watched by the poll loop: push
 * from any thread, and the loop thread calls the handler for each item
 * in push order.
 */
#ifndef STRATA_UTIL_EVENT_QUEUE_H
#define STRATA_UTIL_EVENT_QUEUE_H

#include <stdbool.h>

#include "util/error.h"
#include "util/poll-loop.h"

typedef struct EventQueue EventQueue;

/* Called on the loop thread; owns item. */
typedef void EventQueueFn(void *item, void *opaque);
/* Frees an item that was never delivered. */
typedef void EventQueueFreeFn(void *item);

EventQueue *event_queue_new(PollLoop *loop, EventQueueFn *fn,
                            EventQueueFreeFn *free_fn, void *opaque,
                            Error **errp);
/* Queues item (any thread).  Returns false (and frees item with free_fn)
 * if memory runs out. */
bool event_queue_push(EventQueue *q, void *item);
/* Delivers every queued item now (loop thread). */
void event_queue_flush(EventQueue *q);
/* Stops watching, frees undelivered items and the queue.  No thread may
 * push any more. */
void event_queue_free(EventQueue *q);

#endif
