/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - image locking compatible with QEMU's file-posix driver.
 *
 * QEMU expresses "I use permission P" as a shared OFD read lock on byte
 * 100 + bit(P) and "nobody else may use P" as one on byte 200 + bit(P).
 * A conflict is found by asking whether an exclusive lock on the
 * opposite byte would be refused, which sees other open file
 * descriptions' locks but not our own.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "block/drivers/file-posix.h"
#include "util/cleanup.h"

#define LOCK_PERM_BASE 100
#define LOCK_SHARED_BASE 200
#define NPERMS 4

static const char *const perm_names[NPERMS] = {
    "consistent read", "write", "write unchanged", "resize",
};

static int lock_byte(int fd, int off)
{
    struct flock fl = {
        .l_whence = SEEK_SET, .l_start = off, .l_len = 1, .l_type = F_RDLCK,
    };
    if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
        return -errno;
    }
    return 0;
}

/* 1 if another process holds a lock on byte off, 0 if not, -errno. */
static int byte_is_locked(int fd, int off)
{
    struct flock fl = {
        .l_whence = SEEK_SET, .l_start = off, .l_len = 1, .l_type = F_WRLCK,
    };
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
        return -errno;
    }
    return fl.l_type != F_UNLCK;
}

/* Another process holds the image: EBUSY in the error, so that a caller
 * (strata-img update) can say "in use" rather than guess from the text. */
static void mark_in_use(Error **errp)
{
    if (errp && *errp) {
        (*errp)->errnum = EBUSY;
    }
}

int file_lock_apply_and_check(int fd, uint64_t perm, uint64_t shared,
                              const char *path, Error **errp)
{
    for (int i = 0; i < NPERMS; i++) {
        uint64_t bit = 1ULL << i;
        int off = 0;
        if (perm & bit) {
            off = LOCK_PERM_BASE + i;
            int ret = lock_byte(fd, off);
            if (ret == -EINVAL && i == 0) {
                return -ENOTSUP;
            }
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Failed to lock byte %d", off);
                return ret;
            }
        }
        if (!(shared & bit)) {
            off = LOCK_SHARED_BASE + i;
            int ret = lock_byte(fd, off);
            if (ret == -EINVAL && i == 0 && !(perm & bit)) {
                return -ENOTSUP;
            }
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Failed to lock byte %d", off);
                return ret;
            }
        }
    }
    /* Same order as QEMU, so the first message is the same. */
    for (int i = 0; i < NPERMS; i++) {
        if (perm & (1ULL << i)) {
            int ret = byte_is_locked(fd, LOCK_SHARED_BASE + i);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Failed to check lock byte %d",
                                 LOCK_SHARED_BASE + i);
                return ret;
            }
            if (ret) {
                error_setg(errp, "Failed to get \"%s\" lock",
                           perm_names[i]);
                error_append_hint(errp, "Is another process using the "
                                  "image [%s]?\n", path);
                mark_in_use(errp);
                return -EAGAIN;
            }
        }
    }
    for (int i = 0; i < NPERMS; i++) {
        if (!(shared & (1ULL << i))) {
            int ret = byte_is_locked(fd, LOCK_PERM_BASE + i);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Failed to check lock byte %d",
                                 LOCK_PERM_BASE + i);
                return ret;
            }
            if (ret) {
                error_setg(errp, "Failed to get shared \"%s\" lock",
                           perm_names[i]);
                error_append_hint(errp, "Is another process using the "
                                  "image [%s]?\n", path);
                mark_in_use(errp);
                return -EAGAIN;
            }
        }
    }
    return 0;
}

void file_lock_release(int fd, uint64_t perm, uint64_t unshared)
{
    for (int i = 0; i < NPERMS; i++) {
        for (int k = 0; k < 2; k++) {
            uint64_t mask = k ? unshared : perm;
            if (!(mask & (1ULL << i))) {
                continue;
            }
            struct flock fl = {
                .l_whence = SEEK_SET, .l_len = 1, .l_type = F_UNLCK,
                .l_start = (k ? LOCK_SHARED_BASE : LOCK_PERM_BASE) + i,
            };
            (void)fcntl(fd, F_OFD_SETLK, &fl);
        }
    }
}

void file_lock_perms(bool read_only, bool force_share,
                     const BlockChildRole *role,
                     uint64_t *perm, uint64_t *shared)
{
    *perm = 0;
    *shared = FILE_PERM_ALL;
    if (role->parent_unshares_changes && !force_share) {
        *shared &= ~(uint64_t)(FILE_PERM_WRITE | FILE_PERM_RESIZE);
    }
    if (!role->parent_has_metadata) {
        return;
    }
    *perm = FILE_PERM_CONSISTENT_READ;
    if (!read_only) {
        *perm |= FILE_PERM_WRITE | FILE_PERM_RESIZE;
    }
    if (!force_share) {
        *shared &= ~(uint64_t)(FILE_PERM_WRITE | FILE_PERM_RESIZE);
    }
}

/* Moves the locks of bs to perm/shared: takes the new bytes, checks
 * them against other processes, then drops the bytes no longer needed.
 * On a conflict nothing changes.  Caller holds perm_lock. */
static bool relock(BlockNode *bs, uint64_t perm, uint64_t shared, Error **errp)
{
    FileState *s = bs->opaque;
    if (perm == s->lock_perm && shared == s->lock_shared) {
        return true;
    }
    int ret = file_lock_apply_and_check(s->fd, perm, shared, bs->filename, errp);
    if (ret < 0 && ret != -ENOTSUP) {
        file_lock_release(s->fd, perm & ~s->lock_perm,
                          ~shared & s->lock_shared & FILE_PERM_ALL);
        return false;
    }
    file_lock_release(s->fd, s->lock_perm & ~perm,
                      ~s->lock_shared & shared & FILE_PERM_ALL);
    s->lock_perm = perm;
    s->lock_shared = shared;
    return true;
}

/* The parents' needs plus every user's. */
static void wanted_locks(const FileState *s, uint64_t *perm, uint64_t *shared)
{
    *perm = s->parent_perm;
    *shared = s->parent_shared;
    for (int i = 0; i < NPERMS; i++) {
        if (s->user_perm[i]) {
            *perm |= 1ULL << i;
        }
        if (s->user_unshared[i]) {
            *shared &= ~(1ULL << i);
        }
    }
}

bool file_attach_parent(BlockNode *bs, const BlockChildRole *role,
                        Error **errp)
{
    FileState *s = bs->opaque;
    if (!s->use_lock) {
        return true;
    }
    uint64_t perm, shared;
    file_lock_perms(bs->read_only, bs->force_share, role, &perm, &shared);
    LOCK_GUARD(&s->perm_lock);
    /* A node can have several parents: keep the union of their needs. */
    uint64_t old_perm = s->parent_perm, old_shared = s->parent_shared;
    s->parent_perm |= perm;
    s->parent_shared &= shared;
    wanted_locks(s, &perm, &shared);
    if (!relock(bs, perm, shared, errp)) {
        s->parent_perm = old_perm;
        s->parent_shared = old_shared;
        return false;
    }
    return true;
}

void file_make_read_only(BlockNode *bs)
{
    FileState *s = bs->opaque;
    if (!s->use_lock) {
        return;
    }
    uint64_t perm, shared;
    file_lock_perms(true, bs->force_share, &bs->role, &perm, &shared);
    LOCK_GUARD(&s->perm_lock);
    s->parent_perm &= perm;
    s->parent_shared |= shared;
    wanted_locks(s, &perm, &shared);
    Error *err = NULL;
    /* Only bytes are dropped: nothing can conflict. */
    if (!relock(bs, perm, shared, &err)) {
        error_free(err);
    }
}

bool file_user_perm(BlockNode *bs, uint64_t perm, uint64_t shared, int count,
                    Error **errp)
{
    FileState *s = bs->opaque;
    if (!s->use_lock) {
        return true;
    }
    LOCK_GUARD(&s->perm_lock);
    for (int i = 0; i < NPERMS; i++) {
        if (perm & (1ULL << i)) {
            s->user_perm[i] += (unsigned)count;
        }
        if (!(shared & (1ULL << i))) {
            s->user_unshared[i] += (unsigned)count;
        }
    }
    uint64_t want_perm, want_shared;
    wanted_locks(s, &want_perm, &want_shared);
    Error *local = NULL;
    if (relock(bs, want_perm, want_shared, &local)) {
        return true;
    }
    if (count < 0) {
        /* Giving locks back cannot conflict; nothing else to do. */
        error_free(local);
        return true;
    }
    for (int i = 0; i < NPERMS; i++) {
        if (perm & (1ULL << i)) {
            s->user_perm[i] -= (unsigned)count;
        }
        if (!(shared & (1ULL << i))) {
            s->user_unshared[i] -= (unsigned)count;
        }
    }
    error_propagate(errp, local);
    return false;
}
