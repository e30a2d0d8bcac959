/* SPDX-License-Identifier: BSD-3-Clause */
/* A scratch directory for one cmocka test program: created by the group
 * setup, removed with everything in it by the group teardown. */
#ifndef STRATA_TESTS_TMPDIR_H
#define STRATA_TESTS_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

static char test_dir[64];

static int test_tmpdir_remove_one(const char *path, const struct stat *st,
                                  int type, struct FTW *ftw)
{
    (void)st; (void)type; (void)ftw;
    return remove(path);
}

/* Group setup: makes /tmp/strata-test-XXXXXX and leaves its name in
 * test_dir. */
static inline int test_tmpdir_setup(void **state)
{
    (void)state;
    snprintf(test_dir, sizeof(test_dir), "/tmp/strata-test-XXXXXX");
    return mkdtemp(test_dir) ? 0 : -1;
}

/* Group teardown: removes test_dir and everything below it. */
static inline int test_tmpdir_teardown(void **state)
{
    (void)state;
    return nftw(test_dir, test_tmpdir_remove_one, 16,
                FTW_DEPTH | FTW_PHYS);
}

#endif
