/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP monitor sockets, clients and events (see monitor.h). */
#include "qmp/monitor.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "block/block.h"
#include "qmp/qmp-internal.h"
#include "util/cleanup.h"
#include "util/event-queue.h"
#include "util/log.h"

typedef struct QmpClient {
    int fd;
    QmpSession *session;
    char *out;               /* pending output: out[off..len) */
    size_t off, len, cap;
    bool dead;
    struct QmpClient *next;
} QmpClient;

typedef struct QmpListener {
    int fd;
    char *path;
    bool pretty;
    struct QmpListener *next;
} QmpListener;

static PollLoop *mon_loop;
static QmpClient *clients;
static size_t nclients;
static QmpListener *listeners;
static size_t max_output = QMP_MONITOR_MAX_OUTPUT;
static bool reap_scheduled;
static bool quit_requested;

/* Event delivery from other threads; guarded by event_lock. */
static pthread_mutex_t event_lock = PTHREAD_MUTEX_INITIALIZER;
static EventQueue *event_queue;
static pthread_t main_thread;

static void schedule_reap(void);

static void client_mark_dead(QmpClient *c)
{
    if (!c->dead) {
        c->dead = true;
        poll_loop_remove_fd(mon_loop, c->fd);
        schedule_reap();
    }
}

static void client_flush(QmpClient *c)
{
    while (c->off < c->len) {
        ssize_t n = send(c->fd, c->out + c->off, c->len - c->off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                poll_loop_set_events(mon_loop, c->fd, POLLIN | POLLOUT);
                return;
            }
            client_mark_dead(c);
            return;
        }
        c->off += (size_t)n;
    }
    c->off = c->len = 0;
    if (c->cap > 65536) {
        free(c->out);
        c->out = NULL;
        c->cap = 0;
    }
    poll_loop_set_events(mon_loop, c->fd, POLLIN);
}

static void client_write(void *opaque, const char *buf, size_t n)
{
    QmpClient *c = opaque;
    if (c->dead) {
        return;
    }
    size_t pending = c->len - c->off;
    /* A reply bigger than the cap still goes to a client that keeps up;
     * only output piling up behind unread output counts. */
    if (pending > 0 && pending + n > max_output) {
        log_warn("QMP client on fd %d is not reading its replies "
                 "(%zu bytes pending); disconnecting it", c->fd, pending);
        client_mark_dead(c);
        return;
    }
    if (c->off > 0 && c->len + n > c->cap) {
        memmove(c->out, c->out + c->off, pending);
        c->len = pending;
        c->off = 0;
    }
    if (c->len + n > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->len + n) {
            cap *= 2;
        }
        char *o = realloc(c->out, cap);
        if (!o) {
            client_mark_dead(c);
            return;
        }
        c->out = o;
        c->cap = cap;
    }
    memcpy(c->out + c->len, buf, n);
    c->len += n;
    client_flush(c);
}

static void client_free(QmpClient *c)
{
    qmp_session_free(c->session);
    close(c->fd);
    free(c->out);
    free(c);
}

static void reap_clients(void *opaque)
{
    reap_scheduled = false;
    for (QmpClient **p = &clients; *p;) {
        QmpClient *c = *p;
        if (c->dead) {
            *p = c->next;
            nclients--;
            client_free(c);
        } else {
            p = &c->next;
        }
    }
}

static void schedule_reap(void)
{
    /* Clients are freed from a timer, never inside their own callbacks
     * or while an event is being broadcast over the client list. */
    if (!reap_scheduled) {
        reap_scheduled = true;
        poll_loop_add_timer(mon_loop, 0, reap_clients, NULL);
    }
}

static void client_ready(int fd, short revents, void *opaque)
{
    QmpClient *c = opaque;
    if (revents & POLLOUT) {
        client_flush(c);
    }
    if (c->dead || !(revents & (POLLIN | POLLHUP | POLLERR))) {
        return;
    }
    char buf[65536];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            client_mark_dead(c);
        }
        return;
    }
    if (n == 0) {
        client_mark_dead(c);
        return;
    }
    qmp_session_feed(c->session, buf, (size_t)n);
}

static void listener_ready(int fd, short revents, void *opaque)
{
    QmpListener *l = opaque;
    int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            log_warn("QMP accept on %s failed: %s",
                     l->path ? l->path : "socket", strerror(errno));
        }
        return;
    }
    if (nclients >= QMP_MONITOR_MAX_CLIENTS) {
        log_warn("Refusing QMP client: %d clients already connected",
                 QMP_MONITOR_MAX_CLIENTS);
        close(cfd);
        return;
    }
    QmpClient *c = calloc(1, sizeof(*c));
    if (!c) {
        close(cfd);
        return;
    }
    c->fd = cfd;
    c->session = qmp_session_new(client_write, c, l->pretty);
    if (!c->session
        || !poll_loop_add_fd(mon_loop, cfd, POLLIN, client_ready, c, NULL)) {
        qmp_session_free(c->session);
        close(cfd);
        free(c);
        return;
    }
    c->next = clients;
    clients = c;
    nclients++;
    qmp_session_greet(c->session);
}

static void broadcast(json_t *event)
{
    for (QmpClient *c = clients; c; c = c->next) {
        if (!c->dead && qmp_session_negotiated(c->session)) {
            qmp_session_send(c->session, event);
        }
    }
}

static void deliver_event(void *item, void *opaque)
{
    json_t *event = item;
    broadcast(event);
    json_decref(event);
}

static void free_event(void *item)
{
    json_decref(item);
}

json_t *qmp_event_build(const char *name, json_t *data)
{
    struct timeval tv;
    json_t *ts;
    if (gettimeofday(&tv, NULL) == 0) {
        ts = json_pack("{s:I, s:I}", "seconds", (json_int_t)tv.tv_sec,
                       "microseconds", (json_int_t)tv.tv_usec);
    } else {
        ts = json_pack("{s:i, s:i}", "seconds", -1, "microseconds", -1);
    }
    json_t *ev = json_pack("{s:o, s:s}", "timestamp", ts, "event", name);
    if (ev && data) {
        json_object_set_new(ev, "data", data);
    } else if (data) {
        json_decref(data);
    }
    return ev;
}

void qmp_event_emit(const char *name, json_t *data)
{
    json_t *ev = qmp_event_build(name, data);
    if (!ev) {
        return;
    }
    pthread_mutex_lock(&event_lock);
    if (!event_queue) {
        pthread_mutex_unlock(&event_lock);
        json_decref(ev);
        return;
    }
    if (pthread_equal(pthread_self(), main_thread)) {
        pthread_mutex_unlock(&event_lock);
        /* Sent at once, so an event caused by a command reaches the
         * client before the command's reply, as with QEMU. */
        broadcast(ev);
        json_decref(ev);
        return;
    }
    event_queue_push(event_queue, ev);
    pthread_mutex_unlock(&event_lock);
}

static void block_event_sink(const char *event, json_t *data)
{
    qmp_event_emit(event, data);
}

bool qmp_monitor_init(PollLoop *loop, Error **errp)
{
    mon_loop = loop;
    const char *cap = getenv("STRATA_QMP_MAX_OUTPUT");
    if (cap && *cap) {
        char *end;
        unsigned long long v = strtoull(cap, &end, 10);
        if (*end == '\0' && v >= 4096) {
            max_output = (size_t)v;
        }
    }
    EventQueue *q = event_queue_new(loop, deliver_event, free_event, NULL,
                                    errp);
    if (!q) {
        return false;
    }
    qmp_register_core_commands();
    qmp_register_block_commands();
    qmp_register_export_commands();
    qmp_register_stats_commands();
    qmp_register_thinp_commands();
    qmp_register_job_commands();
    qmp_register_object_commands();
    qmp_register_params_commands();
    qmp_register_create_commands();
    qmp_register_snapshot_commands();
    qmp_register_transaction_commands();
    if (!qmp_jobs_init(loop, errp)) {
        return false;
    }
    pthread_mutex_lock(&event_lock);
    main_thread = pthread_self();
    event_queue = q;
    pthread_mutex_unlock(&event_lock);
    block_set_event_sink(block_event_sink);
    return true;
}

bool qmp_monitor_attach(int listen_fd, const char *path, bool pretty,
                        Error **errp)
{
    QmpListener *l = calloc(1, sizeof(*l));
    if (!l || (path && !(l->path = strdup(path)))) {
        free(l);
        error_setg(errp, "Out of memory adding a monitor");
        return false;
    }
    l->fd = listen_fd;
    l->pretty = pretty;
    if (!poll_loop_add_fd(mon_loop, listen_fd, POLLIN, listener_ready, l,
                          errp)) {
        free(l->path);
        free(l);
        return false;
    }
    l->next = listeners;
    listeners = l;
    return true;
}

void qmp_monitor_request_quit(void)
{
    quit_requested = true;
    if (mon_loop) {
        poll_loop_quit(mon_loop);
    }
}

bool qmp_monitor_quit_requested(void)
{
    return quit_requested;
}

size_t qmp_monitor_client_count(void)
{
    return nclients;
}

/* Gives a client until deadline to take what is pending (the reply to
 * quit, mostly). */
static void flush_blocking(QmpClient *c, uint64_t deadline)
{
    while (!c->dead && c->off < c->len) {
        uint64_t now = poll_loop_now_ms();
        if (now >= deadline) {
            break;
        }
        struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
        if (poll(&pfd, 1, (int)(deadline - now)) <= 0) {
            break;
        }
        client_flush(c);
    }
}

void qmp_monitor_shutdown(void)
{
    block_set_event_sink(NULL);
    pthread_mutex_lock(&event_lock);
    EventQueue *q = event_queue;
    event_queue = NULL;
    pthread_mutex_unlock(&event_lock);
    if (q) {
        event_queue_flush(q);
        event_queue_free(q);
    }
    /* One second for all clients together, however many are slow. */
    uint64_t deadline = poll_loop_now_ms() + 1000;
    for (QmpClient *c = clients; c; c = c->next) {
        flush_blocking(c, deadline);
        if (!c->dead) {
            poll_loop_remove_fd(mon_loop, c->fd);
        }
    }
    while (clients) {
        QmpClient *c = clients;
        clients = c->next;
        client_free(c);
    }
    nclients = 0;
    while (listeners) {
        QmpListener *l = listeners;
        listeners = l->next;
        poll_loop_remove_fd(mon_loop, l->fd);
        close(l->fd);
        if (l->path) {
            unlink(l->path);
        }
        free(l->path);
        free(l);
    }
}
