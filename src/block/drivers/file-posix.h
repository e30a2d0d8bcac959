/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - pieces of the file driver shared between its source files. */
#ifndef STRATA_BLOCK_DRIVERS_FILE_POSIX_H
#define STRATA_BLOCK_DRIVERS_FILE_POSIX_H

#include <stdbool.h>
#include <stdint.h>

#include "block/block_core.h"

/* QEMU's permission bits, in the order of their lock bytes. */
#define FILE_PERM_CONSISTENT_READ 0x1
#define FILE_PERM_WRITE           0x2
#define FILE_PERM_WRITE_UNCHANGED 0x4
#define FILE_PERM_RESIZE          0x8
#define FILE_PERM_ALL             0xf

typedef struct FileState {
    int fd;               /* O_DIRECT when cache.direct=on */
    int fd_buffered;      /* == fd, or a second buffered fd used for the
                             unaligned tail of an O_DIRECT file */
    bool is_bdev;
    uint32_t sector_size; /* block devices: logical block size, which
                             BLKZEROOUT and BLKDISCARD ranges must fit */
    uint32_t buf_align;   /* memory alignment O_DIRECT needs */
    bool use_lock;        /* locking=on/auto and the system has OFD locks */
    uint64_t lock_perm;   /* FILE_PERM_* held (bytes 100 + bit) */
    uint64_t lock_shared; /* FILE_PERM_* shared (others: bytes 200 + bit) */
    /* What the parent links need (lock_perm/lock_shared are these plus
     * the users'), and how many users hold or unshare each bit. */
    uint64_t parent_perm;
    uint64_t parent_shared;
    unsigned user_perm[4];
    unsigned user_unshared[4];
    pthread_mutex_t perm_lock; /* guards the fields above */
} FileState;

/* BlockDriver.user_perm: adds (count 1) or removes (count -1) a user's
 * permissions on a file node and re-takes its locks. */
bool file_user_perm(BlockNode *bs, uint64_t perm, uint64_t shared, int count,
                    Error **errp);
/* BlockDriver.attach_parent: re-takes a file node's locks for a (new)
 * parent; a node with several parents keeps the union of their needs. */
bool file_attach_parent(BlockNode *bs, const BlockChildRole *role,
                        Error **errp);

/* BlockDriver.make_read_only: the parent (or the node) writes no more:
 * its locks drop write and resize. */
void file_make_read_only(BlockNode *bs);

/* QEMU's permissions for a file node from its parent: none unless the
 * parent is a metadata format (qcow2), which reads, writes and resizes
 * when read-write and lets nobody else write or resize, or a quorum,
 * which lets nobody else write or resize its children; force-share
 * shares all.  Users (exports, tools) add theirs: file_user_perm. */
void file_lock_perms(bool read_only, bool force_share,
                     const BlockChildRole *role,
                     uint64_t *perm, uint64_t *shared);

/* Size of the file or block device behind fd, or -errno. */
int64_t file_fd_size(int fd, bool is_bdev);

/* Callbacks implemented in file-create.c. */
bool file_truncate(BlockNode *bs, uint64_t size, bool exact,
                   PreallocMode prealloc, Error **errp);
bool file_create(const char *filename, json_t *opts, Error **errp);
extern const BlockCreateOpt file_create_opts[];

/* Takes QEMU's OFD byte locks on fd (shared read locks at 100 + bit for
 * each permission in perm, at 200 + bit for each one not in shared) and
 * then checks that no other process conflicts, with QEMU's messages and
 * the hint naming path.  Returns 0, -ENOTSUP when the system has no OFD
 * locks (errp untouched), or another -errno with errp set. */
int file_lock_apply_and_check(int fd, uint64_t perm, uint64_t shared,
                              const char *path, Error **errp);
/* Drops the locks for the permissions in perm and the unshared ones in
 * unshared. */
void file_lock_release(int fd, uint64_t perm, uint64_t unshared);

#endif
