/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP NBD server and export commands: nbd-server-start,
 * nbd-server-stop, block-export-add, block-export-del,
 * query-block-exports.  Arguments are checked here with QEMU's texts;
 * the work is done by nbd/nbd.h. */
#include <string.h>

#include "nbd/nbd.h"
#include "qmp/monitor.h"
#include "qmp/qapi-schema.h"
#include "qmp/qmp-args.h"
#include "qmp/qmp-internal.h"

/* QEMU's arguments; strata: as QEMU 9.1, seconds a client has to
 * finish the handshake. */
static const QmpArgSpec nbd_server_start_args[] = {
    QMP_ARG_INHERIT(qapi_nbd_server_start_arg),
    { "handshake-max-seconds", QMP_ARG_UINT32, .optional = true },
    { NULL },
};

static json_t *cmd_nbd_server_start(json_t *args, Error **errp)
{
    json_t *addr = json_object_get(args, "addr");
    const char *type = json_string_value(json_object_get(addr, "type"));
    if (strcmp(type, "inet") != 0 && strcmp(type, "unix") != 0) {
        error_setg(errp, "NBD server address type '%s' is not supported "
                   "(use 'unix' or 'inet')", type);
        return NULL;
    }
    NbdServerOptions so;
    bool ok = nbd_server_options_decode(args, &so, errp) &&
              nbd_server_start(&so, errp);
    nbd_server_options_free(&so);
    return ok ? json_object() : NULL;
}

/* --nbd-server: QEMU's NbdServerOptions (a flat SocketAddress). */
static const QmpArgSpec nbd_server_option[] = {
    QMP_ARG_INHERIT(qapi_NbdServerOptions),
    { "handshake-max-seconds", QMP_ARG_UINT32, .optional = true },
    { NULL },
};

bool qmp_nbd_server_start_option(json_t *opts, bool keyval, Error **errp)
{
    bool ok = keyval ? qmp_args_check_keyval(opts, "", nbd_server_option,
                                             errp)
                     : qmp_args_check(opts, "", nbd_server_option, errp);
    if (!ok) {
        return false;
    }
    NbdServerOptions so;
    ok = nbd_server_options_decode(opts, &so, errp) &&
         nbd_server_start(&so, errp);
    nbd_server_options_free(&so);
    return ok;
}

static json_t *cmd_nbd_server_stop(json_t *args, Error **errp)
{
    if (!nbd_server_running()) {
        error_setg(errp, "NBD server not running");
        return NULL;
    }
    return nbd_server_stop(errp) ? json_object() : NULL;
}

/* strata: the export's error policy (QEMU's BlockdevOnError names). */
static const char *const export_werror[] = { "report", "stop", "enospc",
                                             NULL };
static const char *const export_rerror[] = { "report", "stop", NULL };

/* QEMU's BlockExportOptions, then strata's members. */
static const QmpArgSpec export_add_args[] = {
    QMP_ARG_INHERIT(qapi_BlockExportOptions),
    /* strata: per-export accounting (docs/qmp.md, query-blockstats). */
    { "stats-intervals", QMP_ARG_ARRAY, .optional = true,
      .elem = QMP_ARG_UINT32 },
    { "stats-account-invalid", QMP_ARG_BOOL, .optional = true },
    { "stats-account-failed", QMP_ARG_BOOL, .optional = true },
    { "werror", QMP_ARG_ENUM, .optional = true, .choices = export_werror },
    { "rerror", QMP_ARG_ENUM, .optional = true, .choices = export_rerror },
    { NULL },
};

/* block-export-add with checked arguments. */
static bool export_add(json_t *args, Error **errp)
{
    const char *type = qmp_arg_str(args, "type", "");
    if (strcmp(type, "nbd") != 0) {
        error_setg(errp, "Export type '%s' is not supported by strata "
                   "(only 'nbd')", type);
        return false;
    }
    if (json_object_get(args, "iothread")) {
        error_setg(errp, "strata has no iothreads: NBD connections always "
                   "run on their own threads; drop 'iothread'");
        return false;
    }
    NbdExportOptions eo;
    bool ok = nbd_export_options_decode(args, &eo, errp) &&
              block_export_add(&eo, errp);
    nbd_export_options_free(&eo);
    return ok;
}

bool qmp_block_export_add(json_t *opts, bool keyval, Error **errp)
{
    bool ok = keyval ? qmp_args_check_keyval(opts, "", export_add_args, errp)
                     : qmp_args_check(opts, "", export_add_args, errp);
    return ok && export_add(opts, errp);
}

static json_t *cmd_block_export_add(json_t *args, Error **errp)
{
    return export_add(args, errp) ? json_object() : NULL;
}

static json_t *cmd_block_export_del(json_t *args, Error **errp)
{
    return block_export_del(args, errp) ? json_object() : NULL;
}

static json_t *cmd_query_block_exports(json_t *args, Error **errp)
{
    return block_export_query();
}

void qmp_register_export_commands(void)
{
    qmp_register_command_args("nbd-server-start", cmd_nbd_server_start,
                              nbd_server_start_args);
    qmp_register_command_args("nbd-server-stop", cmd_nbd_server_stop,
                              qmp_no_args);
    qmp_register_command_args("block-export-add", cmd_block_export_add,
                              export_add_args);
    qmp_register_command_args("block-export-del", cmd_block_export_del,
                              qapi_block_export_del_arg);
    qmp_register_command_args("query-block-exports", cmd_query_block_exports,
                              qmp_no_args);
}
