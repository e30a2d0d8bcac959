/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP block graph commands: blockdev-add, blockdev-del,
 * query-named-block-nodes.  Nodes added here or by --blockdev are
 * "owned by the monitor": the monitor holds a reference until
 * blockdev-del or shutdown. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "block/image-params.h"
#include "jobs/image-params-apply.h"
#include "jobs/job.h"
#include "nbd/nbd.h"
#include "qmp/block-info.h"
#include "qmp/monitor.h"
#include "qmp/qmp-args.h"
#include "qmp/qmp-internal.h"
#include "util/cleanup.h"
#include "util/log.h"

typedef struct OwnedNode {
    BlockNode *bs;
    /* The image parameters in force: the image's, then blockdev-add's
     * image-params, then live changes (block-set-image-params). */
    ImageParams params;
    struct OwnedNode *next;
} OwnedNode;

/* Main thread only. */
static OwnedNode *owned_nodes;

static OwnedNode **find_owned(BlockNode *bs)
{
    OwnedNode **p = &owned_nodes;
    while (*p && (*p)->bs != bs) {
        p = &(*p)->next;
    }
    return p;
}

static const char *const discard_names[] = { "ignore", "unmap", "off", "on",
                                             NULL };
static const char *const detect_zeroes_names[] = { "off", "on", "unmap",
                                                   NULL };

static const QmpArgSpec cache_members[] = {
    { "direct", QMP_ARG_BOOL, .optional = true },
    { "no-flush", QMP_ARG_BOOL, .optional = true },
    { NULL },
};

/* BlockdevOptions' common members, in QEMU's order.  Driver members are
 * checked by the driver's open. */
static const QmpArgSpec common_members[] = {
    { "driver", QMP_ARG_STR },
    { "node-name", QMP_ARG_STR, .optional = true },
    { "discard", QMP_ARG_ENUM, .optional = true, .choices = discard_names },
    { "cache", QMP_ARG_OBJECT, .optional = true, .nested = cache_members },
    { "read-only", QMP_ARG_BOOL, .optional = true },
    { "auto-read-only", QMP_ARG_BOOL, .optional = true },
    { "force-share", QMP_ARG_BOOL, .optional = true },
    { "detect-zeroes", QMP_ARG_ENUM, .optional = true,
      .choices = detect_zeroes_names },
    { NULL },
};

static bool check_common(json_t *opts, const char *prefix, bool strict,
                         Error **errp)
{
    char path[256];
    for (const QmpArgSpec *s = common_members; s->name; s++) {
        json_t *v = json_object_get(opts, s->name);
        snprintf(path, sizeof(path), "%s%s", prefix, s->name);
        if (!v) {
            if (!s->optional) {
                error_setg(errp, "Parameter '%s' is missing", path);
                return false;
            }
            continue;
        }
        /* Command-line keyval values are strings ("on", also inside
         * "cache"); their types are checked when the node is opened. */
        bool lenient = !strict && s->type != QMP_ARG_ENUM
                       && (json_is_string(v) || json_is_object(v));
        if (!lenient && !qmp_args_check_value(v, path, s, errp)) {
            return false;
        }
        if (!strcmp(s->name, "driver")
            && !block_driver_known(json_string_value(v))) {
            error_setg(errp, "Parameter '%s' does not accept value '%s'",
                       path, json_string_value(v));
            return false;
        }
    }
    return true;
}

/* Checks the common members of opts and of children given inline with
 * QMP's texts; the block layer interprets them. */
static bool prepare_options(json_t *opts, const char *prefix, bool strict,
                            Error **errp)
{
    if (!check_common(opts, prefix, strict, errp)) {
        return false;
    }
    static const char *const children[] = { "file", "backing" };
    for (size_t i = 0; i < ARRAY_SIZE(children); i++) {
        json_t *child = json_object_get(opts, children[i]);
        if (json_is_object(child)) {
            char sub[256];
            snprintf(sub, sizeof(sub), "%s%s.", prefix, children[i]);
            if (!prepare_options(child, sub, strict, errp)) {
                return false;
            }
        }
    }
    return true;
}

/* blockdev-add's "image-params" (strata): the image's parameters to
 * use instead of the stored ones, key by key, as strings (or booleans
 * for on/off, integers for numbers).  Taken out of opts; an l2-cache-size
 * becomes the qcow2 option unless the cache is sized there already. */
static bool take_param_overrides(json_t *opts, ImageParams *ov, Error **errp)
{
    json_t *p = json_object_get(opts, "image-params");
    if (!p) {
        return true;
    }
    if (!image_params_set_json(ov, p, "image-params", errp)) {
        return false;
    }
    const char *l2 = image_params_get(ov, "l2-cache-size");
    const char *driver = json_string_value(json_object_get(opts, "driver"));
    if (l2 && driver && !strcmp(driver, "qcow2") &&
        !json_object_get(opts, "l2-cache-size") &&
        !json_object_get(opts, "cache-size")) {
        json_object_set_new(opts, "l2-cache-size",
                            json_integer((json_int_t)strtoll(l2, NULL, 10)));
    }
    json_object_del(opts, "image-params");
    return true;
}

/* The image's stored parameters, then the overrides. */
static void effective_params(BlockNode *bs, const ImageParams *ov,
                             ImageParams *out)
{
    Error *err = NULL;
    if (!block_node_has_image_params(bs) ||
        !block_get_image_params(bs, out, &err)) {
        if (err) {
            log_warn("image parameters of '%s' ignored: %s",
                     block_node_name(bs), error_get_pretty(err));
            error_free(err);
        }
        image_params_init(out);
    }
    const char *key;
    json_t *v;
    json_object_foreach(ov->kv, key, v) {
        json_object_set(out->kv, key, v);
    }
}

ImageParams *qmp_node_params(BlockNode *bs)
{
    OwnedNode **p = find_owned(bs);
    return *p ? &(*p)->params : NULL;
}

bool qmp_blockdev_add(json_t *opts, bool strict_types, Error **errp)
{
    json_t *copy = json_deep_copy(opts);
    if (!copy) {
        error_setg(errp, "Out of memory");
        return false;
    }
    CLEANUP_IMAGE_PARAMS ImageParams ov;
    image_params_init(&ov);
    if (!take_param_overrides(copy, &ov, errp) ||
        !prepare_options(copy, "", strict_types, errp)) {
        json_decref(copy);
        return false;
    }
    json_t *name = json_object_get(copy, "node-name");
    if (!name) {
        json_decref(copy);
        error_setg(errp, "'node-name' must be specified for the root node");
        return false;
    }
    if (block_node_find(json_string_value(name))) {
        error_setg(errp, "Duplicate nodes with node-name='%s'",
                   json_string_value(name));
        json_decref(copy);
        return false;
    }
    OwnedNode *own = calloc(1, sizeof(*own));
    if (!own) {
        json_decref(copy);
        error_setg(errp, "Out of memory");
        return false;
    }
    own->bs = block_node_open(copy, errp);
    json_decref(copy);
    if (!own->bs) {
        free(own);
        return false;
    }
    effective_params(own->bs, &ov, &own->params);
    if (!image_params_apply_on_open(own->bs, &own->params, errp)) {
        block_node_set_copy_on_read(own->bs, false, NULL);
        image_params_free(&own->params);
        block_node_unref(own->bs);
        free(own);
        return false;
    }
    own->next = owned_nodes;
    owned_nodes = own;
    return true;
}

void qmp_blockdev_release_all(void)
{
    while (owned_nodes) {
        OwnedNode *own = owned_nodes;
        owned_nodes = own->next;
        image_params_free(&own->params);
        block_node_unref(own->bs);
        free(own);
    }
}

static json_t *cmd_blockdev_add(json_t *args, Error **errp)
{
    if (!qmp_blockdev_add(args, true, errp)) {
        return NULL;
    }
    return json_object();
}

static const QmpArgSpec blockdev_del_args[] = {
    { "node-name", QMP_ARG_STR },
    { NULL },
};

static json_t *cmd_blockdev_del(json_t *args, Error **errp)
{
    if (!qmp_args_check(args, "", blockdev_del_args, errp)) {
        return NULL;
    }
    const char *name = qmp_arg_str(args, "node-name", NULL);
    BlockNode *bs = block_node_find(name);
    if (!bs) {
        error_setg(errp, "Failed to find node with node-name='%s'", name);
        return NULL;
    }
    /* The same checks, in the same order, as QEMU's blockdev-del. */
    if (block_export_uses_node(name)) {
        error_setg(errp, "Node %s is in use", name);
        return NULL;
    }
    /* A job's nodes are blocked for deletion (QEMU's op blocker). */
    if (job_node_busy(bs, errp) || qmp_node_backing_blocked(bs, errp)) {
        return NULL;
    }
    OwnedNode **p = find_owned(bs);
    if (!*p) {
        error_setg(errp, "Node %s is not owned by the monitor", name);
        return NULL;
    }
    if (block_node_in_use(bs)) {
        error_setg(errp, "Block device %s is in use", name);
        return NULL;
    }
    OwnedNode *own = *p;
    *p = own->next;
    image_params_free(&own->params);
    block_node_unref(own->bs);
    free(own);
    return json_object();
}

static const QmpArgSpec query_nodes_args[] = {
    { "flat", QMP_ARG_BOOL, .optional = true },
    { NULL },
};

typedef struct NodeListCtx {
    json_t *list;
    bool flat;
} NodeListCtx;

static bool add_node_info(BlockNode *bs, void *opaque)
{
    NodeListCtx *ctx = opaque;
    json_array_append_new(ctx->list, qmp_block_device_info(bs, ctx->flat));
    return true;
}

static json_t *cmd_query_named_block_nodes(json_t *args, Error **errp)
{
    if (!qmp_args_check(args, "", query_nodes_args, errp)) {
        return NULL;
    }
    NodeListCtx ctx = { .list = json_array(),
                        .flat = qmp_arg_bool(args, "flat", false) };
    block_graph_foreach(add_node_info, &ctx);
    return ctx.list;
}

void qmp_register_block_commands(void)
{
    qmp_register_command("blockdev-add", cmd_blockdev_add);
    qmp_register_command("blockdev-del", cmd_blockdev_del);
    qmp_register_command("query-named-block-nodes",
                         cmd_query_named_block_nodes);
}
