/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP wire formatting of JSON values. */
#include "qmp/qmp-internal.h"

#include <stdlib.h>
#include <string.h>

/* jansson prints reals as "%.17g" and then appends ".0" to integral
 * values and strips the exponent's "+" and leading zeros; QEMU prints
 * plain "%.17g" ("0", "1e+20", "7.5e-06").  Undo jansson's changes on
 * the number tokens outside strings.  Returns a new string. */
static char *qemu_reals(const char *s, size_t n)
{
    char *out = malloc(n * 2 + 1);
    size_t o = 0;
    bool in_string = false;
    if (!out) {
        return NULL;
    }
    for (size_t i = 0; i < n;) {
        char c = s[i];
        if (in_string) {
            out[o++] = c;
            if (c == '\\' && i + 1 < n) {
                out[o++] = s[++i];
            } else if (c == '"') {
                in_string = false;
            }
            i++;
            continue;
        }
        if (c == '"') {
            in_string = true;
            out[o++] = s[i++];
            continue;
        }
        if (c != '-' && (c < '0' || c > '9')) {
            out[o++] = s[i++];
            continue;
        }
        size_t end = i;
        while (end < n && strchr("0123456789+-.eE", s[end])) {
            end++;
        }
        size_t tok = end - i;
        const char *e = memchr(s + i, 'e', tok);
        if (!e && tok > 2 && s[end - 2] == '.' && s[end - 1] == '0') {
            memcpy(out + o, s + i, tok - 2);
            o += tok - 2;
        } else if (e) {
            size_t mant = (size_t)(e - (s + i));
            memcpy(out + o, s + i, mant + 1);
            o += mant + 1;
            const char *d = e + 1;
            out[o++] = *d == '-' ? '-' : '+';
            if (*d == '-' || *d == '+') {
                d++;
            }
            if (s + end - d < 2) {
                out[o++] = '0';
            }
            memcpy(out + o, d, (size_t)(s + end - d));
            o += (size_t)(s + end - d);
        } else {
            memcpy(out + o, s + i, tok);
            o += tok;
        }
        i = end;
    }
    out[o] = '\0';
    return out;
}

char *qmp_format_json(json_t *v, bool pretty, size_t *len)
{
    /* Without JSON_COMPACT and with no indentation jansson writes ", "
     * and ": " on one line, which is exactly QEMU's layout. */
    size_t flags = JSON_ENCODE_ANY | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII
                   | JSON_REAL_PRECISION(17)
                   | (pretty ? JSON_INDENT(4) : JSON_INDENT(0));
    char *s = json_dumps(v, flags);
    if (!s) {
        return NULL;
    }
    char *q = qemu_reals(s, strlen(s));
    free(s);
    if (!q) {
        return NULL;
    }
    s = q;
    size_t n = strlen(s);
    /* QEMU escapes with upper-case hex digits; jansson with lower. */
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') {
            in_string = !in_string;
        } else if (in_string && s[i] == '\\') {
            if (s[i + 1] == 'u') {
                for (size_t k = i + 2; k < i + 6 && k < n; k++) {
                    if (s[k] >= 'a' && s[k] <= 'f') {
                        s[k] = (char)(s[k] - 'a' + 'A');
                    }
                }
                i += 5;
            } else {
                i++;
            }
        }
    }
    char *line = realloc(s, n + 3);
    if (!line) {
        free(s);
        return NULL;
    }
    memcpy(line + n, "\r\n", 3);
    *len = n + 2;
    return line;
}
