/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - file driver: resizing and creating files, with QEMU's
 * preallocation modes and messages. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/drivers/file-posix.h"
#include "util/cleanup.h"
#include "util/keyval.h"

#define ZERO_CHUNK (1024 * 1024)

static int write_zeroes_buffer(int fd, uint64_t offset, uint64_t bytes)
{
    CLEANUP_FREE char *buf = calloc(1, ZERO_CHUNK);
    if (!buf) {
        return -ENOMEM;
    }
    while (bytes > 0) {
        size_t n = bytes > ZERO_CHUNK ? ZERO_CHUNK : (size_t)bytes;
        ssize_t r = pwrite(fd, buf, n, (off_t)offset);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        offset += (uint64_t)r;
        bytes -= (uint64_t)r;
    }
    return 0;
}

/* Writes zeroes over the first block of a file that just grew from
 * empty, as QEMU does: later opens with O_DIRECT probe the alignment by
 * reading there, and qemu-img map shows the block as data.  An
 * optimisation only: failures are ignored. */
static void allocate_first_block(int fd, uint64_t size)
{
    size_t n = size < 4096 ? 512 : 4096;
    void *buf = NULL;
    if (posix_memalign(&buf, 4096, n) != 0) {
        return;
    }
    memset(buf, 0, n);
    while (pwrite(fd, buf, n, 0) < 0 && errno == EINTR) {
    }
    free(buf);
}

/* Resizes a regular file from cur to size with preallocation. */
static bool regular_resize(int fd, uint64_t cur, uint64_t size,
                           PreallocMode prealloc, Error **errp)
{
    int ret;
    switch (prealloc) {
    case PREALLOC_FALLOC:
        if (size > cur) {
            ret = posix_fallocate(fd, (off_t)cur, (off_t)(size - cur));
            if (ret != 0) {
                error_setg_errno(errp, ret, "Could not preallocate new data");
                return false;
            }
            if (cur == 0) {
                allocate_first_block(fd, size);
            }
            return true;
        }
        break;
    case PREALLOC_FULL:
        if (size > cur) {
            if (ftruncate(fd, (off_t)size) < 0) {
                error_setg_errno(errp, errno, "Could not resize file");
                return false;
            }
            ret = write_zeroes_buffer(fd, cur, size - cur);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Could not write zeros for "
                                 "preallocation");
                return false;
            }
            if (fsync(fd) < 0) {
                error_setg_errno(errp, errno, "Could not flush file to disk");
                return false;
            }
            return true;
        }
        break;
    case PREALLOC_OFF:
        break;
    default:
        error_setg(errp, "Unsupported preallocation mode: %s",
                   prealloc_mode_names[prealloc]);
        return false;
    }
    if (ftruncate(fd, (off_t)size) < 0) {
        error_setg_errno(errp, errno, "Could not resize file");
        return false;
    }
    if (prealloc == PREALLOC_OFF && cur == 0 && size > 0) {
        allocate_first_block(fd, size);
    }
    return true;
}

bool file_truncate(BlockNode *bs, uint64_t size, bool exact,
                   PreallocMode prealloc, Error **errp)
{
    FileState *s = bs->opaque;
    int64_t cur = file_fd_size(s->fd, s->is_bdev);
    if (cur < 0) {
        error_setg_errno(errp, (int)-cur, "Could not get the size of '%s'",
                         bs->filename);
        return false;
    }
    if (s->is_bdev) {
        if (prealloc != PREALLOC_OFF) {
            error_setg(errp, "Preallocation mode '%s' unsupported for this "
                       "non-regular file", prealloc_mode_names[prealloc]);
            return false;
        }
        if (exact && size != (uint64_t)cur) {
            error_setg(errp, "Cannot resize device files");
            return false;
        }
        if (size > (uint64_t)cur) {
            error_setg(errp, "Cannot grow device files");
            return false;
        }
        return true;
    }
    if (!regular_resize(s->fd_buffered, (uint64_t)cur, size, prealloc, errp)) {
        return false;
    }
    bs->total_size = size;
    return true;
}

/* Sets the no-copy-on-write attribute (btrfs); only effective on an empty
 * file, harmless elsewhere. */
static void set_nocow(int fd)
{
    int attr = 0;
    if (ioctl(fd, FS_IOC_GETFLAGS, &attr) == 0) {
        attr |= FS_NOCOW_FL;
        (void)ioctl(fd, FS_IOC_SETFLAGS, &attr);
    }
}

/* A device is not created but checked, as QEMU's host_device does: it
 * must be writable and hold the (sector-rounded) size.  Its contents stay;
 * the format writes what it needs. */
static bool device_create(const char *filename, uint64_t size, Error **errp)
{
    int fd CLEANUP_CLOSE = open(filename, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Could not open '%s'", filename);
        return false;
    }
    int ret = file_lock_apply_and_check(fd, FILE_PERM_WRITE,
                                        FILE_PERM_ALL & ~(uint64_t)FILE_PERM_WRITE,
                                        filename, errp);
    if (ret < 0 && ret != -ENOTSUP) {
        return false;
    }
    off_t end = lseek(fd, 0, SEEK_END);
    if (end < 0) {
        error_setg_errno(errp, errno, "Could not get the size of '%s'", filename);
        return false;
    }
    if ((uint64_t)end < ALIGN_UP(size, 512)) {
        error_setg(errp, "Device is too small");
        return false;
    }
    return true;
}

/* The order is the one qemu-img prints them in. */
const BlockCreateOpt file_create_opts[] = {
    { "size", BLOCK_OPT_SIZE, "Virtual disk size", NULL },
    { "preallocation", BLOCK_OPT_STRING, "Preallocation mode (allowed "
      "values: off, falloc, full)", NULL },
    { "nocow", BLOCK_OPT_BOOL, "Turn off copy-on-write (valid only on "
      "btrfs)", NULL },
    /* QEMU sets an XFS extent size hint; a tuning knob we accept. */
    { "extent_size_hint", BLOCK_OPT_SIZE,
      "Extent size hint for the image file, 0 to disable", NULL },
    { NULL },
};

bool file_create(const char *filename, json_t *opts, Error **errp)
{
    uint64_t size, extent_hint;
    int prealloc;
    bool nocow;

    if (!opt_get_size(opts, "size", 0, &size, errp) ||
        !opt_get_enum(opts, "preallocation", prealloc_mode_names, PREALLOC_OFF,
                      &prealloc, errp) ||
        !opt_get_bool(opts, "nocow", false, &nocow, errp) ||
        !opt_get_size(opts, "extent_size_hint", 0, &extent_hint, errp)) {
        return false;
    }
    for (const BlockCreateOpt *o = file_create_opts; o->name; o++) {
        json_object_del(opts, o->name);
    }
    const char *key;
    json_t *val;
    json_object_foreach(opts, key, val) {
        error_setg(errp, "Invalid parameter '%s'", key);
        return false;
    }
    if (prealloc == PREALLOC_METADATA) {
        error_setg(errp, "Unsupported preallocation mode: metadata");
        return false;
    }
    if (size > INT64_MAX) {
        error_setg(errp, "Image size must be less than 8 EiB!");
        return false;
    }

    struct stat st;
    if (stat(filename, &st) == 0 && (S_ISBLK(st.st_mode) || S_ISCHR(st.st_mode))) {
        return device_create(filename, size, errp);
    }
    int fd CLEANUP_CLOSE = open(filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Could not create '%s'", filename);
        return false;
    }
    if (nocow) {
        set_nocow(fd);
    }
    /* Like QEMU, refuse to truncate an image another process uses. */
    int ret = file_lock_apply_and_check(fd, FILE_PERM_WRITE | FILE_PERM_RESIZE,
                                        FILE_PERM_ALL & ~(uint64_t)FILE_PERM_RESIZE,
                                        filename, errp);
    if (ret < 0 && ret != -ENOTSUP) {
        return false;
    }
    if (ftruncate(fd, 0) < 0) {
        error_setg_errno(errp, errno, "Could not truncate '%s'", filename);
        return false;
    }
    return regular_resize(fd, 0, size, (PreallocMode)prealloc, errp);
}
