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
#include "qmp/qapi-schema.h"
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

/* blockdev-add: QEMU's BlockdevOptions (every driver QEMU has), and
 * strata's image-params (checked by image_params_set_json). */
static const QmpArgSpec blockdev_add_args[] = {
    QMP_ARG_INHERIT(qapi_BlockdevOptions),
    { "image-params", QMP_ARG_OBJECT, .optional = true },
    { NULL },
};

/* Every "driver" in opts (checked BlockdevOptions: the node's and those
 * of children given inline) is one strata has. */
static bool drivers_supported(json_t *opts, Error **errp)
{
    json_t *driver = json_object_get(opts, "driver");
    if (json_is_string(driver) &&
        !block_driver_known(json_string_value(driver))) {
        error_setg(errp, "Block driver '%s' is not supported by strata",
                   json_string_value(driver));
        return false;
    }
    const char *key;
    json_t *v;
    json_object_foreach(opts, key, v) {
        if (json_is_object(v) && !drivers_supported(v, errp)) {
            return false;
        }
        if (json_is_array(v)) {
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e) {
                if (json_is_object(e) && !drivers_supported(e, errp)) {
                    return false;
                }
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

/* blockdev-add with checked options. */
static bool blockdev_add(json_t *opts, Error **errp)
{
    /* As QEMU, after the arguments. */
    if (!json_object_get(opts, "node-name")) {
        error_setg(errp, "'node-name' must be specified for the root node");
        return false;
    }
    if (!drivers_supported(opts, errp)) {
        return false;
    }
    json_t *copy = json_deep_copy(opts);
    if (!copy) {
        error_setg(errp, "Out of memory");
        return false;
    }
    CLEANUP_IMAGE_PARAMS ImageParams ov;
    image_params_init(&ov);
    if (!take_param_overrides(copy, &ov, errp)) {
        json_decref(copy);
        return false;
    }
    json_t *name = json_object_get(copy, "node-name");
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

bool qmp_blockdev_add(json_t *opts, bool keyval, Error **errp)
{
    bool ok = keyval ? qmp_args_check_keyval(opts, "", blockdev_add_args,
                                             errp)
                     : qmp_args_check(opts, "", blockdev_add_args, errp);
    return ok && blockdev_add(opts, errp);
}

static json_t *cmd_blockdev_add(json_t *args, Error **errp)
{
    if (!blockdev_add(args, errp)) {
        return NULL;
    }
    return json_object();
}

static json_t *cmd_blockdev_del(json_t *args, Error **errp)
{
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
    NodeListCtx ctx = { .list = json_array(),
                        .flat = qmp_arg_bool(args, "flat", false) };
    block_graph_foreach(add_node_info, &ctx);
    return ctx.list;
}

void qmp_register_block_commands(void)
{
    qmp_register_command_args("blockdev-add", cmd_blockdev_add,
                              blockdev_add_args);
    qmp_register_command_args("blockdev-del", cmd_blockdev_del,
                              qapi_blockdev_del_arg);
    qmp_register_command_args("query-named-block-nodes",
                              cmd_query_named_block_nodes,
                              qapi_query_named_block_nodes_arg);
}
