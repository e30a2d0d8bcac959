/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - NBD server and block exports: the C API used by the stratad
 * command line (--nbd-server, --export) and by the QMP commands
 * (nbd-server-start/stop, block-export-add/del, query-block-exports).
 *
 * Arguments are the QMP argument objects exactly as QEMU defines them
 * (values may also be strings, as from the command line's keyval
 * syntax; see util/keyval.h).  Functions are called from the main
 * thread only; NBD connections run on their own threads.
 */
#ifndef STRATA_NBD_NBD_H
#define STRATA_NBD_NBD_H

#include <jansson.h>
#include <stdbool.h>

#include "block/user.h"
#include "util/error.h"
#include "util/socket-address.h"

/* nbd-server-start's arguments, decoded. */
typedef struct NbdServerOptions {
    SocketAddress addr;
    uint32_t max_connections;       /* 0 = no limit */
    uint32_t handshake_max_seconds; /* 0 = no deadline */
    char *tls_creds;                /* credentials object id, or NULL */
    char *tls_authz;                /* authz object id, or NULL */
} NbdServerOptions;

/* Decodes {"addr": SocketAddress (command line) or SocketAddressLegacy
 * (QMP), "max-connections"?, "handshake-max-seconds"?}.  Free with
 * nbd_server_options_free, also after a failure. */
bool nbd_server_options_decode(json_t *args, NbdServerOptions *o,
                               Error **errp);
void nbd_server_options_free(NbdServerOptions *o);
/* nbd-server-start.  Error when a server is already running: "NBD server
 * already running". */
bool nbd_server_start(const NbdServerOptions *o, Error **errp);
/* QEMU's defaults since its CVE-2024-7409 fix: a client must finish the
 * handshake within 10 s, and at most 100 clients are served at once. */
#define NBD_DEFAULT_HANDSHAKE_MAX_SECONDS 10
#define NBD_DEFAULT_MAX_CONNECTIONS 100
/* nbd-server-stop: closes the listener and every connection, and deletes
 * the exports that were added with type nbd (as QEMU does). */
bool nbd_server_stop(Error **errp);
bool nbd_server_running(void);
/* Startup gate of the daemon: while held, a server started (by the
 * command line) listens, so clients can connect, but does not accept
 * until the gate opens, as qemu-storage-daemon only serves once its
 * whole command line (every --export) is processed.  QMP's
 * nbd-server-start after startup is not held. */
void nbd_server_hold_accept(void);
void nbd_server_release_accept(void);

/* block-export-add's arguments, decoded. */
typedef struct NbdExportOptions {
    char *id;
    char *node_name;
    char *name;                 /* NULL: the node name */
    char *description;          /* NULL: none */
    bool writable;
    bool writethrough;
    bool allocation_depth;
    BlockErrorAction werror;    /* strata: report, stop, enospc */
    BlockErrorAction rerror;    /* strata: report, stop */
    /* strata: the export's accounting ("stats-intervals",
     * "stats-account-invalid", "stats-account-failed"); NULL when
     * accounting is off for the benchmark.  Owned. */
    struct BlockAcct *acct;
    /* strata has no dirty bitmaps: what to say about "bitmaps". */
    bool bitmaps_not_array;
    char *first_bitmap;
} NbdExportOptions;

/* Decodes {"type": "nbd", "id", "node-name", "name"?, "description"?,
 * "writable"?, "writethrough"?, "bitmaps"?, "allocation-depth"?,
 * "iothread"?, "fixed-iothread"?, "werror"?, "rerror"?, "stats-*"?}
 * (typed JSON or keyval strings) with QEMU's texts.  Free with
 * nbd_export_options_free, also after a failure. */
bool nbd_export_options_decode(json_t *args, NbdExportOptions *o,
                               Error **errp);
void nbd_export_options_free(NbdExportOptions *o);
/* strata: the export's accounting from block-export-add's
 * "stats-intervals" (seconds, default 1, 60, 3600),
 * "stats-account-invalid" and "stats-account-failed" (default true), as
 * JSON values or keyval strings; deletes those members from args.  *out
 * is NULL when accounting is off for the benchmark. */
bool nbd_export_acct_decode(json_t *args, struct BlockAcct **out,
                            Error **errp);
/* block-export-add: creates the export, taking a reference on the node
 * and o->acct (set to NULL). */
bool block_export_add(NbdExportOptions *o, Error **errp);
/* block-export-del {"id", "mode"?: "safe"|"hard"}.  Emits
 * BLOCK_EXPORT_DELETED once the export is gone. */
bool block_export_del(json_t *args, Error **errp);
/* query-block-exports result: [{"type", "id", "node-name",
 * "shutting-down"}, ...] */
json_t *block_export_query(void);
/* block-export-resume: resumes one export's paused error policy; not
 * paused is not an error.  Error "Export 'x' is not found". */
bool nbd_export_resume(const char *id, Error **errp);
/* True if node_name is used by an export (blockdev-del refuses it). */
bool block_export_uses_node(const char *node_name);

/* The live exports with their accounting, for query-blockstats,
 * block-latency-histogram-set and /metrics: calls fn for each, oldest
 * first, while holding a reference on it.  acct is NULL only when
 * accounting is off for the benchmark.  Any thread. */
struct BlockNode;
struct BlockAcct;
typedef void NbdExportStatsFn(const char *id, struct BlockNode *bs,
                              struct BlockAcct *acct, void *opaque);
void nbd_export_foreach_stats(NbdExportStatsFn *fn, void *opaque);

/* Daemon shutdown: stop accepting, let in-flight requests finish, drop
 * every export.  Safe to call when no server was started. */
void nbd_shutdown_all(void);

#endif
