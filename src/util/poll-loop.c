/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the main thread's poll loop. */
#include "util/poll-loop.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "util/cleanup.h"

typedef struct PollWatch {
    int fd;
    short events;
    bool removed;     /* removed during dispatch; compacted afterwards */
    PollFdFn *fn;
    void *opaque;
} PollWatch;

typedef struct PollTimer {
    uint64_t id;
    uint64_t deadline_ms;
    PollTimerFn *fn;
    void *opaque;
    struct PollTimer *next; /* sorted by deadline */
} PollTimer;

struct PollLoop {
    PollWatch *watches;
    size_t nwatches, watches_cap;
    bool dispatching;
    PollTimer *timers;
    uint64_t next_timer_id;
    int wake_fd;      /* eventfd written by poll_loop_quit */
    atomic_bool quit;
};

uint64_t poll_loop_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

PollLoop *poll_loop_new(Error **errp)
{
    PollLoop *loop = calloc(1, sizeof(*loop));
    if (!loop) {
        error_setg(errp, "Out of memory creating the poll loop");
        return NULL;
    }
    loop->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (loop->wake_fd < 0) {
        error_setg_errno(errp, errno, "Could not create an eventfd");
        free(loop);
        return NULL;
    }
    loop->next_timer_id = 1;
    return loop;
}

void poll_loop_free(PollLoop *loop)
{
    if (!loop) {
        return;
    }
    while (loop->timers) {
        PollTimer *t = loop->timers;
        loop->timers = t->next;
        free(t);
    }
    free(loop->watches);
    close(loop->wake_fd);
    free(loop);
}

static PollWatch *find_watch(PollLoop *loop, int fd)
{
    for (size_t i = 0; i < loop->nwatches; i++) {
        if (loop->watches[i].fd == fd && !loop->watches[i].removed) {
            return &loop->watches[i];
        }
    }
    return NULL;
}

bool poll_loop_add_fd(PollLoop *loop, int fd, short events, PollFdFn *fn,
                      void *opaque, Error **errp)
{
    if (find_watch(loop, fd)) {
        error_setg(errp, "File descriptor %d is already watched", fd);
        return false;
    }
    if (loop->nwatches == loop->watches_cap) {
        size_t cap = loop->watches_cap ? loop->watches_cap * 2 : 16;
        PollWatch *w = realloc(loop->watches, cap * sizeof(*w));
        if (!w) {
            error_setg(errp, "Out of memory watching fd %d", fd);
            return false;
        }
        loop->watches = w;
        loop->watches_cap = cap;
    }
    loop->watches[loop->nwatches++] = (PollWatch){
        .fd = fd, .events = events, .fn = fn, .opaque = opaque,
    };
    return true;
}

void poll_loop_set_events(PollLoop *loop, int fd, short events)
{
    PollWatch *w = find_watch(loop, fd);
    if (w) {
        w->events = events;
    }
}

static void compact_watches(PollLoop *loop)
{
    size_t j = 0;
    for (size_t i = 0; i < loop->nwatches; i++) {
        if (!loop->watches[i].removed) {
            loop->watches[j++] = loop->watches[i];
        }
    }
    loop->nwatches = j;
}

void poll_loop_remove_fd(PollLoop *loop, int fd)
{
    PollWatch *w = find_watch(loop, fd);
    if (!w) {
        return;
    }
    /* The fd number may be reused by a later add_fd during the same
     * dispatch, so the slot is only marked here. */
    w->removed = true;
    if (!loop->dispatching) {
        compact_watches(loop);
    }
}

uint64_t poll_loop_add_timer(PollLoop *loop, uint64_t delay_ms,
                             PollTimerFn *fn, void *opaque)
{
    PollTimer *t = calloc(1, sizeof(*t));
    if (!t) {
        return 0;
    }
    t->id = loop->next_timer_id++;
    t->deadline_ms = poll_loop_now_ms() + delay_ms;
    t->fn = fn;
    t->opaque = opaque;
    PollTimer **p = &loop->timers;
    while (*p && (*p)->deadline_ms <= t->deadline_ms) {
        p = &(*p)->next;
    }
    t->next = *p;
    *p = t;
    return t->id;
}

void poll_loop_cancel_timer(PollLoop *loop, uint64_t id)
{
    for (PollTimer **p = &loop->timers; *p; p = &(*p)->next) {
        if ((*p)->id == id) {
            PollTimer *t = *p;
            *p = t->next;
            free(t);
            return;
        }
    }
}

static int next_timeout(PollLoop *loop, int timeout_ms)
{
    if (!loop->timers) {
        return timeout_ms;
    }
    uint64_t now = poll_loop_now_ms();
    uint64_t wait = loop->timers->deadline_ms > now
                        ? loop->timers->deadline_ms - now : 0;
    if (wait > 60000) {
        wait = 60000;
    }
    if (timeout_ms < 0 || (uint64_t)timeout_ms > wait) {
        return (int)wait;
    }
    return timeout_ms;
}

static void run_timers(PollLoop *loop)
{
    uint64_t now = poll_loop_now_ms();
    while (loop->timers && loop->timers->deadline_ms <= now) {
        PollTimer *t = loop->timers;
        loop->timers = t->next;
        PollTimerFn *fn = t->fn;
        void *opaque = t->opaque;
        free(t);
        fn(opaque);
    }
}

bool poll_loop_iterate(PollLoop *loop, int timeout_ms)
{
    if (atomic_load(&loop->quit)) {
        return false;
    }
    size_t n = loop->nwatches;
    CLEANUP_FREE struct pollfd *pfds = calloc(n + 1, sizeof(*pfds));
    if (!pfds) {
        return !atomic_load(&loop->quit);
    }
    for (size_t i = 0; i < n; i++) {
        pfds[i].fd = loop->watches[i].fd;
        pfds[i].events = loop->watches[i].events;
    }
    pfds[n].fd = loop->wake_fd;
    pfds[n].events = POLLIN;

    int r = poll(pfds, n + 1, next_timeout(loop, timeout_ms));
    if (r < 0 && errno != EINTR) {
        return !atomic_load(&loop->quit);
    }
    if (r > 0) {
        loop->dispatching = true;
        for (size_t i = 0; i < n; i++) {
            if (!pfds[i].revents) {
                continue;
            }
            /* Look the watch up again: an earlier callback may have
             * removed it, or removed it and added another on this fd. */
            PollWatch *w = &loop->watches[i];
            if (w->removed || w->fd != pfds[i].fd) {
                continue;
            }
            w->fn(w->fd, pfds[i].revents, w->opaque);
        }
        loop->dispatching = false;
        compact_watches(loop);
        if (pfds[n].revents) {
            uint64_t v;
            if (read(loop->wake_fd, &v, sizeof(v)) < 0) {
                /* EAGAIN: another iteration already consumed it. */
            }
        }
    }
    run_timers(loop);
    return !atomic_load(&loop->quit);
}

void poll_loop_run(PollLoop *loop)
{
    while (poll_loop_iterate(loop, -1)) {
    }
}

void poll_loop_quit(PollLoop *loop)
{
    uint64_t one = 1;
    atomic_store(&loop->quit, true);
    if (write(loop->wake_fd, &one, sizeof(one)) < 0) {
        /* The counter can only overflow after 2^64 quits. */
    }
}

bool poll_loop_quitting(PollLoop *loop)
{
    return atomic_load(&loop->quit);
}
