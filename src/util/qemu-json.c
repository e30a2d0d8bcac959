/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QEMU's JSON dialect (see qemu-json.h).
 *
 * Three stages, as in QEMU, because the stages decide which error a
 * broken text gets: a lexer cuts bytes into tokens (a byte it cannot
 * place is a "stray" token, after which it skips to the next structural
 * character); a collector gathers tokens until braces and brackets
 * balance and hands the group to the parser; the parser builds the
 * value.  The first error of the text is the one reported, except that
 * anything after a complete value turns into "Expecting at most one JSON
 * value".
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/qemu-json.h"

#define MAX_TOKEN_SIZE (64u << 20)
#define MAX_TOKEN_COUNT (2u << 20)
#define MAX_NESTING 1024

typedef enum TokType {
    T_ERROR, T_LCURLY, T_RCURLY, T_LSQUARE, T_RSQUARE, T_COLON, T_COMMA,
    T_INTEGER, T_FLOAT, T_KEYWORD, T_STRING,
} TokType;

typedef struct Token {
    TokType type;
    const char *str;          /* into the input; not terminated */
    size_t len;
} Token;

typedef struct Parser {
    /* collector */
    Token *toks;
    size_t ntoks, cap, pos;
    size_t token_size;
    long braces, brackets;
    /* results: the first value or the first error */
    json_t *result;
    Error *err;
    /* parser context for one group */
    Error *perr;
} Parser;

/* ---- parser ---- */

static void parse_error(Parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void parse_error(Parser *p, const char *fmt, ...)
{
    if (p->perr) {
        return;
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    error_setg(&p->perr, "JSON parse error, %s", msg);
}

static Token *peek(Parser *p)
{
    return p->pos < p->ntoks ? &p->toks[p->pos] : NULL;
}

static Token *pop(Parser *p)
{
    return p->pos < p->ntoks ? &p->toks[p->pos++] : NULL;
}

static bool is_valid_codepoint(long cp)
{
    if (cp > 0x10FFFF) {
        return false;
    }
    if ((cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE) {
        return false;        /* noncharacter */
    }
    return !(cp >= 0xD800 && cp <= 0xDFFF);
}

/* Modified UTF-8: U+0000 is C0 80.  Returns the length, or 0 when cp is
 * not a character. */
static size_t mod_utf8_encode(char out[4], long cp)
{
    if (cp < 0 || !is_valid_codepoint(cp)) {
        return 0;
    }
    if (cp > 0 && cp <= 0x7F) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp <= 0x7FF) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp <= 0xFFFF) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes one modified-UTF-8 sequence at s (NUL-terminated); -1 when it
 * is invalid.  *end is past what was read. */
static long mod_utf8_decode(const unsigned char *s, const unsigned char **end)
{
    static const long min_cp[5] = { 0x80, 0x800, 0x10000, 0x200000,
                                    0x4000000 };
    unsigned byte = *s++;
    long cp;
    if (byte < 0x80) {
        cp = byte;
    } else if (byte >= 0xFE || !(byte & 0x40)) {
        cp = -1;             /* impossible byte or stray continuation */
    } else {
        unsigned len = 0, mask;
        for (mask = 0x80; byte & mask; mask >>= 1) {
            len++;
        }
        cp = byte & (mask - 1);
        for (unsigned i = 1; i < len; i++) {
            if ((*s & 0xC0) != 0x80) {
                *end = s;
                return -1;
            }
            cp = (cp << 6) | (*s++ & 0x3F);
        }
        if (!is_valid_codepoint(cp)) {
            cp = -1;
        } else if (cp < min_cp[len - 2] && !(cp == 0 && len == 2)) {
            cp = -1;         /* overlong, except C0 80 */
        }
    }
    *end = s;
    return cp;
}

static int hex4(const char *s)
{
    int cp = 0;
    for (int i = 0; i < 4; i++) {
        int d;
        if (s[i] >= '0' && s[i] <= '9') {
            d = s[i] - '0';
        } else if (s[i] >= 'a' && s[i] <= 'f') {
            d = s[i] - 'a' + 10;
        } else if (s[i] >= 'A' && s[i] <= 'F') {
            d = s[i] - 'A' + 10;
        } else {
            return -1;
        }
        cp = cp << 4 | d;
    }
    return cp;
}

static json_t *parse_string(Parser *p, const Token *t)
{
    /* A terminated copy: escapes may look past the closing quote only as
     * far as a NUL, as in QEMU. */
    CLEANUP_FREE char *tok = strndup(t->str, t->len);
    CLEANUP_FREE char *out = malloc(t->len * 2 + 8);
    if (!tok || !out) {
        parse_error(p, "out of memory");
        return NULL;
    }
    char quote = tok[0];
    const char *s = tok + 1;
    size_t n = 0;
    while (*s && *s != quote) {
        if (*s == '\\') {
            const char *beg = s++;
            char c = *s++;
            static const char plain[] = "\"'\\/";
            if (c && strchr(plain, c)) {
                out[n++] = c;
                continue;
            }
            switch (c) {
            case 'b': out[n++] = '\b'; continue;
            case 'f': out[n++] = '\f'; continue;
            case 'n': out[n++] = '\n'; continue;
            case 'r': out[n++] = '\r'; continue;
            case 't': out[n++] = '\t'; continue;
            case 'u':
                break;
            default:
                parse_error(p, "invalid escape sequence in string");
                return NULL;
            }
            long cp = hex4(s);
            if (cp >= 0) {
                s += 4;
            } else {
                /* QEMU quotes the escape up to where it stopped; never
                 * past the end of the token. */
                s += strnlen(s, 4);
            }
            if (cp >= 0xD800 && cp <= 0xDBFF && s[0] == '\\' && s[1] == 'u') {
                int trail = hex4(s + 2);
                if (trail >= 0xDC00 && trail <= 0xDFFF) {
                    cp = 0x10000 + ((cp & 0x3FF) << 10) + (trail & 0x3FF);
                    s += 6;
                } else {
                    cp = -1;
                }
            }
            size_t k = mod_utf8_encode(out + n, cp);
            if (!k) {
                parse_error(p, "%.*s is not a valid Unicode character",
                            (int)(s - beg), beg);
                return NULL;
            }
            n += k;
            continue;
        }
        const unsigned char *end;
        long cp = mod_utf8_decode((const unsigned char *)s, &end);
        if (cp < 0) {
            parse_error(p, "invalid UTF-8 sequence in string");
            return NULL;
        }
        s = (const char *)end;
        n += mod_utf8_encode(out + n, cp);
    }
    return json_stringn_nocheck(out, n);
}

static json_t *parse_value(Parser *p);

static bool parse_pair(Parser *p, json_t *obj)
{
    Token *first = peek(p);
    if (!first) {
        parse_error(p, "premature EOI");
        return false;
    }
    json_t *key = parse_value(p);
    if (!json_is_string(key)) {
        json_decref(key);
        parse_error(p, "key is not a string in object");
        return false;
    }
    bool ok = false;
    Token *t = pop(p);
    json_t *value = NULL;
    if (!t) {
        parse_error(p, "premature EOI");
    } else if (t->type != T_COLON) {
        parse_error(p, "missing : in object pair");
    } else if (!(value = parse_value(p))) {
        parse_error(p, "Missing value in dict");
    } else if (json_object_get(obj, json_string_value(key))) {
        json_decref(value);
        parse_error(p, "duplicate key");
    } else {
        json_object_set_new_nocheck(obj, json_string_value(key), value);
        ok = true;
    }
    json_decref(key);
    return ok;
}

/* Objects and arrays share their shape: open, items with separators,
 * close. */
static json_t *parse_container(Parser *p, bool object)
{
    TokType close = object ? T_RCURLY : T_RSQUARE;
    const char *sep_msg = object ? "expected separator in dict"
                                 : "expected separator in list";
    pop(p);
    json_t *c = object ? json_object() : json_array();
    if (!c) {
        parse_error(p, "out of memory");
        return NULL;
    }
    Token *t = peek(p);
    if (!t) {
        parse_error(p, "premature EOI");
        goto fail;
    }
    if (t->type == close) {
        pop(p);
        return c;
    }
    for (;;) {
        if (object) {
            if (!parse_pair(p, c)) {
                goto fail;
            }
        } else {
            json_t *v = parse_value(p);
            if (!v) {
                parse_error(p, "expecting value");
                goto fail;
            }
            json_array_append_new(c, v);
        }
        t = pop(p);
        if (!t) {
            parse_error(p, "premature EOI");
            goto fail;
        }
        if (t->type == close) {
            return c;
        }
        if (t->type != T_COMMA) {
            parse_error(p, "%s", sep_msg);
            goto fail;
        }
    }
fail:
    json_decref(c);
    return NULL;
}

static json_t *parse_number(const Token *t)
{
    char buf[512];
    CLEANUP_FREE char *big = NULL;
    const char *s = buf;
    if (t->len < sizeof(buf)) {
        memcpy(buf, t->str, t->len);
        buf[t->len] = '\0';
    } else if ((big = strndup(t->str, t->len))) {
        s = big;
    } else {
        return NULL;
    }
    if (t->type == T_INTEGER) {
        errno = 0;
        long long v = strtoll(s, NULL, 10);
        if (errno == 0) {
            return json_integer(v);
        }
    }
    /* Beyond int64_t (or a fraction): a double, as QEMU's QNum. */
    double d = strtod(s, NULL);
    if (!isfinite(d)) {
        d = d < 0 ? -DBL_MAX : DBL_MAX;   /* jansson has no infinities */
    }
    return json_real(d);
}

static json_t *parse_value(Parser *p)
{
    Token *t = peek(p);
    if (!t) {
        parse_error(p, "premature EOI");
        return NULL;
    }
    switch (t->type) {
    case T_LCURLY:
        return parse_container(p, true);
    case T_LSQUARE:
        return parse_container(p, false);
    case T_INTEGER:
    case T_FLOAT:
        pop(p);
        return parse_number(t);
    case T_STRING:
        pop(p);
        return parse_string(p, t);
    case T_KEYWORD:
        pop(p);
        if (t->len == 4 && memcmp(t->str, "true", 4) == 0) {
            return json_true();
        }
        if (t->len == 5 && memcmp(t->str, "false", 5) == 0) {
            return json_false();
        }
        if (t->len == 4 && memcmp(t->str, "null", 4) == 0) {
            return json_null();
        }
        parse_error(p, "invalid keyword '%.*s'", (int)t->len, t->str);
        return NULL;
    default:
        parse_error(p, "expecting value");
        return NULL;
    }
}

/* ---- collector ---- */

/* One complete value or error for the text: keeps the first. */
static void emit(Parser *p, json_t *value, Error *err)
{
    p->ntoks = p->pos = 0;
    p->token_size = 0;
    p->braces = p->brackets = 0;
    if (p->result) {
        json_decref(p->result);
        p->result = NULL;
        error_setg(&p->err, "Expecting at most one JSON value");
    }
    if (p->err) {
        json_decref(value);
        error_free(err);
        return;
    }
    p->result = value;
    p->err = err;
}

static void parse_group(Parser *p)
{
    p->pos = 0;
    p->perr = NULL;
    json_t *v = parse_value(p);
    if (!v && !p->perr) {
        parse_error(p, "out of memory");
    }
    if (p->perr) {
        json_decref(v);
        v = NULL;
    }
    Error *e = p->perr;
    p->perr = NULL;
    emit(p, v, e);
}

static void stray(Parser *p, const char *str, size_t len)
{
    Error *e = NULL;
    error_setg(&e, "JSON parse error, stray '%.*s'", (int)len, str);
    emit(p, NULL, e);
}

static void push_token(Parser *p, TokType type, const char *str, size_t len)
{
    Error *e = NULL;
    switch (type) {
    case T_ERROR:
        stray(p, str, len);
        return;
    case T_LCURLY: p->braces++; break;
    case T_RCURLY: p->braces--; break;
    case T_LSQUARE: p->brackets++; break;
    case T_RSQUARE: p->brackets--; break;
    default: break;
    }
    if (p->token_size + len + 1 > MAX_TOKEN_SIZE) {
        error_setg(&e, "JSON token size limit exceeded");
    } else if (p->ntoks + 1 > MAX_TOKEN_COUNT) {
        error_setg(&e, "JSON token count limit exceeded");
    } else if (p->braces + p->brackets > MAX_NESTING) {
        error_setg(&e, "JSON nesting depth limit exceeded");
    }
    if (e) {
        emit(p, NULL, e);
        return;
    }
    if (p->ntoks == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        Token *n = realloc(p->toks, cap * sizeof(*n));
        if (!n) {
            error_setg(&e, "JSON token count limit exceeded");
            emit(p, NULL, e);
            return;
        }
        p->toks = n;
        p->cap = cap;
    }
    p->toks[p->ntoks++] = (Token){ type, str, len };
    p->token_size += len;
    if ((p->braces > 0 || p->brackets > 0) && p->braces >= 0 &&
        p->brackets >= 0) {
        return;
    }
    parse_group(p);
}

/* ---- lexer ---- */

typedef enum LexState {
    L_START, L_RECOVERY, L_DQ, L_DQ_ESC, L_SQ, L_SQ_ESC, L_ZERO, L_SIGN,
    L_DIGITS, L_MANTISSA, L_MANTISSA_DIGITS, L_EXP_E, L_EXP_SIGN,
    L_EXP_DIGITS, L_KEYWORD,
} LexState;

/* What a byte does in a state: go to a state (consuming the byte), end
 * the token before the byte (which is then read again from L_START), or
 * fail (consuming the byte; at the end of input nothing is consumed). */
typedef enum Act { GO, END, FAIL } Act;

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static bool is_structural(int c)
{
    return c && strchr("[]{}:,", c);
}

/* c is -1 at the end of the input. */
static Act step(LexState s, int c, LexState *next, TokType *done)
{
    bool in_string_range = c >= 0x20 && c <= 0xFD;
    switch (s) {
    case L_DQ:
    case L_SQ:
        if (c == (s == L_DQ ? '"' : '\'')) {
            *done = T_STRING;
            *next = L_START;
            return GO;
        }
        *next = c == '\\' ? s + 1 : s;
        return in_string_range ? GO : FAIL;
    case L_DQ_ESC:
    case L_SQ_ESC:
        *next = s - 1;
        return in_string_range ? GO : FAIL;
    case L_ZERO:
        if (is_digit(c)) {
            return FAIL;
        }
        if (c == '.') {
            *next = L_MANTISSA;
            return GO;
        }
        *done = T_INTEGER;
        return END;
    case L_SIGN:
        *next = c == '0' ? L_ZERO : L_DIGITS;
        return c >= '0' && c <= '9' ? GO : FAIL;
    case L_DIGITS:
        if (is_digit(c)) {
            *next = L_DIGITS;
        } else if (c == 'e' || c == 'E') {
            *next = L_EXP_E;
        } else if (c == '.') {
            *next = L_MANTISSA;
        } else {
            *done = T_INTEGER;
            return END;
        }
        return GO;
    case L_MANTISSA:
        *next = L_MANTISSA_DIGITS;
        return is_digit(c) ? GO : FAIL;
    case L_MANTISSA_DIGITS:
        if (is_digit(c)) {
            *next = L_MANTISSA_DIGITS;
        } else if (c == 'e' || c == 'E') {
            *next = L_EXP_E;
        } else {
            *done = T_FLOAT;
            return END;
        }
        return GO;
    case L_EXP_E:
        if (c == '-' || c == '+') {
            *next = L_EXP_SIGN;
            return GO;
        }
        *next = L_EXP_DIGITS;
        return is_digit(c) ? GO : FAIL;
    case L_EXP_SIGN:
        *next = L_EXP_DIGITS;
        return is_digit(c) ? GO : FAIL;
    case L_EXP_DIGITS:
        if (is_digit(c)) {
            *next = L_EXP_DIGITS;
            return GO;
        }
        *done = T_FLOAT;
        return END;
    case L_KEYWORD:
        if (c >= 'a' && c <= 'z') {
            *next = L_KEYWORD;
            return GO;
        }
        *done = T_KEYWORD;
        return END;
    case L_START:
    case L_RECOVERY:
        break;
    }
    return FAIL;    /* L_START and L_RECOVERY are handled by the caller */
}

static TokType structural_type(int c)
{
    switch (c) {
    case '{': return T_LCURLY;
    case '}': return T_RCURLY;
    case '[': return T_LSQUARE;
    case ']': return T_RSQUARE;
    case ':': return T_COLON;
    default: return T_COMMA;
    }
}

static void lex(Parser *p, const char *text, size_t len)
{
    LexState s = L_START;
    size_t start = 0;
    /* i == len is the end of the input (QEMU's flush). */
    for (size_t i = 0; i <= len;) {
        int c = i < len ? (unsigned char)text[i] : -1;
        if (s == L_RECOVERY) {
            if (c < 0 || (c < 0x20 && c != '\t') || c >= 0xFE ||
                is_structural(c)) {
                s = L_START;     /* read c again */
            } else {
                i++;
            }
            continue;
        }
        if (s == L_START) {
            if (c < 0) {
                break;
            }
            start = i++;
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
                continue;
            }
            if (is_structural(c)) {
                push_token(p, structural_type(c), text + start, 1);
            } else if (c == '"') {
                s = L_DQ;
            } else if (c == '\'') {
                s = L_SQ;
            } else if (c == '0') {
                s = L_ZERO;
            } else if (c >= '1' && c <= '9') {
                s = L_DIGITS;
            } else if (c == '-') {
                s = L_SIGN;
            } else if (c >= 'a' && c <= 'z') {
                s = L_KEYWORD;
            } else {
                push_token(p, T_ERROR, text + start, 1);
                s = L_RECOVERY;
            }
            continue;
        }
        LexState next = L_START;
        TokType done = T_ERROR;
        Act a = step(s, c, &next, &done);
        if (a == GO && c < 0) {
            a = FAIL;            /* nothing continues past the end */
        }
        switch (a) {
        case GO:
            i++;
            s = next;
            if (done == T_STRING) {
                push_token(p, T_STRING, text + start, i - start);
            }
            break;
        case END:
            push_token(p, done, text + start, i - start);
            s = L_START;
            break;
        case FAIL:
            if (c >= 0) {
                i++;
            }
            push_token(p, T_ERROR, text + start, i - start);
            s = L_RECOVERY;
            if (c < 0) {
                i++;
            }
            break;
        }
    }
    /* End of input: what is collected is parsed as it stands. */
    if (p->ntoks) {
        parse_group(p);
    }
}

json_t *qemu_json_parse(const char *text, size_t len, Error **errp)
{
    Parser p = { 0 };
    lex(&p, text, len);
    free(p.toks);
    if (!p.result && !p.err) {
        error_setg(&p.err, "Expecting a JSON value");
    }
    if (p.err) {
        error_propagate(errp, p.err);
        return NULL;
    }
    return p.result;
}
