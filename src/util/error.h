/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - error objects for control paths.
 *
 * Control paths (open, QMP, CLI) return bool or a pointer and fill an
 * Error with a message a user can act on.  Data paths never use this:
 * they return -errno.
 *
 * Rules (as in QEMU's qapi/error.h):
 *  - Error **errp is the last parameter; it may be NULL (caller does not
 *    care) or point to a NULL Error * (caller wants the message).
 *  - On success a function never touches *errp.
 *  - On failure it sets *errp exactly once and returns false/NULL/-1.
 */
#ifndef STRATA_UTIL_ERROR_H
#define STRATA_UTIL_ERROR_H

#include <stdbool.h>

/* QMP error classes; GenericError unless QEMU uses another for the case. */
typedef enum ErrorClass {
    ERROR_CLASS_GENERIC_ERROR = 0,
    ERROR_CLASS_COMMAND_NOT_FOUND,
    ERROR_CLASS_DEVICE_NOT_ACTIVE,
    ERROR_CLASS_DEVICE_NOT_FOUND,
} ErrorClass;

typedef struct Error {
    char *msg;
    char *hint;          /* for humans only (not in QMP replies), or NULL */
    ErrorClass cls;
    int errnum;          /* positive errno that caused it, or 0 */
} Error;

void error_setg(Error **errp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends ": strerror(err)" to the message, like QEMU's error_setg_errno. */
void error_setg_errno(Error **errp, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void error_set(Error **errp, ErrorClass cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Adds text (lines ending in '\n') to the hint of an error that is
 * already set: what a person may do about it.  As QEMU's hints, it is
 * printed after the message on stderr (error_report_err,
 * error_print_hint) but is not part of the message: QMP replies and
 * error_get_pretty() leave it out. */
void error_append_hint(Error **errp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Writes the hint, if any, to stderr. */
void error_print_hint(const Error *err);
/* Prefixes the message of an error that is already set. */
void error_prepend(Error **errp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Moves src into *dst (or frees it if dst is NULL or already set). */
void error_propagate(Error **dst, Error *src);
const char *error_get_pretty(const Error *err);
const char *error_class_name(ErrorClass cls);
void error_free(Error *err);
/* Prints "<progname>: <msg>\n" and the hint to stderr and frees the
 * error. */
void error_report_err(Error *err);
/* Prints "<progname>: <msg>\n" to stderr. */
void error_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warn_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Name used as the prefix by error_report (default "strata"). */
void error_set_progname(const char *name);
const char *error_get_progname(void);

static inline void error_free_p(Error **e)
{
    if (*e) {
        error_free(*e);
    }
}
#define CLEANUP_ERROR __attribute__((cleanup(error_free_p)))

#endif
