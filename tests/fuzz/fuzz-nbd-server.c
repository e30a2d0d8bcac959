/* SPDX-License-Identifier: BSD-3-Clause */
/* libFuzzer target: the fuzz input is everything a client sends on one
 * NBD connection (handshake and transmission).  The connection handler
 * runs on this thread against an in-memory 1 MiB node exported writable
 * with allocation-depth; a writer thread feeds the bytes over a
 * socketpair and a reader thread swallows the replies.
 *
 * An input that starts with "TLS!" runs the rest against a server that
 * requires TLS (PSK credentials): the options before STARTTLS, STARTTLS
 * itself and a TLS handshake fed with whatever follows. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../unit/nbd/memnode.h"
#include "crypto/object.h"
#include "nbd/nbd-int.h"

#define TLS_PREFIX "TLS!"

static StrataObject *tls_creds;

typedef struct Feed {
    int fd;
    const uint8_t *data;
    size_t size;
} Feed;

static void *writer_main(void *opaque)
{
    Feed *f = opaque;
    size_t off = 0;
    while (off < f->size) {
        ssize_t n = send(f->fd, f->data + off, f->size - off, MSG_NOSIGNAL);
        if (n <= 0) {
            break;
        }
        off += n;
    }
    shutdown(f->fd, SHUT_WR);
    return NULL;
}

static void *reader_main(void *opaque)
{
    int fd = *(int *)opaque;
    char buf[65536];
    while (recv(fd, buf, sizeof(buf), 0) > 0) {
    }
    return NULL;
}

static void setup_once(void)
{
    static char dir[] = "/tmp/strata-fuzz-nbd-XXXXXX";
    char path[128];
    Error *err = NULL;

    if (!mkdtemp(dir)) {
        abort();
    }
    snprintf(path, sizeof(path), "%s/s.sock", dir);
    if (!memnode_create("fz", 1024 * 1024, false)) {
        abort();
    }
    json_t *srv = json_pack("{s:{s:s, s:s}}", "addr", "type", "unix", "path",
                            path);
    json_t *exp = json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:s}", "type", "nbd",
                            "id", "fz", "node-name", "fz", "name", "",
                            "writable", 1, "allocation-depth", 1,
                            "description", "fuzz");
    NbdServerOptions so;
    NbdExportOptions eo;
    if (!nbd_server_options_decode(srv, &so, &err) ||
        !nbd_server_start(&so, &err) ||
        !nbd_export_options_decode(exp, &eo, &err) ||
        !block_export_add(&eo, &err)) {
        fprintf(stderr, "fuzz setup: %s\n", error_get_pretty(err));
        abort();
    }
    nbd_server_options_free(&so);
    nbd_export_options_free(&eo);
    json_decref(srv);
    json_decref(exp);

    /* The credentials are read when the object is created: the file can
     * go with the directory below. */
    char keys[160];
    snprintf(keys, sizeof(keys), "%s/keys.psk", dir);
    FILE *f = fopen(keys, "w");
    if (!f || fprintf(f, "fuzz:0123456789abcdef0123456789abcdef\n") < 0 ||
        fclose(f) != 0) {
        abort();
    }
    json_t *obj = json_pack("{s:s, s:s, s:s, s:s}", "qom-type",
                            "tls-creds-psk", "id", "fuzz-tls", "dir", dir,
                            "endpoint", "server");
    if (!object_add(obj, &err)) {
        fprintf(stderr, "fuzz setup: %s\n", error_get_pretty(err));
        abort();
    }
    json_decref(obj);
    tls_creds = object_ref_by_id("fuzz-tls");
    unlink(keys);
    /* Connections come in over socketpairs, never through the listener's
     * path, so the path can go now: nothing is left in /tmp however the
     * fuzzer exits. */
    unlink(path);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    int sv[2];
    NbdConn conn;
    pthread_t writer, reader;

    pthread_once(&once, setup_once);
    bool tls = size >= strlen(TLS_PREFIX) &&
               memcmp(data, TLS_PREFIX, strlen(TLS_PREFIX)) == 0;
    if (tls) {
        data += strlen(TLS_PREFIX);
        size -= strlen(TLS_PREFIX);
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return 0;
    }
    Feed feed = { sv[0], data, size };
    int client_fd = sv[0];
    pthread_create(&writer, NULL, writer_main, &feed);
    pthread_create(&reader, NULL, reader_main, &client_fd);

    nbd_conn_init(&conn, sv[1]);
    if (tls) {
        conn.tls_creds = object_ref(tls_creds);
    }
    nbd_conn_serve(&conn);
    nbd_conn_destroy(&conn);
    shutdown(sv[1], SHUT_RDWR);

    pthread_join(writer, NULL);
    pthread_join(reader, NULL);
    close(sv[0]);
    close(sv[1]);
    return 0;
}
