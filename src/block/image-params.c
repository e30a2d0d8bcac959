/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - image parameters: the payload codec and the known keys (see
 * image-params.h). */
#include "block/image-params.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/units.h"

typedef enum ParamKind {
    KIND_ON_OFF,        /* "on" | "off" */
    KIND_PREFETCH,      /* "off" | "on-open" */
    KIND_RATE,          /* "adaptive" | size in bytes/s (0: unlimited) */
    KIND_SECONDS,       /* integer seconds */
    KIND_SIZE,          /* size in bytes */
} ParamKind;

/* In the order they are stored and shown. */
static const struct {
    const char *key;
    ParamKind kind;
} known[] = {
    { "copy-on-read", KIND_ON_OFF },
    { "prefetch", KIND_PREFETCH },
    { "prefetch-rate", KIND_RATE },
    { "prefetch-delay", KIND_SECONDS },
    { "l2-cache-size", KIND_SIZE },
};

/* A month: a delay longer than that is a mistake, not a plan. */
#define MAX_DELAY_SECONDS (31ULL * 24 * 3600)
/* The largest cache or rate we take: beyond it a value is a typo. */
#define MAX_SIZE_VALUE (1ULL << 50)

static int known_index(const char *key)
{
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (!strcmp(known[i].key, key)) {
            return (int)i;
        }
    }
    return -1;
}

bool image_params_known_key(const char *key)
{
    return known_index(key) >= 0;
}

void image_params_init(ImageParams *ip)
{
    ip->kv = json_object();
}

void image_params_free(ImageParams *ip)
{
    json_decref(ip->kv);
    ip->kv = NULL;
}

static bool key_ok(const char *key, size_t n)
{
    if (n == 0 || n > IMAGE_PARAMS_MAX_KEY) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return false;
        }
    }
    return true;
}

static bool value_ok(const char *v, size_t n)
{
    if (n > IMAGE_PARAMS_MAX_VALUE) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (v[i] < 0x20 || v[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

/* The canonical form of value for a known key, malloc'd; NULL and errp
 * set when the value is not one the key takes. */
static char *canonical(int k, const char *value, Error **errp)
{
    const char *key = known[k].key;
    uint64_t n = 0;
    char *out = NULL;
    Error *err = NULL;

    switch (known[k].kind) {
    case KIND_ON_OFF:
        if (!strcmp(value, "on") || !strcmp(value, "off")) {
            return strdup(value);
        }
        error_setg(errp, "Parameter '%s' expects 'on' or 'off', not '%s'",
                   key, value);
        return NULL;
    case KIND_PREFETCH:
        if (!strcmp(value, "off") || !strcmp(value, "on-open")) {
            return strdup(value);
        }
        error_setg(errp, "Parameter '%s' expects 'off' or 'on-open', not "
                   "'%s'", key, value);
        return NULL;
    case KIND_RATE:
        if (!strcmp(value, "adaptive")) {
            return strdup(value);
        }
        /* a rate is a size per second */
        __attribute__((fallthrough));
    case KIND_SIZE:
        if (!parse_size(value, &n, &err) || n > MAX_SIZE_VALUE) {
            error_free(err);
            error_setg(errp, "Parameter '%s' expects %s, not '%s'", key,
                       known[k].kind == KIND_RATE
                       ? "'adaptive' or bytes per second (e.g. 50M)"
                       : "a size in bytes (e.g. 4M)", value);
            return NULL;
        }
        break;
    case KIND_SECONDS:
        if (!parse_uint(value, MAX_DELAY_SECONDS, &n, &err)) {
            error_free(err);
            error_setg(errp, "Parameter '%s' expects a number of seconds "
                       "up to %llu, not '%s'", key,
                       (unsigned long long)MAX_DELAY_SECONDS, value);
            return NULL;
        }
        break;
    }
    if (asprintf(&out, "%" PRIu64, n) < 0) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    return out;
}

bool image_params_set(ImageParams *ip, const char *key, const char *value,
                      Error **errp)
{
    int k = known_index(key);
    if (k < 0) {
        error_setg(errp, "Unknown image parameter '%s' (known: "
                   "copy-on-read, prefetch, prefetch-rate, prefetch-delay, "
                   "l2-cache-size)", key);
        return false;
    }
    if (!value[0]) {
        json_object_del(ip->kv, key);
        return true;
    }
    if (!value_ok(value, strlen(value))) {
        error_setg(errp, "Value for parameter '%s' is too long or not "
                   "printable", key);
        return false;
    }
    CLEANUP_FREE char *c = canonical(k, value, errp);
    if (!c) {
        return false;
    }
    if (json_object_set_new(ip->kv, key, json_string(c)) != 0) {
        error_setg(errp, "Out of memory");
        return false;
    }
    return true;
}

bool image_params_set_kv(ImageParams *ip, const char *assignment,
                         Error **errp)
{
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment) {
        error_setg(errp, "Expected key=value, not '%s'", assignment);
        return false;
    }
    CLEANUP_FREE char *key = strndup(assignment, (size_t)(eq - assignment));
    if (!key) {
        error_setg(errp, "Out of memory");
        return false;
    }
    return image_params_set(ip, key, eq + 1, errp);
}

bool image_params_set_json(ImageParams *ip, json_t *obj, const char *path,
                           Error **errp)
{
    if (!json_is_object(obj)) {
        error_setg(errp, "Invalid parameter type for '%s', expected: object",
                   path);
        return false;
    }
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        char buf[32];
        const char *s;
        if (json_is_string(v)) {
            s = json_string_value(v);
        } else if (json_is_boolean(v)) {
            s = json_is_true(v) ? "on" : "off";
        } else if (json_is_integer(v) && json_integer_value(v) >= 0) {
            snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT,
                     json_integer_value(v));
            s = buf;
        } else {
            error_setg(errp, "Invalid parameter type for '%s.%s', expected: "
                       "string", path, key);
            return false;
        }
        if (!s[0]) {
            error_setg(errp, "Parameter '%s.%s' needs a value", path, key);
            return false;
        }
        if (!image_params_set(ip, key, s, errp)) {
            return false;
        }
    }
    return true;
}

bool image_params_decode(const uint8_t *buf, size_t len, ImageParams *ip,
                         Error **errp)
{
    image_params_init(ip);
    if (!ip->kv) {
        error_setg(errp, "Out of memory");
        return false;
    }
    if (len < 4) {
        error_setg(errp, "strata parameters: payload of %zu bytes is too "
                   "short", len);
        goto fail;
    }
    uint32_t version = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 |
                       (uint32_t)buf[2] << 8 | buf[3];
    if (version != IMAGE_PARAMS_VERSION) {
        error_setg(errp, "strata parameters: version %" PRIu32 " is not "
                   "supported (this strata reads version %d)", version,
                   IMAGE_PARAMS_VERSION);
        goto fail;
    }
    for (size_t pos = 4; pos < len;) {
        const char *entry = (const char *)buf + pos;
        const void *nul = memchr(entry, 0, len - pos);
        if (!nul) {
            error_setg(errp, "strata parameters: entry at byte %zu is not "
                       "terminated", pos);
            goto fail;
        }
        size_t n = (size_t)((const char *)nul - entry);
        const char *eq = memchr(entry, '=', n);
        if (!eq || !key_ok(entry, (size_t)(eq - entry)) ||
            !value_ok(eq + 1, n - (size_t)(eq - entry) - 1)) {
            error_setg(errp, "strata parameters: malformed entry at byte "
                       "%zu", pos);
            goto fail;
        }
        CLEANUP_FREE char *key = strndup(entry, (size_t)(eq - entry));
        if (!key) {
            error_setg(errp, "Out of memory");
            goto fail;
        }
        if (json_object_get(ip->kv, key)) {
            error_setg(errp, "strata parameters: key '%s' appears twice",
                       key);
            goto fail;
        }
        const char *value = eq + 1;
        int k = known_index(key);
        json_t *v;
        if (k >= 0) {
            CLEANUP_FREE char *c = canonical(k, value, errp);
            if (!c) {
                error_prepend(errp, "strata parameters: ");
                goto fail;
            }
            v = json_string(c);
        } else {
            v = json_string(value);    /* a newer strata's: kept */
        }
        if (json_object_set_new(ip->kv, key, v) != 0) {
            error_setg(errp, "Out of memory");
            goto fail;
        }
        pos += n + 1;
    }
    return true;

fail:
    image_params_free(ip);
    return false;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends "key=value\0" to *buf. */
static bool append_entry(uint8_t **buf, size_t *len, const char *key,
                         const char *value)
{
    size_t kl = strlen(key), vl = strlen(value);
    uint8_t *p = realloc(*buf, *len + kl + vl + 2);
    if (!p) {
        return false;
    }
    memcpy(p + *len, key, kl);
    p[*len + kl] = '=';
    memcpy(p + *len + kl + 1, value, vl);
    p[*len + kl + 1 + vl] = 0;
    *buf = p;
    *len += kl + vl + 2;
    return true;
}

bool image_params_encode(const ImageParams *ip, uint8_t **out, size_t *out_len,
                         Error **errp)
{
    *out = NULL;
    *out_len = 0;
    size_t count = json_object_size(ip->kv);
    if (count == 0) {
        return true;
    }
    uint8_t *buf = malloc(4);
    size_t len = 4;
    CLEANUP_FREE const char **others = calloc(count, sizeof(*others));
    if (!buf || !others) {
        free(buf);
        error_setg(errp, "Out of memory");
        return false;
    }
    buf[0] = buf[1] = buf[2] = 0;
    buf[3] = IMAGE_PARAMS_VERSION;
    bool ok = true;
    for (size_t i = 0; ok && i < sizeof(known) / sizeof(known[0]); i++) {
        const char *v = image_params_get(ip, known[i].key);
        if (v) {
            ok = append_entry(&buf, &len, known[i].key, v);
        }
    }
    size_t n = 0;
    const char *key;
    json_t *val;
    json_object_foreach(ip->kv, key, val) {
        if (known_index(key) < 0) {
            others[n++] = key;
        }
    }
    qsort(others, n, sizeof(*others), cmp_str);
    for (size_t i = 0; ok && i < n; i++) {
        ok = append_entry(&buf, &len, others[i],
                          json_string_value(json_object_get(ip->kv,
                                                            others[i])));
    }
    if (!ok) {
        free(buf);
        error_setg(errp, "Out of memory");
        return false;
    }
    *out = buf;
    *out_len = len;
    return true;
}

const char *image_params_get(const ImageParams *ip, const char *key)
{
    return ip->kv ? json_string_value(json_object_get(ip->kv, key)) : NULL;
}

bool image_params_copy_on_read(const ImageParams *ip)
{
    const char *v = image_params_get(ip, "copy-on-read");
    return v && !strcmp(v, "on");
}

ImagePrefetch image_params_prefetch(const ImageParams *ip)
{
    const char *v = image_params_get(ip, "prefetch");
    return v && !strcmp(v, "on-open") ? IMAGE_PREFETCH_ON_OPEN
                                      : IMAGE_PREFETCH_OFF;
}

void image_params_prefetch_rate(const ImageParams *ip, bool *adaptive,
                                uint64_t *rate)
{
    const char *v = image_params_get(ip, "prefetch-rate");
    *adaptive = !v || !strcmp(v, "adaptive");
    *rate = *adaptive ? 0 : strtoull(v, NULL, 10);
}

uint64_t image_params_prefetch_delay(const ImageParams *ip)
{
    const char *v = image_params_get(ip, "prefetch-delay");
    return v ? strtoull(v, NULL, 10) : 0;
}

uint64_t image_params_l2_cache_size(const ImageParams *ip)
{
    const char *v = image_params_get(ip, "l2-cache-size");
    return v ? strtoull(v, NULL, 10) : 0;
}

json_t *image_params_to_json(const ImageParams *ip)
{
    json_t *o = json_object();
    if (!o) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        const char *v = image_params_get(ip, known[i].key);
        if (!v) {
            continue;
        }
        json_t *j;
        switch (known[i].kind) {
        case KIND_ON_OFF:
            j = json_boolean(!strcmp(v, "on"));
            break;
        case KIND_RATE:
            j = !strcmp(v, "adaptive")
                ? json_string(v)
                : json_integer((json_int_t)strtoull(v, NULL, 10));
            break;
        case KIND_SECONDS:
        case KIND_SIZE:
            j = json_integer((json_int_t)strtoull(v, NULL, 10));
            break;
        default:
            j = json_string(v);
            break;
        }
        json_object_set_new(o, known[i].key, j);
    }
    const char *key;
    json_t *val;
    json_object_foreach(ip->kv, key, val) {
        if (known_index(key) < 0) {
            json_object_set(o, key, val);
        }
    }
    return o;
}

bool image_params_copy(ImageParams *dst, const ImageParams *src)
{
    dst->kv = json_deep_copy(src->kv);
    return dst->kv != NULL;
}
