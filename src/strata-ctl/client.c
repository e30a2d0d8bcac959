/* strata-ctl - QMP client over a unix socket. */
#include "strata-ctl/ctl.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util/cleanup.h"

typedef struct EventNode {
    json_t *event;
    struct EventNode *next;
} EventNode;

struct CtlClient {
    int fd;
    char *buf;            /* bytes received but not yet split */
    size_t len, cap;
    EventNode *events, **events_tail;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Reads one CRLF/LF-terminated JSON message.  timeout_ms -1 waits
 * forever.  NULL without errp set means timeout. */
static json_t *read_message(CtlClient *c, int timeout_ms, Error **errp)
{
    uint64_t deadline = timeout_ms < 0 ? 0 : now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl) {
            size_t linelen = (size_t)(nl - c->buf) + 1;
            json_error_t jerr;
            json_t *v = json_loadb(c->buf, linelen, JSON_ALLOW_NUL, &jerr);
            memmove(c->buf, c->buf + linelen, c->len - linelen);
            c->len -= linelen;
            if (!v) {
                error_setg(errp, "stratad sent a message that is not JSON: %s",
                           jerr.text);
            }
            return v;
        }
        int wait = -1;
        if (timeout_ms >= 0) {
            uint64_t now = now_ms();
            if (now >= deadline) {
                return NULL;
            }
            wait = (int)(deadline - now);
        }
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
        int r = poll(&pfd, 1, wait);
        if (r < 0 && errno != EINTR) {
            error_setg_errno(errp, errno, "poll on the QMP socket failed");
            return NULL;
        }
        if (r <= 0) {
            continue;
        }
        if (c->len + 65536 > c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 131072;
            char *b = realloc(c->buf, cap);
            if (!b) {
                error_setg(errp, "Out of memory");
                return NULL;
            }
            c->buf = b;
            c->cap = cap;
        }
        ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            error_setg(errp, "stratad closed the QMP connection");
            return NULL;
        }
        c->len += (size_t)n;
    }
}

static void keep_event(CtlClient *c, json_t *ev)
{
    EventNode *e = calloc(1, sizeof(*e));
    if (!e) {
        json_decref(ev);
        return;
    }
    e->event = ev;
    *c->events_tail = e;
    c->events_tail = &e->next;
}

static bool send_command(CtlClient *c, const char *cmd, json_t *args,
                         Error **errp)
{
    json_t *req = json_pack("{s:s}", "execute", cmd);
    if (args) {
        json_object_set(req, "arguments", args);
    }
    CLEANUP_FREE char *s = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!s) {
        error_setg(errp, "Out of memory");
        return false;
    }
    size_t len = strlen(s);
    s[len] = '\n';   /* replaces the NUL; length is tracked */
    size_t off = 0;
    while (off < len + 1) {
        ssize_t n = send(c->fd, s + off, len + 1 - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            error_setg_errno(errp, errno, "Cannot send to stratad");
            return false;
        }
        off += (size_t)n;
    }
    return true;
}

json_t *ctl_execute_raw(CtlClient *c, const char *cmd, json_t *args,
                        Error **errp)
{
    if (!send_command(c, cmd, args, errp)) {
        return NULL;
    }
    for (;;) {
        Error *err = NULL;
        json_t *msg = read_message(c, -1, &err);
        if (!msg) {
            error_propagate(errp, err);
            return NULL;
        }
        if (json_object_get(msg, "event")) {
            keep_event(c, msg);
            continue;
        }
        return msg;
    }
}

json_t *ctl_execute(CtlClient *c, const char *cmd, json_t *args, Error **errp)
{
    json_t *rsp = ctl_execute_raw(c, cmd, args, errp);
    if (!rsp) {
        return NULL;
    }
    json_t *ret = json_object_get(rsp, "return");
    if (ret) {
        json_incref(ret);
        json_decref(rsp);
        return ret;
    }
    json_t *desc = json_object_get(json_object_get(rsp, "error"), "desc");
    error_setg(errp, "%s", json_is_string(desc) ? json_string_value(desc)
                                                : "stratad sent no reply");
    json_decref(rsp);
    return NULL;
}

json_t *ctl_next_event(CtlClient *c, int timeout_ms, Error **errp)
{
    if (c->events) {
        EventNode *e = c->events;
        c->events = e->next;
        if (!c->events) {
            c->events_tail = &c->events;
        }
        json_t *ev = e->event;
        free(e);
        return ev;
    }
    uint64_t deadline = timeout_ms < 0 ? 0 : now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int left = -1;
        if (timeout_ms >= 0) {
            uint64_t now = now_ms();
            left = now >= deadline ? 0 : (int)(deadline - now);
        }
        json_t *msg = read_message(c, left, errp);
        if (!msg || json_object_get(msg, "event")) {
            return msg;
        }
        json_decref(msg);   /* a stray reply */
    }
}

CtlClient *ctl_connect(const char *path, Error **errp)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sun.sun_path)) {
        error_setg(errp, "Socket path '%s' is too long", path);
        return NULL;
    }
    strcpy(sun.sun_path, path);
    CtlClient *c = calloc(1, sizeof(*c));
    if (!c) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    c->events_tail = &c->events;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sun,
                             sizeof(sun)) < 0) {
        error_setg_errno(errp, errno, "Cannot connect to %s", path);
        ctl_close(c);
        return NULL;
    }
    Error *err = NULL;
    json_t *greeting = read_message(c, 10000, &err);
    if (!greeting || !json_object_get(greeting, "QMP")) {
        if (!err) {
            error_setg(&err, "%s did not send a QMP greeting", path);
        }
        json_decref(greeting);
        error_propagate(errp, err);
        ctl_close(c);
        return NULL;
    }
    json_decref(greeting);
    json_t *r = ctl_execute(c, "qmp_capabilities", NULL, errp);
    if (!r) {
        ctl_close(c);
        return NULL;
    }
    json_decref(r);
    return c;
}

void ctl_close(CtlClient *c)
{
    if (!c) {
        return;
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    while (c->events) {
        EventNode *e = c->events;
        c->events = e->next;
        json_decref(e->event);
        free(e);
    }
    free(c->buf);
    free(c);
}
