/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - objects (--object) for the programs that reach them only
 * through the block layer (strata-img): a secret, TLS credentials or an
 * authorization list a node's options may name. */
#include "block/block_core.h"
#include "crypto/object.h"
#include "util/keyval.h"

bool block_object_add_cmdline(const char *arg, Error **errp)
{
    CLEANUP_JSON json_t *opts = keyval_parse(arg, "qom-type", errp);
    return opts && object_add(opts, errp);
}
