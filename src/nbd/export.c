/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the registry of NBD block exports: block-export-add/del,
 * query-block-exports, and the lookups the handshake uses.
 *
 * An export is reference counted: the registry holds one reference while
 * the export is live, every attached client holds one.  Deleting an
 * export drops the registry's reference; the export (and its node
 * reference) goes away, and BLOCK_EXPORT_DELETED is emitted, when the
 * last client has left.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "block/accounting.h"
#include "block/user.h"
#include "nbd/nbd-int.h"
#include "nbd/protocol.h"
#include "util/cleanup.h"
#include "util/keyval.h"
#include "util/log.h"

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t registry_cond = PTHREAD_COND_INITIALIZER;
static NbdExport *exports;      /* newest first, as QEMU lists them */
static int pending_frees;       /* unlinked, event not yet emitted */

/* What the server last said about itself (main thread only). */
static bool server_running;
static uint32_t server_max_connections;

void nbd_exports_server_changed(bool running, uint32_t max_connections)
{
    server_running = running;
    server_max_connections = max_connections;
}

static NbdExport *find_by_id_locked(const char *id)
{
    for (NbdExport *e = exports; e; e = e->next) {
        if (strcmp(e->id, id) == 0) {
            return e;
        }
    }
    return NULL;
}

static NbdExport *find_live_by_name_locked(const char *name)
{
    for (NbdExport *e = exports; e; e = e->next) {
        if (!e->shutting_down && strcmp(e->name, name) == 0) {
            return e;
        }
    }
    return NULL;
}

/* What an export asks of its node, as qsd's exports do: read, write when
 * writable, and nobody may resize the image under the client. */
static uint64_t export_perm(bool writable)
{
    return BLOCK_PERM_CONSISTENT_READ | (writable ? BLOCK_PERM_WRITE : 0);
}
#define EXPORT_SHARED_PERM (BLOCK_PERM_ALL & ~(uint64_t)BLOCK_PERM_RESIZE)

/* Frees an export that never got its node or entered the registry. */
static void export_free_unlinked(NbdExport *exp)
{
    free(exp->id);
    free(exp->name);
    free(exp->description);
    free(exp);
}

static void export_free(NbdExport *exp)
{
    block_user_free(exp->user);
    free(exp->id);
    free(exp->name);
    free(exp->description);
    free(exp);
}

/* Drops a reference; called with registry_lock held, returns with it
 * released.  The last reference unlinks the export, emits the event and
 * releases the node outside the lock. */
static void export_put_unlock(NbdExport *exp)
{
    if (--exp->refcnt > 0) {
        pthread_mutex_unlock(&registry_lock);
        return;
    }
    for (NbdExport **p = &exports; *p; p = &(*p)->next) {
        if (*p == exp) {
            *p = exp->next;
            break;
        }
    }
    pending_frees++;
    pthread_mutex_unlock(&registry_lock);

    block_emit_event("BLOCK_EXPORT_DELETED", json_pack("{s:s}", "id", exp->id));
    export_free(exp);

    pthread_mutex_lock(&registry_lock);
    pending_frees--;
    pthread_cond_broadcast(&registry_cond);
    pthread_mutex_unlock(&registry_lock);
}

NbdExport *nbd_export_get(const char *name)
{
    LOCK_GUARD(&registry_lock);
    NbdExport *exp = find_live_by_name_locked(name);
    if (exp) {
        exp->refcnt++;
    }
    return exp;
}

void nbd_export_put(NbdExport *exp)
{
    if (exp) {
        pthread_mutex_lock(&registry_lock);
        export_put_unlock(exp);
    }
}

bool nbd_export_attach(NbdExport *exp, NbdConn *conn)
{
    LOCK_GUARD(&registry_lock);
    if (exp->shutting_down) {
        return false;
    }
    conn->exp_next = exp->clients;
    exp->clients = conn;
    return true;
}

void nbd_export_detach(NbdExport *exp, NbdConn *conn)
{
    LOCK_GUARD(&registry_lock);
    for (NbdConn **p = &exp->clients; *p; p = &(*p)->exp_next) {
        if (*p == conn) {
            *p = conn->exp_next;
            break;
        }
    }
    conn->exp_next = NULL;
}

NbdExport **nbd_export_list(size_t *count)
{
    LOCK_GUARD(&registry_lock);
    size_t n = 0;
    for (NbdExport *e = exports; e; e = e->next) {
        n += !e->shutting_down;
    }
    NbdExport **list = calloc(n ? n : 1, sizeof(*list));
    if (!list) {
        *count = 0;
        return NULL;
    }
    /* Oldest first, the order the exports were added in (as qsd). */
    size_t i = n;
    for (NbdExport *e = exports; e; e = e->next) {
        if (!e->shutting_down) {
            e->refcnt++;
            list[--i] = e;
        }
    }
    *count = n;
    return list;
}

void nbd_export_list_free(NbdExport **list, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        nbd_export_put(list[i]);
    }
    free(list);
}

/* Marks exp deleted and disconnects its clients; registry_lock held. */
static void export_shutdown_locked(NbdExport *exp)
{
    if (exp->shutting_down) {
        return;
    }
    exp->shutting_down = true;
    block_user_stop(exp->user);
    for (NbdConn *c = exp->clients; c; c = c->exp_next) {
        shutdown(c->fd, SHUT_RDWR);
    }
}

void nbd_export_delete_all(void)
{
    pthread_mutex_lock(&registry_lock);
    for (;;) {
        NbdExport *exp = NULL;
        for (NbdExport *e = exports; e; e = e->next) {
            if (!e->shutting_down) {
                exp = e;
                break;
            }
        }
        if (!exp) {
            break;
        }
        export_shutdown_locked(exp);
        export_put_unlock(exp);
        pthread_mutex_lock(&registry_lock);
    }
    pthread_mutex_unlock(&registry_lock);
}

/* query-block-exports' strata members: "werror", "rerror", "io-status",
 * "paused", "held-requests", "queued-requests", "pauses", and
 * "io-error" {"operation", "reason"} while paused. */
static void export_query_policy(BlockUser *u, json_t *entry)
{
    BlockUserStatus st;
    block_user_get_status(u, &st);
    json_object_set_new(entry, "werror",
                        json_string(block_error_action_name(st.werror)));
    json_object_set_new(entry, "rerror",
                        json_string(block_error_action_name(st.rerror)));
    json_object_set_new(entry, "io-status",
                        json_string(block_io_status_name(st.io_status)));
    json_object_set_new(entry, "paused", json_boolean(st.paused));
    json_object_set_new(entry, "held-requests", json_integer(st.held));
    json_object_set_new(entry, "queued-requests", json_integer(st.queued));
    json_object_set_new(entry, "pauses", json_integer((json_int_t)st.pauses));
    if (st.paused) {
        json_object_set_new(entry, "io-error",
                            json_pack("{s:s, s:s}", "operation", st.operation,
                                      "reason", strerror(st.error)));
    }
}

/* strata has no dirty bitmaps yet: every name is unknown. */
static bool check_bitmaps(const NbdExportOptions *o, Error **errp)
{
    if (o->bitmaps_not_array) {
        error_setg(errp, "Invalid parameter type for 'bitmaps', expected: array");
        return false;
    }
    if (o->first_bitmap) {
        error_setg(errp, "Bitmap '%s' is not found", o->first_bitmap);
        return false;
    }
    return true;
}

/* The checks QEMU makes before it creates an export, in its order. */
static BlockNode *export_check(const NbdExportOptions *o, const char *name,
                               Error **errp)
{
    if (!id_wellformed(o->id)) {
        error_setg(errp, "Invalid block export id");
        return NULL;
    }
    pthread_mutex_lock(&registry_lock);
    bool dup = find_by_id_locked(o->id) != NULL;
    pthread_mutex_unlock(&registry_lock);
    if (dup) {
        error_setg(errp, "Block export id '%s' is already in use", o->id);
        return NULL;
    }
    BlockNode *bs = block_node_find(o->node_name);
    if (!bs) {
        error_setg(errp, "Cannot find device='' nor node-name='%s'",
                   o->node_name);
        return NULL;
    }
    if (o->writable && block_node_read_only(bs)) {
        error_setg(errp, "Cannot export read-only node as writable");
        return NULL;
    }
    if (!server_running) {
        error_setg(errp, "NBD server not running");
        return NULL;
    }
    if (strlen(name) > NBD_MAX_STRING_SIZE) {
        error_setg(errp, "export name '%s' too long", name);
        return NULL;
    }
    if (o->description && strlen(o->description) > NBD_MAX_STRING_SIZE) {
        error_setg(errp, "description '%s' too long", o->description);
        return NULL;
    }
    pthread_mutex_lock(&registry_lock);
    dup = find_live_by_name_locked(name) != NULL;
    pthread_mutex_unlock(&registry_lock);
    if (dup) {
        error_setg(errp, "NBD server already has export named '%s'", name);
        return NULL;
    }
    return check_bitmaps(o, errp) ? bs : NULL;
}

/* As qsd 7.2: flush, FUA and cache always; multi-conn unless the server
 * allows a single connection; trim and the zero commands only when
 * writable. */
static uint16_t export_flags(bool writable)
{
    uint16_t flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
                     NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_CACHE;
    if (server_max_connections != 1) {
        flags |= NBD_FLAG_CAN_MULTI_CONN;
    }
    if (writable) {
        flags |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
                 NBD_FLAG_SEND_FAST_ZERO;
    } else {
        flags |= NBD_FLAG_READ_ONLY;
    }
    return flags;
}

bool block_export_add(NbdExportOptions *o, Error **errp)
{
    const char *name = o->name ? o->name : o->node_name;
    BlockNode *bs = export_check(o, name, errp);
    if (!bs) {
        return false;
    }
    NbdExport *exp = calloc(1, sizeof(*exp));
    if (!exp || !(exp->id = strdup(o->id)) || !(exp->name = strdup(name)) ||
        (o->description && !(exp->description = strdup(o->description)))) {
        error_setg(errp, "Out of memory creating export '%s'", o->id);
        if (exp) {
            export_free_unlinked(exp);
        }
        return false;
    }
    BlockUserOptions uo = {
        .id = o->id,
        .kind = BLOCK_USER_EXPORT,
        .perm = export_perm(o->writable),
        .shared = EXPORT_SHARED_PERM,
        .werror = o->werror,
        .rerror = o->rerror,
        .origin = BLOCK_ORIGIN_CLIENT,
        .acct = o->acct,
    };
    o->acct = NULL;    /* the user owns it now, also on failure */
    exp->user = block_user_new(bs, &uo, errp);
    if (!exp->user) {
        export_free_unlinked(exp);
        return false;
    }
    /* The node's size: protocol nodes count whole 512-byte sectors,
     * as QEMU's do, so a 1000-byte raw file is a 1024-byte export, the
     * same as qemu-storage-daemon's. */
    exp->size = block_node_size(bs);
    exp->writable = o->writable;
    exp->writethrough = o->writethrough;
    exp->allocation_depth = o->allocation_depth;
    exp->flags = export_flags(o->writable);
    exp->refcnt = 1;

    LOCK_GUARD(&registry_lock);
    exp->next = exports;
    exports = exp;
    return true;
}

bool block_export_del(json_t *args_in, Error **errp)
{
    CLEANUP_FREE char *id = NULL;
    int mode = 0;
    static const char *const modes[] = { "safe", "hard", NULL };
    json_t *args = json_deep_copy(args_in);
    const char *id_arg;
    bool ok = false;

    if (!args || !json_is_object(args)) {
        error_setg(errp, "Invalid parameter type, expected: object");
        goto out;
    }
    if (!opt_get_required_str(args, "id", &id_arg, errp) ||
        !opt_get_enum(args, "mode", modes, 0, &mode, errp)) {
        goto out;
    }
    id = strdup(id_arg);
    json_object_del(args, "id");
    json_object_del(args, "mode");
    if (!id || !opt_check_empty(args, errp)) {
        goto out;
    }

    pthread_mutex_lock(&registry_lock);
    NbdExport *exp = find_by_id_locked(id);
    if (!exp) {
        pthread_mutex_unlock(&registry_lock);
        error_setg(errp, "Export '%s' is not found", id);
        goto out;
    }
    if (exp->shutting_down) {
        pthread_mutex_unlock(&registry_lock);
        error_setg(errp, "Export '%s' is already shutting down", id);
        goto out;
    }
    if (mode == 0 && exp->clients) {
        pthread_mutex_unlock(&registry_lock);
        error_setg(errp, "export '%s' still in use", id);
        goto out;
    }
    export_shutdown_locked(exp);
    bool has_clients = exp->clients != NULL;
    export_put_unlock(exp);
    ok = true;

    if (has_clients) {
        /* Give disconnected clients a moment to leave so that, as with
         * qsd, the export is usually gone when the command returns;
         * otherwise it stays listed as shutting down until they do. */
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 2;
        pthread_mutex_lock(&registry_lock);
        for (;;) {
            bool present = false;
            for (NbdExport *e = exports; e; e = e->next) {
                present |= strcmp(e->id, id) == 0 && e->shutting_down;
            }
            if ((!present && pending_frees == 0) ||
                pthread_cond_timedwait(&registry_cond, &registry_lock,
                                       &deadline) == ETIMEDOUT) {
                break;
            }
        }
        pthread_mutex_unlock(&registry_lock);
    }
out:
    json_decref(args);
    return ok;
}

json_t *block_export_query(void)
{
    json_t *list = json_array();
    LOCK_GUARD(&registry_lock);
    for (NbdExport *e = exports; e; e = e->next) {
        json_t *entry = json_pack("{s:s, s:s, s:s, s:b}",
                                  "type", "nbd", "id", e->id, "node-name",
                                  block_node_name(nbd_export_node(e)),
                                  "shutting-down", e->shutting_down);
        export_query_policy(e->user, entry);
        json_array_append_new(list, entry);
    }
    return list;
}

bool block_export_uses_node(const char *node_name)
{
    LOCK_GUARD(&registry_lock);
    for (NbdExport *e = exports; e; e = e->next) {
        if (strcmp(block_node_name(nbd_export_node(e)), node_name) == 0) {
            return true;
        }
    }
    return false;
}

void nbd_export_foreach_stats(NbdExportStatsFn *fn, void *opaque)
{
    size_t n = 0;
    NbdExport **list = nbd_export_list(&n);
    for (size_t i = 0; i < n; i++) {
        fn(list[i]->id, nbd_export_node(list[i]),
           block_user_acct(list[i]->user), opaque);
    }
    nbd_export_list_free(list, n);
}

bool nbd_export_resume(const char *id, Error **errp)
{
    size_t n = 0;
    bool found = false;
    NbdExport **list = nbd_export_list(&n);
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(list[i]->id, id)) {
            found = true;
            block_user_resume(list[i]->user);
        }
    }
    nbd_export_list_free(list, n);
    if (!found) {
        error_setg(errp, "Export '%s' is not found", id);
    }
    return found;
}

/* How long a failed request's worker gets to send its reply after it
 * has left the queue, before the server closes the connections. */
#define REPLY_GRACE_NS (100 * 1000 * 1000L)

void nbd_export_fail_held(void)
{
    size_t n = 0;
    bool any = false;
    NbdExport **list = nbd_export_list(&n);
    for (size_t i = 0; i < n; i++) {
        size_t waiting = block_user_stop(list[i]->user);
        if (waiting) {
            log_warn("export '%s': stopping with %zu request(s) held; they "
                     "fail with an error", list[i]->id, waiting);
            any = true;
        }
    }
    for (size_t i = 0; i < n; i++) {
        block_user_wait_unheld(list[i]->user);
    }
    nbd_export_list_free(list, n);
    if (any) {
        struct timespec ts = { 0, REPLY_GRACE_NS };
        nanosleep(&ts, NULL);
    }
}
