/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - diagnostic log lines to stderr (see log.h). */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/log.h"

/* -1 = not yet initialised from the environment. */
static atomic_int log_level = -1;

static LogLevel current_level(void)
{
    int lvl = atomic_load(&log_level);
    if (lvl < 0) {
        const char *env = getenv("STRATA_DEBUG");
        lvl = (env && *env && strcmp(env, "0") != 0) ? LOG_DEBUG : LOG_WARN;
        int expected = -1;
        atomic_compare_exchange_strong(&log_level, &expected, lvl);
        lvl = atomic_load(&log_level);
    }
    return (LogLevel)lvl;
}

void log_set_level(LogLevel level)
{
    atomic_store(&log_level, (int)level);
}

void log_msg(LogLevel level, const char *fmt, ...)
{
    static const char *const names[] = { "error", "warning", "info", "debug" };
    if (level > current_level()) {
        return;
    }
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* One fprintf per line so lines from threads do not interleave. */
    fprintf(stderr, "%s: %s: %s\n", error_get_progname(),
            names[level <= LOG_DEBUG ? level : LOG_DEBUG], line);
}
