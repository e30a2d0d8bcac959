/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - fault injection: QEMU's "blkdebug" filter driver, the subset
 * that injects I/O errors, with QEMU's option names and meaning, so the
 * same --blockdev line works on qemu-storage-daemon:
 *
 *   {"driver": "blkdebug", "image": <child>, "align"?: N,
 *    "max-transfer"?: N, "inject-error": [{"event": E, "state"?: N,
 *    "iotype"?: T, "errno"?: 5, "sector"?: N, "once"?: bool,
 *    "immediately"?: bool}, ...]}
 *
 * How a rule fires (QEMU's blkdebug.c): an *event* on the node makes the
 * inject-error rules of that event the active ones (replacing the rules
 * activated by an earlier event that had rules).  Every request on the
 * node is then checked against the active rules in configuration order:
 * the first whose iotype mask has the request's type and whose sector
 * (byte offset sector * 512, or any offset when absent) lies inside the
 * request fails it with -errno, without touching the image.  A "once"
 * rule is deleted after it has failed one request.
 *
 * Events: QEMU's format drivers raise them on their file child.  strata
 * raises them when a request reaches this node from a parent, before the
 * check: read -> read_aio; write -> write_aio, then pwritev; write-zeroes
 * -> pwritev_zero; flush -> flush_to_os, then flush_to_disk (skipped,
 * with the rule check, when nothing was written since the last
 * successful flush).  That is
 * what QEMU does for a raw format node above blkdebug; under qcow2, QEMU
 * raises read_aio and write_aio for guest data only, and so does strata:
 * requests a format makes for its own metadata raise neither, nor do
 * requests made with no parent above (probing the format).  "none" is
 * raised once when the node opens, so its rules are active from the
 * start.  The format's own events (l1_update, cluster_free, ...) come
 * from the format driver above through block_debug_event, at the
 * points QEMU raises them; an event no driver raises never fires.
 * "immediately" only changes, in QEMU, whether the
 * error is returned before or after yielding; strata's requests are
 * synchronous, so it is accepted and has no effect.
 *
 * "set-state" rules ({"event", "state"?, "new_state"}) move the node to
 * another state when their event is raised in their state, which
 * selects the rules of later events.  "config" names a file of rules in
 * QEMU's syntax (inject-config.c), added before those given as options;
 * "blkdebug:CONFIG:IMAGE" file names give both.  "take-child-perms" and
 * "unshare-child-perms" are refused with an error rather than silently
 * ignored.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_core.h"
#include "util/cleanup.h"
#include "util/keyval.h"
#include "block/drivers/inject.h"


/* QEMU's BlkdebugIOType. */
typedef enum IoType {
    IO_READ, IO_WRITE, IO_WRITE_ZEROES, IO_DISCARD, IO_FLUSH, IO_BLOCK_STATUS,
} IoType;
static const char *const iotype_names[] = {
    "read", "write", "write-zeroes", "discard", "flush", "block-status", NULL,
};
/* Without "iotype" a rule matches every type but block-status. */
#define DEFAULT_IOTYPE_MASK ((1u << IO_READ) | (1u << IO_WRITE) | \
                             (1u << IO_WRITE_ZEROES) | (1u << IO_DISCARD) | \
                             (1u << IO_FLUSH))

typedef struct InjectRule {
    int event;
    int64_t state;            /* 0: any state */
    unsigned iotype_mask;
    int error;                /* positive errno */
    int64_t offset;           /* sector * 512, or -1 */
    bool once;
    bool set_state;           /* a set-state rule: moves to new_state */
    int64_t new_state;
    bool active;
    bool deleted;
} InjectRule;

typedef struct InjectState {
    pthread_mutex_t lock;     /* guards rules[].active/deleted */
    InjectRule *rules;        /* configuration order */
    size_t nrules;
    int64_t state;            /* QEMU starts in state 1 */
    /* Writes tried through the node, and how many of them the last
     * successful flush covered (QEMU's write_gen/flushed_gen). */
    atomic_uint_fast64_t write_gen;
    atomic_uint_fast64_t flushed_gen;
} InjectState;

static int enum_index(const char *const *names, const char *v)
{
    for (int i = 0; names[i]; i++) {
        if (strcmp(names[i], v) == 0) {
            return i;
        }
    }
    return -1;
}

/* An integer member given as a JSON number (QMP) or a string (keyval). */
static bool get_int(json_t *obj, const char *key, const char *path,
                    int64_t def, int64_t *out, Error **errp)
{
    json_t *v = json_object_get(obj, key);
    *out = def;
    if (!v) {
        return true;
    }
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        long long n = strtoll(s, &end, 0);
        if (*s && !*end && errno == 0) {
            *out = n;
            return true;
        }
    }
    error_setg(errp, "Parameter '%s' expects integer", path);
    return false;
}

static bool parse_rule(json_t *r, size_t i, InjectRule *rule, Error **errp)
{
    char path[64];
    if (!json_is_object(r)) {
        error_setg(errp, "Invalid parameter type for 'inject-error[%zu]', "
                   "expected: object", i);
        return false;
    }
    json_t *ev = json_object_get(r, "event");
    if (!ev) {
        error_setg(errp, "Parameter 'inject-error[%zu].event' is missing", i);
        return false;
    }
    rule->event = json_is_string(ev) ? enum_index(block_debug_event_names,
                                                  json_string_value(ev)) : -1;
    if (rule->event < 0) {
        error_setg(errp, "Parameter 'inject-error[%zu].event' does not accept "
                   "value '%s'", i, json_is_string(ev) ? json_string_value(ev)
                                                       : "?");
        return false;
    }
    rule->iotype_mask = DEFAULT_IOTYPE_MASK;
    json_t *io = json_object_get(r, "iotype");
    if (io) {
        int t = json_is_string(io) ? enum_index(iotype_names,
                                                json_string_value(io)) : -1;
        if (t < 0) {
            error_setg(errp, "Parameter 'inject-error[%zu].iotype' does not "
                       "accept value '%s'", i,
                       json_is_string(io) ? json_string_value(io) : "?");
            return false;
        }
        rule->iotype_mask = 1u << t;
    }
    int64_t err, sector;
    snprintf(path, sizeof(path), "inject-error[%zu].state", i);
    if (!get_int(r, "state", path, 0, &rule->state, errp)) {
        return false;
    }
    snprintf(path, sizeof(path), "inject-error[%zu].errno", i);
    if (!get_int(r, "errno", path, EIO, &err, errp)) {
        return false;
    }
    snprintf(path, sizeof(path), "inject-error[%zu].sector", i);
    if (!get_int(r, "sector", path, -1, &sector, errp)) {
        return false;
    }
    if (err < 0 || err > 4095) {
        error_setg(errp, "Parameter 'inject-error[%zu].errno' must be a "
                   "positive errno value", i);
        return false;
    }
    /* errno 0 is a rule that matches and lets the request through. */
    rule->error = (int)err;
    rule->offset = sector < 0 ? -1 : (sector > INT64_MAX / 512 ? INT64_MAX
                                                               : sector * 512);
    bool immediately;
    if (!opt_get_bool(r, "once", false, &rule->once, errp) ||
        !opt_get_bool(r, "immediately", false, &immediately, errp)) {
        return false;
    }
    static const char *const known[] = { "event", "state", "iotype", "errno",
                                         "sector", "once", "immediately" };
    const char *key;
    json_t *val;
    json_object_foreach(r, key, val) {
        bool ok = false;
        for (size_t k = 0; k < ARRAY_SIZE(known); k++) {
            ok |= strcmp(key, known[k]) == 0;
        }
        if (!ok) {
            error_setg(errp, "Parameter 'inject-error[%zu].%s' is unexpected",
                       i, key);
            return false;
        }
    }
    return true;
}

static void raise_event_locked(InjectState *s, int event);

/* QEMU's "blkdebug:CONFIG:IMAGE": CONFIG names a rules file (may be
 * empty), IMAGE is opened as a file name of its own (prefixes and all). */
static bool inject_parse_filename(const char *filename, json_t *opts,
                                  Error **errp)
{
    if (strncmp(filename, "blkdebug:", 9) != 0) {
        /* Chosen by name (-f blkdebug): the whole name is the image, and
         * the rules come from options. */
        json_object_set_new(opts, "x-image", json_string(filename));
        json_object_del(opts, "filename");
        return true;
    }
    const char *p = filename + strlen("blkdebug:");
    const char *colon = strchr(p, ':');
    if (!colon) {
        error_setg(errp, "blkdebug requires both config file and image path");
        return false;
    }
    if (colon > p) {
        json_object_set_new(opts, "config",
                            json_stringn(p, (size_t)(colon - p)));
    }
    json_object_set_new(opts, "x-image", json_string(colon + 1));
    json_object_del(opts, "filename");
    return true;
}

/* Rules from the "config" file come first, then those given as
 * options, as QEMU adds them.  New arrays replace the options' own (the
 * node's name still refers to those). */
static bool merge_config(json_t *opts, Error **errp)
{
    json_t *cfg = json_object_get(opts, "config");
    if (!cfg) {
        return true;
    }
    if (!json_is_string(cfg)) {
        error_setg(errp, "Invalid parameter type for 'config', expected: "
                   "string");
        return false;
    }
    CLEANUP_JSON json_t *inject = NULL;
    CLEANUP_JSON json_t *states = NULL;
    if (!inject_read_config(json_string_value(cfg), &inject, &states, errp)) {
        return false;
    }
    static const char *const keys[] = { "inject-error", "set-state" };
    json_t **lists[] = { &inject, &states };
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        json_t *given = json_object_get(opts, keys[i]);
        if (!*lists[i]) {
            continue;
        }
        if (given && !json_is_array(given)) {
            continue;   /* the type error is reported with the option */
        }
        if (given) {
            json_array_extend(*lists[i], given);
        }
        json_object_set(opts, keys[i], *lists[i]);
    }
    json_object_del(opts, "config");
    return true;
}

/* QEMU's set-state rules: {"event", "state"?, "new_state"}. */
static bool add_state_rules(InjectState *s, json_t *list, Error **errp)
{
    if (!list) {
        return true;
    }
    if (!json_is_array(list)) {
        error_setg(errp, "Invalid parameter type for 'set-state', expected: "
                   "array");
        return false;
    }
    size_t n = json_array_size(list);
    InjectRule *rules = realloc(s->rules, (s->nrules + n + 1) *
                                          sizeof(*rules));
    if (!rules) {
        error_setg(errp, "Out of memory for blkdebug rules");
        return false;
    }
    s->rules = rules;
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_array_get(list, i);
        InjectRule *rule = &s->rules[s->nrules];
        char path[64];
        *rule = (InjectRule){ .set_state = true, .offset = -1 };
        if (!json_is_object(r)) {
            error_setg(errp, "Invalid parameter type for 'set-state[%zu]', "
                       "expected: object", i);
            return false;
        }
        json_t *ev = json_object_get(r, "event");
        if (!ev) {
            error_setg(errp, "Parameter 'set-state[%zu].event' is missing", i);
            return false;
        }
        rule->event = json_is_string(ev) ? enum_index(block_debug_event_names,
                                                      json_string_value(ev))
                                         : -1;
        if (rule->event < 0) {
            error_setg(errp, "Parameter 'set-state[%zu].event' does not "
                       "accept value '%s'", i,
                       json_is_string(ev) ? json_string_value(ev) : "?");
            return false;
        }
        if (!json_object_get(r, "new_state")) {
            error_setg(errp, "Parameter 'set-state[%zu].new_state' is "
                       "missing", i);
            return false;
        }
        snprintf(path, sizeof(path), "set-state[%zu].state", i);
        if (!get_int(r, "state", path, 0, &rule->state, errp)) {
            return false;
        }
        snprintf(path, sizeof(path), "set-state[%zu].new_state", i);
        if (!get_int(r, "new_state", path, 0, &rule->new_state, errp)) {
            return false;
        }
        const char *key;
        json_t *val;
        json_object_foreach(r, key, val) {
            if (strcmp(key, "event") && strcmp(key, "state") &&
                strcmp(key, "new_state")) {
                error_setg(errp, "Parameter 'set-state[%zu].%s' is "
                           "unexpected", i, key);
                return false;
            }
        }
        s->nrules++;
    }
    return true;
}

static bool inject_open(BlockNode *bs, json_t *opts, int flags, Error **errp)
{
    InjectState *s = bs->opaque;
    if (!merge_config(opts, errp)) {
        return false;
    }
    json_t *ximage = json_object_get(opts, "x-image");
    if (ximage) {
        json_t *child = json_is_string(ximage)
            ? block_protocol_options(json_string_value(ximage), NULL, errp)
            : NULL;
        if (!child) {
            if (!json_is_string(ximage)) {
                error_setg(errp, "Invalid parameter type for 'x-image', "
                           "expected: string");
            }
            return false;
        }
        json_object_set_new(opts, "image", child);
        json_object_del(opts, "x-image");
    }
    static const char *const refused[] = { "take-child-perms",
                                           "unshare-child-perms" };
    for (size_t i = 0; i < ARRAY_SIZE(refused); i++) {
        if (json_object_get(opts, refused[i])) {
            error_setg(errp, "blkdebug option '%s' is not supported by strata "
                       "(it has no permission tuning)",
                       refused[i]);
            return false;
        }
    }
    int64_t align, max_transfer, ignored;
    if (!get_int(opts, "align", "align", 1, &align, errp) ||
        !get_int(opts, "max-transfer", "max-transfer", 0, &max_transfer,
                 errp)) {
        return false;
    }
    /* Limits for write-zeroes and discard only shape how requests are
     * split; strata passes them through whole. */
    static const char *const limits[] = { "opt-write-zero", "max-write-zero",
                                          "opt-discard", "max-discard" };
    for (size_t i = 0; i < ARRAY_SIZE(limits); i++) {
        if (!get_int(opts, limits[i], limits[i], 0, &ignored, errp)) {
            return false;
        }
        json_object_del(opts, limits[i]);
    }
    if (align < 1 || align > (1 << 30) || (align & (align - 1))) {
        error_setg(errp, "Cannot meet constraints with align %lld",
                   (long long)align);
        return false;
    }
    if (max_transfer < 0 || max_transfer > INT32_MAX ||
        (max_transfer && max_transfer % align)) {
        error_setg(errp, "Cannot meet constraints with max-transfer %lld",
                   (long long)max_transfer);
        return false;
    }
    json_object_del(opts, "align");
    json_object_del(opts, "max-transfer");

    json_t *list = json_object_get(opts, "inject-error");
    if (list && !json_is_array(list)) {
        error_setg(errp, "Invalid parameter type for 'inject-error', "
                   "expected: array");
        return false;
    }
    size_t n = list ? json_array_size(list) : 0;
    s->rules = calloc(n ? n : 1, sizeof(*s->rules));
    if (!s->rules) {
        error_setg(errp, "Out of memory for blkdebug rules");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!parse_rule(json_array_get(list, i), i, &s->rules[i], errp)) {
            free(s->rules);
            s->rules = NULL;
            return false;
        }
    }
    s->nrules = n;
    json_object_del(opts, "inject-error");
    if (!add_state_rules(s, json_object_get(opts, "set-state"), errp)) {
        free(s->rules);
        s->rules = NULL;
        return false;
    }
    json_object_del(opts, "set-state");
    s->state = 1;
    pthread_mutex_init(&s->lock, NULL);

    bs->file = block_open_child(bs, opts, "image", flags, errp);
    if (!bs->file) {
        pthread_mutex_destroy(&s->lock);
        free(s->rules);
        s->rules = NULL;
        return false;
    }
    atomic_store(&bs->total_size, block_node_size(bs->file));
    bs->request_alignment = (uint32_t)align;
    bs->max_transfer = (uint32_t)max_transfer;
    /* QEMU raises "none" once the node is open: rules on that event are
     * active from the start. */
    pthread_mutex_lock(&s->lock);
    raise_event_locked(s, BLKDBG_NONE);
    pthread_mutex_unlock(&s->lock);
    return true;
}

static void inject_close(BlockNode *bs)
{
    InjectState *s = bs->opaque;
    pthread_mutex_destroy(&s->lock);
    free(s->rules);
    s->rules = NULL;
}

/* QEMU's blkdebug_debug_event(): the rules of this event in the current
 * state become the active ones.  Caller holds s->lock. */
static void raise_event_locked(InjectState *s, int event)
{
    bool any = false, moved = false;
    int64_t new_state = s->state;
    for (size_t i = 0; i < s->nrules; i++) {
        InjectRule *r = &s->rules[i];
        if (r->deleted || r->event != event ||
            (r->state && r->state != s->state)) {
            continue;
        }
        if (r->set_state) {
            /* QEMU walks the rules newest first, so the first set-state
             * rule in configuration order has the last word. */
            if (!moved) {
                new_state = r->new_state;
                moved = true;
            }
            continue;
        }
        if (!any) {
            for (size_t k = 0; k < s->nrules; k++) {
                s->rules[k].active = false;
            }
            any = true;
        }
        r->active = true;
    }
    s->state = new_state;
}

/* Raises the events of a request (terminated by -1), then returns the
 * error of the first active rule that matches it, or 0. */
static int check(BlockNode *bs, const int *events, IoType type,
                 uint64_t offset, uint64_t bytes)
{
    InjectState *s = bs->opaque;
    if (s->nrules == 0) {
        return 0;
    }
    LOCK_GUARD(&s->lock);
    /* QEMU's format drivers raise read_aio and write_aio for guest data
     * only, on their file child: not for their own metadata, nor for
     * reads made before there is a format above (probing).  The other
     * events come from QEMU's generic I/O path, for every request. */
    bool data = bs->parents > 0 &&
                block_origin_current() != BLOCK_ORIGIN_METADATA;
    for (const int *e = events; *e >= 0; e++) {
        if (data || (*e != BLKDBG_READ_AIO &&
                     *e != BLKDBG_WRITE_AIO)) {
            raise_event_locked(s, *e);
        }
    }
    for (size_t i = 0; i < s->nrules; i++) {
        InjectRule *r = &s->rules[i];
        if (!r->active || r->deleted || r->set_state ||
            !(r->iotype_mask & (1u << type))) {
            continue;
        }
        if (r->offset >= 0 &&
            !(bytes && (uint64_t)r->offset >= offset &&
              (uint64_t)r->offset - offset < bytes)) {
            continue;
        }
        int err = r->error;
        if (err && r->once) {
            r->deleted = true;
            r->active = false;
        }
        return -err;
    }
    return 0;
}

/* Counts a write, a write of zeroes, a discard or a resize tried on the
 * node, failed or not (as QEMU's write generation). */
static void count_write(BlockNode *bs)
{
    InjectState *s = bs->opaque;
    atomic_fetch_add(&s->write_gen, 1);
}

/* Raises the events (terminated by -1) without a request to check. */
static void check_events_only(BlockNode *bs, const int *events)
{
    InjectState *s = bs->opaque;
    if (s->nrules == 0) {
        return;
    }
    LOCK_GUARD(&s->lock);
    for (const int *e = events; *e >= 0; e++) {
        raise_event_locked(s, *e);
    }
}

static int inject_pread(BlockNode *bs, uint64_t offset, uint64_t bytes,
                        void *buf, int flags)
{
    const int events[] = { BLKDBG_READ_AIO, -1 };
    int ret = check(bs, events, IO_READ, offset, bytes);
    return ret < 0 ? ret : block_read(bs->file, offset, bytes, buf, flags);
}

static int inject_pwrite(BlockNode *bs, uint64_t offset, uint64_t bytes,
                         const void *buf, int flags)
{
    const int events[] = { BLKDBG_WRITE_AIO, BLKDBG_PWRITEV, -1 };
    int ret = check(bs, events, IO_WRITE, offset, bytes);
    ret = ret < 0 ? ret : block_write(bs->file, offset, bytes, buf, flags);
    count_write(bs);
    return ret;
}

static int inject_pwrite_zeroes(BlockNode *bs, uint64_t offset,
                                uint64_t bytes, int flags)
{
    const int events[] = { BLKDBG_PWRITEV_ZERO, -1 };
    int ret = check(bs, events, IO_WRITE_ZEROES, offset, bytes);
    ret = ret < 0 ? ret : block_write_zeroes(bs->file, offset, bytes, flags);
    count_write(bs);
    return ret;
}

static int inject_pdiscard(BlockNode *bs, uint64_t offset, uint64_t bytes)
{
    const int events[] = { -1 };
    int ret = check(bs, events, IO_DISCARD, offset, bytes);
    ret = ret < 0 ? ret : block_discard(bs->file, offset, bytes);
    count_write(bs);
    return ret;
}

/* The core flushes bs->file after this returns 0.  As in QEMU, a flush
 * with no write tried since the last successful one has nothing to put
 * on disk: it raises flush_to_os only, and no rule can fail it (so a
 * format that closes with nothing left to write closes quietly). */
static int inject_flush(BlockNode *bs)
{
    InjectState *s = bs->opaque;
    uint_fast64_t gen = atomic_load(&s->write_gen);
    if (gen == atomic_load(&s->flushed_gen)) {
        const int events[] = { BLKDBG_FLUSH_TO_OS, -1 };
        check_events_only(bs, events);
        return 0;
    }
    const int events[] = { BLKDBG_FLUSH_TO_OS, BLKDBG_FLUSH_TO_DISK,
                           -1 };
    int ret = check(bs, events, IO_FLUSH, 0, 0);
    if (ret == 0) {
        atomic_store(&s->flushed_gen, gen);
    }
    return ret;
}

/* An event a format above announces (block_debug_event). */
static void inject_debug_event(BlockNode *bs, BlockDebugEvent ev)
{
    const int events[] = { (int)ev, -1 };
    check_events_only(bs, events);
}

static int inject_status_check(BlockNode *bs, uint64_t offset,
                               uint64_t bytes)
{
    const int events[] = { -1 };
    return check(bs, events, IO_BLOCK_STATUS, offset, bytes);
}

static int inject_block_status(BlockNode *bs, uint64_t offset, uint64_t bytes,
                               uint64_t *pnum, uint64_t *map, BlockNode **file)
{
    int ret = inject_status_check(bs, offset, bytes);
    if (ret < 0) {
        return ret;
    }
    /* A filter: the content is the child's, at the same offsets. */
    ret = block_status(bs->file, offset, bytes, pnum, map, file);
    if (ret >= 0 && !(ret & BLOCK_STATUS_OFFSET_VALID) && map && file) {
        *map = offset;
        *file = bs->file;
        ret |= BLOCK_STATUS_OFFSET_VALID;
    }
    return ret;
}

static int64_t inject_refresh_size(BlockNode *bs)
{
    return block_refresh_size(bs->file);
}

static bool inject_truncate(BlockNode *bs, uint64_t size, bool exact,
                            PreallocMode prealloc, Error **errp)
{
    count_write(bs);
    if (!block_truncate(bs->file, size, exact, prealloc, errp)) {
        return false;
    }
    atomic_store(&bs->total_size, block_node_size(bs->file));
    return true;
}

/* QEMU's blkdebug strong options: everything that changes what fails. */
static const char *const inject_strong_options[] = {
    "config", "inject-error.", "set-state.", "align", "max-transfer",
    "opt-write-zero", "max-write-zero", "opt-discard", "max-discard", NULL,
};

/* QEMU names a blkdebug node "blkdebug:CONFIG:IMAGE" when it has no
 * rules, else only "json:" can. */
static char *inject_exact_filename(BlockNode *bs, const json_t *full)
{
    const char *image = bs->file ? block_naming_exact_filename(bs->file)
                                 : NULL;
    if (!image) {
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)full, key, v) {
        if (strcmp(key, "config") && strcmp(key, "image") &&
            strcmp(key, "x-image") && strcmp(key, "driver")) {
            return NULL;
        }
    }
    const char *config = json_string_value(json_object_get(full, "config"));
    char *out = NULL;
    if (asprintf(&out, "blkdebug:%s:%s", config ? config : "", image) < 0) {
        return NULL;
    }
    return out;
}

static const char *const blkdebug_prefixes[] = { "blkdebug", NULL };

const BlockDriver bdrv_blkdebug = {
    .format_name = "blkdebug",
    .state_size = sizeof(InjectState),
    .is_filter = true,
    .file_child_option = "image",
    .protocol_prefixes = blkdebug_prefixes,
    .parse_filename = inject_parse_filename,
    .strong_options = inject_strong_options,
    .exact_filename = inject_exact_filename,
    .open = inject_open,
    .close = inject_close,
    .pread = inject_pread,
    .pwrite = inject_pwrite,
    .pwrite_zeroes = inject_pwrite_zeroes,
    .pdiscard = inject_pdiscard,
    .flush = inject_flush,
    .block_status = inject_block_status,
    .filter_status_check = inject_status_check,
    .refresh_size = inject_refresh_size,
    .truncate = inject_truncate,
    .debug_event = inject_debug_event,
};
