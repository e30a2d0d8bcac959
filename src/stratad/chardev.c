/* SPDX-License-Identifier: BSD-3-Clause */
/* stratad - --chardev socket servers (see chardev.h). */
#include "stratad/chardev.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "qmp/monitor.h"
#include "util/cleanup.h"
#include "util/keyval.h"
#include "util/sockets.h"

typedef struct Chardev {
    char *id;
    char *path;
    int fd;            /* -1 once a monitor owns it */
    struct Chardev *next;
} Chardev;

static Chardev *chardevs;

static Chardev *chardev_find(const char *id)
{
    for (Chardev *c = chardevs; c; c = c->next) {
        if (!strcmp(c->id, id)) {
            return c;
        }
    }
    return NULL;
}

bool chardev_add(const char *arg, Error **errp)
{
    json_t *opts = keyval_parse(arg, "backend", errp);
    if (!opts) {
        return false;
    }
    const char *id = NULL, *backend = NULL, *path = NULL;
    bool server = false, wait = true, ok = false;
    if (!opt_get_str(opts, "id", NULL, &id, errp)
        || !opt_get_str(opts, "backend", NULL, &backend, errp)) {
        goto out;
    }
    if (!id) {
        error_setg(errp, "chardev: no id specified");
        goto out;
    }
    if (!backend) {
        error_setg(errp, "chardev: \"%s\" missing backend", id);
        goto out;
    }
    if (strcmp(backend, "socket") != 0) {
        error_setg(errp, "'%s' is not a valid char driver name", backend);
        goto out;
    }
    if (chardev_find(id)) {
        error_setg(errp, "Duplicate ID '%s' for chardev", id);
        goto out;
    }
    if (!opt_get_str(opts, "path", NULL, &path, errp)
        || !opt_get_bool(opts, "server", false, &server, errp)
        || !opt_get_bool(opts, "wait", true, &wait, errp)) {
        goto out;
    }
    /* id and path point into opts: look for leftovers on a copy. */
    json_t *rest = json_copy(opts);
    static const char *const known[] = { "id", "backend", "path", "server",
                                         "wait" };
    for (size_t i = 0; i < ARRAY_SIZE(known); i++) {
        json_object_del(rest, known[i]);
    }
    if (json_object_size(rest)) {
        error_setg(errp, "Invalid parameter '%s'",
                   json_object_iter_key(json_object_iter(rest)));
        json_decref(rest);
        goto out;
    }
    json_decref(rest);
    if (!path) {
        error_setg(errp, "chardev '%s': only unix sockets are supported; "
                   "give path=SOCKET", id);
        goto out;
    }
    if (!server) {
        error_setg(errp, "chardev '%s': only server=on is supported", id);
        goto out;
    }
    if (wait) {
        error_setg(errp, "chardev '%s': wait=on is not supported (stratad "
                   "never blocks startup for a client); add wait=off", id);
        goto out;
    }
    int fd = unix_socket_listen(path, 16, SOCK_NONBLOCK, errp);
    if (fd < 0) {
        goto out;
    }
    Chardev *c = calloc(1, sizeof(*c));
    if (!c || !(c->id = strdup(id)) || !(c->path = strdup(path))) {
        if (c) {
            free(c->id);
            free(c);
        }
        close(fd);
        unlink(path);
        error_setg(errp, "Out of memory");
        goto out;
    }
    c->fd = fd;
    c->next = chardevs;
    chardevs = c;
    ok = true;
out:
    json_decref(opts);
    return ok;
}

bool chardev_attach_monitor(const char *id, bool pretty, Error **errp)
{
    Chardev *c = chardev_find(id);
    if (!c) {
        error_setg(errp, "chardev \"%s\" not found", id);
        return false;
    }
    if (c->fd < 0) {
        error_setg(errp, "Device '%s' is in use", id);
        return false;
    }
    if (!qmp_monitor_attach(c->fd, c->path, pretty, errp)) {
        return false;
    }
    c->fd = -1;
    return true;
}

void chardev_cleanup(void)
{
    while (chardevs) {
        Chardev *c = chardevs;
        chardevs = c->next;
        if (c->fd >= 0) {
            close(c->fd);
            unlink(c->path);
        }
        free(c->id);
        free(c->path);
        free(c);
    }
}
