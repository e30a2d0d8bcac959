/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - secrets (QEMU's "secret" object): a passphrase or key given
 * inline, in a file, or encrypted with another secret, so that command
 * lines and QMP logs need not carry it in clear.
 */
#ifndef STRATA_CRYPTO_SECRET_H
#define STRATA_CRYPTO_SECRET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

/* The secret's bytes (malloc'ed, NUL-terminated for convenience; *len
 * excludes the NUL).  Errors name the id. */
bool secret_lookup(const char *id, uint8_t **data, size_t *len,
                   Error **errp);
/* As secret_lookup, for a secret that must be text (a passphrase). */
char *secret_lookup_as_utf8(const char *id, Error **errp);

/* Decodes base64 text; "Base64 data contains invalid characters" on bad
 * input.  *out is malloc'ed. */
bool base64_decode(const char *in, size_t inlen, uint8_t **out,
                   size_t *outlen, Error **errp);

#endif
