/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - authorization objects (QEMU's authz-simple, authz-list and
 * authz-listfile): who may use a TLS-protected service, decided on the
 * identity the TLS session proved (an x509 client certificate's
 * distinguished name, or a PSK username).
 */
#ifndef STRATA_CRYPTO_AUTHZ_H
#define STRATA_CRYPTO_AUTHZ_H

#include <stdbool.h>

#include "util/error.h"

/* Whether the authz object with id authz_id allows identity.  False with
 * errp set when it denies or cannot decide (no such object, a listfile
 * that failed to load). */
bool authz_is_allowed(const char *authz_id, const char *identity,
                      Error **errp);

#endif
