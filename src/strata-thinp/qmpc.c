/* strata-thinp - a QMP client for a poll loop.
 *
 * Replies are awaited synchronously (bounded by a timeout, so a hung
 * daemon costs seconds, not the agent); events are queued while a reply
 * is awaited and handed to the callback from qmpc_dispatch, so handlers
 * never run in the middle of another command. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "strata-thinp/thinp.h"
#include "util/cleanup.h"

typedef struct QueuedEvent {
    json_t *event;
    struct QueuedEvent *next;
} QueuedEvent;

struct QmpConn {
    int fd;
    char *buf;
    size_t len, cap;
    QueuedEvent *events, **tail;
    QmpEventFn *on_event;
    void *opaque;
    char *path;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads once (waiting up to wait_ms, 0 = not at all).  1 = data,
 * 0 = nothing yet, -1 = closed or failed (errp set). */
static int fill(QmpConn *c, int wait_ms, Error **errp)
{
    struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
    int r = poll(&pfd, 1, wait_ms);
    if (r < 0) {
        if (errno == EINTR) {
            return 0;
        }
        error_setg_errno(errp, errno, "poll on %s failed", c->path);
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
        error_setg_errno(errp, errno, "Cannot read from %s", c->path);
        return -1;
    }
    if (n == 0) {
        error_setg(errp, "%s closed the connection", c->path);
        return -1;
    }
    c->len += (size_t)n;
    return 1;
}

/* Takes one complete message out of the buffer, or returns NULL. */
static json_t *take_message(QmpConn *c, Error **errp, bool *bad)
{
    *bad = false;
    for (;;) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        if (!nl) {
            return NULL;
        }
        size_t linelen = (size_t)(nl - c->buf) + 1;
        json_error_t jerr;
        json_t *v = json_loadb(c->buf, linelen, 0, &jerr);
        bool blank = linelen <= 2 && (linelen == 1 || c->buf[0] == '\r');
        memmove(c->buf, c->buf + linelen, c->len - linelen);
        c->len -= linelen;
        if (v) {
            return v;
        }
        if (!blank) {
            error_setg(errp, "%s sent a line that is not JSON: %s", c->path,
                       jerr.text);
            *bad = true;
            return NULL;
        }
    }
}

static void queue_event(QmpConn *c, json_t *ev)
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

/* Waits for the next message that is not an event. */
static json_t *wait_reply(QmpConn *c, int timeout_ms, Error **errp)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        bool bad;
        json_t *msg = take_message(c, errp, &bad);
        if (bad) {
            return NULL;
        }
        if (msg) {
            if (json_object_get(msg, "event")) {
                queue_event(c, msg);
                continue;
            }
            return msg;
        }
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            error_setg(errp, "%s did not answer within %d ms", c->path,
                       timeout_ms);
            return NULL;
        }
        if (fill(c, (int)left, errp) < 0) {
            return NULL;
        }
    }
}

static bool send_all(QmpConn *c, const char *s, size_t len, Error **errp)
{
    while (len) {
        ssize_t n = send(c->fd, s, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            error_setg_errno(errp, errno, "Cannot write to %s", c->path);
            return false;
        }
        s += n;
        len -= (size_t)n;
    }
    return true;
}

json_t *qmpc_execute(QmpConn *c, const char *cmd, json_t *args,
                     int timeout_ms, bool *lost, Error **errp)
{
    bool dummy;
    lost = lost ? lost : &dummy;
    *lost = false;
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
        *lost = true;
        return NULL;
    }
    json_t *rsp = wait_reply(c, timeout_ms, errp);
    if (!rsp) {
        *lost = true;
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
    error_setg(errp, "%s: %s", cmd, desc ? desc : "malformed reply");
    json_decref(rsp);
    return NULL;
}

bool qmpc_dispatch(QmpConn *c, Error **errp)
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
        json_t *msg = take_message(c, ok ? errp : NULL, &bad);
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
    while (c->events) {
        QueuedEvent *q = c->events;
        c->events = q->next;
        if (!c->events) {
            c->tail = &c->events;
        }
        json_t *ev = q->event;
        free(q);
        c->on_event(c->opaque, ev);
        json_decref(ev);
    }
    return ok;
}

int qmpc_fd(const QmpConn *c)
{
    return c->fd;
}

QmpConn *qmpc_connect(const char *path, int timeout_ms, QmpEventFn *on_event,
                      void *opaque, Error **errp)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sun.sun_path)) {
        error_setg(errp, "Socket path '%s' is too long", path);
        return NULL;
    }
    strcpy(sun.sun_path, path);
    QmpConn *c = calloc(1, sizeof(*c));
    if (!c || !(c->path = strdup(path))) {
        free(c);
        error_setg(errp, "Out of memory");
        return NULL;
    }
    c->tail = &c->events;
    c->on_event = on_event;
    c->opaque = opaque;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 ||
        connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        error_setg_errno(errp, errno, "Cannot connect to %s", path);
        qmpc_close(c);
        return NULL;
    }
    json_t *greeting = wait_reply(c, timeout_ms, errp);
    bool is_qmp = greeting && json_object_get(greeting, "QMP");
    json_decref(greeting);
    if (!is_qmp) {
        if (greeting) {
            error_setg(errp, "%s did not greet with QMP", path);
        }
        qmpc_close(c);
        return NULL;
    }
    json_t *r = qmpc_execute(c, "qmp_capabilities", NULL, timeout_ms, NULL,
                             errp);
    if (!r) {
        qmpc_close(c);
        return NULL;
    }
    json_decref(r);
    return c;
}

void qmpc_close(QmpConn *c)
{
    if (!c) {
        return;
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    while (c->events) {
        QueuedEvent *q = c->events;
        c->events = q->next;
        json_decref(q->event);
        free(q);
    }
    free(c->buf);
    free(c->path);
    free(c);
}
