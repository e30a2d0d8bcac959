/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - cross-thread queue into the poll loop. */
#include "util/event-queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/cleanup.h"

typedef struct QueueItem {
    void *item;
    struct QueueItem *next;
} QueueItem;

struct EventQueue {
    PollLoop *loop;
    int efd;
    EventQueueFn *fn;
    EventQueueFreeFn *free_fn;
    void *opaque;
    pthread_mutex_t lock;
    QueueItem *head, **tail; /* guarded by lock */
};

static QueueItem *take_all(EventQueue *q)
{
    LOCK_GUARD(&q->lock);
    QueueItem *all = q->head;
    q->head = NULL;
    q->tail = &q->head;
    return all;
}

void event_queue_flush(EventQueue *q)
{
    /* Take the whole list at once so a handler that pushes more items
     * cannot keep this loop going forever; those run next time. */
    QueueItem *it = take_all(q);
    while (it) {
        QueueItem *next = it->next;
        q->fn(it->item, q->opaque);
        free(it);
        it = next;
    }
}

static void queue_readable(int fd, short revents, void *opaque)
{
    EventQueue *q = opaque;
    uint64_t v;
    if (read(fd, &v, sizeof(v)) < 0) {
        /* EAGAIN: nothing new; flushing is harmless. */
    }
    event_queue_flush(q);
}

EventQueue *event_queue_new(PollLoop *loop, EventQueueFn *fn,
                            EventQueueFreeFn *free_fn, void *opaque,
                            Error **errp)
{
    EventQueue *q = calloc(1, sizeof(*q));
    if (!q) {
        error_setg(errp, "Out of memory creating an event queue");
        return NULL;
    }
    q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->efd < 0) {
        error_setg_errno(errp, errno, "Could not create an eventfd");
        free(q);
        return NULL;
    }
    q->loop = loop;
    q->fn = fn;
    q->free_fn = free_fn;
    q->opaque = opaque;
    q->tail = &q->head;
    pthread_mutex_init(&q->lock, NULL);
    if (!poll_loop_add_fd(loop, q->efd, POLLIN, queue_readable, q, errp)) {
        close(q->efd);
        pthread_mutex_destroy(&q->lock);
        free(q);
        return NULL;
    }
    return q;
}

bool event_queue_push(EventQueue *q, void *item)
{
    QueueItem *it = malloc(sizeof(*it));
    if (!it) {
        if (q->free_fn) {
            q->free_fn(item);
        }
        return false;
    }
    it->item = item;
    it->next = NULL;
    {
        LOCK_GUARD(&q->lock);
        *q->tail = it;
        q->tail = &it->next;
    }
    uint64_t one = 1;
    if (write(q->efd, &one, sizeof(one)) < 0) {
        /* EAGAIN only when the counter is saturated: already signalled. */
    }
    return true;
}

void event_queue_free(EventQueue *q)
{
    if (!q) {
        return;
    }
    poll_loop_remove_fd(q->loop, q->efd);
    QueueItem *it = take_all(q);
    while (it) {
        QueueItem *next = it->next;
        if (q->free_fn) {
            q->free_fn(it->item);
        }
        free(it);
        it = next;
    }
    close(q->efd);
    pthread_mutex_destroy(&q->lock);
    free(q);
}
