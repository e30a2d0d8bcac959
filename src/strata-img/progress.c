/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img - the -p progress line, printed exactly as qemu-img does:
 * "    (42.00/100%)\r", reprinted when it moved by at least min_step
 * percent, and at 0 and 100; the end is a bare newline. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "strata-img/img-common.h"
#include "util/cleanup.h"

struct ImgProgress {
    pthread_mutex_t lock;
    bool enabled;
    double min_step;
    double current;    /* percent */
    double last_print;
    uint64_t done;     /* for img_progress_add */
};

static void progress_print_locked(ImgProgress *p)
{
    printf("    (%3.2f/100%%)\r", p->current);
    fflush(stdout);
    p->last_print = p->current;
}

static void progress_set_locked(ImgProgress *p, double current)
{
    if (current > 100) {
        current = 100;
    }
    p->current = current;
    if (!p->enabled) {
        return;
    }
    if (current > p->last_print + p->min_step ||
        current < p->last_print - p->min_step ||
        current == 100 || current == 0) {
        progress_print_locked(p);
    }
}

ImgProgress *img_progress_new(bool enabled, double min_step)
{
    ImgProgress *p = calloc(1, sizeof(*p));

    if (!p) {
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    p->enabled = enabled;
    p->min_step = min_step;
    if (enabled) {
        progress_print_locked(p);
    }
    return p;
}

void img_progress_update(ImgProgress *p, uint64_t done, uint64_t total)
{
    if (!p) {
        return;
    }
    LOCK_GUARD(&p->lock);
    progress_set_locked(p, total ? (double)done * 100.0 / (double)total
                                 : 100.0);
}

void img_progress_add(ImgProgress *p, uint64_t done, uint64_t total)
{
    if (!p) {
        return;
    }
    LOCK_GUARD(&p->lock);
    p->done += done;
    progress_set_locked(p, total ? (double)p->done * 100.0 / (double)total
                                 : 100.0);
}

bool img_progress_enabled(const ImgProgress *p)
{
    return p && p->enabled;
}

void img_progress_end(ImgProgress *p)
{
    if (!p) {
        return;
    }
    if (p->enabled) {
        printf("\n");
        fflush(stdout);
    }
    pthread_mutex_destroy(&p->lock);
    free(p);
}
