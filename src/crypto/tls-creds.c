/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - tls-creds-x509 and tls-creds-psk (see tls-creds.h).
 *
 * The files and their names are QEMU's: in dir, ca-cert.pem (always),
 * ca-crl.pem (optional), server-cert.pem + server-key.pem (server),
 * client-cert.pem + client-key.pem (optional, client), dh-params.pem
 * (optional); keys.psk ("username:hexkey" lines) for PSK.  Before
 * loading x509 files the certificates are sanity-checked as QEMU does
 * (dates, CA constraints, signed by the CA), so a broken setup fails at
 * object-add with a message that names the file.
 */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crypto/secret.h"
#include "crypto/tls-creds-int.h"
#include "util/cleanup.h"
#include "util/keyval.h"

static const char *const endpoints[] = { "client", "server", NULL };

/* dir/name, or NULL (errp set when required) when it cannot be read. */
static char *creds_path(const char *dir, const char *name, bool required,
                        bool *failed, Error **errp)
{
    char *path;
    if (asprintf(&path, "%s/%s", dir, name) < 0) {
        error_setg(errp, "Out of memory");
        *failed = true;
        return NULL;
    }
    if (access(path, R_OK) < 0) {
        if (required) {
            error_setg(errp, "Unable to access credentials %s: %s", path,
                       strerror(errno));
            *failed = true;
        }
        free(path);
        return NULL;
    }
    return path;
}

/* The common properties; deletes them from props. */
static bool creds_decode(json_t *props, TlsCreds *c, Error **errp)
{
    const char *dir, *priority;
    int endpoint;
    bool loaded;
    if (!opt_get_str(props, "dir", NULL, &dir, errp) ||
        !opt_get_enum(props, "endpoint", endpoints, TLS_ENDPOINT_CLIENT,
                      &endpoint, errp) ||
        !opt_get_bool(props, "verify-peer", true, &c->verify_peer, errp) ||
        !opt_get_str(props, "priority", NULL, &priority, errp) ||
        !opt_get_bool(props, "loaded", true, &loaded, errp)) {
        return false;
    }
    if (!dir) {
        error_setg(errp, "Missing 'dir' property value");
        return false;
    }
    c->endpoint = endpoint;
    c->dir = strdup(dir);
    c->priority = priority ? strdup(priority) : NULL;
    if (!c->dir || (priority && !c->priority)) {
        error_setg(errp, "Out of memory");
        return false;
    }
    json_object_del(props, "dir");
    json_object_del(props, "endpoint");
    json_object_del(props, "verify-peer");
    json_object_del(props, "priority");
    json_object_del(props, "loaded");
    return true;
}

static void creds_destroy(void *state)
{
    TlsCreds *c = state;
    if (c->x509) {
        gnutls_certificate_free_credentials(c->x509);
    }
    if (c->psk_server) {
        gnutls_psk_free_server_credentials(c->psk_server);
    }
    if (c->psk_client) {
        gnutls_psk_free_client_credentials(c->psk_client);
    }
    if (c->dh) {
        gnutls_dh_params_deinit(c->dh);
    }
    free(c->dir);
    free(c->priority);
    free(c->username);
    free(c);
}

/* ---- x509 sanity checks (QEMU's texts) ---- */

const char *tls_cert_status_reason(unsigned int status)
{
    /* The last that applies wins, as in QEMU. */
    const char *reason = "Invalid certificate";
    if (status & GNUTLS_CERT_INVALID) {
        reason = "The certificate is not trusted";
    }
    if (status & GNUTLS_CERT_SIGNER_NOT_FOUND) {
        reason = "The certificate hasn't got a known issuer";
    }
    if (status & GNUTLS_CERT_REVOKED) {
        reason = "The certificate has been revoked";
    }
    if (status & GNUTLS_CERT_INSECURE_ALGORITHM) {
        reason = "The certificate uses an insecure algorithm";
    }
    return reason;
}

static gnutls_x509_crt_t *load_certs(const char *file, size_t *n,
                                     Error **errp)
{
    gnutls_datum_t data;
    int r = gnutls_load_file(file, &data);
    if (r < 0) {
        error_setg(errp, "Cannot load certificate %s: %s", file,
                   gnutls_strerror(r));
        return NULL;
    }
    gnutls_x509_crt_t *certs = NULL;
    unsigned int count = 0;
    r = gnutls_x509_crt_list_import2(&certs, &count, &data,
                                     GNUTLS_X509_FMT_PEM, 0);
    gnutls_free(data.data);
    if (r < 0 || count == 0) {
        error_setg(errp, "Unable to import certificate %s: %s", file,
                   r < 0 ? gnutls_strerror(r) : "no certificate");
        return NULL;
    }
    *n = count;
    return certs;
}

static void free_certs(gnutls_x509_crt_t *certs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        gnutls_x509_crt_deinit(certs[i]);
    }
    gnutls_free(certs);
}

static const char *role_name(bool is_ca, bool is_server)
{
    return is_ca ? "CA" : is_server ? "server" : "client";
}

static bool check_cert(gnutls_x509_crt_t cert, const char *file,
                       bool is_server, bool is_ca, Error **errp)
{
    time_t now = time(NULL);
    if (gnutls_x509_crt_get_expiration_time(cert) < now) {
        error_setg(errp, "The %s certificate %s has expired",
                   role_name(is_ca, is_server), file);
        return false;
    }
    if (gnutls_x509_crt_get_activation_time(cert) > now) {
        error_setg(errp, "The %s certificate %s is not yet active",
                   role_name(is_ca, is_server), file);
        return false;
    }
    int st = gnutls_x509_crt_get_basic_constraints(cert, NULL, NULL, NULL);
    if (st > 0 && !is_ca) {
        error_setg(errp, "The certificate %s basic constraints show a CA, "
                   "but we need one for a %s", file,
                   is_server ? "server" : "client");
        return false;
    }
    if (st == 0 && is_ca) {
        error_setg(errp, "The certificate %s basic constraints do not show "
                   "a CA", file);
        return false;
    }
    if (st == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE && is_ca) {
        error_setg(errp, "The certificate %s is missing basic constraints "
                   "for a CA", file);
        return false;
    }
    if (st < 0 && st != GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
        error_setg(errp, "Unable to query certificate %s basic "
                   "constraints: %s", file, gnutls_strerror(st));
        return false;
    }
    return true;
}

static bool check_pair(gnutls_x509_crt_t cert, const char *file,
                       gnutls_x509_crt_t *cas, size_t ncas,
                       const char *cafile, bool is_server, Error **errp)
{
    unsigned int status;
    if (gnutls_x509_crt_list_verify(&cert, 1, cas, ncas, NULL, 0, 0,
                                    &status) < 0) {
        error_setg(errp, "Unable to verify %s certificate %s against CA "
                   "certificate %s", is_server ? "server" : "client", file,
                   cafile);
        return false;
    }
    if (status != 0) {
        error_setg(errp, "Our own certificate %s failed validation against "
                   "%s: %s", file, cafile, tls_cert_status_reason(status));
        return false;
    }
    return true;
}

static bool sanity_check(const char *cafile, const char *certfile,
                         bool is_server, Error **errp)
{
    size_t nca = 0, ncert = 0;
    gnutls_x509_crt_t *cas = load_certs(cafile, &nca, errp);
    if (!cas) {
        return false;
    }
    bool ok = true;
    for (size_t i = 0; ok && i < nca; i++) {
        ok = check_cert(cas[i], cafile, is_server, true, errp);
    }
    gnutls_x509_crt_t *certs = NULL;
    if (ok && certfile) {
        certs = load_certs(certfile, &ncert, errp);
        ok = certs != NULL;
        if (ok) {
            ok = check_cert(certs[0], certfile, is_server, false, errp) &&
                 check_pair(certs[0], certfile, cas, nca, cafile, is_server,
                            errp);
        }
    }
    if (certs) {
        free_certs(certs, ncert);
    }
    free_certs(cas, nca);
    return ok;
}

/* ---- tls-creds-x509 ---- */

static void *x509_create(json_t *props, Error **errp)
{
    TlsCreds *c = calloc(1, sizeof(*c));
    if (!c) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    c->kind = TLS_CREDS_X509;
    bool sanity;
    const char *passwordid;
    if (!creds_decode(props, c, errp) ||
        !opt_get_bool(props, "sanity-check", true, &sanity, errp) ||
        !opt_get_str(props, "passwordid", NULL, &passwordid, errp)) {
        creds_destroy(c);
        return NULL;
    }
    bool server = c->endpoint == TLS_ENDPOINT_SERVER;
    bool failed = false;
    CLEANUP_FREE char *ca = creds_path(c->dir, "ca-cert.pem", true, &failed,
                                       errp);
    CLEANUP_FREE char *crl = failed ? NULL
        : creds_path(c->dir, "ca-crl.pem", false, &failed, errp);
    CLEANUP_FREE char *cert = failed ? NULL
        : creds_path(c->dir, server ? "server-cert.pem" : "client-cert.pem",
                     server, &failed, errp);
    CLEANUP_FREE char *key = failed ? NULL
        : creds_path(c->dir, server ? "server-key.pem" : "client-key.pem",
                     server, &failed, errp);
    CLEANUP_FREE char *dh = failed ? NULL
        : creds_path(c->dir, "dh-params.pem", false, &failed, errp);
    CLEANUP_FREE char *password = NULL;
    if (!failed && passwordid) {
        password = secret_lookup_as_utf8(passwordid, errp);
        failed = !password;
    }
    if (failed || (sanity && !sanity_check(ca, cert && key ? cert : NULL,
                                           server, errp))) {
        creds_destroy(c);
        return NULL;
    }
    int r = gnutls_certificate_allocate_credentials(&c->x509);
    if (r < 0) {
        error_setg(errp, "Cannot allocate credentials: %s",
                   gnutls_strerror(r));
        c->x509 = NULL;
        creds_destroy(c);
        return NULL;
    }
    r = gnutls_certificate_set_x509_trust_file(c->x509, ca,
                                               GNUTLS_X509_FMT_PEM);
    if (r < 0) {
        error_setg(errp, "Cannot load CA certificate '%s': %s", ca,
                   gnutls_strerror(r));
        goto fail;
    }
    if (cert && key) {
        r = gnutls_certificate_set_x509_key_file2(c->x509, cert, key,
                                                  GNUTLS_X509_FMT_PEM,
                                                  password, 0);
        if (r < 0) {
            error_setg(errp, "Cannot load certificate '%s' & key '%s': %s",
                       cert, key, gnutls_strerror(r));
            goto fail;
        }
    }
    if (crl) {
        r = gnutls_certificate_set_x509_crl_file(c->x509, crl,
                                                 GNUTLS_X509_FMT_PEM);
        if (r < 0) {
            error_setg(errp, "Cannot load CRL '%s': %s", crl,
                       gnutls_strerror(r));
            goto fail;
        }
    }
    if (server && dh) {
        gnutls_datum_t data;
        r = gnutls_dh_params_init(&c->dh);
        if (r >= 0) {
            r = gnutls_load_file(dh, &data);
            if (r >= 0) {
                r = gnutls_dh_params_import_pkcs3(c->dh, &data,
                                                  GNUTLS_X509_FMT_PEM);
                gnutls_free(data.data);
            }
        }
        if (r < 0) {
            error_setg(errp, "Unable to load DH parameters from %s: %s", dh,
                       gnutls_strerror(r));
            goto fail;
        }
        gnutls_certificate_set_dh_params(c->x509, c->dh);
    }
    json_object_del(props, "sanity-check");
    json_object_del(props, "passwordid");
    return c;

fail:
    creds_destroy(c);
    return NULL;
}

const ObjectClass tls_creds_x509_class = {
    .type = "tls-creds-x509",
    .create = x509_create,
    .destroy = creds_destroy,
};

/* ---- tls-creds-psk ---- */

/* The hex key of username in a keys.psk file. */
static char *psk_lookup(const char *file, const char *username,
                        Error **errp)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        error_setg(errp, "Unable to read %s: %s", file, strerror(errno));
        return NULL;
    }
    char *line = NULL, *found = NULL;
    size_t cap = 0;
    size_t ulen = strlen(username);
    while (!found && getline(&line, &cap, f) > 0) {
        if (strncmp(line, username, ulen) == 0 && line[ulen] == ':') {
            char *key = line + ulen + 1;
            key[strcspn(key, "\r\n")] = 0;
            found = strdup(key);
        }
    }
    free(line);
    fclose(f);
    if (!found) {
        error_setg(errp, "Username %s not found in %s", username, file);
    }
    return found;
}

static void *psk_create(json_t *props, Error **errp)
{
    TlsCreds *c = calloc(1, sizeof(*c));
    if (!c) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    c->kind = TLS_CREDS_PSK;
    const char *username;
    if (!creds_decode(props, c, errp) ||
        !opt_get_str(props, "username", NULL, &username, errp)) {
        creds_destroy(c);
        return NULL;
    }
    c->username = strdup(username ? username : "qemu");
    bool failed = false;
    CLEANUP_FREE char *keys = creds_path(c->dir, "keys.psk", true, &failed,
                                         errp);
    if (failed || !c->username) {
        if (!c->username) {
            error_setg(errp, "Out of memory");
        }
        creds_destroy(c);
        return NULL;
    }
    int r;
    if (c->endpoint == TLS_ENDPOINT_SERVER) {
        r = gnutls_psk_allocate_server_credentials(&c->psk_server);
        if (r >= 0) {
            r = gnutls_psk_set_server_credentials_file(c->psk_server, keys);
        }
    } else {
        CLEANUP_FREE char *hex = psk_lookup(keys, c->username, errp);
        if (!hex) {
            creds_destroy(c);
            return NULL;
        }
        gnutls_datum_t key = { (unsigned char *)hex, (unsigned)strlen(hex) };
        r = gnutls_psk_allocate_client_credentials(&c->psk_client);
        if (r >= 0) {
            r = gnutls_psk_set_client_credentials(c->psk_client, c->username,
                                                  &key, GNUTLS_PSK_KEY_HEX);
        }
        gnutls_memset(hex, 0, strlen(hex));
    }
    if (r < 0) {
        error_setg(errp, "Cannot set PSK credentials from %s: %s", keys,
                   gnutls_strerror(r));
        creds_destroy(c);
        return NULL;
    }
    json_object_del(props, "username");
    return c;
}

const ObjectClass tls_creds_psk_class = {
    .type = "tls-creds-psk",
    .create = psk_create,
    .destroy = creds_destroy,
};

/* ---- lookup ---- */

StrataObject *tls_creds_lookup(const char *id, TlsEndpoint endpoint,
                               Error **errp)
{
    StrataObject *obj = object_ref_by_id(id);
    if (!obj) {
        error_setg(errp, "No TLS credentials with id '%s'", id);
        return NULL;
    }
    if (!object_is(obj, &tls_creds_x509_class) &&
        !object_is(obj, &tls_creds_psk_class)) {
        error_setg(errp, "Object with id '%s' is not TLS credentials", id);
        object_unref(obj);
        return NULL;
    }
    if (tls_creds_of(obj)->endpoint != endpoint) {
        error_setg(errp, "Expected TLS credentials for a %s endpoint",
                   endpoint == TLS_ENDPOINT_SERVER ? "server" : "client");
        object_unref(obj);
        return NULL;
    }
    return obj;
}

TlsCreds *tls_creds_of(const StrataObject *obj)
{
    return object_state(obj);
}

TlsCredsKind tls_creds_kind(const TlsCreds *c)
{
    return c->kind;
}

const char *tls_creds_dir(const TlsCreds *c)
{
    return c->dir;
}

bool tls_creds_verify_peer(const TlsCreds *c)
{
    return c->verify_peer;
}

const char *tls_creds_username(const TlsCreds *c)
{
    return c->username ? c->username : "qemu";
}
