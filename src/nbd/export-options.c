/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - block-export-add's arguments (QMP JSON, or the command line's
 * keyval strings) decoded once into NbdExportOptions, with QEMU's texts
 * and in QEMU's order of checks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/accounting.h"
#include "nbd/nbd.h"
#include "util/cleanup.h"
#include "util/keyval.h"

bool nbd_export_acct_decode(json_t *args, BlockAcct **out, Error **errp)
{
    BlockAcctOptions o;
    block_acct_options_init(&o);
    *out = NULL;

    if (!opt_get_bool(args, "stats-account-invalid", true, &o.account_invalid,
                      errp) ||
        !opt_get_bool(args, "stats-account-failed", true, &o.account_failed,
                      errp)) {
        return false;
    }
    json_t *list = json_object_get(args, "stats-intervals");
    uint32_t *intervals = NULL;
    if (list && !json_is_null(list)) {
        if (!json_is_array(list)) {
            error_setg(errp, "Invalid parameter type for 'stats-intervals', "
                       "expected: array");
            return false;
        }
        size_t n = json_array_size(list);
        intervals = calloc(n ? n : 1, sizeof(*intervals));
        if (!intervals) {
            error_setg(errp, "out of memory for I/O accounting");
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(list, i);
            char key[32];
            uint64_t v = 0;
            snprintf(key, sizeof(key), "%zu", i);
            json_t *wrap = json_pack("{s:O}", key, e);
            bool ok = wrap && opt_get_uint64(wrap, key, 0, &v, NULL);
            json_decref(wrap);
            if (!ok || (json_is_integer(e) && json_integer_value(e) < 0) ||
                v > UINT32_MAX) {
                error_setg(errp, "Parameter 'stats-intervals.%zu' expects "
                           "a number of seconds (1 to %u)", i, UINT32_MAX);
                free(intervals);
                return false;
            }
            intervals[i] = (uint32_t)v;
        }
        o.intervals = intervals;
        o.n_intervals = n;
    }

    bool ok = true;
    if (!block_acct_benchmark_off()) {
        *out = block_acct_new(&o, errp);
        ok = *out != NULL;
    }
    free(intervals);
    if (ok) {
        json_object_del(args, "stats-intervals");
        json_object_del(args, "stats-account-invalid");
        json_object_del(args, "stats-account-failed");
    }
    return ok;
}

/* strata: the export's error policy, QEMU's BlockdevOnError names
 * (werror: report, stop, enospc; rerror: report, stop).  Defaults:
 * werror=enospc, rerror=report, as QEMU's devices. */
static bool decode_error_policy(json_t *args, NbdExportOptions *o,
                                Error **errp)
{
    const unsigned wmask = 1u << BLOCK_ERROR_ACTION_REPORT |
                           1u << BLOCK_ERROR_ACTION_STOP |
                           1u << BLOCK_ERROR_ACTION_ENOSPC;
    const unsigned rmask = 1u << BLOCK_ERROR_ACTION_REPORT |
                           1u << BLOCK_ERROR_ACTION_STOP;
    const char *w, *r;
    return opt_get_str(args, "werror", "enospc", &w, errp) &&
           opt_get_str(args, "rerror", "report", &r, errp) &&
           block_error_action_parse(w, wmask, "werror", &o->werror, errp) &&
           block_error_action_parse(r, rmask, "rerror", &o->rerror, errp);
}

/* Remembers what the export must say about "bitmaps" when its turn
 * comes among the checks (after the node and name checks, as QEMU). */
static bool decode_bitmaps(json_t *bitmaps, NbdExportOptions *o)
{
    if (!bitmaps || json_is_null(bitmaps)) {
        return true;
    }
    if (!json_is_array(bitmaps)) {
        o->bitmaps_not_array = true;
        return true;
    }
    if (json_array_size(bitmaps) == 0) {
        return true;
    }
    json_t *bm = json_array_get(bitmaps, 0);
    const char *name = json_is_string(bm) ? json_string_value(bm)
                       : json_string_value(json_object_get(bm, "name"));
    o->first_bitmap = strdup(name ? name : "");
    return o->first_bitmap != NULL;
}

static bool dup_str(const char *s, char **out)
{
    *out = s ? strdup(s) : NULL;
    return !s || *out;
}

bool nbd_export_options_decode(json_t *args_in, NbdExportOptions *o,
                               Error **errp)
{
    static const char *const types[] = { "nbd", NULL };
    static const char *const known[] = {
        "type", "id", "node-name", "name", "description", "writable",
        "writethrough", "allocation-depth", "iothread", "fixed-iothread",
        "werror", "rerror", "bitmaps",
    };
    const char *id, *node_name, *name, *desc, *iothread;
    bool fixed_iothread;
    int type;

    memset(o, 0, sizeof(*o));
    if (!args_in || !json_is_object(args_in)) {
        error_setg(errp, "Invalid parameter type, expected: object");
        return false;
    }
    CLEANUP_JSON json_t *args = json_deep_copy(args_in);
    if (!args) {
        error_setg(errp, "Out of memory");
        return false;
    }
    if (!json_object_get(args, "type")) {
        error_setg(errp, "Parameter 'type' is missing");
        return false;
    }
    if (!opt_get_enum(args, "type", types, 0, &type, errp) ||
        !opt_get_required_str(args, "id", &id, errp) ||
        !opt_get_required_str(args, "node-name", &node_name, errp) ||
        !opt_get_str(args, "name", NULL, &name, errp) ||
        !opt_get_str(args, "description", NULL, &desc, errp) ||
        !opt_get_bool(args, "writable", false, &o->writable, errp) ||
        !opt_get_bool(args, "writethrough", false, &o->writethrough, errp) ||
        !opt_get_bool(args, "allocation-depth", false, &o->allocation_depth,
                      errp) ||
        !opt_get_str(args, "iothread", NULL, &iothread, errp) ||
        !opt_get_bool(args, "fixed-iothread", false, &fixed_iothread, errp) ||
        !nbd_export_acct_decode(args, &o->acct, errp) ||
        !decode_error_policy(args, o, errp)) {
        nbd_export_options_free(o);
        return false;
    }
    if (!dup_str(id, &o->id) || !dup_str(node_name, &o->node_name) ||
        !dup_str(name, &o->name) || !dup_str(desc, &o->description) ||
        !decode_bitmaps(json_object_get(args, "bitmaps"), o)) {
        error_setg(errp, "Out of memory");
        nbd_export_options_free(o);
        return false;
    }
    for (size_t i = 0; i < ARRAY_SIZE(known); i++) {
        json_object_del(args, known[i]);
    }
    if (!opt_check_empty(args, errp)) {
        nbd_export_options_free(o);
        return false;
    }
    return true;
}

void nbd_export_options_free(NbdExportOptions *o)
{
    free(o->id);
    free(o->node_name);
    free(o->name);
    free(o->description);
    free(o->first_bitmap);
    block_acct_free(o->acct);
    memset(o, 0, sizeof(*o));
}
