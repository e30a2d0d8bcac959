/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - error objects for control paths (see error.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

static const char *progname = "strata";

static char *vformat(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) {
        return NULL;
    }
    return s;
}

static void error_setv(Error **errp, ErrorClass cls, int errnum,
                       const char *fmt, va_list ap)
{
    if (!errp) {
        return;
    }
    if (*errp) {
        /* Setting twice is a caller bug; keep the first, it is the cause. */
        return;
    }
    Error *err = calloc(1, sizeof(*err));
    if (!err) {
        return;
    }
    err->msg = vformat(fmt, ap);
    if (!err->msg) {
        err->msg = strdup("out of memory while formatting an error");
    }
    if (errnum && err->msg) {
        char *full = NULL;
        if (asprintf(&full, "%s: %s", err->msg, strerror(errnum)) >= 0) {
            free(err->msg);
            err->msg = full;
        }
    }
    err->cls = cls;
    err->errnum = errnum;
    *errp = err;
}

void error_setg(Error **errp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_setv(errp, ERROR_CLASS_GENERIC_ERROR, 0, fmt, ap);
    va_end(ap);
}

void error_setg_errno(Error **errp, int err, const char *fmt, ...)
{
    va_list ap;
    if (err < 0) {
        err = -err;
    }
    va_start(ap, fmt);
    error_setv(errp, ERROR_CLASS_GENERIC_ERROR, err, fmt, ap);
    va_end(ap);
}

void error_set(Error **errp, ErrorClass cls, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_setv(errp, cls, 0, fmt, ap);
    va_end(ap);
}

void error_append_hint(Error **errp, const char *fmt, ...)
{
    if (!errp || !*errp) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *text = vformat(fmt, ap);
    va_end(ap);
    if (!text) {
        return;
    }
    char *full = NULL;
    if (asprintf(&full, "%s%s", (*errp)->hint ? (*errp)->hint : "",
                 text) >= 0) {
        free((*errp)->hint);
        (*errp)->hint = full;
    }
    free(text);
}

void error_print_hint(const Error *err)
{
    if (err && err->hint) {
        fputs(err->hint, stderr);
    }
}

void error_prepend(Error **errp, const char *fmt, ...)
{
    if (!errp || !*errp) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *prefix = vformat(fmt, ap);
    va_end(ap);
    if (!prefix) {
        return;
    }
    char *full = NULL;
    if (asprintf(&full, "%s%s", prefix, (*errp)->msg ? (*errp)->msg : "") >= 0) {
        free((*errp)->msg);
        (*errp)->msg = full;
    }
    free(prefix);
}

void error_propagate(Error **dst, Error *src)
{
    if (!src) {
        return;
    }
    if (dst && !*dst) {
        *dst = src;
    } else {
        error_free(src);
    }
}

const char *error_get_pretty(const Error *err)
{
    return err && err->msg ? err->msg : "";
}

const char *error_class_name(ErrorClass cls)
{
    switch (cls) {
    case ERROR_CLASS_COMMAND_NOT_FOUND:
        return "CommandNotFound";
    case ERROR_CLASS_DEVICE_NOT_ACTIVE:
        return "DeviceNotActive";
    case ERROR_CLASS_DEVICE_NOT_FOUND:
        return "DeviceNotFound";
    case ERROR_CLASS_GENERIC_ERROR:
    default:
        return "GenericError";
    }
}

void error_free(Error *err)
{
    if (err) {
        free(err->msg);
        free(err->hint);
        free(err);
    }
}

void error_report_err(Error *err)
{
    if (!err) {
        return;
    }
    fprintf(stderr, "%s: %s\n", progname, error_get_pretty(err));
    error_print_hint(err);
    error_free(err);
}

void error_report(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", progname);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void warn_report(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: warning: ", progname);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void error_set_progname(const char *name)
{
    const char *slash = name ? strrchr(name, '/') : NULL;
    progname = slash ? slash + 1 : (name ? name : "strata");
}

const char *error_get_progname(void)
{
    return progname;
}
