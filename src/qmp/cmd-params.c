/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP commands of image parameters (docs/image-params.md):
 * query-image-params reads what an image stores and what is in force on
 * its node; block-set-image-params changes them live and, with
 * persist, in the image. */
#include <string.h>

#include "block/block.h"
#include "block/image-params.h"
#include "jobs/image-params-apply.h"
#include "jobs/job.h"
#include "qmp/qmp-args.h"
#include "qmp/qmp-internal.h"
#include "util/cleanup.h"

static BlockNode *find_node(json_t *args, Error **errp)
{
    const char *name = qmp_arg_str(args, "node-name", "");
    BlockNode *bs = block_node_find(name);
    if (!bs) {
        error_setg(errp, "Cannot find device='' nor node-name='%s'", name);
    }
    return bs;
}

static const QmpArgSpec query_args[] = {
    { "node-name", QMP_ARG_STR },
    { NULL },
};

static json_t *cmd_query_image_params(json_t *args, Error **errp)
{
    BlockNode *bs = find_node(args, errp);
    if (!bs) {
        return NULL;
    }
    json_t *r = json_object();
    if (block_node_has_image_params(bs)) {
        ImageParams stored;
        Error *err = NULL;
        if (block_get_image_params(bs, &stored, &err)) {
            json_object_set_new(r, "stored", image_params_to_json(&stored));
            image_params_free(&stored);
        } else {
            json_object_set_new(r, "stored-error",
                                json_string(error_get_pretty(err)));
            error_free(err);
        }
    }
    ImageParams *in_force = qmp_node_params(bs);
    if (in_force) {
        json_object_set_new(r, "in-force", image_params_to_json(in_force));
    }
    json_object_set_new(r, "copy-on-read",
                        json_boolean(block_node_copy_on_read(bs)));
    char id[160];
    image_params_prefetch_id(bs, id, sizeof(id));
    if (job_find(id)) {
        json_object_set_new(r, "prefetch-job", json_string(id));
    }
    return r;
}

static const QmpArgSpec set_args[] = {
    { "node-name", QMP_ARG_STR },
    { "params", QMP_ARG_OBJECT },
    { "persist", QMP_ARG_BOOL, .optional = true },
    { NULL },
};

static json_t *cmd_block_set_image_params(json_t *args, Error **errp)
{
    BlockNode *bs = find_node(args, errp);
    if (!bs) {
        return NULL;
    }
    ImageParams *in_force = qmp_node_params(bs);
    if (!in_force) {
        error_setg(errp, "Node '%s' was not added with blockdev-add",
                   block_node_name(bs));
        return NULL;
    }
    CLEANUP_IMAGE_PARAMS ImageParams changes;
    image_params_init(&changes);
    if (!image_params_set_json(&changes, json_object_get(args, "params"),
                               "params", errp)) {
        return NULL;
    }
    bool persist = qmp_arg_bool(args, "persist", false);
    /* Persisting is checked before anything changes: all or nothing. */
    CLEANUP_IMAGE_PARAMS ImageParams stored = { 0 };
    if (persist) {
        if (!block_node_has_image_params(bs)) {
            error_setg(errp, "Image format '%s' does not store image "
                       "parameters", block_node_driver_name(bs));
            return NULL;
        }
        if (block_node_read_only(bs)) {
            error_setg(errp, "Node '%s' is read-only: its parameters cannot "
                       "be stored", block_node_name(bs));
            return NULL;
        }
        if (!block_get_image_params(bs, &stored, errp)) {
            return NULL;
        }
    }
    CLEANUP_IMAGE_PARAMS ImageParams effective;
    if (!image_params_copy(&effective, in_force)) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(changes.kv, key, v) {
        json_object_set(effective.kv, key, v);
        if (persist) {
            json_object_set(stored.kv, key, v);
        }
    }
    if (!image_params_apply_live(bs, &effective, &changes, errp)) {
        return NULL;
    }
    json_object_foreach(changes.kv, key, v) {
        json_object_set(in_force->kv, key, v);
    }
    if (persist && !block_set_image_params(bs, &stored, errp)) {
        return NULL;
    }
    return json_object();
}

void qmp_register_params_commands(void)
{
    qmp_register_command_args("query-image-params", cmd_query_image_params,
                              query_args);
    qmp_register_command_args("block-set-image-params",
                              cmd_block_set_image_params, set_args);
}
