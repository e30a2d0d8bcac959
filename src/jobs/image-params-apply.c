/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - applying image parameters to an open node (see
 * image-params-apply.h). */
#include "jobs/image-params-apply.h"

#include <stdio.h>
#include <string.h>

#include "jobs/job.h"
#include "jobs/stream.h"
#include "util/log.h"

void image_params_prefetch_id(BlockNode *bs, char *buf, size_t len)
{
    snprintf(buf, len, "prefetch-%s", block_node_name(bs));
}

static bool prefetch_start(BlockNode *bs, const ImageParams *ip,
                           bool with_delay, Error **errp)
{
    if (!block_node_backing(bs)) {
        return true;         /* already independent: nothing to fetch */
    }
    char id[160];
    image_params_prefetch_id(bs, id, sizeof(id));
    if (job_find(id)) {
        return true;         /* already running */
    }
    bool adaptive;
    uint64_t rate;
    image_params_prefetch_rate(ip, &adaptive, &rate);
    StreamOptions o = {
        .job_id = id,
        .device = block_node_name(bs),
        .has_speed = !adaptive && rate > 0,
        .speed = (int64_t)rate,
        .on_error = "report",
        .auto_finalize = true,
        .auto_dismiss = true,
        .adaptive_speed = adaptive,
        .delay_ns = with_delay
                    ? image_params_prefetch_delay(ip) * 1000000000ULL : 0,
    };
    if (!stream_start(&o, errp)) {
        error_prepend(errp, "Cannot start the prefetch of '%s': ",
                      block_node_name(bs));
        return false;
    }
    return true;
}

bool image_params_apply_on_open(BlockNode *bs, const ImageParams *ip,
                                Error **errp)
{
    bool cor = image_params_copy_on_read(ip);
    bool prefetch = image_params_prefetch(ip) == IMAGE_PREFETCH_ON_OPEN;
    if (!cor && !prefetch) {
        return true;
    }
    if (block_node_read_only(bs)) {
        log_info("image parameters of '%s': the node is read-only, so "
                 "neither copy-on-read nor prefetch apply",
                 block_node_name(bs));
        return true;
    }
    if (cor && !block_node_set_copy_on_read(bs, true, errp)) {
        return false;
    }
    return !prefetch || prefetch_start(bs, ip, true, errp);
}

bool image_params_apply_live(BlockNode *bs, const ImageParams *effective,
                             const ImageParams *changes, Error **errp)
{
    const char *cor = image_params_get(changes, "copy-on-read");
    if (cor && !block_node_set_copy_on_read(bs, !strcmp(cor, "on"), errp)) {
        return false;
    }
    char id[160];
    image_params_prefetch_id(bs, id, sizeof(id));
    const char *prefetch = image_params_get(changes, "prefetch");
    if (prefetch && !strcmp(prefetch, "off")) {
        Job *job = job_find(id);
        if (job && !job_user_cancel(job, false, errp)) {
            return false;
        }
    }
    if (prefetch && !strcmp(prefetch, "on-open") &&
        !prefetch_start(bs, effective, false, errp)) {
        return false;
    }
    const char *rate = image_params_get(changes, "prefetch-rate");
    Job *job = job_find(id);
    if (rate && job && (!prefetch || strcmp(prefetch, "on-open"))) {
        /* A number sets the limit (the ceiling of an adaptive job);
         * "adaptive" lifts a fixed limit to the controller's default
         * ceiling.  Switching the mode itself waits for the next start. */
        bool adaptive;
        uint64_t r;
        image_params_prefetch_rate(effective, &adaptive, &r);
        if (!job_set_speed(job, adaptive ? 0 : (int64_t)r, errp)) {
            return false;
        }
    }
    return true;
}
