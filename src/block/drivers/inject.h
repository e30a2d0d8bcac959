/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - blkdebug's rules file (inject-config.c). */
#ifndef STRATA_BLOCK_DRIVERS_INJECT_H
#define STRATA_BLOCK_DRIVERS_INJECT_H

#include <jansson.h>
#include <stdbool.h>

#include "util/error.h"

/* Reads a QEMU blkdebug config file ("[inject-error]" and "[set-state]"
 * sections of `key = "value"` lines) and appends one object of string
 * values per section to *inject_error or *set_state (arrays, created
 * when NULL).  Fails with QEMU's texts where it has them. */
bool inject_read_config(const char *path, json_t **inject_error,
                        json_t **set_state, Error **errp);

#endif
