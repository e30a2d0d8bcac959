/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - what an image's parameters do to a node the daemon opens
 * (docs/image-params.md): copy-on-read on the node, and prefetch, a
 * stream job that makes the image independent of its backing chain in
 * the background.  Main thread only. */
#ifndef STRATA_JOBS_IMAGE_PARAMS_APPLY_H
#define STRATA_JOBS_IMAGE_PARAMS_APPLY_H

#include <stdbool.h>

#include "block/block.h"
#include "block/image-params.h"
#include "util/error.h"

/* The job id of bs's prefetch: "prefetch-NODE". */
void image_params_prefetch_id(BlockNode *bs, char *buf, size_t len);

/* Applies ip to bs just opened: copy-on-read if on, prefetch if
 * on-open (after prefetch-delay).  A read-only node, or one without a
 * backing chain, gets nothing to do and no error. */
bool image_params_apply_on_open(BlockNode *bs, const ImageParams *ip,
                                Error **errp);

/* Live changes of the keys set in changes (block-set-image-params);
 * effective is the whole set in force with the changes made:
 * copy-on-read turns on or off at once; prefetch=on-open starts the
 * prefetch now (no delay) unless it runs, prefetch=off cancels it;
 * prefetch-rate re-rates a running prefetch.  prefetch-delay and
 * l2-cache-size act at the next open. */
bool image_params_apply_live(BlockNode *bs, const ImageParams *effective,
                             const ImageParams *changes, Error **errp);

#endif
