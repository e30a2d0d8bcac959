/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img - opening a backing chain with chosen layers writable.
 *
 * block_open_image() opens the backing chain read-only, which is what
 * most commands want.  commit must write into a backing layer, so the
 * chain is first discovered layer by layer (each opened alone, which
 * also catches loops) and then opened in one go from blockdev-style
 * options naming every layer with its own read-only setting.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "strata-img/img-chain.h"
#include "strata-img/img-common.h"
#include "util/cleanup.h"
#include "util/error.h"

void img_chain_free(ImgChain *chain)
{
    if (!chain) {
        return;
    }
    for (int i = 0; i < chain->count; i++) {
        free(chain->layers[i].filename);
        free(chain->layers[i].fmt);
        free(chain->layers[i].backing_name);
    }
    free(chain->layers);
    free(chain);
}

static bool chain_add(ImgChain *chain, const char *filename, const char *fmt,
                      const char *backing_name)
{
    ImgChainLayer *l = realloc(chain->layers,
                               (chain->count + 1) * sizeof(*l));
    if (!l) {
        return false;
    }
    chain->layers = l;
    l[chain->count] = (ImgChainLayer) {
        .filename = strdup(filename),
        .fmt = strdup(fmt),
        .backing_name = backing_name ? strdup(backing_name) : NULL,
    };
    chain->count++;
    return true;
}

ImgChain *img_discover_chain(const char *filename, const char *fmt,
                             int flags)
{
    ImgChain *chain = calloc(1, sizeof(*chain));
    CLEANUP_FREE char *cur = strdup(filename);
    CLEANUP_FREE char *cur_fmt = fmt ? strdup(fmt) : NULL;

    while (cur) {
        for (int i = 0; i < chain->count; i++) {
            if (strcmp(chain->layers[i].filename, cur) == 0) {
                error_report("Backing file '%s' creates an infinite loop.",
                             cur);
                img_chain_free(chain);
                return NULL;
            }
        }
        bool opts_name = img_image_opts();
        BlockNode *bs = img_open(cur, cur_fmt,
                                 (flags & BLOCK_O_FORCE_SHARE) |
                                     BLOCK_O_NO_BACKING, true);
        /* An option list (--image-opts) names the top image only; the
         * layer is then known by the name that reopens it. */
        img_set_image_opts(false);
        if (bs && opts_name && block_node_filename(bs)) {
            free(cur);
            cur = strdup(block_node_filename(bs));
        }
        if (!bs || !cur) {
            if (bs) {
                block_node_unref(bs);
            }
            img_chain_free(chain);
            return NULL;
        }
        char *next = NULL;
        char *next_fmt = NULL;
        const char *backing_file = block_node_backing_file(bs);
        const char *backing_format = block_node_backing_format(bs);
        if (backing_file && backing_file[0]) {
            next = img_path_combine(cur, backing_file);
            if (!next) {
                next = strdup(backing_file);
            }
            next_fmt = backing_format ? strdup(backing_format) : NULL;
        }
        bool ok = chain_add(chain, cur, block_node_driver_name(bs),
                            backing_file);
        block_node_unref(bs);
        free(cur);
        free(cur_fmt);
        cur = next;
        cur_fmt = next_fmt;
        if (!ok) {
            error_report("Out of memory");
            img_chain_free(chain);
            return NULL;
        }
    }
    return chain;
}

BlockNode *img_open_chain(const ImgChain *chain, uint64_t rw_mask,
                          int count)
{
    json_t *opts = NULL;
    Error *err = NULL;

    if (count <= 0 || count > chain->count) {
        count = chain->count;
    }
    /* Built bottom up: each layer wraps the one below as "backing". */
    for (int i = count - 1; i >= 0; i--) {
        const ImgChainLayer *l = &chain->layers[i];
        /* Each layer is opened as its name says (json:, file:, ...). */
        json_t *layer = block_image_options(l->filename, l->fmt, &err);
        if (!layer) {
            json_decref(opts);
            error_prepend(&err, "Could not open '%s': ", l->filename);
            error_report_err(err);
            return NULL;
        }
        json_object_set_new(layer, "read-only",
                            json_boolean(!(rw_mask & (1ull << i))));
        /* discard=unmap as qemu-img commit opens its chain: zeroes
         * written with unmap free clusters, and what is freed is
         * discarded in the file. */
        json_object_set_new(layer, "discard", json_string("unmap"));
        if (opts) {
            json_object_set_new(layer, "backing", opts);
        } else if (i < chain->count - 1) {
            /* Cut the chain here: the layer has a backing file that the
             * caller does not want opened. */
            json_object_set_new(layer, "backing", json_null());
        }
        opts = layer;
    }
    BlockNode *bs = block_node_open(opts, &err);
    json_decref(opts);
    if (!bs) {
        error_prepend(&err, "Could not open '%s': ",
                      chain->layers[0].filename);
        error_report_err(err);
        return NULL;
    }
    return bs;
}

/* A colon before any slash: a protocol ("nbd:...", "nbd+unix://..."). */
static bool has_protocol(const char *path)
{
    return path[strcspn(path, ":/")] == ':';
}

/* Whether name designates the backing file that overlay records as
 * recorded, by qemu-img's rule (bdrv_find_backing_image): protocol names
 * compare as spelled, with the recorded name or the full one; a path
 * counts relative to the overlay's directory (not the working
 * directory), and both sides must resolve to the same existing file. */
static bool backing_name_matches(const char *overlay, const char *recorded,
                                 const char *full, const char *name)
{
    if (has_protocol(name) || has_protocol(recorded)) {
        return strcmp(name, recorded) == 0 || strcmp(name, full) == 0;
    }
    CLEANUP_FREE char *joined = name[0] ? img_path_combine(overlay, name)
                                        : NULL;
    CLEANUP_FREE char *want = joined ? realpath(joined, NULL) : NULL;
    CLEANUP_FREE char *have = want ? realpath(full, NULL) : NULL;
    return have && strcmp(have, want) == 0;
}

int img_chain_find(const ImgChain *chain, const char *name)
{
    for (int i = 1; i < chain->count; i++) {
        const ImgChainLayer *parent = &chain->layers[i - 1];
        if (parent->backing_name &&
            backing_name_matches(parent->filename, parent->backing_name,
                                 chain->layers[i].filename, name)) {
            return i;
        }
    }
    return -1;
}
