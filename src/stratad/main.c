/* SPDX-License-Identifier: BSD-3-Clause */
/* stratad - the strata storage daemon.
 *
 * Command line: qemu-storage-daemon's syntax for what strata supports,
 * processed strictly in order (a --export needs the --nbd-server and
 * --blockdev before it, a --monitor its --chardev).  Then the main
 * thread runs the poll loop (QMP monitors, signals, events) until quit
 * or SIGTERM/SIGINT, and shuts down cleanly.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/object.h"
#include "metrics/metrics-daemon.h"
#include "nbd/nbd.h"
#include "qmp/monitor.h"
#include "stratad/chardev.h"
#include "stratad/daemon.h"
#include "util/cleanup.h"
#include "util/keyval.h"
#include "util/log.h"

enum {
    OPT_BLOCKDEV = 256,
    OPT_CHARDEV,
    OPT_DAEMONIZE,
    OPT_EXPORT,
    OPT_METRICS,
    OPT_MONITOR,
    OPT_NBD_SERVER,
    OPT_OBJECT,
    OPT_PIDFILE,
};

static const struct option long_options[] = {
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { "blockdev", required_argument, NULL, OPT_BLOCKDEV },
    { "chardev", required_argument, NULL, OPT_CHARDEV },
    { "daemonize", no_argument, NULL, OPT_DAEMONIZE },
    { "export", required_argument, NULL, OPT_EXPORT },
    { "metrics", required_argument, NULL, OPT_METRICS },
    { "monitor", required_argument, NULL, OPT_MONITOR },
    { "nbd-server", required_argument, NULL, OPT_NBD_SERVER },
    { "object", required_argument, NULL, OPT_OBJECT },
    { "pidfile", required_argument, NULL, OPT_PIDFILE },
    { NULL, 0, NULL, 0 },
};

/* "-" first: non-options come back in order as 1; ":" reports a
 * missing argument as ':'. */
static const char short_options[] = "-:hV";

static void usage(void)
{
    printf(
"Usage: stratad [options]\n"
"strata storage daemon (compatible with qemu-storage-daemon)\n"
"\n"
"  -h, --help             display this help and exit\n"
"  -V, --version          output version information and exit\n"
"\n"
"  --blockdev [driver=]<driver>[,node-name=<N>][,discard=ignore|unmap]\n"
"             [,cache.direct=on|off][,cache.no-flush=on|off]\n"
"             [,read-only=on|off][,force-share=on|off]\n"
"             [,driver specific parameters...]\n"
"                         configure a block node (dotted keys or JSON)\n"
"\n"
"  --chardev socket,id=<id>,path=<socket-path>,server=on,wait=off\n"
"                         create a unix socket for a monitor\n"
"\n"
"  --daemonize            daemonize the process, and have the parent exit\n"
"                         once startup is complete\n"
"\n"
"  --export [type=]nbd,id=<id>,node-name=<node-name>[,name=<export-name>]\n"
"           [,writable=on|off][,description=<text>][,allocation-depth=on|off]\n"
"                         export the specified block node over NBD\n"
"                         (requires --nbd-server)\n"
"\n"
"  --metrics addr.type=inet,addr.host=<host>,addr.port=<port>\n"
"  --metrics addr.type=unix,addr.path=<path>\n"
"                         serve Prometheus metrics at GET /metrics\n"
"\n"
"  --monitor [chardev=]name[,mode=control][,pretty[=on|off]]\n"
"                         configure a QMP monitor\n"
"\n"
"  --nbd-server addr.type=inet,addr.host=<host>,addr.port=<port>\n"
"               [,max-connections=<n>][,handshake-max-seconds=<s>]\n"
"  --nbd-server addr.type=unix,addr.path=<path>[,max-connections=<n>]\n"
"               [,handshake-max-seconds=<s>]\n"
"               [,tls-creds=<id>][,tls-authz=<id>]\n"
"                         start an NBD server for exporting block nodes\n"
"                         (at most 100 clients and a 10 s handshake by\n"
"                         default; 0 lifts either limit); with tls-creds\n"
"                         clients must use TLS (docs/tls.md)\n"
"\n"
"  --object help          list the object types\n"
"  --object <type>,id=<id>[,<property>=<value>...]\n"
"                         create an object: tls-creds-x509, tls-creds-psk,\n"
"                         authz-simple, authz-list, authz-listfile, secret,\n"
"                         iothread (QEMU's properties)\n"
"\n"
"  --pidfile <path>       write process ID to a file after startup\n"
"\n"
"Every option is processed in order.  See stratad(8) and docs/qmp.md.\n");
}

static void version(void)
{
    printf("stratad version " STRATA_VERSION " (strata " STRATA_VERSION ")\n"
           "Copyright (c) 2026 the strata developers\n");
}

/* Reports "stratad: --opt ARG: message" and fails. */
static bool option_error(const char *opt, const char *arg, Error *err)
{
    error_report("--%s %s: %s", opt, arg, error_get_pretty(err));
    error_print_hint(err);
    error_free(err);
    return false;
}

static bool do_blockdev(const char *arg, Error **errp)
{
    json_t *opts = keyval_parse(arg, "driver", errp);
    if (!opts) {
        return false;
    }
    /* The JSON form follows QMP's type rules, as in QEMU. */
    bool ok = qmp_blockdev_add(opts, arg[0] != '{', errp);
    json_decref(opts);
    return ok;
}

static bool do_nbd_server(const char *arg, Error **errp)
{
    json_t *opts = keyval_parse(arg, NULL, errp);
    if (!opts) {
        return false;
    }
    bool ok = qmp_nbd_server_start_option(opts, arg[0] != '{', errp);
    json_decref(opts);
    return ok;
}

static bool do_object(const char *arg, Error **errp)
{
    CLEANUP_JSON json_t *opts = keyval_parse(arg, "qom-type", errp);
    if (!opts) {
        return false;
    }
    return qmp_object_add(opts, arg[0] != '{', errp);
}

static bool do_export(const char *arg, Error **errp)
{
    json_t *opts = keyval_parse(arg, "type", errp);
    if (!opts) {
        return false;
    }
    bool ok = qmp_block_export_add(opts, arg[0] != '{', errp);
    json_decref(opts);
    return ok;
}

static bool do_metrics(const char *arg, Error **errp)
{
    json_t *opts = keyval_parse(arg, NULL, errp);
    if (!opts) {
        return false;
    }
    bool ok = metrics_daemon_start(opts, errp);
    json_decref(opts);
    return ok;
}

static bool do_monitor(const char *arg, Error **errp)
{
    json_t *opts = keyval_parse(arg, "chardev", errp);
    if (!opts) {
        return false;
    }
    const char *chardev = NULL, *mode = NULL;
    bool pretty = false, ok = false;
    if (!opt_get_str(opts, "chardev", NULL, &chardev, errp)
        || !opt_get_str(opts, "mode", "control", &mode, errp)
        || !opt_get_bool(opts, "pretty", false, &pretty, errp)) {
        goto out;
    }
    if (!chardev) {
        error_setg(errp, "Parameter 'chardev' is missing");
        goto out;
    }
    if (strcmp(mode, "control") != 0) {
        error_setg(errp, "Only QMP is supported");
        goto out;
    }
    /* chardev and mode point into opts: check the rest on a copy. */
    json_t *rest = json_copy(opts);
    json_object_del(rest, "chardev");
    json_object_del(rest, "mode");
    json_object_del(rest, "pretty");
    json_object_del(rest, "id");
    bool empty = opt_check_empty(rest, errp);
    json_decref(rest);
    if (empty) {
        ok = chardev_attach_monitor(chardev, pretty, errp);
    }
out:
    json_decref(opts);
    return ok;
}

/* First pass: options that act before anything else (help, version,
 * daemonize) and syntax errors, so nothing is opened in vain. */
static int pre_scan(int argc, char **argv, bool *daemonize)
{
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, short_options, long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'h':
            usage();
            return 0;
        case 'V':
            version();
            return 0;
        case OPT_DAEMONIZE:
            *daemonize = true;
            break;
        case OPT_OBJECT:
            if (strcmp(optarg, "help") == 0) {
                printf("List of user creatable objects:\n"
                       "  authz-list\n  authz-listfile\n  authz-simple\n"
                       "  iothread\n  secret\n  tls-creds-psk\n"
                       "  tls-creds-x509\n");
                return 0;
            }
            break;
        case ':':
            error_report("option '%s' requires an argument", argv[optind - 1]);
            return 1;
        case '?':
            error_report("unrecognized option '%s'", argv[optind - 1]);
            return 1;
        case 1:
            error_report("%s: Unexpected argument", optarg);
            return 1;
        default:
            break;
        }
    }
    return -1;
}

static bool process_options(int argc, char **argv, const char **pidfile)
{
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, short_options, long_options,
                            NULL)) != -1) {
        Error *err = NULL;
        const char *name = NULL;
        bool ok = true;
        switch (c) {
        case OPT_BLOCKDEV:
            name = "blockdev";
            ok = do_blockdev(optarg, &err);
            break;
        case OPT_CHARDEV:
            name = "chardev";
            ok = chardev_add(optarg, &err);
            break;
        case OPT_EXPORT:
            name = "export";
            ok = do_export(optarg, &err);
            break;
        case OPT_METRICS:
            name = "metrics";
            ok = do_metrics(optarg, &err);
            break;
        case OPT_MONITOR:
            name = "monitor";
            ok = do_monitor(optarg, &err);
            break;
        case OPT_NBD_SERVER:
            name = "nbd-server";
            ok = do_nbd_server(optarg, &err);
            break;
        case OPT_OBJECT:
            name = "object";
            ok = do_object(optarg, &err);
            break;
        case OPT_PIDFILE:
            *pidfile = optarg;
            break;
        default:
            break;
        }
        if (!ok) {
            return option_error(name, optarg, err);
        }
    }
    return true;
}

static void shutdown_all(PollLoop *loop)
{
    /* Stop NBD first: in-flight requests finish and exports drop their
     * nodes; then the monitor's nodes are flushed and closed.  The
     * metrics server goes first so no scrape runs while they close. */
    metrics_daemon_stop();
    /* Jobs end (cancelled) before the exports and nodes they use. */
    qmp_jobs_shutdown();
    nbd_shutdown_all();
    qmp_blockdev_release_all();
    qmp_monitor_shutdown();
    chardev_cleanup();
    /* Last: the NBD server held its credentials until it stopped. */
    object_del_all();
    signals_cleanup(loop);
    pidfile_remove();
}

int main(int argc, char **argv)
{
    error_set_progname("stratad");
    bool daemonize = false;
    int rc = pre_scan(argc, argv, &daemonize);
    if (rc >= 0) {
        return rc;
    }
    Error *err = NULL;
    if (daemonize && !daemon_start(&err)) {
        error_report_err(err);
        return 1;
    }
    /* Before any NBD thread exists, so every thread inherits the mask
     * and only the signalfd sees these signals. */
    signals_block();

    PollLoop *loop = poll_loop_new(&err);
    if (!loop || !signals_watch(loop, &err) || !qmp_monitor_init(loop, &err)) {
        error_report_err(err);
        return 1;
    }
    const char *pidfile = NULL;
    /* A client connecting as soon as the socket appears must find every
     * --export: the server listens at once but accepts only now. */
    nbd_server_hold_accept();
    if (!process_options(argc, argv, &pidfile)
        || (pidfile && !pidfile_write(pidfile, &err))) {
        if (err) {
            error_report_err(err);
        }
        shutdown_all(loop);
        poll_loop_free(loop);
        return 1;
    }
    nbd_server_release_accept();
    daemon_ready();

    poll_loop_run(loop);
    if (signals_received()) {
        log_info("%s received, shutting down", signals_received());
    }
    shutdown_all(loop);
    poll_loop_free(loop);
    return 0;
}
