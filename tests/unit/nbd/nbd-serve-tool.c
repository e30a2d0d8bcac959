/* nbd-serve-tool: serves block nodes over NBD without the daemon, for
 * the NBD integration tests and the benchmark.
 *
 *   nbd-serve-tool --blockdev JSON... --server JSON --export JSON...
 *
 * Each --blockdev is blockdev-add options, --server is nbd-server-start
 * arguments, each --export is block-export-add arguments.  Events are
 * printed to stdout as JSON lines; "ready" is printed once serving.
 * SIGTERM or SIGINT stops the server cleanly.  A line "del ID [hard]"
 * or "stop" on stdin runs block-export-del / nbd-server-stop.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "block/block.h"
#include "nbd/nbd.h"
#include "util/error.h"

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void print_event(const char *event, json_t *data)
{
    json_t *ev = json_pack("{s:s, s:o}", "event", event,
                           "data", data ? data : json_object());
    char *s = json_dumps(ev, JSON_COMPACT);
    pthread_mutex_lock(&out_lock);
    printf("%s\n", s);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    free(s);
    json_decref(ev);
}

static json_t *parse_json(const char *what, const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, 0, &err);
    if (!v) {
        fprintf(stderr, "nbd-serve-tool: bad %s JSON: %s\n", what, err.text);
    }
    return v;
}

static void reply(const char *cmd, bool ok, Error *err)
{
    pthread_mutex_lock(&out_lock);
    if (ok) {
        printf("{\"return\":\"%s\"}\n", cmd);
    } else {
        json_t *e = json_pack("{s:s}", "error", error_get_pretty(err));
        char *s = json_dumps(e, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        json_decref(e);
    }
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    error_free(err);
}

/* Runs "del ID [hard]", "stop", "add JSON" or "query" from stdin. */
static void *stdin_main(void *opaque)
{
    char line[8192];

    (void)opaque;
    while (fgets(line, sizeof(line), stdin)) {
        Error *err = NULL;
        char id[256], mode[16] = "safe";
        line[strcspn(line, "\n")] = '\0';
        if (sscanf(line, "del %255s %15s", id, mode) >= 1) {
            json_t *a = json_pack("{s:s, s:s}", "id", id, "mode", mode);
            bool ok = block_export_del(a, &err);
            json_decref(a);
            reply("del", ok, err);
        } else if (strcmp(line, "stop") == 0) {
            bool ok = nbd_server_stop(&err);
            reply("stop", ok, err);
        } else if (strncmp(line, "add ", 4) == 0) {
            json_t *a = parse_json("add", line + 4);
            bool ok = a && block_export_add(a, &err);
            json_decref(a);
            reply("add", ok, a ? err : NULL);
        } else if (strcmp(line, "query") == 0) {
            json_t *q = block_export_query();
            char *s = json_dumps(q, JSON_COMPACT);
            pthread_mutex_lock(&out_lock);
            printf("{\"return\":%s}\n", s);
            fflush(stdout);
            pthread_mutex_unlock(&out_lock);
            free(s);
            json_decref(q);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    BlockNode *nodes[32];
    int nnodes = 0;
    sigset_t set;
    Error *err = NULL;
    int sig;

    error_set_progname("nbd-serve-tool");
    /* Block the stop signals in every thread; main waits for them. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    block_set_event_sink(print_event);

    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            fprintf(stderr, "nbd-serve-tool: %s needs an argument\n", argv[i]);
            return 2;
        }
        json_t *v = parse_json(argv[i], argv[i + 1]);
        if (!v) {
            return 2;
        }
        bool ok;
        if (strcmp(argv[i], "--blockdev") == 0) {
            BlockNode *bs = nnodes < 32 ? block_node_open(v, &err) : NULL;
            ok = bs != NULL;
            if (ok) {
                nodes[nnodes++] = bs;
            }
        } else if (strcmp(argv[i], "--server") == 0) {
            ok = nbd_server_start(v, &err);
        } else if (strcmp(argv[i], "--export") == 0) {
            ok = block_export_add(v, &err);
        } else {
            fprintf(stderr, "nbd-serve-tool: unknown option %s\n", argv[i]);
            return 2;
        }
        json_decref(v);
        if (!ok) {
            if (err) {
                error_report_err(err);
            }
            return 1;
        }
        i++;
    }
    printf("ready\n");
    fflush(stdout);

    pthread_t th;
    if (pthread_create(&th, NULL, stdin_main, NULL) == 0) {
        pthread_detach(th);
    }
    sigwait(&set, &sig);
    nbd_shutdown_all();
    for (int i = nnodes - 1; i >= 0; i--) {
        block_node_unref(nodes[i]);
    }
    return 0;
}
