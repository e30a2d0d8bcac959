/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests: the object registry, secrets and authorization lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../test-tmpdir.h"
#include "crypto/authz.h"
#include "crypto/object.h"
#include "crypto/secret.h"
#include "util/keyval.h"

/* Adds an object from QMP-style JSON; returns the error text or NULL. */
static char *add(const char *json)
{
    static char msg[512];
    json_t *args = json_loads(json, 0, NULL);
    assert_non_null(args);
    Error *err = NULL;
    bool ok = object_add(args, &err);
    json_decref(args);
    if (ok) {
        return NULL;
    }
    snprintf(msg, sizeof(msg), "%s", error_get_pretty(err));
    error_free(err);
    return msg;
}

static void test_registry(void **state)
{
    (void)state;
    assert_null(add("{\"qom-type\": \"secret\", \"id\": \"s\", "
                    "\"data\": \"x\"}"));
    assert_string_equal(add("{\"qom-type\": \"secret\", \"id\": \"s\", "
                            "\"data\": \"x\"}"),
                        "attempt to add duplicate property 's' to object "
                        "(type 'container')");
    assert_string_equal(add("{\"qom-type\": \"secret\", \"id\": \"t\", "
                            "\"data\": \"x\", \"frob\": 1}"),
                        "Parameter 'frob' is unexpected");
    assert_string_equal(add("{\"qom-type\": \"nosuch\", \"id\": \"t\"}"),
                        "Parameter 'qom-type' does not accept value "
                        "'nosuch'");
    assert_string_equal(add("{\"qom-type\": \"secret\", \"id\": \"9x\", "
                            "\"data\": \"x\"}"),
                        "Parameter 'id' expects an identifier");

    /* A user's reference outlives object-del; the id is free at once. */
    StrataObject *held = object_ref_by_id("s");
    assert_non_null(held);
    assert_true(object_del("s", NULL));
    assert_null(object_ref_by_id("s"));
    assert_string_equal(object_type(held), "secret");
    assert_string_equal(object_id(held), "s");
    assert_null(add("{\"qom-type\": \"secret\", \"id\": \"s\", "
                    "\"data\": \"y\"}"));
    object_unref(held);
    Error *err = NULL;
    assert_false(object_del("nosuch", &err));
    assert_string_equal(error_get_pretty(err), "object 'nosuch' not found");
    error_free(err);
    object_del_all();
    assert_null(object_ref_by_id("s"));
}

static void check_secret(const char *id, const char *want)
{
    uint8_t *data;
    size_t len;
    assert_true(secret_lookup(id, &data, &len, NULL));
    assert_int_equal(len, strlen(want));
    assert_memory_equal(data, want, len);
    free(data);
}

static void test_secrets(void **state)
{
    (void)state;
    char path[128], json[512];
    snprintf(path, sizeof(path), "%s/secret.txt", test_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("from a file", f);
    fclose(f);

    assert_null(add("{\"qom-type\": \"secret\", \"id\": \"raw\", "
                    "\"data\": \"hello\"}"));
    assert_null(add("{\"qom-type\": \"secret\", \"id\": \"b64\", "
                    "\"data\": \"aGVsbG8=\", \"format\": \"base64\"}"));
    snprintf(json, sizeof(json), "{\"qom-type\": \"secret\", \"id\": "
             "\"file\", \"file\": \"%s\"}", path);
    assert_null(add(json));
    check_secret("raw", "hello");
    check_secret("b64", "hello");
    check_secret("file", "from a file");
    assert_string_equal(add("{\"qom-type\": \"secret\", \"id\": \"bad\", "
                            "\"data\": \"a!b=\", \"format\": \"base64\"}"),
                        "Base64 data contains invalid characters");
    assert_string_equal(add("{\"qom-type\": \"secret\", \"id\": \"bad\"}"),
                        "Either 'file' or 'data' must be provided");

    /* Encrypted with a 32-byte key secret: AES-256-CBC, PKCS#7 padding,
     * ciphertext and IV in base64, as QEMU documents. */
    uint8_t key[32], iv[16], buf[32];
    for (int i = 0; i < 32; i++) {
        key[i] = (uint8_t)(i * 7 + 1);
    }
    for (int i = 0; i < 16; i++) {
        iv[i] = (uint8_t)(i * 3 + 5);
    }
    const char *plain = "passphrase";
    size_t n = strlen(plain);
    memcpy(buf, plain, n);
    memset(buf + n, (int)(16 - n), 16 - n);
    gnutls_cipher_hd_t h;
    gnutls_datum_t k = { key, 32 }, v = { iv, 16 };
    assert_int_equal(gnutls_cipher_init(&h, GNUTLS_CIPHER_AES_256_CBC, &k,
                                        &v), 0);
    assert_int_equal(gnutls_cipher_encrypt(h, buf, 16), 0);
    gnutls_cipher_deinit(h);
    gnutls_datum_t kd = { key, 32 }, ivd = { iv, 16 }, ctd = { buf, 16 };
    gnutls_datum_t k64, iv64, ct64;
    assert_int_equal(gnutls_base64_encode2(&kd, &k64), 0);
    assert_int_equal(gnutls_base64_encode2(&ivd, &iv64), 0);
    assert_int_equal(gnutls_base64_encode2(&ctd, &ct64), 0);
    snprintf(json, sizeof(json), "{\"qom-type\": \"secret\", \"id\": \"key\","
             " \"data\": \"%.*s\", \"format\": \"base64\"}", (int)k64.size,
             k64.data);
    assert_null(add(json));
    snprintf(json, sizeof(json), "{\"qom-type\": \"secret\", \"id\": "
             "\"enc\", \"data\": \"%.*s\", \"keyid\": \"key\", \"iv\": "
             "\"%.*s\"}", (int)ct64.size, ct64.data, (int)iv64.size,
             iv64.data);
    assert_null(add(json));
    check_secret("enc", "passphrase");
    snprintf(json, sizeof(json), "{\"qom-type\": \"secret\", \"id\": "
             "\"noiv\", \"data\": \"%.*s\", \"keyid\": \"key\"}",
             (int)ct64.size, ct64.data);
    assert_string_equal(add(json), "IV is required to decrypt secret");
    assert_string_equal(add("{\"qom-type\": \"secret\", \"id\": \"x\", "
                            "\"data\": \"AAAA\", \"keyid\": \"raw\", "
                            "\"iv\": \"AAAA\"}"),
                        "Key should be 32 bytes in length");
    gnutls_free(k64.data);
    gnutls_free(iv64.data);
    gnutls_free(ct64.data);

    char *text = secret_lookup_as_utf8("raw", NULL);
    assert_string_equal(text, "hello");
    free(text);
    Error *err = NULL;
    assert_null(secret_lookup_as_utf8("nosuch", &err));
    assert_string_equal(error_get_pretty(err), "No secret with id 'nosuch'");
    error_free(err);
    object_del_all();
}

static bool allowed(const char *authz, const char *who)
{
    Error *err = NULL;
    bool ok = authz_is_allowed(authz, who, &err);
    error_free(err);
    return ok;
}

static void test_authz(void **state)
{
    (void)state;
    assert_null(add("{\"qom-type\": \"authz-simple\", \"id\": \"one\", "
                    "\"identity\": \"CN=a\"}"));
    assert_true(allowed("one", "CN=a"));
    assert_false(allowed("one", "CN=ab"));

    /* First match wins; the default applies when nothing matches. */
    assert_null(add("{\"qom-type\": \"authz-list\", \"id\": \"list\", "
                    "\"policy\": \"allow\", \"rules\": ["
                    "{\"match\": \"CN=bad*\", \"policy\": \"deny\", "
                    "\"format\": \"glob\"},"
                    "{\"match\": \"CN=bad-but-ok\", \"policy\": \"allow\"},"
                    "{\"match\": \"CN=x\", \"policy\": \"deny\"}]}"));
    assert_false(allowed("list", "CN=bad-but-ok"));
    assert_false(allowed("list", "CN=x"));
    assert_true(allowed("list", "CN=y"));
    assert_string_equal(add("{\"qom-type\": \"authz-list\", \"id\": \"l2\", "
                            "\"rules\": [{\"match\": \"x\"}]}"),
                        "Parameter 'policy' is missing");

    /* authz-listfile: reloads on change; a broken file denies all. */
    char path[128], json[512];
    snprintf(path, sizeof(path), "%s/authz.json", test_dir);
    FILE *f = fopen(path, "w");
    fputs("{\"policy\": \"deny\", \"rules\": [{\"match\": \"CN=a\", "
          "\"policy\": \"allow\"}]}", f);
    fclose(f);
    snprintf(json, sizeof(json), "{\"qom-type\": \"authz-listfile\", "
             "\"id\": \"file\", \"filename\": \"%s\"}", path);
    assert_null(add(json));
    assert_true(allowed("file", "CN=a"));
    assert_false(allowed("file", "CN=b"));
    f = fopen(path, "w");
    fputs("{\"policy\": \"allow\"}", f);
    fclose(f);
    assert_true(allowed("file", "CN=b"));
    f = fopen(path, "w");
    fputs("{\"policy\": ", f);
    fclose(f);
    assert_false(allowed("file", "CN=b"));
    assert_false(allowed("file", "CN=a"));

    Error *err = NULL;
    assert_false(authz_is_allowed("nosuch", "CN=a", &err));
    assert_string_equal(error_get_pretty(err),
                        "Cannot find QAuthZ object 'nosuch'");
    error_free(err);
    object_del_all();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_authz),
    };
    return cmocka_run_group_tests(tests, test_tmpdir_setup,
                                  test_tmpdir_teardown);
}
