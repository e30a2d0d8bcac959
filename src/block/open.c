/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - opening nodes: generic options, children, backing chains,
 * images the way qemu-img opens them, creation and resizing. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block_core.h"
#include "util/cleanup.h"
#include "util/keyval.h"
#include "util/qemu-json.h"

const char *const prealloc_mode_names[] = {
    "off", "metadata", "falloc", "full", NULL,
};

/* One overlay on the way down a backing chain, to detect loops. */
typedef struct OpenCtx {
    const struct OpenCtx *up;
    dev_t dev;
    ino_t ino;
    bool have_id;
    int depth;
} OpenCtx;

static BlockNode *node_open(const BlockDriver *drv, json_t *opts_in, int flags,
                            const BlockChildRole *role, const OpenCtx *ctx,
                            Error **errp);

/* node_open flag: the options come from a "json:" filename as written,
 * not through QAPI (they name the node as given). */
#define OPEN_UNTYPED_OPTIONS 0x10000

/* For a dotted key ("cache.direct") the group object in obj ("cache",
 * created if asked) and *leaf the key inside it; for a plain key, obj
 * and the key.  NULL when the group is absent or not an object. */
static json_t *opt_group(json_t *obj, const char *key, bool create,
                         const char **leaf)
{
    const char *dot = strchr(key, '.');
    *leaf = key;
    if (!dot) {
        return obj;
    }
    CLEANUP_FREE char *group = strndup(key, (size_t)(dot - key));
    json_t *sub = group ? json_object_get(obj, group) : NULL;
    if (!sub && group && create) {
        sub = json_object();
        json_object_set_new(obj, group, sub);
    }
    *leaf = dot + 1;
    return json_is_object(sub) ? sub : NULL;
}

/* Deletes a possibly dotted key, dropping the group object when it
 * becomes empty. */
static void opt_del(json_t *obj, const char *key)
{
    const char *leaf;
    json_t *sub = opt_group(obj, key, false, &leaf);
    if (!sub) {
        return;
    }
    json_object_del(sub, leaf);
    if (sub != obj && json_object_size(sub) == 0) {
        CLEANUP_FREE char *group = strndup(key, (size_t)(leaf - key - 1));
        if (group) {
            json_object_del(obj, group);
        }
    }
}

/* "json:" filenames may use flattened keys ("file.filename"); nest them
 * as block_node_open expects. */
static bool crumple(json_t *obj, Error **errp)
{
    const char *key;
    json_t *val;
    void *tmp;
    json_object_foreach_safe(obj, tmp, key, val) {
        const char *dot = strchr(key, '.');
        if (dot) {
            CLEANUP_FREE char *group = strndup(key, (size_t)(dot - key));
            json_t *sub = json_object_get(obj, group);
            if (!sub) {
                sub = json_object();
                json_object_set_new(obj, group, sub);
            } else if (!json_is_object(sub)) {
                error_setg(errp, "Parameters '%s.*' used inconsistently", group);
                return false;
            }
            json_t *prev = json_object_get(sub, dot + 1);
            if (prev && json_equal(prev, val)) {
                json_object_del(obj, key);
                continue;
            }
            if (prev) {
                error_setg(errp, "Parameter '%s' is given twice", key);
                return false;
            }
            json_object_set(sub, dot + 1, val);
            json_object_del(obj, key);
        }
    }
    json_object_foreach(obj, key, val) {
        if (json_is_object(val) && !crumple(val, errp)) {
            return false;
        }
    }
    return true;
}

/* key names one child of parent's list (quorum's "children.0"). */
static bool is_list_child(const BlockNode *parent, const char *key)
{
    return strcmp(key, "file") != 0 && strcmp(key, "backing") != 0 &&
           parent->drv->list_child_perm;
}

static BlockChildRole child_role(const BlockNode *parent, const char *key)
{
    return (BlockChildRole){
        .kind = strcmp(key, "backing") == 0 ? BLOCK_CHILD_BACKING
                                            : BLOCK_CHILD_FILE,
        .parent_has_metadata = parent->drv->has_metadata,
        .parent_unshares_changes = is_list_child(parent, key),
    };
}

/* Sets key (possibly dotted) to val in obj unless the user gave it. */
static void opt_default(json_t *obj, const char *key, json_t *val)
{
    const char *leaf;
    json_t *sub = opt_group(obj, key, true, &leaf);
    if (sub && !json_object_get(sub, leaf)) {
        json_object_set_new(sub, leaf, val);
    } else {
        json_decref(val);
    }
}

/* Options a child inherits from its parent unless given explicitly, as
 * QEMU's bdrv_inherited_options / bdrv_backing_options. */
static void inherit_options(const BlockNode *parent, json_t *child, int flags,
                            bool is_backing)
{
    if (is_backing) {
        opt_default(child, "read-only", json_true());
    } else {
        opt_default(child, "read-only", json_boolean(parent->read_only));
        if (flags & BLOCK_O_AUTO_READ_ONLY) {
            opt_default(child, "auto-read-only", json_true());
        }
        opt_default(child, "discard", json_string(
            parent->discard == BLOCK_DISCARD_UNMAP ? "unmap" : "ignore"));
    }
    if (parent->force_share) {
        opt_default(child, "force-share", json_true());
    }
    opt_default(child, "cache.direct", json_boolean(parent->cache_direct));
    opt_default(child, "cache.no-flush", json_boolean(parent->no_flush));
}

/* Links an existing node named by a string option as a child. */
static BlockNode *child_by_name(BlockNode *parent, const char *name,
                                const char *key, Error **errp)
{
    BlockNode *child = block_node_find(name);
    if (!child) {
        error_setg(errp, "Cannot find device='%s' nor node-name='%s'", name, name);
        return NULL;
    }
    bool file_link = strcmp(key, "file") == 0;
    /* A backing node is only read, and normally is a format node that
     * locks nothing itself: only a file link or a child in a parent's
     * list (quorum) asks for the parent's locks. */
    bool listed = is_list_child(parent, key);
    if (listed ? !block_perm_check_list_link(parent, child, key, errp)
               : !block_perm_check_link(parent, child,
                                        strcmp(key, "backing") == 0, errp)) {
        return NULL;
    }
    BlockChildRole role = child_role(parent, key);
    if ((file_link || listed) && child->drv->attach_parent &&
        !child->drv->attach_parent(child, &role, errp)) {
        return NULL;
    }
    block_node_attach_child(child);
    return child;
}

static BlockNode *open_child_ctx(BlockNode *parent, json_t *opts,
                                 const char *key, int flags,
                                 const OpenCtx *ctx, Error **errp)
{
    json_t *v = json_object_get(opts, key);
    if (!v || json_is_null(v)) {
        json_object_del(opts, key);
        error_setg(errp, "A block device must be specified for \"%s\"", key);
        return NULL;
    }
    BlockNode *child = NULL;
    if (json_is_string(v)) {
        child = child_by_name(parent, json_string_value(v), key, errp);
    } else if (json_is_object(v)) {
        CLEANUP_JSON json_t *copy = json_deep_copy(v);
        bool is_backing = strcmp(key, "backing") == 0;
        inherit_options(parent, copy, flags, is_backing);
        int cflags = flags & (BLOCK_O_NO_REPAIR | BLOCK_O_NO_BACKING |
                              OPEN_UNTYPED_OPTIONS);
        BlockChildRole role = child_role(parent, key);
        child = node_open(NULL, copy, cflags, &role, ctx, errp);
        if (child) {
            /* The reference node_open returned becomes the parent link. */
            __atomic_add_fetch(&child->parents, 1, __ATOMIC_SEQ_CST);
        }
    } else {
        error_setg(errp, "Invalid parameter type for '%s', expected: "
                   "string or object", key);
    }
    json_object_del(opts, key);
    if (child && !parent->filename && child->filename) {
        /* Until the parent is named (after its open), its messages name
         * the image by its file. */
        parent->filename = strdup(child->filename);
    }
    return child;
}

BlockNode *block_open_child(BlockNode *parent, json_t *opts, const char *key,
                            int flags, Error **errp)
{
    return open_child_ctx(parent, opts, key, flags, NULL, errp);
}

/* ---- backing chains named by an image ---- */

/* The protocol driver a "proto:..." name selects, or NULL. */
static const BlockDriver *prefix_driver(const char *name)
{
    const char *colon = strchr(name, ':');
    const char *slash = strchr(name, '/');
    if (!colon || (slash && slash < colon)) {
        return NULL;
    }
    char proto[32];
    size_t len = (size_t)(colon - name);
    if (len == 0 || len >= sizeof(proto)) {
        return NULL;
    }
    memcpy(proto, name, len);
    proto[len] = '\0';
    return block_find_protocol(proto);
}

static json_t *image_options(const char *filename, const char *fmt,
                             Error **errp);

static bool open_backing_chain(BlockNode *bs, int flags, const OpenCtx *ctx,
                               Error **errp)
{
    OpenCtx here = { .up = ctx, .depth = ctx ? ctx->depth + 1 : 1 };
    struct stat st;
    const char *self = bs->file && bs->file->filename ? bs->file->filename
                                                       : bs->filename;
    if (self && stat(self, &st) == 0) {
        here.dev = st.st_dev;
        here.ino = st.st_ino;
        here.have_id = true;
    }
    if (here.depth > BLOCK_MAX_BACKING_DEPTH) {
        error_setg(errp, "Backing chain of '%s' is too deep (more than %d "
                   "images)", self ? self : block_node_name(bs),
                   BLOCK_MAX_BACKING_DEPTH);
        return false;
    }

    CLEANUP_FREE char *path = block_full_backing_filename(bs, errp);
    if (!path) {
        return false;
    }
    if (stat(path, &st) == 0) {
        for (const OpenCtx *c = &here; c; c = c->up) {
            if (c->have_id && c->dev == st.st_dev && c->ino == st.st_ino) {
                error_setg(errp, "Backing file '%s' of '%s' forms a loop: it "
                           "is already part of the chain", path,
                           self ? self : block_node_name(bs));
                return false;
            }
        }
    }

    Error *err = NULL;
    const char *fmt = bs->backing_format;
    if (fmt && !block_find_driver(fmt)) {
        error_setg(&err, "Unknown driver '%s'", fmt);
    }
    CLEANUP_JSON json_t *opts = err ? NULL : image_options(path, fmt, &err);
    BlockNode *backing = NULL;
    if (opts) {
        inherit_options(bs, opts, flags, true);
        /* A json: backing name is text, checked as QEMU checks text. */
        int bflags = flags & BLOCK_O_NO_REPAIR;
        if (strncmp(path, "json:", 5) == 0) {
            bflags |= OPEN_UNTYPED_OPTIONS;
        }
        backing = node_open(NULL, opts, bflags, NULL, &here, &err);
    }
    if (!backing) {
        error_prepend(&err, "Could not open backing file: ");
        error_propagate(errp, err);
        return false;
    }
    __atomic_add_fetch(&backing->parents, 1, __ATOMIC_SEQ_CST);
    bs->backing = backing;
    return true;
}

/* ---- generic options ---- */

typedef struct GenericOpts {
    const char *node_name;
    bool read_only, auto_read_only, force_share, cache_direct, no_flush;
    int discard;
} GenericOpts;

static bool parse_generic(json_t *opts, int flags, GenericOpts *g, Error **errp)
{
    static const char *const discard_names[] = { "ignore", "unmap", "off", "on", NULL };
    static const char *const dz_names[] = { "off", "on", "unmap", NULL };
    int dz;

    if (!opt_get_str(opts, "node-name", NULL, &g->node_name, errp) ||
        (g->node_name && !block_node_name_valid(g->node_name, errp)) ||
        !opt_get_bool(opts, "read-only", !(flags & BLOCK_O_RDWR), &g->read_only, errp) ||
        !opt_get_bool(opts, "auto-read-only", false, &g->auto_read_only, errp) ||
        !opt_get_bool(opts, "force-share", !!(flags & BLOCK_O_FORCE_SHARE),
                      &g->force_share, errp) ||
        !opt_get_enum(opts, "discard", discard_names, 0, &g->discard, errp) ||
        !opt_get_bool(opts, "cache.direct", !!(flags & BLOCK_O_NOCACHE),
                      &g->cache_direct, errp) ||
        !opt_get_bool(opts, "cache.no-flush", false, &g->no_flush, errp) ||
        !opt_get_enum(opts, "detect-zeroes", dz_names, 0, &dz, errp)) {
        return false;
    }
    if (dz != 0) {
        error_setg(errp, "detect-zeroes=%s is not supported; use "
                   "detect-zeroes=off", dz_names[dz]);
        return false;
    }
    if (g->force_share && !g->read_only) {
        error_setg(errp, "force-share=on can only be used with read-only images");
        return false;
    }
    if (g->node_name && block_node_find(g->node_name)) {
        error_setg(errp, "Duplicate nodes with node-name='%s'", g->node_name);
        return false;
    }
    return true;
}

static void close_unregistered(BlockNode *bs)
{
    if (bs->drv->close) {
        bs->drv->close(bs);
    }
    block_node_free_unregistered(bs);
}

/* The first option left in opts, flat ("x.y") as QEMU names it. */
static char *first_flat_key(json_t *opts)
{
    void *it = json_object_iter(opts);
    if (!it) {
        return NULL;
    }
    const char *key = json_object_iter_key(it);
    json_t *v = json_object_iter_value(it);
    CLEANUP_FREE char *sub = json_is_object(v) ? first_flat_key(v) : NULL;
    char *out = NULL;
    if (sub) {
        return asprintf(&out, "%s.%s", key, sub) < 0 ? NULL : out;
    }
    return strdup(key);
}

/* role is NULL for a node opened on its own. */
static BlockNode *node_open(const BlockDriver *drv, json_t *opts_in, int flags,
                            const BlockChildRole *role, const OpenCtx *ctx,
                            Error **errp)
{
    if (!json_is_object(opts_in)) {
        error_setg(errp, "Block node options must be a JSON object");
        return NULL;
    }
    CLEANUP_JSON json_t *opts = json_deep_copy(opts_in);
    if (!opts) {
        error_setg(errp, "Out of memory");
        return NULL;
    }

    if (!drv) {
        const char *name;
        if (!opt_get_str(opts, "driver", NULL, &name, errp)) {
            return NULL;
        }
        if (!name) {
            error_setg(errp, "Parameter 'driver' is missing");
            return NULL;
        }
        drv = block_find_driver(name);
        if (!drv && (flags & OPEN_UNTYPED_OPTIONS)) {
            error_setg(errp, "Unknown driver '%s'", name);
            return NULL;
        }
        if (!drv) {
            error_setg(errp, "Parameter 'driver' does not accept value '%s'", name);
            return NULL;
        }
    }
    json_object_del(opts, "driver");

    if ((flags & OPEN_UNTYPED_OPTIONS) &&
        (drv == &bdrv_file || drv == &bdrv_host_device) &&
        !json_object_get(opts, "filename")) {
        error_setg(errp, "The '%s' block driver requires a file name",
                   drv->format_name);
        return NULL;
    }
    GenericOpts g;
    if (!parse_generic(opts, flags, &g, errp)) {
        return NULL;
    }
    CLEANUP_FREE char *node_name = g.node_name ? strdup(g.node_name) : NULL;
    static const char *const generic_keys[] = {
        "node-name", "read-only", "auto-read-only", "force-share", "discard",
        "cache.direct", "cache.no-flush", "detect-zeroes",
    };
    for (size_t i = 0; i < ARRAY_SIZE(generic_keys); i++) {
        opt_del(opts, generic_keys[i]);
    }

    /* "backing" is the core's business; drivers without backing support
     * leave it for the unexpected-parameter check. */
    CLEANUP_JSON json_t *backing_opt = NULL;
    bool have_backing_opt = false;
    if (drv->supports_backing && json_object_get(opts, "backing")) {
        backing_opt = json_incref(json_object_get(opts, "backing"));
        have_backing_opt = true;
        json_object_del(opts, "backing");
    }

    BlockNode *bs = block_node_alloc(drv);
    if (!bs) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    bs->read_only = g.read_only;
    bs->force_share = g.force_share;
    bs->cache_direct = g.cache_direct;
    bs->no_flush = g.no_flush;
    /* "on" is QEMU's old spelling of unmap, "off" of ignore. */
    bs->discard = (g.discard == 1 || g.discard == 3) ? BLOCK_DISCARD_UNMAP
                                                     : BLOCK_DISCARD_IGNORE;
    if (role) {
        bs->role = *role;
    }
    /* The name is known to the driver while it opens (messages). */
    bs->node_name = node_name ? strdup(node_name) : NULL;

    int dflags = flags & (BLOCK_O_NO_BACKING | BLOCK_O_NO_REPAIR |
                          BLOCK_O_METADATA_ONLY | BLOCK_O_NO_IO);
    dflags |= g.read_only ? 0 : BLOCK_O_RDWR;
    dflags |= g.force_share ? BLOCK_O_FORCE_SHARE : 0;
    dflags |= g.cache_direct ? BLOCK_O_NOCACHE : 0;
    dflags |= g.auto_read_only ? BLOCK_O_AUTO_READ_ONLY : 0;
    dflags |= flags & OPEN_UNTYPED_OPTIONS;

    if (!block_naming_init(bs, opts, !(flags & OPEN_UNTYPED_OPTIONS))) {
        error_setg(errp, "Out of memory");
        block_node_free_unregistered(bs);
        return NULL;
    }
    if (!drv->open(bs, opts, dflags, errp)) {
        block_node_free_unregistered(bs);
        return NULL;
    }
    if (bs->request_alignment == 0) {
        bs->request_alignment = 1;
    }
    if ((flags & OPEN_UNTYPED_OPTIONS) && json_object_size(opts)) {
        /* Options that came as text (json:, --image-opts) are checked
         * by QEMU's legacy open, which words this differently. */
        CLEANUP_FREE char *key = first_flat_key(opts);
        if (drv->is_protocol) {
            error_setg(errp, "Block protocol '%s' doesn't support the option "
                       "'%s'", drv->format_name, key ? key : "");
        } else {
            error_setg(errp, "Block format '%s' does not support the option "
                       "'%s'", drv->format_name, key ? key : "");
        }
        close_unregistered(bs);
        return NULL;
    }
    if (!opt_check_empty(opts, errp)) {
        close_unregistered(bs);
        return NULL;
    }

    if (have_backing_opt) {
        if (!json_is_null(backing_opt)) {
            json_t *wrap = json_pack("{s:O}", "backing", backing_opt);
            bs->backing = open_child_ctx(bs, wrap, "backing", dflags, ctx, errp);
            json_decref(wrap);
            if (!bs->backing) {
                close_unregistered(bs);
                return NULL;
            }
        }
    } else if (bs->backing_file && bs->backing_file[0] &&
               !(flags & BLOCK_O_NO_BACKING)) {
        if (!open_backing_chain(bs, dflags, ctx, errp)) {
            close_unregistered(bs);
            return NULL;
        }
    }
    /* What the image asks for, to tell whether the user replaced it: a
     * backing opened from the header is by definition what it asks.
     * Without the chain (qemu-img's NO_IO opens) it never counts. */
    bool implicit_backing = bs->backing && !have_backing_opt;
    block_naming_set_auto_backing(bs, implicit_backing ? bs->backing->filename
                                                       : bs->backing_file,
                                  flags & BLOCK_O_NO_BACKING);
    block_refresh_filename(bs);

    if (!block_graph_insert(bs, node_name, errp)) {
        close_unregistered(bs);
        return NULL;
    }
    block_allocation_note_open(bs);
    return bs;
}

BlockNode *block_node_open(json_t *opts, Error **errp)
{
    return node_open(NULL, opts, BLOCK_O_RDWR, NULL, NULL, errp);
}

BlockNode *block_node_open_driver(const BlockDriver *drv, json_t *opts,
                                  int flags, Error **errp)
{
    return node_open(drv, opts, flags, NULL, NULL, errp);
}

/* ---- images, qemu-img style ---- */

const char *block_probe_format(const char *filename, Error **errp)
{
    int fd CLEANUP_CLOSE = open(filename, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Could not open '%s'", filename);
        return NULL;
    }
    uint8_t buf[2048];
    ssize_t n;
    do {
        n = pread(fd, buf, sizeof(buf), 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        error_setg_errno(errp, errno, "Could not read image for determining "
                         "its format");
        return NULL;
    }
    return block_probe_buffer(buf, (size_t)n, filename, errp);
}

const char *block_probe_buffer(const uint8_t *buf, size_t n,
                               const char *filename, Error **errp)
{
    const char *best = "raw";
    int best_score = 0;
    for (size_t i = 0; block_drivers[i]; i++) {
        const BlockDriver *drv = block_drivers[i];
        if (!drv->probe || !drv->is_format) {
            continue;
        }
        int score = drv->probe(buf, n, filename);
        if (score > best_score) {
            best_score = score;
            best = drv->format_name;
        }
    }
    /* Never a silent wrong guess: a format strata cannot read that
     * matches better than what it can is refused by name. */
    int foreign_score;
    const char *foreign = block_probe_unsupported(buf, n, filename,
                                                  &foreign_score);
    if (foreign && foreign_score > best_score) {
        error_setg(errp, "image format '%s' is not supported", foreign);
        return NULL;
    }
    return best;
}

/* The protocol driver that opens name: its "proto:" prefix when that
 * names a protocol driver, else "file". */
static const char *protocol_for(const char *name)
{
    const BlockDriver *drv = prefix_driver(name);
    return drv ? drv->format_name : "file";
}

/* Children given inline and named only by "filename" get the protocol
 * driver of that name. */
static void default_child_protocols(json_t *obj)
{
    const char *key;
    json_t *child;
    json_object_foreach(obj, key, child) {
        if (!json_is_object(child)) {
            continue;
        }
        json_t *fname = json_object_get(child, "filename");
        if (json_is_string(fname) && !json_object_get(child, "driver")) {
            json_object_set_new(child, "driver", json_string(protocol_for(
                json_string_value(fname))));
        }
        default_child_protocols(child);
    }
}

/* A "json:" object may leave drivers out, as QEMU's bdrv_open allows:
 * children named only by "filename" get their protocol driver, and a
 * missing format is probed from the file. */
static bool json_default_drivers(json_t *opts, const char *fmt, Error **errp);

/* A backing image given inline without a driver is probed like the top
 * one ("backing.file.filename=x" names a qcow2 by its content). */
static bool default_backing_format(json_t *opts, Error **errp)
{
    json_t *backing = json_object_get(opts, "backing");
    if (!json_is_object(backing)) {
        return true;
    }
    if (!json_object_get(backing, "driver") &&
        json_is_object(json_object_get(backing, "file")) &&
        !json_default_drivers(backing, NULL, errp)) {
        return false;
    }
    return default_backing_format(backing, errp);
}

static bool json_default_drivers(json_t *opts, const char *fmt, Error **errp)
{
    json_t *ref = json_object_get(opts, "file");
    if (!json_object_get(opts, "driver") && json_is_string(ref) &&
        !block_node_find(json_string_value(ref))) {
        /* A reference to a node; QEMU looks it up before probing. */
        error_setg(errp, "Cannot find device='%s' nor node-name='%s'",
                   json_string_value(ref), json_string_value(ref));
        return false;
    }
    json_t *top_driver = json_object_get(opts, "driver");
    json_t *file = json_object_get(opts, "file");
    json_t *fname = json_is_object(file) ? json_object_get(file, "filename")
                                         : NULL;
    default_child_protocols(opts);
    if (!top_driver && !file) {
        error_setg(errp, "Must specify either driver or file");
        return false;
    }
    if (!top_driver) {
        const char *probed = fmt;
        if (!probed && json_is_string(fname)) {
            probed = block_probe_format(json_string_value(fname), errp);
            if (!probed) {
                return false;
            }
        }
        if (probed) {
            json_object_set_new(opts, "driver", json_string(probed));
        }
    }
    return default_backing_format(opts, errp);
}

/* QEMU's path_has_protocol: a colon before any slash. */
static bool name_has_protocol(const char *name)
{
    return name[strcspn(name, ":/")] == ':';
}

json_t *block_protocol_options(const char *filename, const BlockDriver *drv,
                               Error **errp)
{
    if (!drv && name_has_protocol(filename)) {
        drv = prefix_driver(filename);
        if (!drv) {
            size_t len = strcspn(filename, ":");
            error_setg(errp, "Unknown protocol '%.*s'",
                       (int)(len > 127 ? 127 : len), filename);
            return NULL;
        }
    }
    if (!drv) {
        drv = &bdrv_file;
    }
    json_t *opts = json_pack("{s:s, s:s}", "driver", drv->format_name,
                             "filename", filename);
    if (!opts) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    if (drv->parse_filename && !drv->parse_filename(filename, opts, errp)) {
        json_decref(opts);
        return NULL;
    }
    return opts;
}

/* The format of what a protocol node other than a plain file holds,
 * read through that node, as QEMU probes. */
static const char *probe_through_node(const json_t *file_opts, Error **errp)
{
    CLEANUP_JSON json_t *opts = json_deep_copy(file_opts);
    if (!opts) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    json_object_set_new(opts, "read-only", json_true());
    json_object_set_new(opts, "force-share", json_true());
    BlockNode *bs = node_open(NULL, opts, BLOCK_O_FORCE_SHARE, NULL, NULL,
                              errp);
    if (!bs) {
        return NULL;
    }
    uint8_t buf[2048] = { 0 };
    uint64_t n = block_node_size(bs);
    n = n < sizeof(buf) ? n : sizeof(buf);
    int ret = n ? block_read(bs, 0, n, buf, 0) : 0;
    const char *fname = json_string_value(json_object_get(file_opts,
                                                           "filename"));
    const char *fmt = NULL;
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read image for determining "
                         "its format");
    } else {
        fmt = block_probe_buffer(buf, (size_t)n, fname ? fname : "", errp);
    }
    block_node_unref(bs);
    return fmt;
}

/* {"driver": fmt, "file": <protocol options>} for a plain file name, or
 * the parsed options of a "json:" name.  fmt NULL probes. */
static json_t *image_options(const char *filename, const char *fmt,
                             Error **errp)
{
    if (strncmp(filename, "json:", 5) == 0) {
        Error *err = NULL;
        json_t *opts = qemu_json_parse(filename + 5, strlen(filename + 5),
                                       &err);
        if (!opts) {
            error_prepend(&err, "Could not parse the JSON options: ");
            error_propagate(errp, err);
            return NULL;
        }
        if (!json_is_object(opts)) {
            json_decref(opts);
            error_setg(errp, "Invalid JSON object given");
            return NULL;
        }
        if (!crumple(opts, errp)) {
            json_decref(opts);
            return NULL;
        }
        if (!json_default_drivers(opts, fmt, errp)) {
            json_decref(opts);
            return NULL;
        }
        return opts;
    }

    const BlockDriver *drv = fmt ? block_find_driver(fmt) : NULL;
    if (fmt && !drv) {
        error_setg(errp, "Unknown driver '%s'", fmt);
        return NULL;
    }
    /* A driver that parses names (blkdebug) takes the name itself, as
     * QEMU hands it to every driver that can open one. */
    if (drv && (drv->is_protocol || drv->parse_filename)) {
        return block_protocol_options(filename, drv, errp);
    }
    json_t *file = block_protocol_options(filename, NULL, errp);
    if (!file) {
        return NULL;
    }
    const BlockDriver *pdrv = block_find_driver(
        json_string_value(json_object_get(file, "driver")));
    const char *fname = json_string_value(json_object_get(file, "filename"));
    if (pdrv == &bdrv_file && fname && !*fname) {
        error_setg(errp, "The '%s' block driver requires a file name",
                   pdrv->format_name);
        json_decref(file);
        return NULL;
    }
    if (!fmt && pdrv != &bdrv_file && pdrv && pdrv->parse_filename) {
        fmt = probe_through_node(file, errp);
    } else if (!fmt && pdrv != &bdrv_file) {
        fmt = "raw";
    } else if (!fmt) {
        fmt = block_probe_format(fname ? fname : filename, errp);
    }
    if (!fmt) {
        json_decref(file);
        return NULL;
    }
    return json_pack("{s:s, s:o}", "driver", fmt, "file", file);
}

static BlockNode *open_image(json_t *opts, int flags, Error **errp);

json_t *block_image_options(const char *filename, const char *fmt,
                            Error **errp)
{
    return image_options(filename, fmt, errp);
}

BlockNode *block_open_image(const char *filename, const char *fmt, int flags,
                            Error **errp)
{
    CLEANUP_JSON json_t *opts = image_options(filename, fmt, errp);
    if (!opts) {
        return NULL;
    }
    if (strncmp(filename, "json:", 5) == 0) {
        flags |= OPEN_UNTYPED_OPTIONS;
    }
    return open_image(opts, flags, errp);
}

BlockNode *block_open_image_opts(const json_t *flat, int flags, Error **errp)
{
    CLEANUP_JSON json_t *opts = json_deep_copy(flat);
    if (!opts) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    if (!crumple(opts, errp)) {
        return NULL;
    }
    if (!json_default_drivers(opts, NULL, errp)) {
        return NULL;
    }
    return open_image(opts, flags | OPEN_UNTYPED_OPTIONS, errp);
}

/* Opens the options of an image as qemu-img does: the tool is the
 * image's one user. */
static BlockNode *open_image(json_t *opts, int flags, Error **errp)
{
    if ((flags & BLOCK_O_FORCE_SHARE) && (flags & BLOCK_O_RDWR)) {
        error_setg(errp, "force-share=on can only be used with read-only images");
        return NULL;
    }
    opt_default(opts, "read-only", json_boolean(!(flags & BLOCK_O_RDWR)));
    if (flags & BLOCK_O_FORCE_SHARE) {
        opt_default(opts, "force-share", json_true());
    }
    if (flags & BLOCK_O_NOCACHE) {
        opt_default(opts, "cache.direct", json_true());
    }
    BlockNode *bs = node_open(NULL, opts, flags, NULL, NULL, errp);
    /* The tool is the image's user, as qemu-img's BlockBackend: it reads,
     * writes when read-write, and shares everything. */
    uint64_t perm = BLOCK_PERM_CONSISTENT_READ |
                    ((flags & BLOCK_O_RDWR) ? BLOCK_PERM_WRITE : 0);
    if (bs && !block_node_add_perm(bs, perm, BLOCK_PERM_ALL, errp)) {
        block_node_unref(bs);
        return NULL;
    }
    return bs;
}

/* ---- creation and size ---- */

bool block_create(const char *fmt, const char *filename, json_t *opts,
                  Error **errp)
{
    const BlockDriver *drv = block_find_driver(fmt);
    if (!drv) {
        error_setg(errp, "Unknown file format '%s'", fmt);
        return false;
    }
    if (!drv->create) {
        error_setg(errp, "Format driver '%s' does not support image creation",
                   fmt);
        return false;
    }
    CLEANUP_JSON json_t *copy = opts ? json_deep_copy(opts) : json_object();
    /* "file:NAME" creates NAME, as QEMU's file driver strips its prefix
     * (other prefixes are the create callbacks' business). */
    Error *ignored = NULL;
    CLEANUP_JSON json_t *proto = block_protocol_options(filename, NULL,
                                                        &ignored);
    error_free(ignored);
    const char *plain = json_string_value(json_object_get(proto, "filename"));
    if (plain && *plain &&
        block_find_driver(json_string_value(json_object_get(proto, "driver")))
            == &bdrv_file) {
        filename = plain;
    }
    return drv->create(filename, copy, errp);
}

bool block_truncate(BlockNode *bs, uint64_t size, bool exact,
                    PreallocMode prealloc, Error **errp)
{
    if (bs->read_only) {
        error_setg(errp, "Image is read-only");
        return false;
    }
    if (!bs->drv->truncate) {
        error_setg(errp, "Image format driver does not support resize");
        return false;
    }
    if (size > INT64_MAX) {
        error_setg(errp, "Image size cannot exceed %lld bytes",
                   (long long)INT64_MAX);
        return false;
    }
    /* Resizing under running requests would move the bounds they were
     * checked against. */
    block_drain_begin(bs);
    uint64_t before = block_node_size(bs);
    bool ok = bs->drv->truncate(bs, size, exact, prealloc, errp);
    if (ok && block_node_size(bs) == before) {
        atomic_store(&bs->total_size, size);
    }
    if (ok) {
        block_allocation_note_truncate(bs, block_node_size(bs));
    }
    block_drain_end(bs);
    return ok;
}

int64_t block_refresh_size(BlockNode *bs)
{
    if (bs->drv->refresh_size) {
        int64_t ret = bs->drv->refresh_size(bs);
        if (ret >= 0) {
            atomic_store(&bs->total_size, (uint64_t)ret);
        }
        return ret;
    }
    if (bs->file) {
        int64_t ret = block_refresh_size(bs->file);
        if (ret < 0) {
            return ret;
        }
    }
    return (int64_t)block_node_size(bs);
}

int64_t block_allocated_file_size(BlockNode *bs)
{
    if (bs->drv->get_allocated_file_size) {
        return bs->drv->get_allocated_file_size(bs);
    }
    /* Protocol drivers keep their data elsewhere: nothing to ask.  A
     * format's data and metadata are in its file. */
    if (bs->file && bs->drv->is_format) {
        return block_allocated_file_size(bs->file);
    }
    return -ENOTSUP;
}
