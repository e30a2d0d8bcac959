/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - a QMP client (see qmp-client.h). */
#include "qmp/qmp-client.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/sockets.h"

typedef struct QueuedEvent {
    json_t *event;
    struct QueuedEvent *next;
} QueuedEvent;

struct QmpClient {
    int fd;
    char *name;               /* the peer, for messages */
    char *buf;                /* bytes received but not yet split */
    size_t len, cap;
    QueuedEvent *events, **tail;
    QmpClientEventFn *on_event;
    void *opaque;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left before deadline (-1: none), for poll(). */
static int time_left(int64_t deadline)
{
    if (deadline < 0) {
        return -1;
    }
    int64_t left = deadline - now_ms();
    return left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

static int64_t deadline_after(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* Reads once, waiting up to wait_ms (0: not at all, -1: forever).
 * 1 = data, 0 = nothing yet, -1 = closed or failed (errp set). */
static int fill(QmpClient *c, int wait_ms, Error **errp)
{
    struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
    int r = poll(&pfd, 1, wait_ms);
    if (r < 0) {
        if (errno == EINTR) {
            return 0;
        }
        error_setg_errno(errp, errno, "poll on %s failed", c->name);
        return -1;
    }
    if (r == 0) {
        return 0;
    }
    if (c->cap - c->len < 65536) {
        size_t cap = c->cap ? c->cap * 2 : 131072;
        char *b = realloc(c->buf, cap);
        if (!b) {
            error_setg(errp, "Out of memory");
            return -1;
        }
        c->buf = b;
        c->cap = cap;
    }
    ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
        return 0;
    }
    if (n < 0) {
        error_setg_errno(errp, errno, "Cannot read from %s", c->name);
        return -1;
    }
    if (n == 0) {
        error_setg(errp, "%s closed the QMP connection", c->name);
        return -1;
    }
    c->len += (size_t)n;
    return 1;
}

/* Takes one complete message out of the buffer.  NULL with *bad unset:
 * no complete line yet; with *bad set: a line that is not JSON (errp). */
static json_t *take_message(QmpClient *c, bool *bad, Error **errp)
{
    *bad = false;
    for (;;) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        if (!nl) {
            return NULL;
        }
        size_t linelen = (size_t)(nl - c->buf) + 1;
        json_error_t jerr;
        json_t *v = json_loadb(c->buf, linelen, JSON_ALLOW_NUL, &jerr);
        bool blank = linelen == 1 || (linelen == 2 && c->buf[0] == '\r');
        memmove(c->buf, c->buf + linelen, c->len - linelen);
        c->len -= linelen;
        if (v) {
            return v;
        }
        if (!blank) {
            error_setg(errp, "%s sent a line that is not JSON: %s", c->name,
                       jerr.text);
            *bad = true;
            return NULL;
        }
    }
}

static void queue_event(QmpClient *c, json_t *ev)
{
    QueuedEvent *q = calloc(1, sizeof(*q));
    if (!q) {
        json_decref(ev);
        return;
    }
    q->event = ev;
    *c->tail = q;
    c->tail = &q->next;
}

static json_t *unqueue_event(QmpClient *c)
{
    QueuedEvent *q = c->events;
    if (!q) {
        return NULL;
    }
    c->events = q->next;
    if (!c->events) {
        c->tail = &c->events;
    }
    json_t *ev = q->event;
    free(q);
    return ev;
}

/* Waits for the next message that is (want_event) or is not an event;
 * the others are queued (events) or dropped (replies nobody waits for).
 * NULL with *timed_out set when the deadline passed, else errp. */
static json_t *wait_message(QmpClient *c, bool want_event, int64_t deadline,
                            bool *timed_out, Error **errp)
{
    *timed_out = false;
    for (;;) {
        bool bad;
        json_t *msg = take_message(c, &bad, errp);
        if (bad) {
            return NULL;
        }
        if (msg) {
            bool is_event = json_object_get(msg, "event") != NULL;
            if (is_event == want_event) {
                return msg;
            }
            if (is_event) {
                queue_event(c, msg);
            } else {
                json_decref(msg);
            }
            continue;
        }
        int left = time_left(deadline);
        if (left == 0) {
            *timed_out = true;
            return NULL;
        }
        if (fill(c, left, errp) < 0) {
            return NULL;
        }
    }
}

static bool send_all(QmpClient *c, const char *s, size_t len, Error **errp)
{
    while (len) {
        ssize_t n = send(c->fd, s, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            error_setg_errno(errp, errno, "Cannot send to %s", c->name);
            return false;
        }
        s += n;
        len -= (size_t)n;
    }
    return true;
}

json_t *qmp_client_execute_raw(QmpClient *c, const char *cmd, json_t *args,
                               int timeout_ms, Error **errp)
{
    json_t *req = json_pack("{s:s}", "execute", cmd);
    if (req && args) {
        json_object_set(req, "arguments", args);
    }
    CLEANUP_FREE char *s = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!s) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    size_t len = strlen(s);
    s[len] = '\n';          /* the NUL is not sent; length is tracked */
    if (!send_all(c, s, len + 1, errp)) {
        return NULL;
    }
    bool timed_out;
    json_t *rsp = wait_message(c, false, deadline_after(timeout_ms),
                               &timed_out, errp);
    if (timed_out) {
        error_setg(errp, "%s did not answer %s within %d ms", c->name, cmd,
                   timeout_ms);
    }
    return rsp;
}

static ErrorClass class_from_name(const char *name)
{
    static const ErrorClass known[] = {
        ERROR_CLASS_COMMAND_NOT_FOUND, ERROR_CLASS_DEVICE_NOT_ACTIVE,
        ERROR_CLASS_DEVICE_NOT_FOUND,
    };
    for (size_t i = 0; name && i < ARRAY_SIZE(known); i++) {
        if (!strcmp(name, error_class_name(known[i]))) {
            return known[i];
        }
    }
    return ERROR_CLASS_GENERIC_ERROR;
}

json_t *qmp_client_execute(QmpClient *c, const char *cmd, json_t *args,
                           int timeout_ms, bool *lost, Error **errp)
{
    json_t *rsp = qmp_client_execute_raw(c, cmd, args, timeout_ms, errp);
    if (lost) {
        *lost = !rsp;
    }
    if (!rsp) {
        return NULL;
    }
    json_t *ret = json_object_get(rsp, "return");
    if (ret) {
        json_incref(ret);
        json_decref(rsp);
        return ret;
    }
    json_t *err = json_object_get(rsp, "error");
    const char *desc = json_string_value(json_object_get(err, "desc"));
    const char *cls = json_string_value(json_object_get(err, "class"));
    error_set(errp, class_from_name(cls), "%s",
              desc ? desc : "malformed reply: neither return nor error");
    json_decref(rsp);
    return NULL;
}

json_t *qmp_client_next_event(QmpClient *c, int timeout_ms, Error **errp)
{
    json_t *ev = unqueue_event(c);
    if (ev) {
        return ev;
    }
    bool timed_out;
    return wait_message(c, true, deadline_after(timeout_ms), &timed_out,
                        errp);
}

bool qmp_client_dispatch(QmpClient *c, Error **errp)
{
    bool ok = true;
    int r;
    while ((r = fill(c, 0, errp)) > 0) {
    }
    if (r < 0) {
        ok = false;
    }
    for (;;) {
        bool bad;
        json_t *msg = take_message(c, &bad, ok ? errp : NULL);
        if (bad) {
            ok = false;
            break;
        }
        if (!msg) {
            break;
        }
        if (json_object_get(msg, "event")) {
            queue_event(c, msg);
        } else {
            json_decref(msg);   /* a reply nobody waits for */
        }
    }
    if (c->on_event) {
        json_t *ev;
        while ((ev = unqueue_event(c))) {
            c->on_event(c->opaque, ev);
            json_decref(ev);
        }
    }
    return ok;
}

int qmp_client_fd(const QmpClient *c)
{
    return c->fd;
}

void qmp_client_set_event_handler(QmpClient *c, QmpClientEventFn *fn,
                                  void *opaque)
{
    c->on_event = fn;
    c->opaque = opaque;
}

QmpClient *qmp_client_new_fd(int fd, const char *name, int timeout_ms,
                             Error **errp)
{
    QmpClient *c = calloc(1, sizeof(*c));
    if (!c || !(c->name = strdup(name))) {
        free(c);
        close(fd);
        error_setg(errp, "Out of memory");
        return NULL;
    }
    c->fd = fd;
    c->tail = &c->events;
    /* The greeting is the first message; an event cannot precede it. */
    bool timed_out;
    json_t *greeting = wait_message(c, false, deadline_after(timeout_ms),
                                    &timed_out, errp);
    bool is_qmp = json_is_object(json_object_get(greeting, "QMP"));
    json_decref(greeting);
    if (!is_qmp) {
        if (greeting || timed_out) {
            error_setg(errp, "%s did not send a QMP greeting", name);
        }
        qmp_client_close(c);
        return NULL;
    }
    json_t *r = qmp_client_execute(c, "qmp_capabilities", NULL, timeout_ms,
                                   NULL, errp);
    if (!r) {
        qmp_client_close(c);
        return NULL;
    }
    json_decref(r);
    return c;
}

QmpClient *qmp_client_connect(const char *path, int timeout_ms, Error **errp)
{
    int fd = unix_socket_connect(path, 0, errp);
    if (fd < 0) {
        return NULL;
    }
    return qmp_client_new_fd(fd, path, timeout_ms, errp);
}

void qmp_client_close(QmpClient *c)
{
    if (!c) {
        return;
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    json_t *ev;
    while ((ev = unqueue_event(c))) {
        json_decref(ev);
    }
    free(c->buf);
    free(c->name);
    free(c);
}
