/* SPDX-License-Identifier: BSD-3-Clause */
/* An in-memory block node for NBD tests and the fuzz target: data lives
 * in a buffer, allocation is tracked per 64 KiB chunk so block status
 * and sparse reads have holes to report. */
#ifndef STRATA_TESTS_NBD_MEMNODE_H
#define STRATA_TESTS_NBD_MEMNODE_H

#include "block/block.h"

#define MEMNODE_CHUNK 65536

/* Creates and registers node_name with size bytes (all unallocated).
 * Returns a new reference, or NULL. */
BlockNode *memnode_create(const char *node_name, uint64_t size, bool read_only);

#endif
