/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - TLS credentials (QEMU's tls-creds-x509 and tls-creds-psk
 * objects), loaded with GnuTLS when the object is created so that a bad
 * file is an error at object-add, not at the first connection.
 */
#ifndef STRATA_CRYPTO_TLS_CREDS_H
#define STRATA_CRYPTO_TLS_CREDS_H

#include <stdbool.h>

#include "crypto/object.h"
#include "util/error.h"

typedef enum TlsEndpoint {
    TLS_ENDPOINT_CLIENT,
    TLS_ENDPOINT_SERVER,
} TlsEndpoint;

typedef enum TlsCredsKind {
    TLS_CREDS_X509,
    TLS_CREDS_PSK,
} TlsCredsKind;

typedef struct TlsCreds TlsCreds;

/* The credentials with this id, checked for the endpoint the caller is
 * (QEMU's texts: "No TLS credentials with id 'x'", "Object with id 'x'
 * is not TLS credentials", "Expected TLS credentials for a server
 * endpoint").  Returns a reference to the object. */
StrataObject *tls_creds_lookup(const char *id, TlsEndpoint endpoint,
                               Error **errp);
/* The credentials of an object tls_creds_lookup returned. */
TlsCreds *tls_creds_of(const StrataObject *obj);

/* What a client library that loads its own files (libnbd) needs. */
TlsCredsKind tls_creds_kind(const TlsCreds *c);
const char *tls_creds_dir(const TlsCreds *c);
bool tls_creds_verify_peer(const TlsCreds *c);
/* The PSK username of a client endpoint ("qemu" unless set). */
const char *tls_creds_username(const TlsCreds *c);

#endif
