/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - a server-side TLS session over a blocking socket (see
 * tls-session.h).  The peer checks and their messages follow QEMU's
 * crypto/tlssession.c so that logs read the same. */
#include <errno.h>
#include <stdint.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "crypto/authz.h"
#include "crypto/tls-creds-int.h"
#include "crypto/tls-session.h"
#include "util/cleanup.h"

/* QEMU appends these to the priority string for PSK. */
#define PSK_PRIORITY_EXTRA "+ECDHE-PSK:+DHE-PSK:+PSK"

struct TlsSession {
    gnutls_session_t handle;
    StrataObject *creds_obj;
    TlsCreds *creds;
    char *authz_id;
    char *peer_name;
    int fd;
};

/* GnuTLS's default transport writes with send(2) without MSG_NOSIGNAL:
 * a vanished peer must give EPIPE, not a signal. */
static ssize_t push_vec(gnutls_transport_ptr_t ptr, const giovec_t *iov,
                        int iovcnt)
{
    TlsSession *s = ptr;
    struct msghdr msg = { .msg_iov = (struct iovec *)iov,
                          .msg_iovlen = iovcnt };
    return sendmsg(s->fd, &msg, MSG_NOSIGNAL);
}

static ssize_t pull(gnutls_transport_ptr_t ptr, void *buf, size_t len)
{
    TlsSession *s = ptr;
    return recv(s->fd, buf, len, 0);
}

TlsSession *tls_session_new_server(StrataObject *creds_obj,
                                   const char *authz_id, int fd,
                                   Error **errp)
{
    TlsSession *s = calloc(1, sizeof(*s));
    if (!s) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    s->fd = fd;
    s->creds = tls_creds_of(creds_obj);
    s->authz_id = authz_id ? strdup(authz_id) : NULL;
    int r = gnutls_init(&s->handle, GNUTLS_SERVER);
    if (r < 0) {
        error_setg(errp, "Cannot initialize TLS session: %s",
                   gnutls_strerror(r));
        free(s->authz_id);
        free(s);
        return NULL;
    }
    s->creds_obj = object_ref(creds_obj);
    const char *base = s->creds->priority ? s->creds->priority : "NORMAL";
    CLEANUP_FREE char *prio = NULL;
    if (s->creds->kind == TLS_CREDS_PSK) {
        if (asprintf(&prio, "%s:%s", base, PSK_PRIORITY_EXTRA) < 0) {
            prio = NULL;
        }
    } else {
        prio = strdup(base);
    }
    if (!prio) {
        error_setg(errp, "Out of memory");
        goto fail;
    }
    const char *where = NULL;
    r = gnutls_priority_set_direct(s->handle, prio, &where);
    if (r < 0) {
        error_setg(errp, "Unable to set TLS session priority %s: %s", prio,
                   gnutls_strerror(r));
        goto fail;
    }
    if (s->creds->kind == TLS_CREDS_PSK) {
        r = gnutls_credentials_set(s->handle, GNUTLS_CRD_PSK,
                                   s->creds->psk_server);
    } else {
        r = gnutls_credentials_set(s->handle, GNUTLS_CRD_CERTIFICATE,
                                   s->creds->x509);
        if (s->creds->verify_peer) {
            gnutls_certificate_server_set_request(s->handle,
                                                  GNUTLS_CERT_REQUEST);
        }
    }
    if (r < 0) {
        error_setg(errp, "Cannot set session credentials: %s",
                   gnutls_strerror(r));
        goto fail;
    }
    gnutls_transport_set_ptr(s->handle, s);
    gnutls_transport_set_vec_push_function(s->handle, push_vec);
    gnutls_transport_set_pull_function(s->handle, pull);
    return s;

fail:
    tls_session_free(s);
    return NULL;
}

static bool check_x509_peer(TlsSession *s, Error **errp)
{
    unsigned int status;
    int r = gnutls_certificate_verify_peers2(s->handle, &status);
    if (r < 0) {
        error_setg(errp, "Verify failed: %s", gnutls_strerror(r));
        return false;
    }
    if (status != 0) {
        error_setg(errp, "%s", tls_cert_status_reason(status));
        return false;
    }
    unsigned int n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(s->handle, &n);
    if (!certs || n == 0) {
        error_setg(errp, "No certificate peers");
        return false;
    }
    time_t now = time(NULL);
    for (unsigned int i = 0; i < n; i++) {
        gnutls_x509_crt_t cert;
        if (gnutls_x509_crt_init(&cert) < 0) {
            error_setg(errp, "Cannot initialize certificate");
            return false;
        }
        if (gnutls_x509_crt_import(cert, &certs[i], GNUTLS_X509_FMT_DER) < 0) {
            gnutls_x509_crt_deinit(cert);
            error_setg(errp, "Cannot import certificate");
            return false;
        }
        bool ok = true;
        if (gnutls_x509_crt_get_expiration_time(cert) < now) {
            error_setg(errp, "The certificate has expired");
            ok = false;
        } else if (gnutls_x509_crt_get_activation_time(cert) > now) {
            error_setg(errp, "The certificate is not yet activated");
            ok = false;
        } else if (i == 0) {
            size_t size = 0;
            gnutls_x509_crt_get_dn(cert, NULL, &size);
            s->peer_name = calloc(1, size + 1);
            if (!s->peer_name ||
                gnutls_x509_crt_get_dn(cert, s->peer_name, &size) != 0) {
                error_setg(errp, "Cannot get client distinguished name");
                ok = false;
            }
        }
        gnutls_x509_crt_deinit(cert);
        if (!ok) {
            return false;
        }
    }
    if (s->authz_id &&
        !authz_is_allowed(s->authz_id, s->peer_name, NULL)) {
        error_setg(errp, "TLS x509 authz check for %s is denied",
                   s->peer_name);
        return false;
    }
    return true;
}

static bool check_psk_peer(TlsSession *s, Error **errp)
{
    const char *user = gnutls_psk_server_get_username(s->handle);
    if (!user) {
        error_setg(errp, "No PSK username");
        return false;
    }
    s->peer_name = strdup(user);
    if (!s->peer_name) {
        error_setg(errp, "Out of memory");
        return false;
    }
    if (s->authz_id && !authz_is_allowed(s->authz_id, user, NULL)) {
        error_setg(errp, "TLS PSK authz check for %s is denied", user);
        return false;
    }
    return true;
}

bool tls_session_handshake(TlsSession *s, Error **errp)
{
    int r;
    do {
        r = gnutls_handshake(s->handle);
    } while (r < 0 && !gnutls_error_is_fatal(r));
    if (r < 0) {
        error_setg(errp, "TLS handshake failed: %s", gnutls_strerror(r));
        return false;
    }
    if (s->creds->kind == TLS_CREDS_PSK) {
        return check_psk_peer(s, errp);
    }
    if (!s->creds->verify_peer) {
        return true;
    }
    return check_x509_peer(s, errp);
}

const char *tls_session_peer_name(const TlsSession *s)
{
    return s->peer_name;
}

static int gnutls_to_errno(ssize_t r)
{
    switch (r) {
    case GNUTLS_E_PREMATURE_TERMINATION:
        return -ECONNRESET;
    case GNUTLS_E_PUSH_ERROR:
        return -EPIPE;
    default:
        return -EIO;
    }
}

ssize_t tls_session_recv(TlsSession *s, void *buf, size_t len)
{
    for (;;) {
        ssize_t r = gnutls_record_recv(s->handle, buf, len);
        if (r >= 0) {
            return r;
        }
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
            continue;
        }
        return gnutls_to_errno(r);
    }
}

int tls_session_sendv(TlsSession *s, const struct iovec *iov, int iovcnt)
{
    /* A small reply (a header and its data) leaves in one record when
     * corked; a large one would only be copied into the cork buffer. */
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        total += iov[i].iov_len;
    }
    bool cork = total <= 65536;
    if (cork) {
        gnutls_record_cork(s->handle);
    }
    for (int i = 0; i < iovcnt; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;
        while (left > 0) {
            ssize_t r = gnutls_record_send(s->handle, p, left);
            if (r < 0) {
                if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                    continue;
                }
                if (cork) {
                    gnutls_record_uncork(s->handle, 0);
                }
                return gnutls_to_errno(r);
            }
            p += r;
            left -= r;
        }
    }
    while (cork) {
        int r = gnutls_record_uncork(s->handle, GNUTLS_RECORD_WAIT);
        if (r >= 0) {
            return 0;
        }
        if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED) {
            return gnutls_to_errno(r);
        }
    }
    return 0;
}

void tls_session_free(TlsSession *s)
{
    if (!s) {
        return;
    }
    if (s->handle) {
        gnutls_deinit(s->handle);
    }
    if (s->creds_obj) {
        object_unref(s->creds_obj);
    }
    free(s->authz_id);
    free(s->peer_name);
    free(s);
}
