/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-thinp - the thin-provisioning agent: shared declarations.
 *
 * The agent keeps one QMP connection per stratad, a table of the thin
 * volumes each daemon serves, and for each volume a write threshold armed
 * at physical - free_limit.  Crossing it (event, nospace I/O error, or a
 * poll that sees the allocation past it) extends the volume by a chunk,
 * waits until the daemon sees the new size, re-arms, and resumes paused
 * exports.
 */
#ifndef STRATA_THINP_THINP_H
#define STRATA_THINP_THINP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

/* ---- policy.c: vdsm's arithmetic, pure functions ---- */
typedef struct ThinpPolicy {
    uint64_t chunk;           /* bytes added per extension */
    unsigned free_percent;    /* 0..99: extend when less than
                                 (100 - free_percent)% of a chunk is free */
    double max_factor;        /* maximum size = capacity * max_factor */
} ThinpPolicy;

/* The chunk for a volume (doubled while it is being copied). */
uint64_t thinp_chunk(const ThinpPolicy *p, bool copying);
/* Free space below which the volume is extended. */
uint64_t thinp_free_limit(const ThinpPolicy *p, bool copying);
/* Where to arm: max(1, physical - limit); 0 is reserved for "off". */
uint64_t thinp_threshold(const ThinpPolicy *p, uint64_t physical,
                         bool copying);
/* Largest size the volume may reach: round(capacity * max_factor),
 * rounded up to a MiB. */
uint64_t thinp_max_size(const ThinpPolicy *p, uint64_t capacity);
/* physical + chunk rounded up to a MiB, capped at max_size.  Equal to
 * physical when the volume cannot grow. */
uint64_t thinp_next_size(const ThinpPolicy *p, uint64_t physical,
                         uint64_t capacity, bool copying);

/* ---- config.c ---- */
typedef struct ThinpConfig {
    char **sockets;           /* stratad QMP sockets */
    size_t nsockets;
    char **volumes;           /* node names treated as thin volumes even
                                 on regular files (protocol or format) */
    size_t nvolumes;
    char **copying;           /* node names whose chunk is doubled */
    size_t ncopying;
    ThinpPolicy policy;
    unsigned poll_interval_ms;
    char *extend_cmd;         /* template; NULL = built-in */
} ThinpConfig;

void thinp_config_init(ThinpConfig *c);
void thinp_config_free(ThinpConfig *c);
/* Applies one setting (a config file line or a command-line option). */
bool thinp_config_set(ThinpConfig *c, const char *key, const char *value,
                      Error **errp);
/* Reads key=value lines ('#' comments, blank lines ignored). */
bool thinp_config_load(ThinpConfig *c, const char *path, Error **errp);
bool thinp_config_has(char *const *list, size_t n, const char *name);

/* ---- log.c: one key=value line per action on stdout ---- */
void thinp_log(const char *action, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- extend.c ---- */
typedef struct ExtendJob ExtendJob;
/* Starts growing the volume at path to size bytes: the command template
 * (run with /bin/sh -c after substituting {path}, {size}, {node},
 * {socket}) or the built-in (regular file: ftruncate; loop device: grow
 * its backing file and LOOP_SET_CAPACITY).  Built-ins finish before
 * returning; a command runs in a child whose pidfd is given by
 * extend_job_fd.  NULL with errp when it cannot start. */
ExtendJob *extend_start(const char *tmpl, const char *path, uint64_t size,
                        const char *node, const char *socket, Error **errp);
/* -1 when the job is already finished. */
int extend_job_fd(const ExtendJob *j);
const char *extend_job_method(const ExtendJob *j);
/* Collects a finished job: true on success, else errp.  Frees j. */
bool extend_finish(ExtendJob *j, Error **errp);
/* Kills a running command and frees j. */
void extend_abort(ExtendJob *j);

/* ---- agent.c ---- */
int thinp_run(ThinpConfig *cfg);

#endif
