/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-thinp - one structured line per action:
 *   2026-05-01T10:00:00.123Z action=extend socket=... node=... from=...
 * Values are key=value; the caller quotes values that may hold spaces. */
#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

#include "strata-thinp/thinp.h"

void thinp_log(const char *action, const char *fmt, ...)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    flockfile(stdout);
    printf("%s.%03ldZ action=%s ", ts, (long)(tv.tv_usec / 1000), action);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    funlockfile(stdout);
}
