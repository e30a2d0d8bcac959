/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - sizes as users write them and as qemu-img prints them. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/units.h"

static int suffix_shift(char c)
{
    switch (c) {
    case 'B': case 'b': return 0;
    case 'K': case 'k': return 10;
    case 'M': case 'm': return 20;
    case 'G': case 'g': return 30;
    case 'T': case 't': return 40;
    case 'P': case 'p': return 50;
    case 'E': case 'e': return 60;
    default: return -1;
    }
}

/* QEMU's qemu_strtosz(): integer part, optional ".fraction" (only with a
 * scaling suffix), optional one-letter suffix, nothing after. */
static int strtosz(const char *str, uint64_t *out)
{
    const char *p = str;
    uint64_t val = 0;
    double fraction = 0;
    bool have_fraction = false;

    if (!isdigit((unsigned char)*p)) {
        return -EINVAL;
    }
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        char *end;
        errno = 0;
        if (!isxdigit((unsigned char)p[2])) {
            return -EINVAL;
        }
        val = strtoull(p + 2, &end, 16);
        if (errno == ERANGE) {
            return -ERANGE;
        }
        p = end;
    } else {
        for (; isdigit((unsigned char)*p); p++) {
            unsigned d = (unsigned)(*p - '0');
            if (val > (UINT64_MAX - d) / 10) {
                return -ERANGE;
            }
            val = val * 10 + d;
        }
        if (*p == '.') {
            const char *f = p;
            have_fraction = true;
            p++;
            while (isdigit((unsigned char)*p)) {
                p++;
            }
            /* Exponents ("1.5e3") are rejected: 'e' would be exabytes. */
            fraction = strtod(f, NULL);
            if (!isfinite(fraction)) {
                return -EINVAL;
            }
        }
    }

    int shift = 0;
    if (*p) {
        shift = suffix_shift(*p);
        if (shift < 0) {
            return -EINVAL;
        }
        p++;
    }
    if (*p) {
        return -EINVAL;
    }
    if (shift == 0) {
        /* A fraction needs a scale: "1.5" bytes means nothing. */
        if (have_fraction && fraction != 0) {
            return -EINVAL;
        }
        *out = val;
        return 0;
    }
    unsigned __int128 total = (unsigned __int128)val << shift;
    total += (unsigned __int128)(fraction * (double)((uint64_t)1 << shift));
    if (total > UINT64_MAX) {
        return -ERANGE;
    }
    *out = (uint64_t)total;
    return 0;
}

bool parse_size(const char *str, uint64_t *out, Error **errp)
{
    uint64_t v;
    int ret = str ? strtosz(str, &v) : -EINVAL;
    if (ret == -ERANGE) {
        error_setg(errp, "Size '%s' is too large", str);
        if (errp && *errp) {
            (*errp)->errnum = ERANGE;   /* callers word the two apart */
        }
        return false;
    }
    if (ret < 0) {
        error_setg(errp, "Invalid size '%s': expected a number of bytes with "
                   "an optional k, M, G, T, P or E suffix", str ? str : "");
        return false;
    }
    *out = v;
    return true;
}

char *format_size(uint64_t bytes, char *buf, size_t len)
{
    static const char *const prefixes[] = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
    int exp;

    /* As QEMU's size_to_str(): pick the unit so that the mantissa stays
     * below 1000 (1000 bytes prints as "0.977 KiB", not "1e+03 B"). */
    frexp(bytes / (1000.0 / 1024.0), &exp);
    int i = (exp - 1) / 10;
    if (i < 0) {
        i = 0;
    }
    if (i >= (int)(sizeof(prefixes) / sizeof(prefixes[0]))) {
        i = (int)(sizeof(prefixes) / sizeof(prefixes[0])) - 1;
    }
    uint64_t div = (uint64_t)1 << (i * 10);
    snprintf(buf, len, "%0.3g %sB", (double)bytes / (double)div, prefixes[i]);
    return buf;
}

bool parse_uint(const char *str, uint64_t max, uint64_t *out, Error **errp)
{
    uint64_t val = 0;
    const char *p = str;

    if (!p || !isdigit((unsigned char)*p)) {
        error_setg(errp, "'%s' is not a non-negative integer", str ? str : "");
        return false;
    }
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (val > (UINT64_MAX - d) / 10) {
            error_setg(errp, "Value '%s' is too large (maximum %llu)", str,
                       (unsigned long long)max);
            return false;
        }
        val = val * 10 + d;
    }
    if (*p) {
        error_setg(errp, "'%s' is not a non-negative integer", str);
        return false;
    }
    if (val > max) {
        error_setg(errp, "Value '%s' is too large (maximum %llu)", str,
                   (unsigned long long)max);
        return false;
    }
    *out = val;
    return true;
}
