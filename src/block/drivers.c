/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the registry of block drivers. */
#include <stdlib.h>
#include <string.h>

#include "block/block_core.h"
#include "util/cleanup.h"

#include "block/drivers/qcow2/qcow2.h"

const BlockDriver *const block_drivers[] = {
    &bdrv_file,
    &bdrv_host_device,
    &bdrv_raw,
    &bdrv_qcow2,
    &bdrv_blkdebug,
    &bdrv_copy_on_read,
    &bdrv_quorum,
    &bdrv_nbd,
    &bdrv_null_co,
    &bdrv_null_aio,
    NULL,
};

const BlockDriver *block_find_protocol(const char *prefix)
{
    for (size_t i = 0; block_drivers[i]; i++) {
        const BlockDriver *drv = block_drivers[i];
        /* A filter may be named by a prefix too (blkdebug). */
        if (drv->is_protocol && strcmp(drv->format_name, prefix) == 0) {
            return drv;
        }
        for (const char *const *p = drv->protocol_prefixes; p && *p; p++) {
            if (strcmp(*p, prefix) == 0) {
                return drv;
            }
        }
    }
    return NULL;
}

const BlockDriver *block_find_driver(const char *name)
{
    if (!name) {
        return NULL;
    }
    for (size_t i = 0; block_drivers[i]; i++) {
        if (strcmp(block_drivers[i]->format_name, name) == 0) {
            return block_drivers[i];
        }
    }
    return NULL;
}

bool block_driver_known(const char *name)
{
    return block_find_driver(name) != NULL;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

size_t block_driver_names(const char **names, size_t max)
{
    size_t n = 0;
    for (; block_drivers[n]; n++) {
        if (n < max) {
            names[n] = block_drivers[n]->format_name;
        }
    }
    qsort(names, MIN(n, max), sizeof(*names), compare_names);
    return n;
}

bool block_format_can_compress(const char *fmt)
{
    const BlockDriver *drv = block_find_driver(fmt);
    return drv && drv->pwrite_compressed;
}

const BlockCreateOpt *block_create_opts(const char *fmt)
{
    const BlockDriver *drv = block_find_driver(fmt);
    return drv && drv->create ? drv->create_opts : NULL;
}

const BlockCreateOpt *block_format_amend_opts(const char *fmt)
{
    const BlockDriver *drv = block_find_driver(fmt);
    return drv && drv->amend ? drv->amend_opts : NULL;
}

/* raw and qcow2 create their image with block_create("file", ...). */
const BlockCreateOpt *block_protocol_create_opts(void)
{
    return bdrv_file.create_opts;
}
