/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QEMU's dotted key=value syntax and typed option access.
 *
 * Error texts are QEMU 7.2's (observed with qemu-storage-daemon): string
 * values from the command line that do not parse say "Parameter 'x'
 * expects ...", JSON values of the wrong type say "Invalid parameter
 * type for 'x', expected: ...".
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/keyval.h"
#include "util/qemu-json.h"
#include "util/units.h"

static bool fragment_is_index(const char *s, size_t len)
{
    if (len == 0) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/* A key fragment is an array index (all digits) or a name starting with
 * a letter made of letters, digits, '-' and '_'. */
static bool fragment_is_valid(const char *s, size_t len)
{
    if (fragment_is_index(s, len)) {
        return true;
    }
    if (len == 0 || !isalpha((unsigned char)s[0])) {
        return false;
    }
    for (size_t i = 1; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '-' && c != '_') {
            return false;
        }
    }
    return true;
}

/* Stores value under the dotted key in root.  Later duplicates win, as
 * in QEMU; a key used both as a leaf and as a prefix is an error. */
static bool keyval_put(json_t *root, const char *key, size_t keylen,
                       const char *value, Error **errp)
{
    json_t *cur = root;
    size_t pos = 0;

    for (;;) {
        const char *dot = memchr(key + pos, '.', keylen - pos);
        size_t flen = dot ? (size_t)(dot - (key + pos)) : keylen - pos;
        char frag[256];
        if (flen >= sizeof(frag)) {
            error_setg(errp, "Invalid parameter '%.*s'", (int)keylen, key);
            return false;
        }
        memcpy(frag, key + pos, flen);
        frag[flen] = '\0';
        json_t *old = json_object_get(cur, frag);
        if (!dot) {
            if (old && !json_is_string(old)) {
                error_setg(errp, "Parameters '%.*s.*' used inconsistently",
                           (int)keylen, key);
                return false;
            }
            json_object_set_new(cur, frag, json_string(value));
            return true;
        }
        if (old && !json_is_object(old)) {
            error_setg(errp, "Parameters '%.*s.*' used inconsistently",
                       (int)(pos + flen), key);
            return false;
        }
        if (!old) {
            old = json_object();
            json_object_set_new(cur, frag, old);
        }
        cur = old;
        pos += flen + 1;
    }
}

/* Turns objects whose keys are all indices into arrays, recursively.
 * prefix is the dotted name of obj ("" for the root). */
static json_t *keyval_listify(json_t *obj, const char *prefix, bool is_root,
                              Error **errp)
{
    const char *k;
    json_t *v;
    size_t nidx = 0, nnames = 0;

    json_object_foreach(obj, k, v) {
        if (json_is_object(v)) {
            CLEANUP_FREE char *sub = NULL;
            if (asprintf(&sub, "%s%s%s", prefix, *prefix ? "." : "", k) < 0) {
                error_setg(errp, "Out of memory");
                return NULL;
            }
            json_t *conv = keyval_listify(v, sub, false, errp);
            if (!conv) {
                return NULL;
            }
            if (conv != v) {
                json_object_set_new(obj, k, conv);
            }
        }
        if (fragment_is_index(k, strlen(k))) {
            nidx++;
        } else {
            nnames++;
        }
    }
    if (is_root || nidx == 0) {
        return obj;
    }
    if (nnames) {
        error_setg(errp, "Parameters '%s.*' used inconsistently", prefix);
        return NULL;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < nidx; i++) {
        char idx[32];
        snprintf(idx, sizeof(idx), "%zu", i);
        json_t *elem = json_object_get(obj, idx);
        if (!elem) {
            error_setg(errp, "Parameter '%s.%zu' missing", prefix, i);
            json_decref(arr);
            return NULL;
        }
        json_array_append(arr, elem);
    }
    return arr;
}

static json_t *keyval_parse_json(const char *str, Error **errp)
{
    /* QEMU's dialect (single quotes) and QEMU's errors, as
     * qemu-storage-daemon parses the same argument. */
    json_t *obj = qemu_json_parse(str, strlen(str), errp);
    if (!obj) {
        return NULL;
    }
    if (!json_is_object(obj)) {
        json_decref(obj);
        error_setg(errp, "Options must be a JSON object");
        return NULL;
    }
    return obj;
}

/* Reads a value up to an unescaped ',' (",," is a literal comma). */
static char *read_value(const char **sp)
{
    const char *s = *sp;
    size_t cap = strlen(s) + 1, n = 0;
    char *out = malloc(cap);
    if (!out) {
        return NULL;
    }
    while (*s) {
        if (*s == ',') {
            if (s[1] == ',') {
                out[n++] = ',';
                s += 2;
                continue;
            }
            break;
        }
        out[n++] = *s++;
    }
    out[n] = '\0';
    if (*s == ',') {
        s++;
    }
    *sp = s;
    return out;
}

json_t *keyval_parse(const char *str, const char *implied_key, Error **errp)
{
    if (!str) {
        str = "";
    }
    if (*str == '{') {
        return keyval_parse_json(str, errp);
    }

    json_t *root = json_object();
    const char *s = str;
    bool first = true;

    while (*s) {
        size_t keylen = strcspn(s, "=,");
        if (s[keylen] != '=') {
            if (first && implied_key) {
                CLEANUP_FREE char *val = read_value(&s);
                if (!val || !keyval_put(root, implied_key, strlen(implied_key),
                                        val, errp)) {
                    goto fail;
                }
                first = false;
                continue;
            }
            error_setg(errp, "Expected '=' after parameter '%.*s'",
                       (int)keylen, s);
            goto fail;
        }
        /* Validate every dotted fragment of the key. */
        for (size_t pos = 0;;) {
            const char *dot = memchr(s + pos, '.', keylen - pos);
            size_t flen = dot ? (size_t)(dot - (s + pos)) : keylen - pos;
            if (!fragment_is_valid(s + pos, flen)) {
                error_setg(errp, "Invalid parameter '%.*s'", (int)keylen, s);
                goto fail;
            }
            if (!dot) {
                break;
            }
            pos += flen + 1;
        }
        const char *key = s;
        s += keylen + 1;
        CLEANUP_FREE char *val = read_value(&s);
        if (!val || !keyval_put(root, key, keylen, val, errp)) {
            goto fail;
        }
        first = false;
    }
    if (!keyval_listify(root, "", true, errp)) {
        goto fail;
    }
    return root;

fail:
    json_decref(root);
    return NULL;
}

/* Finds key in obj: a literal member first, else a dotted path through
 * nested objects ("cache.direct"), so errors name the full key. */
static json_t *opt_lookup(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (v || !strchr(key, '.')) {
        return v;
    }
    CLEANUP_FREE char *copy = strdup(key);
    if (!copy) {
        return NULL;
    }
    json_t *cur = obj;
    char *save = NULL;
    for (char *frag = strtok_r(copy, ".", &save); frag;
         frag = strtok_r(NULL, ".", &save)) {
        if (!json_is_object(cur)) {
            return NULL;
        }
        cur = json_object_get(cur, frag);
        if (!cur) {
            return NULL;
        }
    }
    return cur;
}

static bool parse_bool_str(const char *s, bool *out)
{
    static const char *const yes[] = { "on", "yes", "true", "y" };
    static const char *const no[] = { "off", "no", "false", "n" };
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

bool opt_get_bool(json_t *obj, const char *key, bool def, bool *out, Error **errp)
{
    json_t *v = opt_lookup(obj, key);
    if (!v) {
        *out = def;
        return true;
    }
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return true;
    }
    if (json_is_string(v)) {
        if (parse_bool_str(json_string_value(v), out)) {
            return true;
        }
        error_setg(errp, "Parameter '%s' expects 'on' or 'off'", key);
        return false;
    }
    error_setg(errp, "Invalid parameter type for '%s', expected: boolean", key);
    return false;
}

/* QEMU's qemu_strtou64(str, NULL, 0, ...): decimal, 0x hex or 0 octal;
 * a leading '-' wraps (accepted for backward compatibility). */
static bool parse_u64_str(const char *s, uint64_t *out)
{
    const char *p = s;
    while (isspace((unsigned char)*p)) {
        p++;
    }
    if (!*p) {
        return false;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 0);
    if (errno || end == p || *end) {
        return false;
    }
    *out = v;
    return true;
}

bool opt_get_uint64(json_t *obj, const char *key, uint64_t def, uint64_t *out,
                    Error **errp)
{
    json_t *v = opt_lookup(obj, key);
    if (!v) {
        *out = def;
        return true;
    }
    if (json_is_integer(v)) {
        /* Negative values wrap, as QEMU accepts them (-1 = 2^64-1). */
        *out = (uint64_t)json_integer_value(v);
        return true;
    }
    if (json_is_string(v)) {
        if (parse_u64_str(json_string_value(v), out)) {
            return true;
        }
        error_setg(errp, "Parameter '%s' expects integer", key);
        return false;
    }
    error_setg(errp, "Parameter '%s' expects uint64", key);
    return false;
}

bool opt_get_size(json_t *obj, const char *key, uint64_t def, uint64_t *out,
                  Error **errp)
{
    json_t *v = opt_lookup(obj, key);
    if (!v) {
        *out = def;
        return true;
    }
    if (json_is_integer(v)) {
        *out = (uint64_t)json_integer_value(v);
        return true;
    }
    if (json_is_string(v)) {
        if (parse_size(json_string_value(v), out, NULL)) {
            return true;
        }
        error_setg(errp, "Parameter '%s' expects size", key);
        return false;
    }
    error_setg(errp, "Invalid parameter type for '%s', expected: integer", key);
    return false;
}

bool opt_get_str(json_t *obj, const char *key, const char *def,
                 const char **out, Error **errp)
{
    json_t *v = opt_lookup(obj, key);
    if (!v) {
        *out = def;
        return true;
    }
    if (json_is_string(v)) {
        *out = json_string_value(v);
        return true;
    }
    error_setg(errp, "Invalid parameter type for '%s', expected: string", key);
    return false;
}

bool opt_get_required_str(json_t *obj, const char *key, const char **out,
                          Error **errp)
{
    if (!opt_lookup(obj, key)) {
        error_setg(errp, "Parameter '%s' is missing", key);
        return false;
    }
    return opt_get_str(obj, key, NULL, out, errp);
}

bool opt_get_enum(json_t *obj, const char *key, const char *const choices[],
                  int def, int *out, Error **errp)
{
    const char *s;
    if (!opt_get_str(obj, key, NULL, &s, errp)) {
        return false;
    }
    if (!s) {
        *out = def;
        return true;
    }
    for (int i = 0; choices[i]; i++) {
        if (strcmp(choices[i], s) == 0) {
            *out = i;
            return true;
        }
    }
    error_setg(errp, "Parameter '%s' does not accept value '%s'", key, s);
    return false;
}

static bool check_empty_prefixed(json_t *obj, const char *prefix, Error **errp)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        /* Nested option groups ("cache") whose members were all consumed
         * are fine; anything else left over was not recognised. */
        if (json_is_object(v) && json_object_size(v) == 0) {
            continue;
        }
        CLEANUP_FREE char *name = NULL;
        if (asprintf(&name, "%s%s", prefix, k) < 0) {
            error_setg(errp, "Out of memory");
            return false;
        }
        if (json_is_object(v)) {
            CLEANUP_FREE char *sub = NULL;
            if (asprintf(&sub, "%s.", name) < 0) {
                error_setg(errp, "Out of memory");
                return false;
            }
            return check_empty_prefixed(v, sub, errp);
        }
        error_setg(errp, "Parameter '%s' is unexpected", name);
        return false;
    }
    return true;
}

bool opt_check_empty(json_t *obj, Error **errp)
{
    return check_empty_prefixed(obj, "", errp);
}

bool id_wellformed(const char *id)
{
    if (!isalpha((unsigned char)id[0])) {
        return false;
    }
    for (const char *p = id + 1; *p; p++) {
        if (!isalnum((unsigned char)*p) && !strchr("-._", *p)) {
            return false;
        }
    }
    return true;
}
