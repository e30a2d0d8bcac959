/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP stream framing (see json-stream.h). */
#include "qmp/json-stream.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum LexState {
    LX_START,
    LX_STRING,
    LX_STRING_ESC,
    LX_SQ_STRING,     /* 'single-quoted', a QEMU extension; rewritten */
    LX_SQ_STRING_ESC, /* into a double-quoted string for jansson */
    LX_KEYWORD,   /* [a-z]+ */
    LX_SIGN,      /* number states, as QEMU's lexer: "-" */
    LX_ZERO,      /* "0" */
    LX_DIGITS,    /* "12" */
    LX_POINT,     /* "1." (needs a digit) */
    LX_FRACTION,  /* "1.5" */
    LX_EXP,       /* "1e" (needs a sign or digit) */
    LX_EXP_SIGN,  /* "1e-" (needs a digit) */
    LX_EXP_DIGITS, /* "1e5" */
    LX_RECOVERY,  /* skipping after a lexical error */
} LexState;

struct JsonStream {
    JsonStreamFn *fn;
    void *opaque;
    LexState state;
    char *msg;           /* text of the value being collected */
    size_t len, cap;
    size_t tok_start;    /* offset in msg of the token being lexed */
    int braces, brackets;
    size_t tokens;
};

JsonStream *json_stream_new(JsonStreamFn *fn, void *opaque)
{
    JsonStream *js = calloc(1, sizeof(*js));
    if (js) {
        js->fn = fn;
        js->opaque = opaque;
    }
    return js;
}

void json_stream_free(JsonStream *js)
{
    if (js) {
        free(js->msg);
        free(js);
    }
}

static void reset(JsonStream *js)
{
    js->len = 0;
    js->braces = js->brackets = 0;
    js->tokens = 0;
    /* Give back memory after a huge message. */
    if (js->cap > 65536) {
        free(js->msg);
        js->msg = NULL;
        js->cap = 0;
    }
}

static void emit_error(JsonStream *js, const char *fmt, const char *arg)
{
    char buf[256];
    snprintf(buf, sizeof(buf), fmt, arg);
    reset(js);
    js->fn(js->opaque, NULL, buf);
}

/* Returns false (after reporting) when the size limit is exceeded. */
static bool append(JsonStream *js, char c)
{
    if (js->len + 1 >= JSON_STREAM_MAX_SIZE) {
        emit_error(js, "JSON token size limit exceeded%s", "");
        js->state = LX_RECOVERY;
        return false;
    }
    if (js->len + 1 >= js->cap) {
        size_t cap = js->cap ? js->cap * 2 : 256;
        char *m = realloc(js->msg, cap);
        if (!m) {
            emit_error(js, "JSON token size limit exceeded%s", "");
            js->state = LX_RECOVERY;
            return false;
        }
        js->msg = m;
        js->cap = cap;
    }
    js->msg[js->len++] = c;
    return true;
}

static void lex_error(JsonStream *js)
{
    /* QEMU quotes the offending token as far as it was read. */
    char tok[64];
    size_t n = js->len - js->tok_start;
    if (n >= sizeof(tok)) {
        n = sizeof(tok) - 1;
    }
    memcpy(tok, js->msg + js->tok_start, n);
    tok[n] = '\0';
    js->state = LX_RECOVERY;
    emit_error(js, "JSON parse error, stray '%s'", tok);
}

static json_t *parse_text(const char *text, size_t len, char *buf,
                          size_t buflen, const char **why);

static void parse_and_emit(JsonStream *js)
{
    char diag[160];
    const char *why = NULL;
    json_stream_forget_numbers();
    json_t *v = parse_text(js->msg, js->len, diag, sizeof(diag), &why);
    if (v) {
        reset(js);
        js->fn(js->opaque, v, NULL);
    } else {
        json_stream_forget_numbers();
        emit_error(js, "JSON parse error, %s", why);
    }
    json_stream_forget_numbers();
}

static void token_done(JsonStream *js)
{
    if (++js->tokens > JSON_STREAM_MAX_TOKENS) {
        emit_error(js, "JSON token count limit exceeded%s", "");
        return;
    }
    if (js->braces + js->brackets > JSON_STREAM_MAX_NESTING) {
        emit_error(js, "JSON nesting depth limit exceeded%s", "");
        return;
    }
    if ((js->braces > 0 || js->brackets > 0)
        && js->braces >= 0 && js->brackets >= 0) {
        return;
    }
    parse_and_emit(js);
}

static bool is_resync_char(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c >= 0xFE || c == '[' || c == ']'
        || c == '{' || c == '}' || c == ':' || c == ',';
}

/* One byte in a number state.  A byte that cannot continue the number
 * ends it (and is looked at again from LX_START) where the number is
 * complete, and is a lexical error where it is not ("-x", "1.e"). */
static void feed_number(JsonStream *js, unsigned char c)
{
    bool digit = c >= '0' && c <= '9';
    LexState next = LX_START;
    switch (js->state) {
    case LX_SIGN:
        next = c == '0' ? LX_ZERO : digit ? LX_DIGITS : LX_RECOVERY;
        break;
    case LX_ZERO:
    case LX_DIGITS:
        next = c == '.' ? LX_POINT
               : (c == 'e' || c == 'E') ? LX_EXP
               : (digit && js->state == LX_DIGITS) ? LX_DIGITS : LX_START;
        break;
    case LX_POINT:
        next = digit ? LX_FRACTION : LX_RECOVERY;
        break;
    case LX_FRACTION:
        next = digit ? LX_FRACTION : (c == 'e' || c == 'E') ? LX_EXP
                                                              : LX_START;
        break;
    case LX_EXP:
        next = (c == '+' || c == '-') ? LX_EXP_SIGN
               : digit ? LX_EXP_DIGITS : LX_RECOVERY;
        break;
    case LX_EXP_SIGN:
    case LX_EXP_DIGITS:
        next = digit ? LX_EXP_DIGITS
               : js->state == LX_EXP_DIGITS ? LX_START : LX_RECOVERY;
        break;
    default:
        break;
    }
    if (next == LX_START) {
        js->state = LX_START;
        token_done(js);
        return;
    }
    append(js, (char)c);
    if (next == LX_RECOVERY) {
        /* The offending byte is part of the error, as in QEMU. */
        lex_error(js);
        return;
    }
    js->state = next;
}

static void feed_byte(JsonStream *js, unsigned char c)
{
again:
    switch (js->state) {
    case LX_RECOVERY:
        if (is_resync_char(c)) {
            js->state = LX_START;
            goto again;
        }
        return;
    case LX_STRING:
        if (c < 0x20 || c >= 0xFE) {
            append(js, (char)c);
            lex_error(js);
            return;
        }
        if (!append(js, (char)c)) {
            return;
        }
        if (c == '\\') {
            js->state = LX_STRING_ESC;
        } else if (c == '"') {
            js->state = LX_START;
            token_done(js);
        }
        return;
    case LX_STRING_ESC:
        if (c < 0x20 || c >= 0xFE) {
            append(js, (char)c);
            lex_error(js);
            return;
        }
        if (append(js, (char)c)) {
            js->state = LX_STRING;
        }
        return;
    case LX_SQ_STRING:
        if (c < 0x20 || c >= 0xFE) {
            append(js, (char)c);
            lex_error(js);
            return;
        }
        if (c == '\\') {
            js->state = LX_SQ_STRING_ESC;
        } else if (c == '\'') {
            if (append(js, '"')) {
                js->state = LX_START;
                token_done(js);
            }
        } else if (c == '"') {
            if (append(js, '\\')) {
                append(js, '"');
            }
        } else {
            append(js, (char)c);
        }
        return;
    case LX_SQ_STRING_ESC:
        if (c < 0x20 || c >= 0xFE) {
            append(js, (char)c);
            lex_error(js);
            return;
        }
        /* \' means a quote; every other escape is JSON's own. */
        if (c != '\'' && !append(js, '\\')) {
            return;
        }
        if (append(js, (char)c)) {
            js->state = LX_SQ_STRING;
        }
        return;
    case LX_KEYWORD:
        if (c >= 'a' && c <= 'z') {
            append(js, (char)c);
            return;
        }
        js->state = LX_START;
        token_done(js);
        goto again;
    case LX_SIGN:
    case LX_ZERO:
    case LX_DIGITS:
    case LX_POINT:
    case LX_FRACTION:
    case LX_EXP:
    case LX_EXP_SIGN:
    case LX_EXP_DIGITS:
        feed_number(js, c);
        if (js->state == LX_START) {
            goto again;
        }
        return;
    case LX_START:
        break;
    }

    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
        if (js->len > 0) {
            append(js, (char)c);
        }
        return;
    }
    js->tok_start = js->len;
    if (!append(js, (char)c)) {
        return;
    }
    switch (c) {
    case '{':
        js->braces++;
        token_done(js);
        return;
    case '}':
        js->braces--;
        token_done(js);
        return;
    case '[':
        js->brackets++;
        token_done(js);
        return;
    case ']':
        js->brackets--;
        token_done(js);
        return;
    case ':':
    case ',':
        token_done(js);
        return;
    case '"':
        js->state = LX_STRING;
        return;
    case '\'':
        js->msg[js->len - 1] = '"';
        js->state = LX_SQ_STRING;
        return;
    default:
        if (c >= 'a' && c <= 'z') {
            js->state = LX_KEYWORD;
        } else if (c == '-') {
            js->state = LX_SIGN;
        } else if (c == '0') {
            js->state = LX_ZERO;
        } else if (c >= '1' && c <= '9') {
            js->state = LX_DIGITS;
        } else {
            lex_error(js);
        }
        return;
    }
}

void json_stream_feed(JsonStream *js, const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        feed_byte(js, (unsigned char)buf[i]);
    }
}

/* ---- the parser ---- */

#define MIN_TOKLEN(n) ((n) < 64 ? (n) : 64)

typedef enum TokType {
    T_END, T_LCURLY, T_RCURLY, T_LSQUARE, T_RSQUARE, T_COLON, T_COMMA,
    T_STRING, T_NUMBER, T_KEYWORD,
} TokType;

typedef struct Parser {
    const char *s;
    size_t len, pos;
    TokType type;
    const char *tok;     /* start of the current token */
    size_t toklen;
    const char *err;
    char *buf;
    size_t buflen;
    bool build;          /* false: only look for the first error */
} Parser;

static void skip_digits(Parser *d)
{
    while (d->pos < d->len && d->s[d->pos] >= '0' && d->s[d->pos] <= '9') {
        d->pos++;
    }
}

static void next_token(Parser *d)
{
    while (d->pos < d->len && strchr(" \t\r\n", d->s[d->pos])
           && d->s[d->pos] != '\0') {
        d->pos++;
    }
    d->tok = d->s + d->pos;
    if (d->pos >= d->len) {
        d->type = T_END;
        d->toklen = 0;
        return;
    }
    size_t start = d->pos;
    char c = d->s[d->pos++];
    switch (c) {
    case '{': d->type = T_LCURLY; break;
    case '}': d->type = T_RCURLY; break;
    case '[': d->type = T_LSQUARE; break;
    case ']': d->type = T_RSQUARE; break;
    case ':': d->type = T_COLON; break;
    case ',': d->type = T_COMMA; break;
    case '"':
        d->type = T_STRING;
        while (d->pos < d->len && d->s[d->pos] != '"') {
            d->pos += d->s[d->pos] == '\\' ? 2 : 1;
        }
        d->pos = d->pos < d->len ? d->pos + 1 : d->len;
        break;
    default:
        /* The text passed the lexer, so a number here is well formed and
         * a keyword is [a-z]+; find where each ends the same way. */
        if (c == '-' || (c >= '0' && c <= '9')) {
            d->type = T_NUMBER;
            d->pos = start + (c == '-' ? 1 : 0);
            if (d->pos < d->len && d->s[d->pos] == '0') {
                d->pos++;   /* a leading zero stands alone */
            } else {
                skip_digits(d);
            }
            if (d->pos < d->len && d->s[d->pos] == '.') {
                d->pos++;
                skip_digits(d);
            }
            if (d->pos < d->len
                && (d->s[d->pos] == 'e' || d->s[d->pos] == 'E')) {
                d->pos++;
                if (d->pos < d->len
                    && (d->s[d->pos] == '+' || d->s[d->pos] == '-')) {
                    d->pos++;
                }
                skip_digits(d);
            }
        } else {
            d->type = T_KEYWORD;
            while (d->pos < d->len && d->s[d->pos] >= 'a'
                   && d->s[d->pos] <= 'z') {
                d->pos++;
            }
        }
        break;
    }
    d->toklen = d->pos - start;
}

static json_t *fail(Parser *d, const char *msg)
{
    if (!d->err) {
        d->err = msg;
    }
    return NULL;
}

/* What a value that is only checked returns (any non-NULL pointer). */
static json_t checked_only;

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static bool check_string(Parser *d)
{
    const char *s = d->tok + 1;
    const char *end = d->tok + d->toklen - 1;
    while (s < end) {
        if (*s != '\\') {
            s++;
            continue;
        }
        s++;
        if (s >= end) {
            fail(d, "invalid escape sequence in string");
            return false;
        }
        if (*s == 'u') {
            for (int i = 1; i <= 4; i++) {
                if (s + i >= end || hexval(s[i]) < 0) {
                    fail(d, "invalid hex escape sequence in string");
                    return false;
                }
            }
            s += 5;
        } else if (strchr("\"\\/bfnrt", *s) && *s != '\0') {
            s++;
        } else {
            fail(d, "invalid escape sequence in string");
            return false;
        }
    }
    return true;
}

/* The current token is a string: QEMU's escape checks, then jansson
 * decodes it (UTF-8 validation, \u escapes and surrogate pairs). */
static json_t *parse_string(Parser *d)
{
    if (!check_string(d)) {
        return NULL;
    }
    if (!d->build) {
        return &checked_only;
    }
    json_error_t jerr;
    json_t *v = json_loadb(d->tok, d->toklen,
                           JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!v) {
        snprintf(d->buf, d->buflen, "%s", jerr.text);
        return fail(d, d->buf);
    }
    return v;
}

/* ---- integers beyond int64 ----
 *
 * QEMU's parser keeps an integer that does not fit int64 as an unsigned
 * 64-bit number when it fits that, else as a double.  jansson has no
 * unsigned integers: such a number becomes a real, and the exact value
 * is remembered here for the QMP argument checker (an uint64 member
 * takes it, an int64 member does not).  The registry holds a reference
 * to each value, so the addresses stay unique until it is emptied,
 * which happens when the next text is parsed.  Per thread: QMP parses
 * and dispatches on the main thread. */
typedef struct BigUint {
    json_t *v;
    uint64_t u;
} BigUint;

static __thread BigUint *big_uints;
static __thread size_t n_big_uints, cap_big_uints;

void json_stream_forget_numbers(void)
{
    for (size_t i = 0; i < n_big_uints; i++) {
        json_decref(big_uints[i].v);
    }
    free(big_uints);
    big_uints = NULL;
    n_big_uints = cap_big_uints = 0;
}

bool json_stream_big_uint(const json_t *v, uint64_t *out)
{
    for (size_t i = 0; v && i < n_big_uints; i++) {
        if (big_uints[i].v == v) {
            *out = big_uints[i].u;
            return true;
        }
    }
    return false;
}

static bool remember_big_uint(json_t *v, uint64_t u)
{
    if (n_big_uints == cap_big_uints) {
        size_t cap = cap_big_uints ? cap_big_uints * 2 : 8;
        BigUint *b = realloc(big_uints, cap * sizeof(*b));
        if (!b) {
            return false;
        }
        big_uints = b;
        cap_big_uints = cap;
    }
    big_uints[n_big_uints++] = (BigUint){ .v = json_incref(v), .u = u };
    return true;
}

/* The current token is a number: an int64 if it is an integer that fits,
 * else an unsigned one (remembered) if it fits that, else a double. */
static json_t *parse_number(Parser *d)
{
    if (!d->build) {
        return &checked_only;
    }
    char small[64];
    char *text = d->toklen < sizeof(small) ? small : malloc(d->toklen + 1);
    if (!text) {
        return fail(d, "out of memory");
    }
    memcpy(text, d->tok, d->toklen);
    text[d->toklen] = '\0';
    json_t *v = NULL;
    bool integer = !strpbrk(text, ".eE");
    if (integer) {
        errno = 0;
        long long ll = strtoll(text, NULL, 10);
        if (errno == 0) {
            v = json_integer(ll);
            goto out;
        }
        if (text[0] != '-') {
            errno = 0;
            unsigned long long u = strtoull(text, NULL, 10);
            if (errno == 0) {
                v = json_real((double)u);
                if (v && !remember_big_uint(v, u)) {
                    json_decref(v);
                    v = NULL;
                }
                if (!v) {
                    fail(d, "out of memory");
                }
                goto out;
            }
        }
    }
    double r = strtod(text, NULL);
    v = isfinite(r) ? json_real(r) : NULL;
    if (!v) {
        snprintf(d->buf, d->buflen, "real number overflow near '%.*s'",
                 (int)MIN_TOKLEN(d->toklen), d->tok);
        fail(d, d->buf);
    }
out:
    if (text != small) {
        free(text);
    }
    return v;
}

static json_t *parse_value(Parser *d, int depth);

/* In build mode, adds a new reference; in check mode, drops nothing. */
static void drop(Parser *d, json_t *v)
{
    if (d->build) {
        json_decref(v);
    }
}

static json_t *parse_object(Parser *d, int depth)
{
    json_t *obj = d->build ? json_object() : &checked_only;
    if (!obj) {
        return fail(d, "out of memory");
    }
    next_token(d);
    if (d->type == T_RCURLY) {
        return obj;
    }
    for (;;) {
        TokType key_type = d->type;
        json_t *key = parse_value(d, depth + 1);
        if (!key) {
            drop(d, obj);
            return NULL;
        }
        if (key_type != T_STRING) {
            drop(d, key);
            drop(d, obj);
            return fail(d, "key is not a string in object");
        }
        next_token(d);
        if (d->type != T_COLON) {
            drop(d, key);
            drop(d, obj);
            return fail(d, "missing : in object pair");
        }
        next_token(d);
        json_t *value = parse_value(d, depth + 1);
        if (!value) {
            drop(d, key);
            drop(d, obj);
            return NULL;
        }
        if (d->build) {
            /* As QEMU: a key given twice is an error (checked after the
             * value, like QEMU's parser). */
            const char *k = json_string_value(key);
            if (strlen(k) != json_string_length(key)) {
                snprintf(d->buf, d->buflen,
                         "NUL byte in object key not supported");
                json_decref(key);
                json_decref(value);
                json_decref(obj);
                return fail(d, d->buf);
            }
            if (json_object_get(obj, k)) {
                json_decref(key);
                json_decref(value);
                json_decref(obj);
                return fail(d, "duplicate key");
            }
            json_object_set_new(obj, k, value);
            json_decref(key);
        }
        next_token(d);
        if (d->type == T_RCURLY) {
            return obj;
        }
        if (d->type != T_COMMA) {
            drop(d, obj);
            return fail(d, "expected separator in dict");
        }
        next_token(d);
    }
}

static json_t *parse_array(Parser *d, int depth)
{
    json_t *arr = d->build ? json_array() : &checked_only;
    if (!arr) {
        return fail(d, "out of memory");
    }
    next_token(d);
    if (d->type == T_RSQUARE) {
        return arr;
    }
    for (;;) {
        json_t *e = parse_value(d, depth + 1);
        if (!e) {
            drop(d, arr);
            return NULL;
        }
        if (d->build) {
            json_array_append_new(arr, e);
        }
        next_token(d);
        if (d->type == T_RSQUARE) {
            return arr;
        }
        if (d->type != T_COMMA) {
            drop(d, arr);
            return fail(d, "expected separator in list");
        }
        next_token(d);
    }
}

/* The current token starts a value. */
static json_t *parse_value(Parser *d, int depth)
{
    if (depth > JSON_STREAM_MAX_NESTING) {
        return fail(d, "nesting depth limit exceeded");
    }
    switch (d->type) {
    case T_LCURLY:
        return parse_object(d, depth);
    case T_LSQUARE:
        return parse_array(d, depth);
    case T_STRING:
        return parse_string(d);
    case T_NUMBER:
        return parse_number(d);
    case T_KEYWORD:
        if (d->toklen == 4 && !memcmp(d->tok, "true", 4)) {
            return d->build ? json_true() : &checked_only;
        }
        if (d->toklen == 5 && !memcmp(d->tok, "false", 5)) {
            return d->build ? json_false() : &checked_only;
        }
        if (d->toklen == 4 && !memcmp(d->tok, "null", 4)) {
            return d->build ? json_null() : &checked_only;
        }
        snprintf(d->buf, d->buflen, "invalid keyword '%.*s'",
                 (int)MIN_TOKLEN(d->toklen), d->tok);
        return fail(d, d->buf);
    default:
        return fail(d, "expecting value");
    }
}

/* Parses one balanced, lexically valid text; NULL with *why set (a
 * constant or buf) when it is not a JSON value. */
static json_t *parse_text(const char *text, size_t len, char *buf,
                          size_t buflen, const char **why)
{
    Parser d = { .s = text, .len = len, .buf = buf, .buflen = buflen,
                 .build = true };
    next_token(&d);
    json_t *v = parse_value(&d, 0);
    *why = d.err;
    return v;
}

const char *json_stream_diagnose(const char *text, size_t len,
                                 char *buf, size_t buflen)
{
    Parser d = { .s = text, .len = len, .buf = buf, .buflen = buflen };
    next_token(&d);
    parse_value(&d, 0);
    return d.err;
}
