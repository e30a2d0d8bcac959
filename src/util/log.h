/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - diagnostic log lines to stderr. */
#ifndef STRATA_UTIL_LOG_H
#define STRATA_UTIL_LOG_H

typedef enum LogLevel { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG } LogLevel;

/* Lines below this level are dropped; STRATA_DEBUG=1 in the environment
 * sets LOG_DEBUG at startup. */
void log_set_level(LogLevel level);
void log_msg(LogLevel level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
