/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-thinp - daemons and the poll loop.
 *
 * One thread.  poll(2) waits on every daemon's QMP socket and every
 * running extend command (pidfd); its timeout is the nearest deadline
 * (next poll round, a reconnect, a volume's retry), so the agent sleeps
 * until something happens. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "strata-thinp/agent-int.h"
#include "util/cleanup.h"

#define CONNECT_TIMEOUT_MS 5000
#define COMMAND_TIMEOUT_MS 10000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

int64_t thinp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

json_t *daemon_execute(Daemon *d, const char *cmd, json_t *args,
                       Error **errp)
{
    if (!d->conn || d->broken) {
        json_decref(args);
        error_setg(errp, "not connected to %s", d->socket);
        return NULL;
    }
    bool lost = false;
    json_t *r = qmp_client_execute(d->conn, cmd, args, COMMAND_TIMEOUT_MS,
                                   &lost, errp);
    json_decref(args);
    if (lost) {
        d->broken = true;
    } else if (!r) {
        error_prepend(errp, "%s: ", cmd);
    }
    return r;
}

static void on_event(void *opaque, json_t *ev)
{
    Daemon *d = opaque;
    const char *name = json_string_value(json_object_get(ev, "event"));
    json_t *data = json_object_get(ev, "data");
    if (!name || !json_is_object(data)) {
        return;
    }
    if (!strcmp(name, "BLOCK_WRITE_THRESHOLD")) {
        volume_on_threshold_event(d, data);
    } else if (!strcmp(name, "BLOCK_IO_ERROR")) {
        volume_on_io_error(d, data);
    }
}

/* An export paused for want of space whose BLOCK_IO_ERROR this agent
 * never saw (it was disconnected, or started later) is handled as if
 * the event had just arrived: extend, then cont. */
static void poll_paused_exports(Daemon *d)
{
    if (!d->has_cont || d->pause_pending || d->broken) {
        return;
    }
    Error *err = NULL;
    json_t *exports = daemon_execute(d, "query-block-exports", NULL, &err);
    error_free(err);
    size_t i;
    json_t *e;
    json_array_foreach(exports, i, e) {
        const char *status = json_string_value(json_object_get(e,
                                                               "io-status"));
        const char *node = json_string_value(json_object_get(e, "node-name"));
        if (json_is_true(json_object_get(e, "paused")) && status && node &&
            !strcmp(status, "nospace")) {
            thinp_log("paused-found", "socket=%s export=%s node=%s",
                      d->socket,
                      json_string_value(json_object_get(e, "id")), node);
            json_t *data = json_pack("{s:s, s:b}", "node-name", node,
                                     "nospace", 1);
            volume_on_io_error(d, data);
            json_decref(data);
        }
    }
    json_decref(exports);
}

static void poll_daemon(Daemon *d)
{
    Error *err = NULL;
    json_t *nodes = daemon_execute(d, "query-block-allocation", NULL, &err);
    if (!nodes) {
        thinp_log("query-failed", "socket=%s error=\"%s\"", d->socket,
                  error_get_pretty(err));
        error_free(err);
        return;
    }
    volumes_update(d, nodes);
    json_decref(nodes);
    poll_paused_exports(d);
}

static bool lists_command(json_t *cmds, const char *name)
{
    size_t i;
    json_t *c;
    json_array_foreach(cmds, i, c) {
        const char *n = json_string_value(json_object_get(c, "name"));
        if (n && !strcmp(n, name)) {
            return true;
        }
    }
    return false;
}

static void try_connect(Daemon *d, int64_t now)
{
    Error *err = NULL;
    d->conn = qmp_client_connect(d->socket, CONNECT_TIMEOUT_MS, &err);
    if (!d->conn) {
        /* One line per failure streak, not one per attempt. */
        if (d->backoff_ms == BACKOFF_MIN_MS) {
            thinp_log("connect-failed", "socket=%s error=\"%s\" "
                      "msg=\"retrying with backoff\"", d->socket,
                      error_get_pretty(err));
        }
        error_free(err);
        d->reconnect_at_ms = now + d->backoff_ms;
        d->backoff_ms = d->backoff_ms * 2 > BACKOFF_MAX_MS
                        ? BACKOFF_MAX_MS : d->backoff_ms * 2;
        return;
    }
    qmp_client_set_event_handler(d->conn, on_event, d);
    d->broken = false;
    d->backoff_ms = BACKOFF_MIN_MS;
    json_t *cmds = daemon_execute(d, "query-commands", NULL, &err);
    d->has_cont = cmds && lists_command(cmds, "cont");
    bool has_query = cmds && lists_command(cmds, "query-block-allocation");
    json_decref(cmds);
    error_free(err);
    thinp_log("connect", "socket=%s cont=%s", d->socket,
              d->has_cont ? "yes" : "no");
    if (!has_query && !d->broken) {
        thinp_log("unsupported", "socket=%s msg=\"the daemon has no "
                  "query-block-allocation; is it stratad?\"", d->socket);
    }
    poll_daemon(d);
    d->next_poll_ms = thinp_now_ms() + d->cfg->poll_interval_ms;
}

static void disconnect(Daemon *d, const char *why)
{
    thinp_log("disconnect", "socket=%s error=\"%s\"", d->socket,
              why ? why : "connection lost");
    qmp_client_close(d->conn);
    d->conn = NULL;
    d->broken = false;
    d->pause_pending = false;
    volumes_disconnected(d);
    d->reconnect_at_ms = thinp_now_ms() + d->backoff_ms;
}

static void update_deadline(int64_t *deadline, int64_t t)
{
    if (t > 0 && (*deadline < 0 || t < *deadline)) {
        *deadline = t;
    }
}

static void free_daemons(Daemon *list)
{
    while (list) {
        Daemon *d = list;
        list = d->next;
        while (d->volumes) {
            Volume *v = d->volumes;
            d->volumes = v->next;
            volume_free(v);
        }
        qmp_client_close(d->conn);
        free(d->socket);
        free(d);
    }
}

int thinp_run(ThinpConfig *cfg)
{
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    Daemon *daemons = NULL, **tail = &daemons;
    size_t ndaemons = 0;
    for (size_t i = 0; i < cfg->nsockets; i++) {
        Daemon *d = calloc(1, sizeof(*d));
        if (!d || !(d->socket = strdup(cfg->sockets[i]))) {
            free(d);
            error_report("Out of memory");
            free_daemons(daemons);
            return 1;
        }
        d->cfg = cfg;
        d->backoff_ms = BACKOFF_MIN_MS;
        *tail = d;
        tail = &d->next;
        ndaemons++;
    }
    thinp_log("start", "sockets=%zu chunk=%llu free-percent=%u "
              "max-factor=%.3g poll-interval-ms=%u extend=%s", ndaemons,
              (unsigned long long)cfg->policy.chunk, cfg->policy.free_percent,
              cfg->policy.max_factor, cfg->poll_interval_ms,
              cfg->extend_cmd ? "command" : "builtin");

    struct pollfd *pfds = NULL;
    void **owners = NULL;
    size_t cap = 0;
    while (!stop_requested) {
        int64_t now = thinp_now_ms();
        int64_t deadline = -1;
        size_t n = 0;
        for (Daemon *d = daemons; d; d = d->next) {
            if (!d->conn && now >= d->reconnect_at_ms) {
                try_connect(d, now);
            }
            if (d->conn && !d->broken && now >= d->next_poll_ms) {
                poll_daemon(d);
                d->next_poll_ms = now + cfg->poll_interval_ms;
            }
            for (Volume *v = d->volumes; v; v = v->next) {
                volume_run_timer(v, thinp_now_ms());
            }
            /* Events that arrived with the replies above. */
            if (d->conn && !d->broken) {
                Error *err = NULL;
                if (!qmp_client_dispatch(d->conn, &err)) {
                    d->broken = true;
                }
                if (d->broken) {
                    disconnect(d, err ? error_get_pretty(err) : NULL);
                }
                error_free(err);
            } else if (d->conn) {
                disconnect(d, NULL);
            }
            update_deadline(&deadline, d->conn ? d->next_poll_ms
                                               : d->reconnect_at_ms);
            size_t need = n + 1;
            for (Volume *v = d->volumes; v; v = v->next) {
                if (v->state == VOL_UNSET || v->state == VOL_WAIT_SIZE) {
                    update_deadline(&deadline, v->retry_at_ms);
                }
                need += v->job ? 1 : 0;
            }
            if (need > cap) {
                size_t ncap = need * 2;
                struct pollfd *p = realloc(pfds, ncap * sizeof(*p));
                void **o = p ? realloc(owners, ncap * sizeof(*o)) : NULL;
                if (p) {
                    pfds = p;
                }
                if (!o) {
                    error_report("Out of memory");
                    stop_requested = 1;
                    break;
                }
                owners = o;
                cap = ncap;
            }
            if (d->conn) {
                pfds[n] = (struct pollfd) { .fd = qmp_client_fd(d->conn),
                                            .events = POLLIN };
                owners[n++] = d;
            }
            for (Volume *v = d->volumes; v; v = v->next) {
                if (v->job && extend_job_fd(v->job) >= 0) {
                    pfds[n] = (struct pollfd) { .fd = extend_job_fd(v->job),
                                                .events = POLLIN };
                    owners[n++] = v;
                }
            }
        }
        if (stop_requested) {
            break;
        }
        now = thinp_now_ms();
        int timeout = deadline < 0 ? -1
                      : deadline <= now ? 0 : (int)MIN(deadline - now, 60000);
        int r = poll(pfds, n, timeout);
        if (r < 0 && errno != EINTR) {
            error_report("poll failed: %s", strerror(errno));
            break;
        }
        for (size_t i = 0; r > 0 && i < n; i++) {
            if (!pfds[i].revents) {
                continue;
            }
            /* Daemons come before their volumes in owners[]; a volume's
             * pidfd is readable when its command exited. */
            bool is_daemon = false;
            for (Daemon *d = daemons; d; d = d->next) {
                if (owners[i] == d) {
                    is_daemon = true;
                    Error *err = NULL;
                    if (d->conn && !qmp_client_dispatch(d->conn, &err)) {
                        d->broken = true;
                    }
                    if (d->broken && d->conn) {
                        disconnect(d, err ? error_get_pretty(err) : NULL);
                    }
                    error_free(err);
                }
            }
            if (!is_daemon) {
                Volume *v = owners[i];
                if (v->job && extend_job_fd(v->job) == pfds[i].fd) {
                    volume_job_done(v);
                }
            }
        }
    }
    thinp_log("stop", "msg=\"signal received\"");
    free(pfds);
    free(owners);
    free_daemons(daemons);
    return 0;
}
