/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the node graph: names, registration, references, events.
 *
 * Nodes are kept in creation order in a singly linked list under the
 * graph rwlock.  Lookups and foreach take it for reading; insertion and
 * removal for writing.  The I/O path never touches it.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_core.h"
#include "util/cleanup.h"
#include "util/log.h"

/* QEMU keeps node names in char[32]. */
#define NODE_NAME_MAX 31

static pthread_rwlock_t graph_lock = PTHREAD_RWLOCK_INITIALIZER;
static BlockNode *graph_head;
static BlockNode *graph_tail;
static atomic_uint_fast64_t implicit_counter;

static _Atomic(BlockEventSink *) event_sink;

bool block_node_name_valid(const char *name, Error **errp)
{
    if (strlen(name) > NODE_NAME_MAX) {
        error_setg(errp, "Node name too long");
        return false;
    }
    bool ok = isalpha((unsigned char)name[0]);
    for (const char *p = name; ok && *p; p++) {
        ok = isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.';
    }
    if (!ok) {
        error_setg(errp, "Invalid node-name: '%s'", name);
        return false;
    }
    return true;
}

BlockNode *block_node_alloc(const BlockDriver *drv)
{
    BlockNode *bs = calloc(1, sizeof(*bs));
    if (!bs) {
        return NULL;
    }
    if (drv->state_size) {
        bs->opaque = calloc(1, drv->state_size);
        if (!bs->opaque) {
            free(bs);
            return NULL;
        }
    }
    bs->drv = drv;
    bs->perm_seq = block_perm_next_seq();
    bs->request_alignment = 1;
    atomic_init(&bs->refcnt, 1);
    pthread_mutex_init(&bs->drain_lock, NULL);
    pthread_cond_init(&bs->drain_cond, NULL);
    if (!block_io_node_init(bs)) {
        pthread_mutex_destroy(&bs->drain_lock);
        pthread_cond_destroy(&bs->drain_cond);
        free(bs->opaque);
        free(bs);
        return NULL;
    }
    return bs;
}

static void node_release(BlockNode *bs)
{
    /* A user that never gave its permissions back (the tools' own use
     * of the image they opened) must not outlive the node. */
    block_perm_forget_node(bs);
    if (bs->file) {
        block_node_detach_child(bs->file);
        bs->file = NULL;
    }
    if (bs->backing) {
        block_node_detach_child(bs->backing);
        bs->backing = NULL;
    }
    block_io_node_cleanup(bs);
    pthread_mutex_destroy(&bs->drain_lock);
    pthread_cond_destroy(&bs->drain_cond);
    free(bs->node_name);
    block_naming_free(bs);
    free(bs->filename);
    free(bs->backing_file);
    free(bs->backing_format);
    free(bs->opaque);
    free(bs);
}

void block_node_free_unregistered(BlockNode *bs)
{
    if (bs) {
        node_release(bs);
    }
}

static BlockNode *find_locked(const char *name)
{
    for (BlockNode *bs = graph_head; bs; bs = bs->graph_next) {
        if (bs->node_name && strcmp(bs->node_name, name) == 0) {
            return bs;
        }
    }
    return NULL;
}

bool block_graph_insert(BlockNode *bs, const char *node_name, Error **errp)
{
    WRLOCK_GUARD(&graph_lock);
    char *name;
    if (node_name) {
        if (find_locked(node_name)) {
            error_setg(errp, "Duplicate nodes with node-name='%s'", node_name);
            return false;
        }
        name = strdup(node_name);
    } else {
        /* Implicit names start with '#', which users cannot use. */
        char buf[40];
        do {
            snprintf(buf, sizeof(buf), "#block%03" PRIuFAST64,
                     atomic_fetch_add(&implicit_counter, 1) + 1);
        } while (find_locked(buf));
        name = strdup(buf);
        bs->implicit_name = true;
    }
    if (!name) {
        error_setg(errp, "Out of memory");
        return false;
    }
    free(bs->node_name);
    bs->node_name = name;
    bs->graph_next = NULL;
    if (graph_tail) {
        graph_tail->graph_next = bs;
    } else {
        graph_head = bs;
    }
    graph_tail = bs;
    return true;
}

static void graph_remove(BlockNode *bs)
{
    WRLOCK_GUARD(&graph_lock);
    BlockNode *prev = NULL;
    for (BlockNode *cur = graph_head; cur; prev = cur, cur = cur->graph_next) {
        if (cur != bs) {
            continue;
        }
        if (prev) {
            prev->graph_next = cur->graph_next;
        } else {
            graph_head = cur->graph_next;
        }
        if (graph_tail == cur) {
            graph_tail = prev;
        }
        cur->graph_next = NULL;
        return;
    }
}

BlockNode *block_node_find(const char *node_name)
{
    if (!node_name) {
        return NULL;
    }
    RDLOCK_GUARD(&graph_lock);
    return find_locked(node_name);
}

void block_node_ref(BlockNode *bs)
{
    atomic_fetch_add(&bs->refcnt, 1);
}

static atomic_bool quiet_close;

void block_set_quiet_close(bool quiet)
{
    atomic_store(&quiet_close, quiet);
}

void block_node_unref(BlockNode *bs)
{
    if (!bs || atomic_fetch_sub(&bs->refcnt, 1) != 1) {
        return;
    }
    graph_remove(bs);
    block_drain_begin(bs);
    if (!bs->read_only) {
        int ret = block_flush_nogate(bs);
        /* A daemon's operator hears of it; qemu-img closes silently,
         * and strata-img must print what it prints. */
        if (ret < 0) {
            log_msg(atomic_load(&quiet_close) ? LOG_INFO : LOG_WARN,
                    "Failed to flush node '%s' while closing it: %s",
                    bs->node_name ? bs->node_name : "?", strerror(-ret));
        }
    }
    if (bs->drv->close) {
        bs->drv->close(bs);
    }
    block_drain_end(bs);
    node_release(bs);
}

void block_graph_wrlock(void)
{
    pthread_rwlock_wrlock(&graph_lock);
}

void block_graph_unlock(void)
{
    pthread_rwlock_unlock(&graph_lock);
}

void block_node_attach_child(BlockNode *child)
{
    block_node_ref(child);
    __atomic_add_fetch(&child->parents, 1, __ATOMIC_SEQ_CST);
}

void block_node_detach_child(BlockNode *child)
{
    __atomic_sub_fetch(&child->parents, 1, __ATOMIC_SEQ_CST);
    block_node_unref(child);
}

const char *block_node_name(const BlockNode *bs)
{
    return bs->node_name ? bs->node_name : "";
}

const char *block_node_driver_name(const BlockNode *bs)
{
    return bs->drv->format_name;
}

uint64_t block_node_size(const BlockNode *bs)
{
    return atomic_load(&((BlockNode *)bs)->total_size);
}

void block_graph_foreach(bool (*fn)(BlockNode *bs, void *opaque), void *opaque)
{
    RDLOCK_GUARD(&graph_lock);
    for (BlockNode *bs = graph_head; bs; bs = bs->graph_next) {
        if (!fn(bs, opaque)) {
            break;
        }
    }
}

void block_set_event_sink(BlockEventSink *sink)
{
    atomic_store(&event_sink, sink);
}

void block_emit_event(const char *event, json_t *data)
{
    BlockEventSink *sink = atomic_load(&event_sink);
    if (sink) {
        sink(event, data);
    } else {
        json_decref(data);
    }
}
