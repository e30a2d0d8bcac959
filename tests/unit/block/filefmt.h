/* SPDX-License-Identifier: BSD-3-Clause */
/* Pieces shared by the unit tests' toy format drivers, which keep their
 * data in a "file" child opened by the real file driver. */
#ifndef STRATA_TESTS_FILEFMT_H
#define STRATA_TESTS_FILEFMT_H

#include <jansson.h>

#include "block/block_core.h"

/* .pread for a format whose guest data is its file's bytes. */
static inline int filefmt_pread(BlockNode *bs, uint64_t offset,
                                uint64_t bytes, void *buf, int flags)
{
    return block_read(bs->file, offset, bytes, buf, flags);
}

/* Opens drv on a "file" child for the image at file. */
static inline BlockNode *filefmt_open(const BlockDriver *drv,
                                      const char *file, int flags,
                                      Error **errp)
{
    json_t *o = json_pack("{s:{s:s, s:s}}", "file", "driver", "file",
                          "filename", file);
    BlockNode *bs = block_node_open_driver(drv, o, flags, errp);
    json_decref(o);
    return bs;
}

#endif
