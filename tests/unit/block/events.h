/* SPDX-License-Identifier: BSD-3-Clause */
/* Captures the block layer's events for unit tests: install with
 * setup_events / teardown_events as cmocka fixtures; the events are
 * {"event", "data"} objects in `events`, guarded by ev_lock. */
#ifndef STRATA_TESTS_EVENTS_H
#define STRATA_TESTS_EVENTS_H

#include <jansson.h>
#include <pthread.h>

#include "block/block.h"

static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *events;

static void sink(const char *event, json_t *data)
{
    pthread_mutex_lock(&ev_lock);
    json_array_append_new(events, json_pack("{s:s, s:o}", "event", event,
                                            "data", data));
    pthread_mutex_unlock(&ev_lock);
}

static inline int setup_events(void **state)
{
    (void)state;
    events = json_array();
    block_set_event_sink(sink);
    return 0;
}

static inline int teardown_events(void **state)
{
    (void)state;
    block_set_event_sink(NULL);
    json_decref(events);
    events = NULL;
    return 0;
}

#endif
