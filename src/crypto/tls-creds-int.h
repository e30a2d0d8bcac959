/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - what tls-creds.c and tls-session.c share: the loaded
 * credentials. */
#ifndef STRATA_CRYPTO_TLS_CREDS_INT_H
#define STRATA_CRYPTO_TLS_CREDS_INT_H

#include <gnutls/gnutls.h>

#include "crypto/tls-creds.h"

struct TlsCreds {
    TlsCredsKind kind;
    TlsEndpoint endpoint;
    bool verify_peer;
    char *dir;
    char *priority;            /* NULL: GnuTLS's "NORMAL" */
    char *username;            /* PSK client */
    gnutls_certificate_credentials_t x509;
    gnutls_psk_server_credentials_t psk_server;
    gnutls_psk_client_credentials_t psk_client;
    gnutls_dh_params_t dh;
};

/* QEMU's text for a failed verification's status bits. */
const char *tls_cert_status_reason(unsigned int status);

#endif
