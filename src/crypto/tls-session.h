/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - one TLS session over a connected blocking socket, server
 * side (the NBD server's STARTTLS).
 *
 * After the handshake the peer is checked as QEMU checks it: an x509
 * peer certificate must verify against the CA and be within its dates
 * (when verify-peer is on), and the peer's identity (the certificate's
 * distinguished name, or the PSK username) must be allowed by the authz
 * object, if one is named.  Reads and writes may come from two threads
 * at once (one receiving, one sending), as GnuTLS allows.
 */
#ifndef STRATA_CRYPTO_TLS_SESSION_H
#define STRATA_CRYPTO_TLS_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "crypto/object.h"
#include "util/error.h"

typedef struct TlsSession TlsSession;

/* A server session on fd with the credentials object creds (the
 * session takes its own reference) and the optional authz id. */
TlsSession *tls_session_new_server(StrataObject *creds, const char *authz_id,
                                   int fd, Error **errp);
/* Runs the handshake and checks the peer.  False with errp set: the
 * caller must drop the connection. */
bool tls_session_handshake(TlsSession *s, Error **errp);
/* The identity the peer proved (NULL before the handshake, or for an
 * x509 peer without a certificate). */
const char *tls_session_peer_name(const TlsSession *s);
/* Like recv(2): bytes read, 0 at the end of the stream, or -errno. */
ssize_t tls_session_recv(TlsSession *s, void *buf, size_t len);
/* Sends all of iov: 0 or -errno. */
int tls_session_sendv(TlsSession *s, const struct iovec *iov, int iovcnt);
/* Frees the session; does not close the socket.  No close alert is
 * sent: a peer that stopped reading must not block the caller. */
void tls_session_free(TlsSession *s);

#endif
