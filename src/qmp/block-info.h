/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QEMU's BlockDeviceInfo and ImageInfo for a node
 * (query-named-block-nodes). */
#ifndef STRATA_QMP_BLOCK_INFO_H
#define STRATA_QMP_BLOCK_INFO_H

#include <jansson.h>
#include <stdbool.h>

#include "block/block.h"

/* ImageInfo: filename, format, dirty-flag, virtual-size, actual-size,
 * cluster-size, format-specific, backing-filename..., and (unless flat)
 * backing-image for the rest of the chain. */
json_t *qmp_image_info(BlockNode *bs, bool flat);
/* BlockDeviceInfo: node-name, drv, file, ro, image, cache, ... */
json_t *qmp_block_device_info(BlockNode *bs, bool flat);

#endif
