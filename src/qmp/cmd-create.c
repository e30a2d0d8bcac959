/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - blockdev-create: image creation as a job, with QEMU 7.2's
 * arguments (BlockdevCreateOptions, a union on "driver"), job type
 * "create", states and errors.
 *
 * Like QEMU's, the job is not a block job (no BLOCK_JOB_* events, not
 * in query-block-jobs), finalizes itself and waits for job-dismiss.
 * Problems with the arguments fail the command; problems with what they
 * name (a node that does not exist, a size the format refuses, a file
 * that cannot be created) fail the job, whose query-jobs entry then
 * carries the message.  The work reuses strata-img's image creation
 * (block_create, block_create_on_node) with QEMU's option names mapped
 * to qemu-img's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "jobs/job.h"
#include "qmp/qmp-args.h"
#include "qmp/qapi-schema.h"
#include "qmp/qmp-internal.h"
#include "qmp/transaction.h"
#include "util/cleanup.h"

/* QEMU 7.2's BlockdevDriver, for the discriminator's check. */
static const char *const blockdev_drivers[] = {
    "blkdebug", "blklogwrites", "blkreplay", "blkverify", "bochs", "cloop",
    "compress", "copy-before-write", "copy-on-read", "dmg", "file",
    "snapshot-access", "ftp", "ftps", "gluster", "host_cdrom", "host_device",
    "http", "https", "iscsi", "luks", "nbd", "nfs", "null-aio", "null-co",
    "nvme", "parallels", "preallocate", "qcow", "qcow2", "qed", "quorum",
    "raw", "rbd", "ssh", "throttle", "vdi", "vhdx", "vmdk", "vpc", "vvfat",
    NULL,
};

/* The drivers whose BlockdevCreateOptions branch QEMU has and strata
 * lacks: QEMU accepts their members, strata says it has no such driver. */
static const char *const foreign_create_drivers[] = {
    "gluster", "luks", "nfs", "parallels", "qcow", "qed", "rbd", "ssh",
    "vdi", "vhdx", "vmdk", "vpc", NULL,
};

static const char *const prealloc_names[] = { "off", "metadata", "falloc",
                                              "full", NULL };
static const char *const qcow2_versions[] = { "v2", "v3", NULL };
static const char *const compression_types[] = { "zlib", "zstd", NULL };

static const QmpArgSpec create_args[] = {
    { "job-id", QMP_ARG_STR },
    { "options", QMP_ARG_OBJECT },
    { NULL },
};

static const QmpArgSpec file_members[] = {
    { "driver", QMP_ARG_ENUM, .choices = blockdev_drivers },
    { "filename", QMP_ARG_STR },
    { "size", QMP_ARG_UINT64 },
    { "preallocation", QMP_ARG_ENUM, .optional = true,
      .choices = prealloc_names },
    { "nocow", QMP_ARG_BOOL, .optional = true },
    { "extent-size-hint", QMP_ARG_UINT64, .optional = true },
    { NULL },
};

/* "file" and "data-file" are BlockdevRef: a node name or the options of
 * a node to open; checked by hand. */
static const QmpArgSpec qcow2_members[] = {
    { "driver", QMP_ARG_ENUM, .choices = blockdev_drivers },
    { "file", QMP_ARG_ANY },
    { "data-file", QMP_ARG_ANY, .optional = true },
    { "data-file-raw", QMP_ARG_BOOL, .optional = true },
    { "extended-l2", QMP_ARG_BOOL, .optional = true },
    { "size", QMP_ARG_UINT64 },
    { "version", QMP_ARG_ENUM, .optional = true, .choices = qcow2_versions },
    { "backing-file", QMP_ARG_STR, .optional = true },
    { "backing-fmt", QMP_ARG_ENUM, .optional = true,
      .choices = blockdev_drivers },
    { "encrypt", QMP_ARG_OBJECT, .optional = true },
    { "cluster-size", QMP_ARG_UINT64, .optional = true },
    { "preallocation", QMP_ARG_ENUM, .optional = true,
      .choices = prealloc_names },
    { "lazy-refcounts", QMP_ARG_BOOL, .optional = true },
    { "refcount-bits", QMP_ARG_INT, .optional = true },
    { "compression-type", QMP_ARG_ENUM, .optional = true,
      .choices = compression_types },
    { NULL },
};

static const QmpArgSpec driver_only[] = {
    { "driver", QMP_ARG_ENUM, .choices = blockdev_drivers },
    { NULL },
};

/* QAPI member -> qemu-img option, for the members passed through. */
static const char *const qcow2_opt_map[][2] = {
    { "size", "size" },
    { "backing-file", "backing_file" },
    { "backing-fmt", "backing_fmt" },
    { "cluster-size", "cluster_size" },
    { "preallocation", "preallocation" },
    { "lazy-refcounts", "lazy_refcounts" },
    { "refcount-bits", "refcount_bits" },
    { "compression-type", "compression_type" },
    { "extended-l2", "extended_l2" },
};

typedef struct CreateJob {
    char *driver;                 /* "file" or "qcow2" */
    char *filename;               /* file: the path */
    BlockNode *file;              /* qcow2: the node to format */
    BlockNode *data_file;         /* qcow2: its external data file */
    uint64_t size;                /* qcow2: the virtual size */
    json_t *opts;                 /* qemu-img style options */
    char *error;                  /* a failure found before the run */
} CreateJob;

static void create_state_free(CreateJob *c)
{
    if (!c) {
        return;
    }
    if (c->file) {
        block_node_unref(c->file);
    }
    if (c->data_file) {
        block_node_unref(c->data_file);
    }
    json_decref(c->opts);
    free(c->driver);
    free(c->filename);
    free(c->error);
    free(c);
}

static void create_free(Job *job)
{
    create_state_free(job_opaque(job));
}

/* The node goes when the job ends, not when it is dismissed: one opened
 * from inline options would keep its file locked meanwhile. */
static void create_clean(Job *job)
{
    CreateJob *c = job_opaque(job);
    if (c->file) {
        block_node_unref(c->file);
        c->file = NULL;
    }
    if (c->data_file) {
        block_node_unref(c->data_file);
        c->data_file = NULL;
    }
}

static int create_run(Job *job, Error **errp)
{
    CreateJob *c = job_opaque(job);
    bool ok;
    job_progress_set_total(job, 1);
    if (c->error) {
        error_setg(errp, "%s", c->error);
        ok = false;
    } else if (!strcmp(c->driver, "file")) {
        ok = block_create("file", c->filename, c->opts, errp);
    } else {
        /* As QEMU's creation writes through a user of the node that
         * writes and resizes: a format already on the node refuses
         * (formatting it would destroy the image in use). */
        ok = block_node_add_perm(c->file, BLOCK_PERM_WRITE | BLOCK_PERM_RESIZE,
                                 BLOCK_PERM_ALL, errp);
        if (ok) {
            ok = block_create_on_node(c->driver, c->file, c->opts, errp);
            block_node_del_perm(c->file, BLOCK_PERM_WRITE | BLOCK_PERM_RESIZE,
                                BLOCK_PERM_ALL);
        }
        /* As QEMU, whose new image is resized with its data file: the
         * data file holds the whole disk (it is never shrunk). */
        if (ok && c->data_file && block_node_size(c->data_file) < c->size) {
            ok = block_truncate(c->data_file, c->size, false, PREALLOC_OFF,
                                errp);
        }
        /* The node shows the size of its file as an open would. */
        block_refresh_size(c->file);
    }
    job_progress_add(job, 1);
    if (!ok) {
        qmp_error_drop_hint(errp);
    }
    return ok ? 0 : -EIO;
}

static const JobDriver create_job_driver = {
    .type = "create",
    .not_block_job = true,
    .run = create_run,
    .clean = create_clean,
    .free = create_free,
};

/* Sets c->error from err (the job fails with it when it runs). */
static void defer_error(CreateJob *c, Error *err)
{
    if (!c->error) {
        c->error = strdup(error_get_pretty(err));
    }
    error_free(err);
}

/* Resolves a BlockdevRef on the main thread: a node name, or options of
 * a node opened for the job's life. */
static BlockNode *open_ref(json_t *ref, Error **errp)
{
    if (json_is_string(ref)) {
        const char *name = json_string_value(ref);
        BlockNode *bs = block_node_find(name);
        if (!bs) {
            error_setg(errp, "Cannot find device='%s' nor node-name='%s'",
                       name, name);
            return NULL;
        }
        block_node_ref(bs);
        return bs;
    }
    return block_node_open(ref, errp);
}

static bool check_ref(json_t *ref, const char *name, Error **errp)
{
    /* An alternate's type error names the member alone, as an enum's. */
    if (!json_is_string(ref) && !json_is_object(ref)) {
        error_setg(errp, "Invalid parameter type for '%s', expected: "
                   "BlockdevRef", name);
        return false;
    }
    return true;
}

static bool prepare_qcow2(json_t *o, CreateJob *c, Error **errp)
{
    if (!qmp_args_check(o, "options.", qcow2_members, errp) ||
        !check_ref(json_object_get(o, "file"), "file", errp)) {
        return false;
    }
    json_t *df = json_object_get(o, "data-file");
    if (df && !check_ref(df, "data-file", errp)) {
        return false;
    }
    c->opts = json_object();
    for (size_t i = 0; i < ARRAY_SIZE(qcow2_opt_map); i++) {
        json_t *v = json_object_get(o, qcow2_opt_map[i][0]);
        if (v) {
            json_object_set(c->opts, qcow2_opt_map[i][1], v);
        }
    }
    const char *version = qmp_arg_str(o, "version", NULL);
    if (version) {
        json_object_set_new(c->opts, "compat", json_string(version));
    }
    /* As QEMU, what the options name is looked at when the job runs. */
    Error *err = NULL;
    c->file = open_ref(json_object_get(o, "file"), &err);
    if (!c->file) {
        defer_error(c, err);
        return true;
    }
    uint64_t size = (uint64_t)qmp_arg_int(o, "size", 0);
    if (size % 512) {
        error_setg(&err, "Image size must be a multiple of 512 bytes");
        defer_error(c, err);
    } else if (json_object_get(o, "encrypt")) {
        error_setg(&err, "Encrypted qcow2 images (encrypt) are not "
                   "supported by strata");
        defer_error(c, err);
    } else if (qmp_arg_bool(o, "data-file-raw", false) && !df) {
        error_setg(&err, "data-file-raw requires data-file");
        defer_error(c, err);
    } else if (df) {
        c->data_file = open_ref(df, &err);
        if (!c->data_file) {
            defer_error(c, err);
            return true;
        }
        /* The header names the data file as the node names its file. */
        json_object_set_new(c->opts, "data_file",
                            json_string(block_node_filename(c->data_file)));
        json_object_set_new(c->opts, "data_file_raw",
                            json_boolean(qmp_arg_bool(o, "data-file-raw",
                                                      false)));
        c->size = size;
    }
    return true;
}

static bool in_list(const char *const *list, const char *s)
{
    for (size_t i = 0; list[i]; i++) {
        if (!strcmp(list[i], s)) {
            return true;
        }
    }
    return false;
}

static json_t *cmd_blockdev_create(json_t *args, Error **errp)
{
    if (!qmp_args_check(args, "", create_args, errp)) {
        return NULL;
    }
    json_t *o = json_object_get(args, "options");
    /* The union's base first: its discriminator picks the members. */
    json_t *drv = json_object_get(o, "driver");
    if (!drv) {
        error_setg(errp, "Parameter 'options.driver' is missing");
        return NULL;
    }
    if (!qmp_args_check_value(drv, "driver", &driver_only[0], errp)) {
        return NULL;
    }
    const char *driver = json_string_value(drv);
    CreateJob *c = calloc(1, sizeof(*c));
    if (!c || !(c->driver = strdup(driver))) {
        free(c);
        error_setg(errp, "Out of memory");
        return NULL;
    }
    bool ok = true;
    if (!strcmp(driver, "file")) {
        ok = qmp_args_check(o, "options.", file_members, errp);
        if (ok) {
            static const char *const map[][2] = {
                { "size", "size" }, { "preallocation", "preallocation" },
                { "nocow", "nocow" }, { "extent-size-hint", "extent_size_hint" },
            };
            c->filename = strdup(qmp_arg_str(o, "filename", ""));
            c->opts = json_object();
            for (size_t i = 0; i < ARRAY_SIZE(map); i++) {
                json_t *v = json_object_get(o, map[i][0]);
                if (v) {
                    json_object_set(c->opts, map[i][1], v);
                }
            }
        }
    } else if (!strcmp(driver, "qcow2")) {
        ok = prepare_qcow2(o, c, errp);
    } else if (in_list(foreign_create_drivers, driver) ||
               !block_driver_known(driver)) {
        error_setg(errp, "Block driver '%s' not found or not supported",
                   driver);
        ok = false;
    } else {
        ok = qmp_args_check(o, "options.", driver_only, errp);
        if (ok) {
            error_setg(errp, "Driver does not support blockdev-create");
            ok = false;
        }
    }
    if (!ok) {
        create_state_free(c);
        return NULL;
    }
    JobOptions jo = {
        .id = qmp_arg_str(args, "job-id", ""),
        .auto_finalize = true,
        .auto_dismiss = false,
    };
    Job *job = job_create(&create_job_driver, &jo, c, errp);
    if (!job) {
        return NULL;
    }
    return job_start(job, errp) ? json_object() : NULL;
}

void qmp_register_create_commands(void)
{
    /* QEMU's arguments (every driver's options) are checked before the
     * handler, which then looks at the drivers strata creates. */
    qmp_register_command_args("blockdev-create", cmd_blockdev_create,
                              qapi_blockdev_create_arg);
}
