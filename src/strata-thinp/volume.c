/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-thinp - the per-volume state machine.
 *
 * The races oVirt vdsm hit, and how they are closed here:
 * - crossed before armed: arming compares the allocation with the new
 *   threshold first, and looks again right after arming;
 * - allocation below the threshold right after an event: a crossing
 *   always extends, whatever the allocation says;
 * - event and poll both reporting one crossing: only SET reacts, and the
 *   first report moves the volume out of SET; an event naming a
 *   threshold other than the one armed is stale and dropped;
 * - retried every cycle at maximum size: DISABLED, one log line;
 * - a failed arm or extend: back to UNSET with a delay, never lost.
 * Everything runs on the agent's one thread, so no locks are needed. */
#include <stdlib.h>
#include <string.h>

#include "strata-thinp/agent-int.h"
#include "util/cleanup.h"

#define RETRY_MS 2000          /* vdsm's extend_timeout */
#define WAIT_SIZE_STEP_MS 100
#define WAIT_SIZE_TRIES 50

static void start_extend(Volume *v, const char *source);

static bool volume_copying(const Volume *v)
{
    const ThinpConfig *c = v->d->cfg;
    return thinp_config_has(c->copying, c->ncopying, v->node) ||
           (v->format_node &&
            thinp_config_has(c->copying, c->ncopying, v->format_node));
}

static uint64_t get_u64(json_t *o, const char *key)
{
    return (uint64_t)json_integer_value(json_object_get(o, key));
}

static void retry_later(Volume *v, int64_t delay_ms)
{
    v->state = VOL_UNSET;
    v->retry_at_ms = thinp_now_ms() + delay_ms;
}

static void disable(Volume *v)
{
    if (v->state == VOL_DISABLED) {
        return;
    }
    v->state = VOL_DISABLED;
    uint64_t max = thinp_max_size(&v->d->cfg->policy, v->capacity);
    thinp_log("max-size", "socket=%s node=%s physical=%llu capacity=%llu "
              "max=%llu msg=\"volume is at its maximum size; not "
              "extending it further\"", v->d->socket, v->node,
              (unsigned long long)v->physical,
              (unsigned long long)v->capacity, (unsigned long long)max);
}

/* Refreshes one volume's numbers from the daemon.  False when the node
 * is gone or the daemon did not answer. */
static bool refresh(Volume *v)
{
    Error *err = NULL;
    json_t *list = daemon_execute(v->d, "query-block-allocation",
                                  json_pack("{s:s}", "node-name", v->node),
                                  &err);
    if (!list) {
        thinp_log("query-failed", "socket=%s node=%s error=\"%s\"",
                  v->d->socket, v->node, error_get_pretty(err));
        error_free(err);
        return false;
    }
    json_t *e = json_array_get(list, 0);
    v->physical = get_u64(e, "physical");
    v->allocation = get_u64(e, "allocation");
    v->live_threshold = get_u64(e, "write-threshold");
    json_decref(list);
    return true;
}

static void exceeded(Volume *v, const char *source, uint64_t amount)
{
    thinp_log("exceeded", "socket=%s node=%s source=%s threshold=%llu "
              "amount=%llu allocation=%llu physical=%llu", v->d->socket,
              v->node, source, (unsigned long long)v->armed,
              (unsigned long long)amount, (unsigned long long)v->allocation,
              (unsigned long long)v->physical);
    v->armed = 0;
    start_extend(v, source);
}

static void arm(Volume *v)
{
    const ThinpPolicy *p = &v->d->cfg->policy;
    if (v->d->broken || !v->d->conn) {
        return;
    }
    if (thinp_next_size(p, v->physical, v->capacity, false) <= v->physical) {
        disable(v);
        return;
    }
    bool copying = volume_copying(v);
    uint64_t thr = thinp_threshold(p, v->physical, copying);
    if (v->allocation > thr) {
        /* Crossed before it was armed: QEMU would never report it. */
        v->armed = thr;
        exceeded(v, "unarmed", v->allocation - thr);
        return;
    }
    Error *err = NULL;
    json_t *r = daemon_execute(v->d, "block-set-write-threshold",
                               json_pack("{s:s, s:I}", "node-name", v->node,
                                         "write-threshold", (json_int_t)thr),
                               &err);
    if (!r) {
        thinp_log("arm-failed", "socket=%s node=%s threshold=%llu "
                  "error=\"%s\"", v->d->socket, v->node,
                  (unsigned long long)thr, error_get_pretty(err));
        error_free(err);
        retry_later(v, RETRY_MS);
        return;
    }
    json_decref(r);
    v->armed = thr;
    v->state = VOL_SET;
    thinp_log("arm", "socket=%s node=%s threshold=%llu physical=%llu "
              "allocation=%llu free-limit=%llu", v->d->socket, v->node,
              (unsigned long long)thr, (unsigned long long)v->physical,
              (unsigned long long)v->allocation,
              (unsigned long long)thinp_free_limit(p, copying));
    /* A write that crossed between the query and the arming fired
     * nothing; look once more. */
    if (refresh(v) && v->state == VOL_SET &&
        (v->allocation > thr || v->live_threshold == 0)) {
        exceeded(v, "arming-race", v->allocation > thr
                                       ? v->allocation - thr : 0);
    }
}

static void maybe_resume(Daemon *d)
{
    if (!d->pause_pending || !d->has_cont || d->broken || !d->conn) {
        return;
    }
    for (Volume *v = d->volumes; v; v = v->next) {
        if (v->state == VOL_EXTENDING || v->state == VOL_WAIT_SIZE) {
            return;   /* resume once every extension has shown */
        }
    }
    Error *err = NULL;
    json_t *r = daemon_execute(d, "cont", NULL, &err);
    if (!r) {
        thinp_log("resume-failed", "socket=%s error=\"%s\"", d->socket,
                  error_get_pretty(err));
        error_free(err);
        return;
    }
    json_decref(r);
    d->pause_pending = false;
    thinp_log("resume", "socket=%s", d->socket);
}

static void check_size(Volume *v)
{
    if (!refresh(v)) {
        retry_later(v, RETRY_MS);
        return;
    }
    if (v->physical >= v->target) {
        thinp_log("extended", "socket=%s node=%s physical=%llu "
                  "duration-ms=%lld", v->d->socket, v->node,
                  (unsigned long long)v->physical,
                  (long long)(thinp_now_ms() - v->started_ms));
        v->state = VOL_UNSET;
        arm(v);
        maybe_resume(v->d);
        return;
    }
    if (++v->wait_tries == 2) {
        /* The storage grew but the node keeps its old idea of the size:
         * ask the daemon to take the device's current size (QEMU's
         * block_resize on the protocol node). */
        Error *err = NULL;
        json_t *r = daemon_execute(v->d, "block_resize",
                                   json_pack("{s:s, s:I}", "node-name",
                                             v->node, "size",
                                             (json_int_t)v->target), &err);
        thinp_log("resize", "socket=%s node=%s size=%llu result=%s%s%s%s",
                  v->d->socket, v->node, (unsigned long long)v->target,
                  r ? "ok" : "error", r ? "" : " error=\"",
                  r ? "" : error_get_pretty(err), r ? "" : "\"");
        json_decref(r);
        error_free(err);
    }
    if (v->wait_tries >= WAIT_SIZE_TRIES) {
        thinp_log("extend-failed", "socket=%s node=%s target=%llu "
                  "physical=%llu error=\"the daemon does not show the new "
                  "size\"", v->d->socket, v->node,
                  (unsigned long long)v->target,
                  (unsigned long long)v->physical);
        retry_later(v, RETRY_MS);
        return;
    }
    v->state = VOL_WAIT_SIZE;
    v->retry_at_ms = thinp_now_ms() + WAIT_SIZE_STEP_MS;
}

void volume_job_done(Volume *v)
{
    Error *err = NULL;
    ExtendJob *j = v->job;
    v->job = NULL;
    if (!extend_finish(j, &err)) {
        thinp_log("extend-failed", "socket=%s node=%s target=%llu "
                  "error=\"%s\"", v->d->socket, v->node,
                  (unsigned long long)v->target, error_get_pretty(err));
        error_free(err);
        retry_later(v, RETRY_MS);
        return;
    }
    if (!v->d->conn || v->d->broken) {
        /* Reconnecting: discovery will arm it with the new size. */
        v->state = VOL_UNSET;
        return;
    }
    v->wait_tries = 0;
    check_size(v);
}

static void start_extend(Volume *v, const char *source)
{
    const ThinpConfig *cfg = v->d->cfg;
    bool copying = volume_copying(v);
    uint64_t target = thinp_next_size(&cfg->policy, v->physical,
                                      v->capacity, copying);
    if (target <= v->physical) {
        disable(v);
        return;
    }
    v->target = target;
    v->started_ms = thinp_now_ms();
    Error *err = NULL;
    ExtendJob *j = extend_start(cfg->extend_cmd, v->path, target, v->node,
                                v->d->socket, &err);
    if (!j) {
        thinp_log("extend-failed", "socket=%s node=%s target=%llu "
                  "error=\"%s\"", v->d->socket, v->node,
                  (unsigned long long)target, error_get_pretty(err));
        error_free(err);
        retry_later(v, RETRY_MS);
        return;
    }
    thinp_log("extend", "socket=%s node=%s path=%s from=%llu to=%llu "
              "chunk=%llu reason=%s method=%s", v->d->socket, v->node,
              v->path, (unsigned long long)v->physical,
              (unsigned long long)target,
              (unsigned long long)thinp_chunk(&cfg->policy, copying), source,
              extend_job_method(j));
    v->job = j;
    v->state = VOL_EXTENDING;
    if (extend_job_fd(j) < 0) {
        volume_job_done(v);
    }
}

void volume_run_timer(Volume *v, int64_t now)
{
    if (v->retry_at_ms == 0 || now < v->retry_at_ms) {
        return;
    }
    v->retry_at_ms = 0;
    if (v->state == VOL_UNSET) {
        arm(v);
    } else if (v->state == VOL_WAIT_SIZE) {
        check_size(v);
    }
}

static Volume *find_volume(Daemon *d, const char *node)
{
    for (Volume *v = d->volumes; v; v = v->next) {
        if (!strcmp(v->node, node) ||
            (v->format_node && !strcmp(v->format_node, node))) {
            return v;
        }
    }
    return NULL;
}

void volume_on_threshold_event(Daemon *d, json_t *data)
{
    const char *node = json_string_value(json_object_get(data, "node-name"));
    Volume *v = node ? find_volume(d, node) : NULL;
    if (!v || strcmp(v->node, node)) {
        return;   /* not a threshold of ours */
    }
    uint64_t thr = get_u64(data, "write-threshold");
    uint64_t amount = get_u64(data, "amount-exceeded");
    if (v->state != VOL_SET || thr != v->armed) {
        thinp_log("event-ignored", "socket=%s node=%s threshold=%llu "
                  "armed=%llu reason=%s", d->socket, v->node,
                  (unsigned long long)thr, (unsigned long long)v->armed,
                  v->state != VOL_SET ? "already-handled" : "stale");
        return;
    }
    v->allocation = MAX(v->allocation, thr + amount);
    exceeded(v, "event", amount);
}

void volume_on_io_error(Daemon *d, json_t *data)
{
    if (!json_is_true(json_object_get(data, "nospace"))) {
        return;
    }
    d->pause_pending = true;
    const char *node = json_string_value(json_object_get(data, "node-name"));
    Volume *v = node ? find_volume(d, node) : NULL;
    if (!v) {
        thinp_log("nospace-unmanaged", "socket=%s node=%s", d->socket,
                  node ? node : "");
        return;
    }
    switch (v->state) {
    case VOL_UNSET:
    case VOL_SET:
        refresh(v);
        exceeded(v, "enospc", 0);
        break;
    case VOL_DISABLED:
        thinp_log("nospace-at-max", "socket=%s node=%s physical=%llu "
                  "msg=\"out of space at the maximum size; the export stays "
                  "paused\"", d->socket, v->node,
                  (unsigned long long)v->physical);
        break;
    default:
        break;    /* being extended: resumed when it shows */
    }
}

/* ---- discovery ---- */

static json_t *find_entry(json_t *nodes, const char *name)
{
    size_t i;
    json_t *e;
    json_array_foreach(nodes, i, e) {
        const char *n = json_string_value(json_object_get(e, "node-name"));
        if (n && !strcmp(n, name)) {
            return e;
        }
    }
    return NULL;
}

static void track(Daemon *d, json_t *proto, json_t *format)
{
    const char *node = json_string_value(json_object_get(proto, "node-name"));
    const char *path = json_string_value(json_object_get(proto, "filename"));
    if (!node || !path) {
        return;
    }
    Volume *v;
    for (v = d->volumes; v && strcmp(v->node, node); v = v->next) {
    }
    if (!v) {
        v = calloc(1, sizeof(*v));
        if (!v || !(v->node = strdup(node)) || !(v->path = strdup(path))) {
            volume_free(v);
            return;
        }
        const char *fmt = format ? json_string_value(
                                       json_object_get(format, "node-name"))
                                 : NULL;
        v->format_node = fmt ? strdup(fmt) : NULL;
        v->d = d;
        v->block_device = json_is_true(json_object_get(proto, "block-device"));
        v->next = d->volumes;
        d->volumes = v;
        thinp_log("discover", "socket=%s node=%s format-node=%s path=%s "
                  "block-device=%s", d->socket, node, fmt ? fmt : "-", path,
                  v->block_device ? "yes" : "no");
    }
    v->seen = true;
    uint64_t old_capacity = v->capacity, old_physical = v->physical;
    v->capacity = get_u64(format ? format : proto, "capacity");
    v->physical = get_u64(proto, "physical");
    v->allocation = get_u64(proto, "allocation");
    v->live_threshold = get_u64(proto, "write-threshold");
    if (v->state == VOL_DISABLED &&
        (v->capacity > old_capacity || v->physical != old_physical)) {
        /* Resized or extended by hand: it may have room to grow again. */
        v->state = VOL_UNSET;
    }
}

static bool is_thin(const Daemon *d, json_t *proto, json_t *format)
{
    const ThinpConfig *c = d->cfg;
    const char *pn = json_string_value(json_object_get(proto, "node-name"));
    const char *fn = format ? json_string_value(
                                  json_object_get(format, "node-name"))
                            : NULL;
    if ((pn && thinp_config_has(c->volumes, c->nvolumes, pn)) ||
        (fn && thinp_config_has(c->volumes, c->nvolumes, fn))) {
        return true;
    }
    const char *drv = format ? json_string_value(
                                   json_object_get(format, "driver"))
                             : NULL;
    return drv && !strcmp(drv, "qcow2") &&
           json_is_true(json_object_get(proto, "block-device"));
}

static bool has_parent(json_t *nodes, json_t *node)
{
    const char *name = json_string_value(json_object_get(node, "node-name"));
    size_t i;
    json_t *e;
    json_array_foreach(nodes, i, e) {
        const char *child = json_string_value(json_object_get(e, "file"));
        if (name && child && !strcmp(child, name)) {
            return true;
        }
    }
    return false;
}

void volumes_update(Daemon *d, json_t *nodes)
{
    for (Volume *v = d->volumes; v; v = v->next) {
        v->seen = false;
    }
    size_t i;
    json_t *e;
    json_array_foreach(nodes, i, e) {
        const char *child = json_string_value(json_object_get(e, "file"));
        json_t *proto = child ? find_entry(nodes, child) : NULL;
        if (proto && json_object_get(proto, "block-device") &&
            is_thin(d, proto, e)) {
            track(d, proto, e);
        } else if (json_object_get(e, "block-device") &&
                   !has_parent(nodes, e) && is_thin(d, e, NULL)) {
            /* A protocol node named as a volume, with no format above. */
            track(d, e, NULL);
        }
    }
    for (Volume **p = &d->volumes; *p;) {
        Volume *v = *p;
        if (!v->seen) {
            thinp_log("forget", "socket=%s node=%s", d->socket, v->node);
            *p = v->next;
            volume_free(v);
            continue;
        }
        p = &v->next;
    }
    for (Volume *v = d->volumes; v && !d->broken; v = v->next) {
        switch (v->state) {
        case VOL_UNSET:
            if (v->retry_at_ms == 0 || thinp_now_ms() >= v->retry_at_ms) {
                v->retry_at_ms = 0;
                arm(v);
            }
            break;
        case VOL_SET:
            if (v->live_threshold == 0 || v->allocation > v->armed) {
                /* Fired while nobody listened, or its event is still on
                 * the way (it will find the volume out of SET). */
                exceeded(v, "poll", v->allocation > v->armed
                                        ? v->allocation - v->armed : 0);
            } else if (v->live_threshold != v->armed) {
                thinp_log("rearm", "socket=%s node=%s found=%llu "
                          "armed=%llu reason=changed-by-someone-else",
                          d->socket, v->node,
                          (unsigned long long)v->live_threshold,
                          (unsigned long long)v->armed);
                arm(v);
            }
            break;
        default:
            break;
        }
    }
}

void volumes_disconnected(Daemon *d)
{
    for (Volume *v = d->volumes; v; v = v->next) {
        v->armed = 0;
        if (v->state == VOL_SET || v->state == VOL_WAIT_SIZE) {
            v->state = VOL_UNSET;
            v->retry_at_ms = 0;
        }
    }
}

void volume_free(Volume *v)
{
    if (!v) {
        return;
    }
    if (v->job) {
        extend_abort(v->job);
    }
    free(v->node);
    free(v->format_node);
    free(v->path);
    free(v);
}
