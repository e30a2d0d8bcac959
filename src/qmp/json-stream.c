/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP stream framing (see json-stream.h). */
#include "qmp/json-stream.h"

#include <stdbool.h>
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

static void parse_and_emit(JsonStream *js)
{
    json_error_t jerr;
    json_t *v = json_loadb(js->msg, js->len,
                           JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (v) {
        reset(js);
        js->fn(js->opaque, v, NULL);
        return;
    }
    char diag[128];
    const char *why = json_stream_diagnose(js->msg, js->len, diag,
                                           sizeof(diag));
    if (why) {
        emit_error(js, "JSON parse error, %s", why);
    } else {
        emit_error(js, "JSON parse error, %s", jerr.text);
    }
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

/* ---- diagnosis of a text jansson refused ---- */

#define MIN_TOKLEN(n) ((n) < 64 ? (n) : 64)

typedef enum TokType {
    T_END, T_LCURLY, T_RCURLY, T_LSQUARE, T_RSQUARE, T_COLON, T_COMMA,
    T_STRING, T_NUMBER, T_KEYWORD,
} TokType;

typedef struct Diag {
    const char *s;
    size_t len, pos;
    TokType type;
    const char *tok;     /* start of the current token */
    size_t toklen;
    const char *err;
    char *buf;
    size_t buflen;
} Diag;

static void skip_digits(Diag *d)
{
    while (d->pos < d->len && d->s[d->pos] >= '0' && d->s[d->pos] <= '9') {
        d->pos++;
    }
}

static void next_token(Diag *d)
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

static bool fail(Diag *d, const char *msg)
{
    if (!d->err) {
        d->err = msg;
    }
    return false;
}

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

static bool check_string(Diag *d)
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
            return fail(d, "invalid escape sequence in string");
        }
        if (*s == 'u') {
            for (int i = 1; i <= 4; i++) {
                if (s + i >= end || hexval(s[i]) < 0) {
                    return fail(d, "invalid hex escape sequence in string");
                }
            }
            s += 5;
        } else if (strchr("\"\\/bfnrt", *s) && *s != '\0') {
            s++;
        } else {
            return fail(d, "invalid escape sequence in string");
        }
    }
    return true;
}

static bool diag_value(Diag *d, int depth);

static bool diag_object(Diag *d, int depth)
{
    next_token(d);
    if (d->type == T_RCURLY) {
        return true;
    }
    for (;;) {
        TokType key = d->type;
        if (key != T_STRING) {
            if (!diag_value(d, depth + 1)) {
                return false;
            }
            return fail(d, "key is not a string in object");
        }
        if (!check_string(d)) {
            return false;
        }
        next_token(d);
        if (d->type != T_COLON) {
            return fail(d, "missing : in object pair");
        }
        next_token(d);
        if (!diag_value(d, depth + 1)) {
            return false;
        }
        next_token(d);
        if (d->type == T_RCURLY) {
            return true;
        }
        if (d->type != T_COMMA) {
            return fail(d, "expected separator in dict");
        }
        next_token(d);
    }
}

static bool diag_array(Diag *d, int depth)
{
    next_token(d);
    if (d->type == T_RSQUARE) {
        return true;
    }
    for (;;) {
        if (!diag_value(d, depth + 1)) {
            return false;
        }
        next_token(d);
        if (d->type == T_RSQUARE) {
            return true;
        }
        if (d->type != T_COMMA) {
            return fail(d, "expected separator in list");
        }
        next_token(d);
    }
}

/* The current token starts a value. */
static bool diag_value(Diag *d, int depth)
{
    if (depth > JSON_STREAM_MAX_NESTING) {
        return fail(d, "nesting depth limit exceeded");
    }
    switch (d->type) {
    case T_LCURLY:
        return diag_object(d, depth);
    case T_LSQUARE:
        return diag_array(d, depth);
    case T_STRING:
        return check_string(d);
    case T_NUMBER:
        return true;
    case T_KEYWORD:
        if ((d->toklen == 4 && !memcmp(d->tok, "true", 4))
            || (d->toklen == 5 && !memcmp(d->tok, "false", 5))
            || (d->toklen == 4 && !memcmp(d->tok, "null", 4))) {
            return true;
        }
        snprintf(d->buf, d->buflen, "invalid keyword '%.*s'",
                 (int)MIN_TOKLEN(d->toklen), d->tok);
        return fail(d, d->buf);
    default:
        return fail(d, "expecting value");
    }
}

const char *json_stream_diagnose(const char *text, size_t len,
                                 char *buf, size_t buflen)
{
    Diag d = { .s = text, .len = len, .buf = buf, .buflen = buflen };
    next_token(&d);
    diag_value(&d, 0);
    return d.err;
}
