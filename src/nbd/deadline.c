/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the handshake deadline (QEMU's fix for CVE-2024-7409).
 *
 * A client that connects and then sends nothing, or drips one byte a
 * second, holds a connection slot for as long as it likes; enough of
 * them lock every good client out once max-connections is reached.  So
 * a connection that has not finished its handshake (NBD_OPT_GO or
 * EXPORT_NAME) by its deadline is shut down.  The deadline is absolute,
 * from accept: per-read timeouts would not stop a client that dribbles.
 *
 * One watchdog thread sleeps until the earliest deadline; arming and
 * disarming take a mutex, once each per connection.  The connection's
 * own thread always disarms before it frees the connection, so the
 * watchdog only ever touches live connections.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "nbd/nbd-int.h"
#include "util/cleanup.h"
#include "util/log.h"

typedef struct Armed {
    NbdConn *conn;
    struct timespec deadline;     /* CLOCK_MONOTONIC */
    struct Armed *next;
} Armed;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond;
static Armed *armed;
static bool watchdog_started;
static uint64_t dropped;

static bool before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec ||
           (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void *watchdog_main(void *opaque)
{
    LOCK_GUARD(&lock);
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        const struct timespec *next = NULL;
        for (Armed *a = armed; a; a = a->next) {
            if (!a->conn) {
                continue;               /* already shut down */
            }
            if (!before(&now, &a->deadline)) {
                /* Wakes the handshake's blocking read with EOF; the
                 * connection's thread cleans up as for any client that
                 * left. */
                shutdown(a->conn->fd, SHUT_RDWR);
                a->conn = NULL;
                dropped++;
                log_info("nbd: a client did not finish the handshake in "
                         "time; its connection was closed");
                continue;
            }
            if (!next || before(&a->deadline, next)) {
                next = &a->deadline;
            }
        }
        if (next) {
            struct timespec until = *next;
            pthread_cond_timedwait(&cond, &lock, &until);
        } else {
            pthread_cond_wait(&cond, &lock);
        }
    }
    return NULL;
}

/* The condition variable waits on CLOCK_MONOTONIC, so a change of the
 * wall clock neither drops clients early nor keeps them forever. */
static bool start_watchdog_locked(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cond, &ca);
    pthread_condattr_destroy(&ca);

    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int ret = pthread_create(&t, &attr, watchdog_main, NULL);
    pthread_attr_destroy(&attr);
    if (ret != 0) {
        pthread_cond_destroy(&cond);
        log_warn("nbd: cannot start the handshake watchdog: %s",
                 strerror(ret));
        return false;
    }
    watchdog_started = true;
    return true;
}

void nbd_deadline_arm(NbdConn *conn, uint32_t seconds)
{
    if (seconds == 0) {
        return;
    }
    Armed *a = calloc(1, sizeof(*a));
    if (!a) {
        return;     /* no deadline rather than no connection */
    }
    clock_gettime(CLOCK_MONOTONIC, &a->deadline);
    a->deadline.tv_sec += seconds;
    a->conn = conn;

    LOCK_GUARD(&lock);
    if (!watchdog_started && !start_watchdog_locked()) {
        free(a);
        return;
    }
    a->next = armed;
    armed = a;
    conn->deadline = a;
    pthread_cond_signal(&cond);
}

void nbd_deadline_disarm(NbdConn *conn)
{
    if (!conn->deadline) {
        return;
    }
    LOCK_GUARD(&lock);
    for (Armed **p = &armed; *p; p = &(*p)->next) {
        if (*p == conn->deadline) {
            *p = (*p)->next;
            break;
        }
    }
    free(conn->deadline);
    conn->deadline = NULL;
}

uint64_t nbd_deadline_dropped(void)
{
    LOCK_GUARD(&lock);
    return dropped;
}
