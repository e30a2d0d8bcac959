/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - node file names as QEMU's bdrv_refresh_filename makes them.
 *
 * A node's `filename` is a plain name when opening that name (probing
 * the format) rebuilds the same node, else "json:" and the options that
 * do.  QEMU decides with three things, kept here per node: the "strong"
 * options the user gave (those that change what the node reads: raw's
 * offset and size, blkdebug's rules; "driver" and "filename" are always
 * listed but never force JSON), whether the backing node differs from
 * the one the image header names, and the exact name of the protocol
 * node below.  Tools and management layers compare these strings with
 * QEMU's, so the key order of the JSON is QEMU's too (util/qdict-json.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_core.h"
#include "util/cleanup.h"
#include "util/qdict-json.h"

/* QEMU caps BlockDriverState.filename at PATH_MAX bytes. */
#define FILENAME_MAX_LEN 4096

struct BlockNodeNaming {
    json_t *strong;          /* "driver", "filename"?, strong options (flat) */
    bool has_strong;         /* strong options besides driver and filename */
    char *opened_filename;   /* the "filename" option, for protocol nodes */
    json_t *full_open_options;
    char *exact_filename;    /* plain name, or NULL when only JSON will do */
    char *auto_backing_file; /* the backing the image asked for */
    bool backing_ignored;    /* opened without backing (qemu-img's NO_IO) */
};

static const char *child_key(const BlockNode *bs)
{
    return bs->drv->file_child_option ? bs->drv->file_child_option : "file";
}

/* blockdev-add and --blockdev go through QAPI, which stores numbers and
 * booleans typed even when keyval syntax gave them as text. */
static json_t *typed_value(json_t *v, bool typed)
{
    if (!typed || !json_is_string(v)) {
        return json_incref(v);
    }
    const char *s = json_string_value(v);
    if (strcmp(s, "on") == 0 || strcmp(s, "true") == 0) {
        return json_true();
    }
    if (strcmp(s, "off") == 0 || strcmp(s, "false") == 0) {
        return json_false();
    }
    const char *p = s + (*s == '-');
    if (*p && strspn(p, "0123456789") == strlen(p) && strlen(p) < 19) {
        return json_integer(strtoll(s, NULL, 10));
    }
    return json_incref(v);
}

/* QEMU keeps options flat ("inject-error.0.event"). */
static void flatten(json_t *dst, const char *key, json_t *v, bool typed)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *sub;
        json_object_foreach(v, k, sub) {
            CLEANUP_FREE char *name = NULL;
            if (asprintf(&name, "%s.%s", key, k) >= 0) {
                flatten(dst, name, sub, typed);
            }
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            CLEANUP_FREE char *name = NULL;
            if (asprintf(&name, "%s.%zu", key, i) >= 0) {
                flatten(dst, name, json_array_get(v, i), typed);
            }
        }
    } else {
        json_object_set_new(dst, key, typed_value(v, typed));
    }
}

typedef struct FlatKey {
    const char *key;
    unsigned bucket;
    size_t index;
} FlatKey;

static int flat_key_cmp(const void *a, const void *b)
{
    const FlatKey *x = a, *y = b;
    if (x->bucket != y->bucket) {
        return x->bucket < y->bucket ? -1 : 1;
    }
    return x->index > y->index ? -1 : (x->index < y->index);
}

/* Copies a group of options into dst flat, in the order QEMU copies
 * them: walking its own (hash-ordered) option dictionary. */
static void put_group(json_t *dst, const char *key, json_t *v, bool typed)
{
    json_t *flat = json_object();
    if (!flat) {
        return;
    }
    flatten(flat, key, v, typed);
    size_t n = json_object_size(flat), i = 0;
    FlatKey *keys = calloc(n ? n : 1, sizeof(*keys));
    if (keys) {
        const char *k;
        json_t *val;
        json_object_foreach(flat, k, val) {
            keys[i] = (FlatKey){ k, qdict_bucket(k), i };
            i++;
        }
        qsort(keys, n, sizeof(*keys), flat_key_cmp);
        for (i = 0; i < n; i++) {
            json_object_set(dst, keys[i].key, json_object_get(flat, keys[i].key));
        }
        free(keys);
    }
    json_decref(flat);
}

bool block_naming_init(BlockNode *bs, const json_t *opts, bool typed)
{
    BlockNodeNaming *n = calloc(1, sizeof(*n));
    if (!n || !(n->strong = json_object())) {
        free(n);
        return false;
    }
    json_object_set_new(n->strong, "driver",
                        json_string(bs->drv->format_name));
    json_t *fname = json_object_get(opts, "filename");
    if (json_is_string(fname)) {
        json_object_set(n->strong, "filename", fname);
        n->opened_filename = strdup(json_string_value(fname));
    }
    for (const char *const *o = bs->drv->strong_options; o && *o; o++) {
        size_t len = strlen(*o);
        bool group = (*o)[len - 1] == '.';
        CLEANUP_FREE char *key = strndup(*o, group ? len - 1 : len);
        json_t *v = key ? json_object_get(opts, key) : NULL;
        if (v && group) {
            put_group(n->strong, key, v, typed);
            n->has_strong = true;
        } else if (v) {
            json_object_set_new(n->strong, key, typed_value(v, typed));
            n->has_strong = true;
        }
    }
    bs->naming = n;
    return true;
}

void block_naming_set_auto_backing(BlockNode *bs, const char *name,
                                   bool backing_ignored)
{
    BlockNodeNaming *n = bs->naming;
    if (!n) {
        return;
    }
    free(n->auto_backing_file);
    n->auto_backing_file = name && *name ? strdup(name) : NULL;
    n->backing_ignored = backing_ignored;
}

void block_naming_free(BlockNode *bs)
{
    BlockNodeNaming *n = bs->naming;
    if (!n) {
        return;
    }
    json_decref(n->strong);
    json_decref(n->full_open_options);
    free(n->opened_filename);
    free(n->exact_filename);
    free(n->auto_backing_file);
    free(n);
    bs->naming = NULL;
}

/* True when the backing node is not the one the image header names. */
static bool backing_overridden(const BlockNode *bs)
{
    const BlockNodeNaming *n = bs->naming;
    if (n->backing_ignored) {
        return false;
    }
    if (bs->backing) {
        return strcmp(n->auto_backing_file ? n->auto_backing_file : "",
                      bs->backing->filename ? bs->backing->filename : "") != 0;
    }
    return n->auto_backing_file != NULL;
}

static json_t *child_full_options(BlockNode *child)
{
    if (child->naming && child->naming->full_open_options) {
        return json_incref(child->naming->full_open_options);
    }
    return json_pack("{s:s}", "driver", child->drv->format_name);
}

const char *block_naming_exact_filename(const BlockNode *bs)
{
    return bs->naming ? bs->naming->exact_filename : NULL;
}

static char *compute_exact(BlockNode *bs, const json_t *full, bool gen_json)
{
    BlockNodeNaming *n = bs->naming;
    if (bs->drv->exact_filename) {
        return bs->drv->exact_filename(bs, full);
    }
    if (!bs->file) {
        /* A protocol node keeps the name it was opened with. */
        return n->opened_filename ? strdup(n->opened_filename) : NULL;
    }
    /* A format node is named by its file when probing that file gives
     * this node back: the file is a protocol node (not another format)
     * and nothing the user chose changes the data. */
    const char *child_exact = bs->file->naming
                              ? bs->file->naming->exact_filename : NULL;
    if (child_exact && !bs->file->drv->is_format && !gen_json) {
        return strdup(child_exact);
    }
    return NULL;
}

static void set_filename(BlockNode *bs, const char *name)
{
    if (bs->filename && strcmp(bs->filename, name) == 0) {
        return;
    }
    char *copy = strndup(name, FILENAME_MAX_LEN - 1);
    if (!copy) {
        return;
    }
    if (strlen(name) >= FILENAME_MAX_LEN) {
        /* QEMU's hint that the name was cut. */
        memcpy(copy + FILENAME_MAX_LEN - 4, "...", 4);
    }
    char *old = bs->filename;
    bs->filename = copy;
    free(old);
}

void block_refresh_filename(BlockNode *bs)
{
    if (bs->file) {
        block_refresh_filename(bs->file);
    }
    if (bs->backing) {
        block_refresh_filename(bs->backing);
    }
    BlockNode *c;
    for (int i = 0; bs->drv->list_child &&
                    (c = bs->drv->list_child(bs, i, NULL)); i++) {
        block_refresh_filename(c);
    }
    BlockNodeNaming *n = bs->naming;
    if (!n) {
        return;
    }
    bool overridden = backing_overridden(bs);
    json_t *full = json_deep_copy(n->strong);
    if (!full) {
        return;
    }
    if (bs->backing && overridden) {
        json_object_set_new(full, "backing", child_full_options(bs->backing));
    } else if (overridden) {
        json_object_set_new(full, "backing", json_null());
    }
    if (bs->file) {
        json_object_set_new(full, child_key(bs), child_full_options(bs->file));
    }
    if (bs->drv->list_child) {
        json_t *list = json_array();
        for (int i = 0; list && (c = bs->drv->list_child(bs, i, NULL)); i++) {
            json_array_append_new(list, child_full_options(c));
        }
        json_object_set_new(full, bs->drv->children_option, list);
    }
    json_decref(n->full_open_options);
    n->full_open_options = full;

    free(n->exact_filename);
    n->exact_filename = compute_exact(bs, full, n->has_strong || overridden);
    if (n->exact_filename) {
        set_filename(bs, n->exact_filename);
        return;
    }
    CLEANUP_FREE char *text = qdict_json_dumps(full);
    CLEANUP_FREE char *name = NULL;
    if (text && asprintf(&name, "json:%s", text) >= 0) {
        set_filename(bs, name);
    }
}

/* QEMU's path_has_protocol: a colon before any slash. */
static bool path_has_protocol(const char *path)
{
    return path[strcspn(path, ":/")] == ':';
}

/* QEMU's bdrv_dirname: the directory relative names in bs resolve
 * against, with its trailing slash ("" for the current directory). */
static char *node_dirname(BlockNode *bs, Error **errp)
{
    if (bs->file) {
        return node_dirname(bs->file, errp);
    }
    const char *exact = bs->naming ? bs->naming->exact_filename : NULL;
    if (!exact) {
        error_setg(errp, "Cannot generate a base directory for %s nodes",
                   bs->drv->format_name);
        return NULL;
    }
    const char *start = exact;
    if (path_has_protocol(exact)) {
        start = strchr(exact, ':') + 1;
    }
    const char *slash = strrchr(exact, '/');
    const char *end = slash && slash + 1 > start ? slash + 1 : start;
    char *dir = strndup(exact, (size_t)(end - exact));
    if (!dir) {
        error_setg(errp, "Out of memory");
    }
    return dir;
}

char *block_full_backing_filename(BlockNode *bs, Error **errp)
{
    const char *bf = bs->backing_file;
    if (!bf || !*bf) {
        return NULL;
    }
    if (bf[0] == '/' || path_has_protocol(bf)) {
        char *copy = strdup(bf);
        if (!copy) {
            error_setg(errp, "Out of memory");
        }
        return copy;
    }
    CLEANUP_FREE char *dir = node_dirname(bs, errp);
    if (!dir) {
        return NULL;
    }
    char *out = NULL;
    if (asprintf(&out, "%s%s", dir, bf) < 0) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    return out;
}
