/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img - discovering a backing chain and opening it with chosen
 * layers writable (commit writes into a backing layer). */
#ifndef STRATA_IMG_CHAIN_H
#define STRATA_IMG_CHAIN_H

#include <stdint.h>

#include "block/block.h"

typedef struct ImgChainLayer {
    char *filename;     /* path usable to open the layer */
    char *fmt;          /* its format (given, recorded or probed) */
    char *backing_name; /* backing file name as recorded, or NULL */
} ImgChainLayer;

typedef struct ImgChain {
    ImgChainLayer *layers; /* [0] is the top */
    int count;
} ImgChain;

/* Opens each layer alone to learn the chain under filename.  Prints the
 * error (missing file, loop) and returns NULL on failure. */
ImgChain *img_discover_chain(const char *filename, const char *fmt,
                             int flags);
void img_chain_free(ImgChain *chain);

/* Opens the top count layers (count <= 0: all) as one graph, with
 * discard=unmap (as qemu-img commit); layer i is writable when bit i of
 * rw_mask is set.  Prints the error and returns
 * NULL on failure. */
BlockNode *img_open_chain(const ImgChain *chain, uint64_t rw_mask,
                          int count);

/* Index of the backing layer that name designates, by qemu-img's rule
 * (a relative path counts from the directory of the layer above), or
 * -1. */
int img_chain_find(const ImgChain *chain, const char *name);

#endif
