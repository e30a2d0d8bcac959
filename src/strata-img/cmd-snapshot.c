/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img snapshot [--object objectdef] [--image-opts] [-U] [-q]
 *                     [-l | -a snapshot | -c snapshot | -d snapshot]
 *                     filename
 *
 * Lists, creates, applies or deletes the internal snapshots of a qcow2
 * image, as qemu-img snapshot does: same options, output, messages and
 * exit codes.  Like qemu-img, -d looks the snapshot up by name only,
 * while -a takes an id or a name.  The image is opened for metadata
 * changes only, the one way strata writes to an image that has
 * snapshots.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/block.h"
#include "strata-img/img-common.h"
#include "util/cleanup.h"
#include "util/error.h"
#include "util/keyval.h"
#include "util/units.h"

enum { SNAPSHOT_NONE, SNAPSHOT_LIST, SNAPSHOT_APPLY, SNAPSHOT_CREATE,
       SNAPSHOT_DELETE };

static void set_action(int *action, int want)
{
    if (*action) {
        img_usage_error("Cannot mix '-l', '-a', '-c', '-d'");
    }
    *action = want;
}

/* --object: strata-img's formats need no object (no encrypted images),
 * so the definition is only checked for syntax, and then not used. */
static bool add_object(const char *arg)
{
    Error *err = NULL;
    CLEANUP_JSON json_t *opts = keyval_parse(arg, "qom-type", &err);
    if (!opts) {
        error_report_err(err);
        return false;
    }
    return true;
}

/* --image-opts: the name is a list of block options, in qemu-img's
 * syntax (img-image-opts.c). */
static char *image_opts_name(const char *arg)
{
    CLEANUP_JSON json_t *opts = img_parse_image_opts(arg);
    if (!opts) {
        error_report("Out of memory");
        return NULL;
    }
    CLEANUP_FREE char *text = json_dumps(opts, JSON_COMPACT);
    char *name = NULL;
    if (!text || asprintf(&name, "json:%s", text) < 0) {
        error_report("Out of memory");
        return NULL;
    }
    return name;
}

void img_dump_snapshot(const BlockSnapshotInfo *sn)
{
    if (!sn) {
        printf("%-10s%-17s%8s%20s%13s%11s", "ID", "TAG", "VM SIZE", "DATE",
               "VM CLOCK", "ICOUNT");
        return;
    }
    char date[64] = "", clock[128], vmsize[32], icount[32] = "";
    time_t t = (time_t)sn->date_sec;
    struct tm tm;
    if (localtime_r(&t, &tm)) {
        strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
    }
    uint64_t secs = sn->vm_clock_nsec / 1000000000;
    snprintf(clock, sizeof(clock), "%02d:%02d:%02d.%03d", (int)(secs / 3600),
             (int)((secs / 60) % 60), (int)(secs % 60),
             (int)((sn->vm_clock_nsec / 1000000) % 1000));
    format_size(sn->vm_state_size, vmsize, sizeof(vmsize));
    if (sn->icount != UINT64_MAX) {
        snprintf(icount, sizeof(icount), "%" PRId64, (int64_t)sn->icount);
    }
    printf("%-9s %-16s %8s%20s%13s%11s", sn->id, sn->name, vmsize, date,
           clock, icount);
}

/* "snapshot.id=X,snapshot.name=Y" (either may be missing). */
static bool parse_snapshot_param(const char *param, char **id, char **name)
{
    CLEANUP_FREE char *copy = strdup(param);
    char *save = NULL;
    *id = *name = NULL;
    for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        const char *value = eq ? eq + 1 : "on";
        if (!eq) {
            /* QEMU's option syntax takes a bare key as key=on. */
            error_report("warning: short-form boolean option '%s' "
                         "deprecated\nPlease use %s=on instead", tok, tok);
        } else {
            *eq = '\0';
        }
        char **slot = !strcmp(tok, "snapshot.id") ? id
                    : !strcmp(tok, "snapshot.name") ? name : NULL;
        if (!slot) {
            error_report("Invalid parameter '%s'", tok);
            goto fail;
        }
        free(*slot);
        *slot = strdup(value);
    }
    if (copy) {
        return true;
    }
fail:
    free(*id);
    free(*name);
    *id = *name = NULL;
    error_report("Failed in parsing snapshot param '%s'", param);
    return false;
}

bool img_load_snapshot(BlockNode **src, int nsrc, const char *param)
{
    Error *err = NULL;
    int ret;
    if (!strncmp(param, "snapshot.", 9)) {
        char *id, *name;
        if (!parse_snapshot_param(param, &id, &name)) {
            return false;
        }
        ret = block_snapshot_load_tmp(src[0], id, name, &err);
        free(id);
        free(name);
    } else {
        if (nsrc > 1) {
            error_report("No support for concatenating multiple snapshot");
            return false;
        }
        ret = block_snapshot_load_tmp_by_id_or_name(src[0], param, &err);
    }
    if (ret < 0) {
        error_prepend(&err, "Failed to load snapshot: ");
        error_report_err(err);
        return false;
    }
    return true;
}

static void list_snapshots(BlockNode *bs)
{
    BlockSnapshotInfo *list;
    int n = block_snapshot_list(bs, &list);
    if (n <= 0) {
        return;
    }
    printf("Snapshot list:\n");
    img_dump_snapshot(NULL);
    printf("\n");
    for (int i = 0; i < n; i++) {
        img_dump_snapshot(&list[i]);
        printf("\n");
    }
    block_snapshot_list_free(list, n);
}

static int create_snapshot(BlockNode *bs, const char *name)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    /* qemu-img keeps the name in a 256-byte buffer, and the time in
     * microseconds. */
    CLEANUP_FREE char *tag = strndup(name, 255);
    BlockSnapshotInfo sn = {
        .name = tag,
        .date_sec = (uint32_t)now.tv_sec,
        .date_nsec = (uint32_t)(now.tv_nsec / 1000 * 1000),
        .icount = 0,
    };
    int ret = tag ? block_snapshot_create(bs, &sn) : -ENOMEM;
    if (ret < 0) {
        error_report("Could not create snapshot '%s': %d (%s)", name, ret,
                     strerror(-ret));
        return 1;
    }
    return 0;
}

static int delete_snapshot(BlockNode *bs, const char *name)
{
    BlockSnapshotInfo *list;
    int n = block_snapshot_list(bs, &list);
    int found = -1;
    for (int i = 0; i < n; i++) {
        if (!strcmp(list[i].name, name)) {
            found = i;
            break;
        }
    }
    if (found < 0) {
        block_snapshot_list_free(list, n);
        error_report("Could not delete snapshot '%s': snapshot not found",
                     name);
        return 1;
    }
    Error *err = NULL;
    int ret = block_snapshot_delete(bs, list[found].id, list[found].name,
                                    &err);
    block_snapshot_list_free(list, n);
    if (ret < 0) {
        error_prepend(&err, "Could not delete snapshot '%s': ", name);
        error_report_err(err);
        return 1;
    }
    return 0;
}

int cmd_snapshot(int argc, char **argv)
{
    enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS };
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *name = NULL;
    bool image_opts = false;
    int action = SNAPSHOT_NONE;
    int flags = BLOCK_O_RDWR | BLOCK_O_METADATA_ONLY;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, ":la:c:d:hqU", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'h': img_help();
        case 'l':
            set_action(&action, SNAPSHOT_LIST);
            flags &= ~(BLOCK_O_RDWR | BLOCK_O_METADATA_ONLY);
            break;
        case 'a':
            set_action(&action, SNAPSHOT_APPLY);
            name = optarg;
            break;
        case 'c':
            set_action(&action, SNAPSHOT_CREATE);
            name = optarg;
            break;
        case 'd':
            set_action(&action, SNAPSHOT_DELETE);
            name = optarg;
            break;
        case 'q': break;   /* the actions print nothing else */
        case 'U': flags |= BLOCK_O_FORCE_SHARE; break;
        case OPT_OBJECT:
            if (!add_object(optarg)) {
                return 1;
            }
            break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        default: img_bad_option(c, argv);
        }
    }
    if (optind != argc - 1) {
        img_usage_error("Expecting one image file name");
    }
    const char *filename = argv[optind];
    CLEANUP_FREE char *opts_name = NULL;
    if (image_opts) {
        opts_name = image_opts_name(filename);
        if (!opts_name) {
            return 1;
        }
    }
    BlockNode *bs = NULL;
    if (opts_name) {
        /* Named by options: the format is the options' business, and
         * failures name the options as given. */
        Error *err = NULL;
        bs = block_open_image(opts_name, NULL, flags, &err);
        if (!bs) {
            error_prepend(&err, "Could not open '%s': ", filename);
            error_report_err(err);
        }
    } else {
        /* qemu-img warns about a probed raw image even with -q. */
        bs = img_open(filename, NULL, flags, false);
    }
    if (!bs) {
        return 1;
    }

    int ret = 0;
    switch (action) {
    case SNAPSHOT_LIST:
        list_snapshots(bs);
        break;
    case SNAPSHOT_CREATE:
        ret = create_snapshot(bs, name);
        break;
    case SNAPSHOT_APPLY: {
        Error *err = NULL;
        if (block_snapshot_goto(bs, name, &err) < 0) {
            /* QEMU reopens a raw node around the attempt on its file,
             * and so warns a second time. */
            if (!opts_name && block_node_is_probe_fallback(bs)) {
                img_warn_probed_raw(filename);
            }
            error_prepend(&err, "Could not apply snapshot '%s': ", name);
            error_report_err(err);
            ret = 1;
        }
        break;
    }
    case SNAPSHOT_DELETE:
        ret = delete_snapshot(bs, name);
        break;
    default:
        break;
    }
    block_node_unref(bs);
    return ret;
}
