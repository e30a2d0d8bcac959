/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the "file" protocol driver (also "host_device"): regular
 * files and block devices, with QEMU-compatible image locking. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/accounting.h"
#include "block/drivers/file-posix.h"
#include "util/cleanup.h"
#include "util/keyval.h"

/* QEMU counts protocol sizes in whole 512-byte sectors: a 1000-byte
 * file is a 1024-byte node (the tail reads as zeroes, and a write there
 * grows the file), and every size reported above it -- QMP's
 * virtual-size, qemu-img info, the NBD export -- says so.  Matching it
 * keeps sizes equal to what managers already see from QEMU. */
static uint64_t protocol_size(int64_t size)
{
    return ALIGN_UP((uint64_t)size, (uint64_t)512);
}

int64_t file_fd_size(int fd, bool is_bdev)
{
    if (is_bdev) {
        uint64_t size;
        if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
            return -errno;
        }
        return (int64_t)size;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        return -errno;
    }
    return st.st_size;
}

/* Finds the smallest offset/length alignment and memory alignment that
 * O_DIRECT accepts, as QEMU's raw_probe_alignment does. */
static void probe_alignment(FileState *s, uint32_t *req_align)
{
    *req_align = s->is_bdev ? s->sector_size : 512;
    s->buf_align = 4096;
    void *buf = NULL;
    if (posix_memalign(&buf, 4096, 2 * 4096) != 0) {
        *req_align = 4096;
        return;
    }
    if (!s->is_bdev) {
        for (uint32_t a = 512; a <= 4096; a <<= 1) {
            if (pread(s->fd, buf, a, 0) >= 0) {
                *req_align = a;
                break;
            }
            if (a == 4096) {
                *req_align = 4096;
            }
        }
    }
    for (uint32_t a = 512; a <= 4096; a <<= 1) {
        if (pread(s->fd, (char *)buf + a, *req_align, 0) >= 0) {
            s->buf_align = a;
            break;
        }
    }
    free(buf);
}

static bool file_do_open(BlockNode *bs, json_t *opts, int flags,
                         bool host_device, Error **errp)
{
    static const char *const aio_names[] = { "threads", "native", "io_uring", NULL };
    static const char *const locking_names[] = { "off", "on", "auto", NULL };
    FileState *s = bs->opaque;
    const char *filename;
    int aio, locking;
    uint64_t ignored_u;
    bool ignored_b;

    s->fd = s->fd_buffered = -1;
    pthread_mutex_init(&s->perm_lock, NULL);
    if (!opt_get_str(opts, "filename", NULL, &filename, errp) ||
        !opt_get_enum(opts, "aio", aio_names, 0, &aio, errp) ||
        !opt_get_enum(opts, "locking", locking_names, 2, &locking, errp) ||
        /* Accepted for compatibility; they tune QEMU's AIO engines. */
        !opt_get_uint64(opts, "aio-max-batch", 0, &ignored_u, errp) ||
        !opt_get_bool(opts, "drop-cache", true, &ignored_b, errp)) {
        return false;
    }
    static const char *const known[] = {
        "aio", "locking", "aio-max-batch", "drop-cache",
    };
    for (size_t i = 0; i < ARRAY_SIZE(known); i++) {
        json_object_del(opts, known[i]);
    }
    if (!filename) {
        error_setg(errp, "Parameter 'filename' is missing");
        return false;
    }
    if (!*filename) {
        error_setg(errp, "The '%s' block driver requires a file name",
                   bs->drv->format_name);
        return false;
    }
    if (aio == 1 && !bs->cache_direct) {
        error_setg(errp, "aio=native was specified, but it requires "
                   "cache.direct=on, which was not specified.");
        return false;
    }
    bs->filename = strdup(filename);
    if (!bs->filename) {
        error_setg(errp, "Out of memory");
        return false;
    }
    filename = bs->filename;
    json_object_del(opts, "filename");

    int oflags = O_CLOEXEC | (bs->cache_direct ? O_DIRECT : 0);
    s->fd = open(filename, oflags | (bs->read_only ? O_RDONLY : O_RDWR));
    if (s->fd < 0 && !bs->read_only && (flags & BLOCK_O_AUTO_READ_ONLY) &&
        (errno == EACCES || errno == EROFS || errno == EPERM)) {
        s->fd = open(filename, oflags | O_RDONLY);
        if (s->fd >= 0) {
            bs->read_only = true;
        }
    }
    if (s->fd < 0) {
        if (errno == EINVAL && bs->cache_direct) {
            error_setg(errp, "Could not open '%s': filesystem does not "
                       "support O_DIRECT", filename);
        } else {
            error_setg_errno(errp, errno, "Could not open '%s'", filename);
        }
        return false;
    }
    s->fd_buffered = s->fd;

    struct stat st;
    if (fstat(s->fd, &st) < 0) {
        error_setg_errno(errp, errno, "Could not stat '%s'", filename);
        return false;
    }
    s->is_bdev = S_ISBLK(st.st_mode);
    s->sector_size = 512;
    int sector = 0;
    if (s->is_bdev && ioctl(s->fd, BLKSSZGET, &sector) == 0 && sector > 0) {
        s->sector_size = (uint32_t)sector;
    }
    if (host_device && !s->is_bdev && !S_ISCHR(st.st_mode)) {
        error_setg(errp, "'host_device' driver requires '%s' to be either "
                   "a character or block device", filename);
        return false;
    }
    if (S_ISDIR(st.st_mode)) {
        error_setg(errp, "'%s' is a directory", filename);
        return false;
    }
    if (!s->is_bdev && !S_ISREG(st.st_mode)) {
        error_setg(errp, "'%s' is neither a regular file nor a block device",
                   filename);
        return false;
    }

    if (locking != 0) {
        uint64_t perm, shared;
        file_lock_perms(bs->read_only, bs->force_share, &bs->role, &perm,
                        &shared);
        int ret = file_lock_apply_and_check(s->fd, perm, shared, filename, errp);
        if (ret == -ENOTSUP && locking == 1) {
            error_setg(errp, "Failed to lock '%s': the file system does not "
                       "support OFD locks; use locking=off", filename);
            return false;
        }
        if (ret < 0 && ret != -ENOTSUP) {
            return false;
        }
        if (ret == 0) {
            s->use_lock = true;
            s->lock_perm = s->parent_perm = perm;
            s->lock_shared = s->parent_shared = shared;
        }
    }

    if (bs->cache_direct) {
        probe_alignment(s, &bs->request_alignment);
        s->fd_buffered = open(filename, O_CLOEXEC |
                              (bs->read_only ? O_RDONLY : O_RDWR));
        if (s->fd_buffered < 0) {
            error_setg_errno(errp, errno, "Could not open '%s'", filename);
            return false;
        }
    }

    int64_t size = file_fd_size(s->fd, s->is_bdev);
    if (size < 0) {
        error_setg_errno(errp, (int)-size, "Could not get the size of '%s'",
                         filename);
        return false;
    }
    bs->total_size = protocol_size(size);
    return true;
}

static void file_close(BlockNode *bs)
{
    FileState *s = bs->opaque;
    if (s->fd_buffered >= 0 && s->fd_buffered != s->fd) {
        close(s->fd_buffered);
    }
    if (s->fd >= 0) {
        close(s->fd);
    }
    s->fd = s->fd_buffered = -1;
    pthread_mutex_destroy(&s->perm_lock);
}

static bool file_open(BlockNode *bs, json_t *opts, int flags, Error **errp)
{
    if (!file_do_open(bs, opts, flags, false, errp)) {
        file_close(bs);
        return false;
    }
    return true;
}

static bool hdev_open(BlockNode *bs, json_t *opts, int flags, Error **errp)
{
    if (!file_do_open(bs, opts, flags, true, errp)) {
        file_close(bs);
        return false;
    }
    return true;
}

/* Full pread/pwrite handling short transfers and EINTR.  Reads past the
 * end of the file return zeroes.  After a short transfer on an O_DIRECT
 * fd the rest goes through the buffered fd (the offset is no longer
 * aligned). */
static int rw_full(FileState *s, int fd, bool is_write, uint64_t offset,
                   uint64_t bytes, void *buf)
{
    char *p = buf;
    while (bytes > 0) {
        size_t n = bytes > (1u << 30) ? (1u << 30) : (size_t)bytes;
        ssize_t r = is_write ? pwrite(fd, p, n, (off_t)offset)
                             : pread(fd, p, n, (off_t)offset);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (r == 0) {
            if (is_write) {
                return -EIO;
            }
            memset(p, 0, bytes);
            return 0;
        }
        p += r;
        offset += (uint64_t)r;
        bytes -= (uint64_t)r;
        fd = s->fd_buffered;
    }
    return 0;
}

/* Chooses how to do one transfer with cache.direct: O_DIRECT when offset,
 * length and memory are aligned, a bounce buffer when only memory is
 * not, the buffered fd for an unaligned tail. */
static int file_rw(BlockNode *bs, bool is_write, uint64_t offset,
                   uint64_t bytes, void *buf)
{
    FileState *s = bs->opaque;
    if (!bs->cache_direct) {
        return rw_full(s, s->fd, is_write, offset, bytes, buf);
    }
    uint32_t a = bs->request_alignment;
    if (offset % a || bytes % a) {
        return rw_full(s, s->fd_buffered, is_write, offset, bytes, buf);
    }
    if ((uintptr_t)buf % s->buf_align == 0) {
        return rw_full(s, s->fd, is_write, offset, bytes, buf);
    }
    void *bounce = NULL;
    if (bytes > SIZE_MAX || posix_memalign(&bounce, 4096, (size_t)bytes) != 0) {
        return -ENOMEM;
    }
    if (is_write) {
        memcpy(bounce, buf, bytes);
    }
    int ret = rw_full(s, s->fd, is_write, offset, bytes, bounce);
    if (ret == 0 && !is_write) {
        memcpy(buf, bounce, bytes);
    }
    free(bounce);
    return ret;
}

static int file_flush(BlockNode *bs)
{
    FileState *s = bs->opaque;
    if (fdatasync(s->fd) < 0) {
        return -errno;
    }
    return 0;
}

static int file_pread(BlockNode *bs, uint64_t offset, uint64_t bytes,
                      void *buf, int flags)
{
    return file_rw(bs, false, offset, bytes, buf);
}

static int file_pwrite(BlockNode *bs, uint64_t offset, uint64_t bytes,
                       const void *buf, int flags)
{
    int ret = file_rw(bs, true, offset, bytes, (void *)buf);
    if (ret == 0 && (flags & BLOCK_REQ_FUA)) {
        ret = file_flush(bs);
    }
    return ret;
}

static int do_fallocate(int fd, int mode, uint64_t offset, uint64_t bytes)
{
    int r;
    do {
        r = fallocate(fd, mode, (off_t)offset, (off_t)bytes);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        return (errno == EOPNOTSUPP || errno == ENOSYS) ? -ENOTSUP : -errno;
    }
    return 0;
}

/* Block devices as QEMU's host_device: with MAY_UNMAP, fallocate's punch
 * hole (the kernel zeroes by unmapping, never the slow way); else
 * BLKZEROOUT, which may write zeroes the slow way and so is not for
 * NO_FALLBACK.  Both want whole logical blocks: anything else makes the
 * core write a buffer of zeroes. */
static int bdev_zeroes(FileState *s, uint64_t offset, uint64_t bytes, int flags)
{
    if (offset % s->sector_size || bytes % s->sector_size) {
        return -ENOTSUP;
    }
    if (flags & BLOCK_REQ_MAY_UNMAP) {
        int ret = do_fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               offset, bytes);
        if (ret != -ENOTSUP && ret != -EINVAL) {
            return ret;
        }
    }
    if (flags & BLOCK_REQ_NO_FALLBACK) {
        return -ENOTSUP;
    }
    uint64_t range[2] = { offset, bytes };
    int r;
    do {
        r = ioctl(s->fd, BLKZEROOUT, range);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        return (errno == EINVAL || errno == EOPNOTSUPP || errno == ENOTTY)
               ? -ENOTSUP : -errno;
    }
    return 0;
}

static int reg_zeroes(FileState *s, uint64_t offset, uint64_t bytes, int flags)
{
    int64_t size = file_fd_size(s->fd, false);
    if (size < 0) {
        return (int)size;
    }
    uint64_t end = offset + bytes;
    uint64_t in_end = MIN(end, (uint64_t)size);
    int ret = 0;
    if (offset < in_end) {
        ret = -ENOTSUP;
        if (flags & BLOCK_REQ_MAY_UNMAP) {
            ret = do_fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               offset, in_end - offset);
        }
        if (ret == -ENOTSUP) {
            ret = do_fallocate(s->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                               offset, in_end - offset);
        }
        if (ret == -ENOTSUP) {
            /* e.g. tmpfs: punch, then allocate again so the range stays
             * allocated as a zero write would leave it. */
            ret = do_fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               offset, in_end - offset);
            if (ret == 0) {
                ret = do_fallocate(s->fd, FALLOC_FL_KEEP_SIZE, offset,
                                   in_end - offset);
                if (ret == -ENOTSUP) {
                    ret = 0;
                }
            }
        }
    }
    if (ret == 0 && end > in_end) {
        /* Past EOF: extend (never shrink, whatever else runs at once). */
        uint64_t start = MAX(offset, in_end);
        ret = do_fallocate(s->fd, FALLOC_FL_ZERO_RANGE, start, end - start);
        if (ret == -ENOTSUP) {
            ret = do_fallocate(s->fd, 0, start, end - start);
        }
    }
    return ret;
}

static int file_pwrite_zeroes(BlockNode *bs, uint64_t offset, uint64_t bytes,
                              int flags)
{
    FileState *s = bs->opaque;
    int ret = s->is_bdev ? bdev_zeroes(s, offset, bytes, flags)
                         : reg_zeroes(s, offset, bytes, flags);
    if (ret == 0 && (flags & BLOCK_REQ_FUA)) {
        ret = file_flush(bs);
    }
    return ret;
}

/* Block devices get BLKDISCARD (QEMU's host_device), on the whole
 * logical blocks inside the range; files a punched hole. */
static int bdev_discard(FileState *s, uint64_t offset, uint64_t bytes)
{
    uint64_t start = ALIGN_UP(offset, (uint64_t)s->sector_size);
    uint64_t end = ALIGN_DOWN(offset + bytes, (uint64_t)s->sector_size);
    if (start >= end) {
        return 0;
    }
    uint64_t range[2] = { start, end - start };
    int r;
    do {
        r = ioctl(s->fd, BLKDISCARD, range);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        return (errno == EOPNOTSUPP || errno == ENOTTY) ? -ENOTSUP : -errno;
    }
    return 0;
}

static int file_pdiscard(BlockNode *bs, uint64_t offset, uint64_t bytes)
{
    FileState *s = bs->opaque;
    if (s->is_bdev) {
        return bdev_discard(s, offset, bytes);
    }
    return do_fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                        offset, bytes);
}

static int file_block_status(BlockNode *bs, uint64_t offset, uint64_t bytes,
                             uint64_t *pnum, uint64_t *map, BlockNode **file)
{
    FileState *s = bs->opaque;
    *map = offset;
    *file = bs;
    *pnum = bytes;
    if (s->is_bdev) {
        return BLOCK_STATUS_DATA | BLOCK_STATUS_OFFSET_VALID;
    }
    off_t data = lseek(s->fd, (off_t)offset, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) {
            /* A hole up to the end of the file. */
            return BLOCK_STATUS_ZERO | BLOCK_STATUS_OFFSET_VALID;
        }
        /* No SEEK_DATA: everything is data. */
        return BLOCK_STATUS_DATA | BLOCK_STATUS_OFFSET_VALID;
    }
    if ((uint64_t)data > offset) {
        *pnum = MIN(bytes, (uint64_t)data - offset);
        return BLOCK_STATUS_ZERO | BLOCK_STATUS_OFFSET_VALID;
    }
    off_t hole = lseek(s->fd, (off_t)offset, SEEK_HOLE);
    if (hole > (off_t)offset) {
        *pnum = MIN(bytes, (uint64_t)hole - offset);
    }
    return BLOCK_STATUS_DATA | BLOCK_STATUS_OFFSET_VALID;
}

static int64_t file_refresh_size(BlockNode *bs)
{
    FileState *s = bs->opaque;
    int64_t size = file_fd_size(s->fd, s->is_bdev);
    if (size < 0) {
        return size;
    }
    bs->total_size = protocol_size(size);
    return (int64_t)bs->total_size;
}

static int64_t file_allocated_size(BlockNode *bs)
{
    FileState *s = bs->opaque;
    struct stat st;
    if (fstat(s->fd, &st) < 0) {
        return -errno;
    }
    return (int64_t)st.st_blocks * 512;
}

static bool file_is_block_device(BlockNode *bs)
{
    FileState *s = bs->opaque;
    return s->is_bdev;
}

/* host_device insists on a device (see file_do_open). */
static bool hdev_is_block_device(BlockNode *bs)
{
    return true;
}

/* QEMU's file driver reports how many discards reached the host; strata
 * counts the same requests at node level (discard=unmap only). */
static json_t *file_get_specific_stats(BlockNode *bs)
{
    BlockAcctStats st = { 0 };
    if (bs->acct) {
        block_acct_get_stats(bs->acct, &st);
    }
    const BlockAcctOpStats *um = &st.op[BLOCK_ACCT_UNMAP];
    return json_pack("{s:I, s:I, s:s, s:I}",
                     "discard-bytes-ok", (json_int_t)um->bytes,
                     "discard-nb-ok", (json_int_t)um->ops,
                     "driver", bs->drv->format_name,
                     "discard-nb-failed", (json_int_t)um->failed_ops);
}

/* QEMU's bdrv_parse_filename_strip_prefix: "file:NAME" opens NAME; a
 * NAME that would itself look prefixed ("file:a:b") becomes "./a:b". */
static bool strip_prefix(const char *filename, const char *prefix,
                         json_t *opts, Error **errp)
{
    size_t plen = strlen(prefix);
    if (strncmp(filename, prefix, plen) != 0) {
        return true;
    }
    const char *name = filename + plen;
    char *fat = NULL;
    if (name[strcspn(name, ":/")] == ':' && asprintf(&fat, "./%s", name) < 0) {
        error_setg(errp, "Out of memory");
        return false;
    }
    json_object_set_new(opts, "filename", json_string(fat ? fat : name));
    free(fat);
    return true;
}

static bool file_parse_filename(const char *filename, json_t *opts,
                                Error **errp)
{
    return strip_prefix(filename, "file:", opts, errp);
}

static bool hdev_parse_filename(const char *filename, json_t *opts,
                                Error **errp)
{
    return strip_prefix(filename, "host_device:", opts, errp);
}

/* The same callbacks serve both names: "file" also opens devices, and
 * "host_device" insists on one (QEMU's names for the one driver). */
#define FILE_DRIVER_CALLBACKS                          \
    .state_size = sizeof(FileState),                   \
    .is_protocol = true,                               \
    .grows_on_write = true,                            \
    .close = file_close,                               \
    .pread = file_pread,                               \
    .pwrite = file_pwrite,                             \
    .pwrite_zeroes = file_pwrite_zeroes,               \
    .pdiscard = file_pdiscard,                         \
    .flush = file_flush,                               \
    .block_status = file_block_status,                 \
    .refresh_size = file_refresh_size,                 \
    .get_specific_stats = file_get_specific_stats,     \
    .get_allocated_file_size = file_allocated_size,    \
    .truncate = file_truncate,                         \
    .user_perm = file_user_perm,                       \
    .attach_parent = file_attach_parent,               \
    .make_read_only = file_make_read_only

const BlockDriver bdrv_file = {
    .format_name = "file",
    .open = file_open,
    .parse_filename = file_parse_filename,
    .create = file_create,
    .create_opts = file_create_opts,
    .is_block_device = file_is_block_device,
    FILE_DRIVER_CALLBACKS,
};

const BlockDriver bdrv_host_device = {
    .format_name = "host_device",
    .open = hdev_open,
    .parse_filename = hdev_parse_filename,
    .is_block_device = hdev_is_block_device,
    FILE_DRIVER_CALLBACKS,
};
