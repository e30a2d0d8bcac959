/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-thinp - what agent.c (daemons, poll loop) and volume.c (the
 * per-volume state machine) share. */
#ifndef STRATA_THINP_AGENT_INT_H
#define STRATA_THINP_AGENT_INT_H

#include "qmp/qmp-client.h"
#include "strata-thinp/thinp.h"

/* vdsm's states, plus the two halves of its EXCEEDED: a command running
 * and the daemon not yet showing the new size.  A volume leaves SET only
 * once per crossing, and only SET reacts to a crossing, so one crossing
 * extends once whatever mix of event, error and poll reports it. */
typedef enum VolState {
    VOL_UNSET,        /* needs arming (new, failed, reconnected) */
    VOL_SET,          /* threshold armed, waiting */
    VOL_EXTENDING,    /* the extend command is running */
    VOL_WAIT_SIZE,    /* extended; waiting for the daemon to see it */
    VOL_DISABLED,     /* at its maximum size: no more arming */
} VolState;

typedef struct Daemon Daemon;

typedef struct Volume {
    Daemon *d;
    char *node;               /* protocol node (where the threshold is) */
    char *format_node;        /* its qcow2 parent, or NULL */
    char *path;               /* file or device to extend */
    bool block_device;
    uint64_t capacity;        /* virtual size of the image */
    uint64_t physical;
    uint64_t allocation;
    uint64_t live_threshold;  /* as the daemon last reported it */
    uint64_t armed;           /* what we set; 0 = nothing */
    VolState state;
    uint64_t target;          /* size being extended to */
    ExtendJob *job;
    int64_t started_ms;       /* extension start, for its duration */
    int64_t retry_at_ms;      /* UNSET: arm again; WAIT_SIZE: look again */
    int wait_tries;
    bool seen;                /* met by the running discovery */
    struct Volume *next;
} Volume;

struct Daemon {
    const ThinpConfig *cfg;
    char *socket;
    QmpClient *conn;
    bool broken;              /* close after the current dispatch */
    bool has_cont;
    bool pause_pending;       /* a nospace error since the last cont */
    int backoff_ms;
    int64_t reconnect_at_ms;
    int64_t next_poll_ms;
    Volume *volumes;
    struct Daemon *next;
};

int64_t thinp_now_ms(void);

/* agent.c: a command on d's connection; a lost connection marks d broken
 * and returns NULL (errp set). */
json_t *daemon_execute(Daemon *d, const char *cmd, json_t *args,
                       Error **errp);

/* volume.c */
/* Reconciles d's volumes with a query-block-allocation reply and runs
 * every state's poll check. */
void volumes_update(Daemon *d, json_t *nodes);
void volume_on_threshold_event(Daemon *d, json_t *data);
void volume_on_io_error(Daemon *d, json_t *data);
/* Timers and finished extensions. */
void volume_run_timer(Volume *v, int64_t now);
void volume_job_done(Volume *v);
/* The connection went away: forget armed state (a restarted daemon has
 * none); running extensions keep running. */
void volumes_disconnected(Daemon *d);
void volume_free(Volume *v);

#endif
