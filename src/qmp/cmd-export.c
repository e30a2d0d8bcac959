/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP NBD server and export commands: nbd-server-start,
 * nbd-server-stop, block-export-add, block-export-del,
 * query-block-exports.  Arguments are checked here with QEMU's texts;
 * the work is done by nbd/nbd.h. */
#include <string.h>

#include "nbd/nbd.h"
#include "qmp/qmp-args.h"
#include "qmp/qmp-internal.h"

static const char *const addr_types[] = { "inet", "unix", "vsock", "fd",
                                          NULL };

static const QmpArgSpec inet_members[] = {
    { "host", QMP_ARG_STR },
    { "port", QMP_ARG_STR },
    { "numeric", QMP_ARG_BOOL, .optional = true },
    { "to", QMP_ARG_UINT32, .optional = true },
    { "ipv4", QMP_ARG_BOOL, .optional = true },
    { "ipv6", QMP_ARG_BOOL, .optional = true },
    { "keep-alive", QMP_ARG_BOOL, .optional = true },
    { "mptcp", QMP_ARG_BOOL, .optional = true },
    { NULL },
};

static const QmpArgSpec unix_members[] = {
    { "path", QMP_ARG_STR },
    { "abstract", QMP_ARG_BOOL, .optional = true },
    { "tight", QMP_ARG_BOOL, .optional = true },
    { NULL },
};

static const QmpArgSpec vsock_members[] = {
    { "cid", QMP_ARG_STR },
    { "port", QMP_ARG_STR },
    { NULL },
};

static const QmpArgSpec fd_members[] = {
    { "str", QMP_ARG_STR },
    { NULL },
};

/* SocketAddressLegacy: {"type": T, "data": {...}}. */
static bool check_legacy_addr(json_t *addr, Error **errp)
{
    static const QmpArgSpec type_spec = { "type", QMP_ARG_ENUM,
                                          .choices = addr_types };
    json_t *type = json_object_get(addr, "type");
    if (!type) {
        error_setg(errp, "Parameter 'addr.type' is missing");
        return false;
    }
    /* QEMU names the discriminator without its prefix here. */
    if (!qmp_args_check_value(type, "type", &type_spec, errp)) {
        return false;
    }
    const char *t = json_string_value(type);
    const QmpArgSpec *members = !strcmp(t, "inet") ? inet_members
                                : !strcmp(t, "unix") ? unix_members
                                : !strcmp(t, "vsock") ? vsock_members
                                : fd_members;
    const QmpArgSpec data_spec = { "data", QMP_ARG_OBJECT,
                                   .nested = members };
    json_t *data = json_object_get(addr, "data");
    if (!data) {
        error_setg(errp, "Parameter 'addr.data' is missing");
        return false;
    }
    if (!qmp_args_check_value(data, "addr.data", &data_spec, errp)) {
        return false;
    }
    static const char *const addr_members[] = { "type", "data", NULL };
    return qmp_args_only(addr, "addr.", addr_members, errp);
}

static const QmpArgSpec nbd_server_start_args[] = {
    { "addr", QMP_ARG_OBJECT },
    { "tls-creds", QMP_ARG_STR, .optional = true },
    { "tls-authz", QMP_ARG_STR, .optional = true },
    { "max-connections", QMP_ARG_UINT32, .optional = true },
    /* As QEMU 9.1: seconds a client has to finish the handshake. */
    { "handshake-max-seconds", QMP_ARG_UINT32, .optional = true },
    { NULL },
};

static json_t *cmd_nbd_server_start(json_t *args, Error **errp)
{
    json_t *addr = json_object_get(args, "addr");
    if (json_is_object(addr) && !check_legacy_addr(addr, errp)) {
        return NULL;
    }
    if (!qmp_args_check(args, "", nbd_server_start_args, errp)) {
        return NULL;
    }
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

static const QmpArgSpec no_args[] = { { NULL } };

static json_t *cmd_nbd_server_stop(json_t *args, Error **errp)
{
    if (!qmp_args_check(args, "", no_args, errp)) {
        return NULL;
    }
    if (!nbd_server_running()) {
        error_setg(errp, "NBD server not running");
        return NULL;
    }
    return nbd_server_stop(errp) ? json_object() : NULL;
}

static const char *const export_types[] = { "nbd", "vhost-user-blk", "fuse",
                                            "vduse-blk", NULL };

/* strata: the export's error policy (QEMU's BlockdevOnError names). */
static const char *const export_werror[] = { "report", "stop", "enospc",
                                             NULL };
static const char *const export_rerror[] = { "report", "stop", NULL };

/* BlockExportOptions: the base members, then BlockExportOptionsNbd. */
static const QmpArgSpec export_add_args[] = {
    { "type", QMP_ARG_ENUM, .choices = export_types },
    { "id", QMP_ARG_STR },
    { "fixed-iothread", QMP_ARG_BOOL, .optional = true },
    { "iothread", QMP_ARG_STR, .optional = true },
    { "node-name", QMP_ARG_STR },
    { "writable", QMP_ARG_BOOL, .optional = true },
    { "writethrough", QMP_ARG_BOOL, .optional = true },
    { "name", QMP_ARG_STR, .optional = true },
    { "description", QMP_ARG_STR, .optional = true },
    { "bitmaps", QMP_ARG_ARRAY, .optional = true, .elem = QMP_ARG_STR },
    { "allocation-depth", QMP_ARG_BOOL, .optional = true },
    /* strata: per-export accounting (docs/qmp.md, query-blockstats). */
    { "stats-intervals", QMP_ARG_ARRAY, .optional = true,
      .elem = QMP_ARG_UINT32 },
    { "stats-account-invalid", QMP_ARG_BOOL, .optional = true },
    { "stats-account-failed", QMP_ARG_BOOL, .optional = true },
    { "werror", QMP_ARG_ENUM, .optional = true, .choices = export_werror },
    { "rerror", QMP_ARG_ENUM, .optional = true, .choices = export_rerror },
    { NULL },
};

static json_t *cmd_block_export_add(json_t *args, Error **errp)
{
    json_t *type = json_object_get(args, "type");
    if (json_is_string(type) && strcmp(json_string_value(type), "nbd") != 0
        && strcmp(json_string_value(type), "vhost-user-blk") != 0
        && strcmp(json_string_value(type), "fuse") != 0
        && strcmp(json_string_value(type), "vduse-blk") != 0) {
        error_setg(errp, "Parameter 'type' does not accept value '%s'",
                   json_string_value(type));
        return NULL;
    }
    if (json_is_string(type) && strcmp(json_string_value(type), "nbd") != 0) {
        error_setg(errp, "Export type '%s' is not supported by strata "
                   "(only 'nbd')", json_string_value(type));
        return NULL;
    }
    if (!qmp_args_check(args, "", export_add_args, errp)) {
        return NULL;
    }
    if (json_object_get(args, "iothread")) {
        error_setg(errp, "strata has no iothreads: NBD connections always "
                   "run on their own threads; drop 'iothread'");
        return NULL;
    }
    NbdExportOptions eo;
    bool ok = nbd_export_options_decode(args, &eo, errp) &&
              block_export_add(&eo, errp);
    nbd_export_options_free(&eo);
    return ok ? json_object() : NULL;
}

static const char *const export_del_modes[] = { "safe", "hard", NULL };

static const QmpArgSpec export_del_args[] = {
    { "id", QMP_ARG_STR },
    { "mode", QMP_ARG_ENUM, .optional = true, .choices = export_del_modes },
    { NULL },
};

static json_t *cmd_block_export_del(json_t *args, Error **errp)
{
    if (!qmp_args_check(args, "", export_del_args, errp)) {
        return NULL;
    }
    return block_export_del(args, errp) ? json_object() : NULL;
}

static json_t *cmd_query_block_exports(json_t *args, Error **errp)
{
    if (!qmp_args_check(args, "", no_args, errp)) {
        return NULL;
    }
    return block_export_query();
}

void qmp_register_export_commands(void)
{
    qmp_register_command("nbd-server-start", cmd_nbd_server_start);
    qmp_register_command("nbd-server-stop", cmd_nbd_server_stop);
    qmp_register_command("block-export-add", cmd_block_export_add);
    qmp_register_command("block-export-del", cmd_block_export_del);
    qmp_register_command("query-block-exports", cmd_query_block_exports);
}
