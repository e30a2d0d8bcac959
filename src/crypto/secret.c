/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the "secret" object (see secret.h).  Properties and error
 * texts are QEMU's: data or file, format raw|base64, and keyid + iv for
 * a secret encrypted (AES-256-CBC, base64) with another secret. */
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto/object.h"
#include "crypto/secret.h"
#include "util/cleanup.h"
#include "util/keyval.h"

typedef struct Secret {
    uint8_t *data;
    size_t len;
} Secret;

bool base64_decode(const char *in, size_t inlen, uint8_t **out,
                   size_t *outlen, Error **errp)
{
    /* QEMU accepts only the base64 alphabet (no whitespace). */
    for (size_t i = 0; i < inlen; i++) {
        char c = in[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=';
        if (!ok) {
            error_setg(errp, "Base64 data contains invalid characters");
            return false;
        }
    }
    gnutls_datum_t src = { (unsigned char *)in, (unsigned int)inlen };
    gnutls_datum_t dst = { NULL, 0 };
    if (inlen % 4 != 0 || gnutls_base64_decode2(&src, &dst) < 0) {
        error_setg(errp, "Base64 data contains invalid characters");
        return false;
    }
    *out = malloc(dst.size + 1);
    if (!*out) {
        gnutls_free(dst.data);
        error_setg(errp, "Out of memory");
        return false;
    }
    memcpy(*out, dst.data, dst.size);
    (*out)[dst.size] = 0;
    *outlen = dst.size;
    gnutls_free(dst.data);
    return true;
}

static bool read_file(const char *path, uint8_t **out, size_t *outlen,
                      Error **errp)
{
    /* access() first for the errno QEMU's text (which quotes glib's)
     * carries; GnuTLS reads the file. */
    gnutls_datum_t d;
    int r = access(path, R_OK) < 0 ? -errno : gnutls_load_file(path, &d);
    if (r < 0) {
        error_setg(errp, "Unable to read %s: Failed to open file \u201c%s\u201d: "
                   "%s", path, path,
                   r == GNUTLS_E_FILE_ERROR ? "read error" : strerror(-r));
        return false;
    }
    *out = malloc(d.size + 1);
    if (*out) {
        memcpy(*out, d.data, d.size);
        (*out)[d.size] = 0;
        *outlen = d.size;
    }
    gnutls_memset(d.data, 0, d.size);
    gnutls_free(d.data);
    if (!*out) {
        error_setg(errp, "Out of memory");
        return false;
    }
    return true;
}

static bool decrypt(const char *keyid, const char *iv_b64,
                    const uint8_t *in, size_t inlen, uint8_t **out,
                    size_t *outlen, Error **errp)
{
    CLEANUP_FREE uint8_t *key = NULL;
    CLEANUP_FREE uint8_t *iv = NULL;
    CLEANUP_FREE uint8_t *ct = NULL;
    size_t keylen, ivlen, ctlen;

    if (!secret_lookup(keyid, &key, &keylen, errp)) {
        return false;
    }
    if (keylen != 32) {
        error_setg(errp, "Key should be 32 bytes in length");
        return false;
    }
    if (!iv_b64) {
        error_setg(errp, "IV is required to decrypt secret");
        return false;
    }
    if (!base64_decode(iv_b64, strlen(iv_b64), &iv, &ivlen, errp)) {
        return false;
    }
    if (ivlen != 16) {
        error_setg(errp, "IV should be 16 bytes in length not %zu", ivlen);
        return false;
    }
    if (!base64_decode((const char *)in, inlen, &ct, &ctlen, errp)) {
        return false;
    }
    if (ctlen == 0 || ctlen % 16 != 0) {
        error_setg(errp, "Cannot decrypt secret: the ciphertext is not "
                   "a whole number of AES blocks");
        return false;
    }
    gnutls_cipher_hd_t h;
    gnutls_datum_t k = { key, 32 }, v = { iv, 16 };
    int r = gnutls_cipher_init(&h, GNUTLS_CIPHER_AES_256_CBC, &k, &v);
    if (r < 0) {
        error_setg(errp, "Cannot initialize cipher: %s", gnutls_strerror(r));
        return false;
    }
    r = gnutls_cipher_decrypt(h, ct, ctlen);
    gnutls_cipher_deinit(h);
    if (r < 0) {
        error_setg(errp, "Cannot decrypt secret: %s", gnutls_strerror(r));
        return false;
    }
    /* PKCS#7 padding, as QEMU strips it. */
    size_t pad = ct[ctlen - 1];
    if (pad == 0 || pad > 16) {
        error_setg(errp, "Cannot decrypt secret: bad padding");
        return false;
    }
    ctlen -= pad;
    ct[ctlen] = 0;
    *out = ct;
    *outlen = ctlen;
    ct = NULL;
    return true;
}

static void *secret_create(json_t *props, Error **errp)
{
    static const char *const formats[] = { "raw", "base64", NULL };
    const char *data, *file, *keyid, *iv;
    int format;
    bool loaded;

    if (!opt_get_str(props, "data", NULL, &data, errp) ||
        !opt_get_str(props, "file", NULL, &file, errp) ||
        !opt_get_str(props, "keyid", NULL, &keyid, errp) ||
        !opt_get_str(props, "iv", NULL, &iv, errp) ||
        !opt_get_enum(props, "format", formats, 0, &format, errp) ||
        !opt_get_bool(props, "loaded", true, &loaded, errp)) {
        return NULL;
    }
    if (data && file) {
        error_setg(errp, "'file' and 'data' are mutually exclusive");
        return NULL;
    }
    if (!data && !file) {
        error_setg(errp, "Either 'file' or 'data' must be provided");
        return NULL;
    }
    CLEANUP_FREE uint8_t *input = NULL;
    size_t inlen;
    if (file) {
        if (!read_file(file, &input, &inlen, errp)) {
            return NULL;
        }
    } else {
        inlen = strlen(data);
        input = (uint8_t *)strdup(data);
    }
    Secret *s = calloc(1, sizeof(*s));
    if (!input || !s) {
        free(s);
        error_setg(errp, "Out of memory");
        return NULL;
    }
    bool ok;
    if (keyid) {
        ok = decrypt(keyid, iv, input, inlen, &s->data, &s->len, errp);
        if (ok && format == 1) {
            uint8_t *plain = s->data;
            ok = base64_decode((char *)plain, s->len, &s->data, &s->len,
                               errp);
            free(plain);
        }
    } else if (format == 1) {
        ok = base64_decode((char *)input, inlen, &s->data, &s->len, errp);
    } else {
        s->data = input;
        s->len = inlen;
        input = NULL;
        ok = true;
    }
    json_object_del(props, "data");
    json_object_del(props, "file");
    json_object_del(props, "keyid");
    json_object_del(props, "iv");
    json_object_del(props, "format");
    json_object_del(props, "loaded");
    if (!ok) {
        free(s);
        return NULL;
    }
    return s;
}

static void secret_destroy(void *state)
{
    Secret *s = state;
    if (s->data) {
        /* Do not leave a key in freed memory. */
        gnutls_memset(s->data, 0, s->len);
    }
    free(s->data);
    free(s);
}

const ObjectClass secret_class = {
    .type = "secret",
    .create = secret_create,
    .destroy = secret_destroy,
};

bool secret_lookup(const char *id, uint8_t **data, size_t *len,
                   Error **errp)
{
    CLEANUP_OBJECT StrataObject *obj = object_ref_by_id(id);
    if (!obj) {
        error_setg(errp, "No secret with id '%s'", id);
        return false;
    }
    if (!object_is(obj, &secret_class)) {
        error_setg(errp, "Object with id '%s' is not a secret", id);
        return false;
    }
    Secret *s = object_state(obj);
    *data = malloc(s->len + 1);
    if (!*data) {
        error_setg(errp, "Out of memory");
        return false;
    }
    memcpy(*data, s->data, s->len);
    (*data)[s->len] = 0;
    *len = s->len;
    return true;
}

char *secret_lookup_as_utf8(const char *id, Error **errp)
{
    uint8_t *data;
    size_t len;
    if (!secret_lookup(id, &data, &len, errp)) {
        return NULL;
    }
    /* Text: no embedded NUL, and valid UTF-8 (checked by the decoder
     * jansson already carries). */
    json_t *probe = memchr(data, 0, len) ? NULL
                    : json_stringn((const char *)data, len);
    if (!probe) {
        free(data);
        error_setg(errp, "Data from secret %s is not valid UTF-8", id);
        return NULL;
    }
    json_decref(probe);
    return (char *)data;
}
