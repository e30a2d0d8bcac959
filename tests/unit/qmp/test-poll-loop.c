/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests: poll loop fds and timers, and the cross-thread queue. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "util/event-queue.h"
#include "util/poll-loop.h"

static int order[8];
static int norder;

static void timer_fn(void *opaque)
{
    order[norder++] = (int)(intptr_t)opaque;
}

static void test_timers_fire_in_order(void **state)
{
    PollLoop *loop = poll_loop_new(NULL);
    norder = 0;
    poll_loop_add_timer(loop, 30, timer_fn, (void *)(intptr_t)3);
    poll_loop_add_timer(loop, 0, timer_fn, (void *)(intptr_t)1);
    uint64_t id = poll_loop_add_timer(loop, 10, timer_fn, (void *)(intptr_t)9);
    poll_loop_add_timer(loop, 10, timer_fn, (void *)(intptr_t)2);
    poll_loop_cancel_timer(loop, id);
    uint64_t start = poll_loop_now_ms();
    while (norder < 3 && poll_loop_now_ms() - start < 2000) {
        poll_loop_iterate(loop, 100);
    }
    assert_int_equal(norder, 3);
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 2);
    assert_int_equal(order[2], 3);
    poll_loop_free(loop);
}

typedef struct PipeCtx {
    PollLoop *loop;
    int reads;
} PipeCtx;

static void pipe_ready(int fd, short revents, void *opaque)
{
    PipeCtx *ctx = opaque;
    char c;
    if (read(fd, &c, 1) == 1) {
        ctx->reads++;
    }
    /* Removing itself from inside its callback must be safe. */
    poll_loop_remove_fd(ctx->loop, fd);
}

static void test_fd_callback_and_self_removal(void **state)
{
    PollLoop *loop = poll_loop_new(NULL);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    PipeCtx ctx = { .loop = loop };
    assert_true(poll_loop_add_fd(loop, fds[0], POLLIN, pipe_ready, &ctx, NULL));
    assert_false(poll_loop_add_fd(loop, fds[0], POLLIN, pipe_ready, &ctx, NULL));
    assert_int_equal(write(fds[1], "ab", 2), 2);
    poll_loop_iterate(loop, 1000);
    poll_loop_iterate(loop, 10);
    assert_int_equal(ctx.reads, 1);
    close(fds[0]);
    close(fds[1]);
    poll_loop_free(loop);
}

typedef struct QueueCtx {
    PollLoop *loop;
    int delivered;
    long sum;
} QueueCtx;

static EventQueue *queue;

static void deliver(void *item, void *opaque)
{
    QueueCtx *ctx = opaque;
    ctx->sum += *(int *)item;
    free(item);
    if (++ctx->delivered == 4000) {
        poll_loop_quit(ctx->loop);
    }
}

static void *producer(void *arg)
{
    for (int i = 0; i < 1000; i++) {
        int *v = malloc(sizeof(*v));
        *v = i;
        event_queue_push(queue, v);
    }
    return NULL;
}

static void quit_timer(void *opaque)
{
    poll_loop_quit(opaque);
}

static void *quit_thread(void *opaque)
{
    poll_loop_quit(opaque);
    return NULL;
}

static void test_queue_from_threads(void **state)
{
    QueueCtx ctx = { 0 };
    ctx.loop = poll_loop_new(NULL);
    queue = event_queue_new(ctx.loop, deliver, free, &ctx, NULL);
    assert_non_null(queue);
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        pthread_create(&th[i], NULL, producer, NULL);
    }
    poll_loop_add_timer(ctx.loop, 5000, quit_timer, ctx.loop);
    poll_loop_run(ctx.loop);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    assert_int_equal(ctx.delivered, 4000);
    assert_int_equal(ctx.sum, 4L * (999L * 1000 / 2));
    event_queue_free(queue);
    poll_loop_free(ctx.loop);
}

static void test_quit_from_other_thread(void **state)
{
    PollLoop *loop = poll_loop_new(NULL);
    pthread_t th;
    pthread_create(&th, NULL, quit_thread, loop);
    poll_loop_run(loop);   /* returns only because of the quit */
    pthread_join(th, NULL);
    assert_true(poll_loop_quitting(loop));
    poll_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_order),
        cmocka_unit_test(test_fd_callback_and_self_removal),
        cmocka_unit_test(test_queue_from_threads),
        cmocka_unit_test(test_quit_from_other_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
