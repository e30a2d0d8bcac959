/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - sizes as users write them ("10G", "64k") and as we print them. */
#ifndef STRATA_UTIL_UNITS_H
#define STRATA_UTIL_UNITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

/* Parses a size with an optional binary suffix, as qemu-img does:
 * B, k/K, M, G, T, P, E (powers of 1024); a bare number is bytes;
 * a decimal fraction is allowed with a suffix ("1.5G").  Rejects
 * negative values, garbage and overflow with a message naming str
 * (overflow: the error's errnum is ERANGE). */
bool parse_size(const char *str, uint64_t *out, Error **errp);

/* Formats like QEMU's size_to_str(): "64 MiB", "1.5 GiB", "512 B".
 * Writes into buf (at least 32 bytes) and returns it. */
char *format_size(uint64_t bytes, char *buf, size_t len);

/* Parses a non-negative decimal integer that must fit in max. */
bool parse_uint(const char *str, uint64_t max, uint64_t *out, Error **errp);

#endif
