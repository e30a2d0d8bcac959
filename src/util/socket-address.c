/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - SocketAddress decoding and listening (see socket-address.h). */
#include "util/socket-address.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/sockets.h"

static bool get_str(json_t *obj, const char *prefix, const char *key,
                    char **out, Error **errp)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        error_setg(errp, "Parameter '%s%s' is missing", prefix, key);
        return false;
    }
    if (!json_is_string(v)) {
        error_setg(errp, "Invalid parameter type for '%s%s', expected: "
                   "string", prefix, key);
        return false;
    }
    *out = strdup(json_string_value(v));
    if (!*out) {
        error_setg(errp, "Out of memory");
        return false;
    }
    return true;
}

/* A port is a string in QEMU's schema; JSON numbers are taken too. */
static bool get_port(json_t *obj, const char *prefix, char **out,
                     Error **errp)
{
    json_t *v = json_object_get(obj, "port");
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n < 0 || n > 65535) {
            error_setg(errp, "Parameter '%sport' expects a port number",
                       prefix);
            return false;
        }
        char buf[16];
        snprintf(buf, sizeof(buf), "%lld", (long long)n);
        *out = strdup(buf);
        return *out != NULL;
    }
    return get_str(obj, prefix, "port", out, errp);
}

static bool only(json_t *obj, const char *prefix, const char *const *known,
                 Error **errp)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        bool ok = false;
        for (const char *const *k = known; *k && !ok; k++) {
            ok = strcmp(key, *k) == 0;
        }
        if (!ok) {
            error_setg(errp, "Parameter '%s%s' is unexpected", prefix, key);
            return false;
        }
    }
    return true;
}

/* type from type_obj, members from members. */
static bool decode(json_t *type_obj, json_t *members, const char *prefix,
                   bool legacy, SocketAddress *out, Error **errp)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(type_obj)) {
        error_setg(errp, "Invalid parameter type for '%.*s', expected: object",
                   (int)(strlen(prefix) ? strlen(prefix) - 1 : 0), prefix);
        return false;
    }
    json_t *type = json_object_get(type_obj, "type");
    if (!type) {
        error_setg(errp, "Parameter '%stype' is missing", prefix);
        return false;
    }
    if (!json_is_string(type)) {
        error_setg(errp, "Invalid parameter type for '%stype', expected: "
                   "string", prefix);
        return false;
    }
    const char *t = json_string_value(type);
    if (!strcmp(t, "unix")) {
        out->type = SOCKET_ADDRESS_UNIX;
    } else if (!strcmp(t, "inet")) {
        out->type = SOCKET_ADDRESS_INET;
    } else {
        /* QEMU names the discriminator without its path here. */
        error_setg(errp, "Parameter 'type' does not accept value '%s'", t);
        return false;
    }
    if (legacy && !json_is_object(members)) {
        error_setg(errp, "Parameter '%sdata' is missing", prefix);
        return false;
    }
    static const char *const unix_keys[] = { "type", "path", NULL };
    static const char *const inet_keys[] = { "type", "host", "port", NULL };
    if (out->type == SOCKET_ADDRESS_UNIX) {
        return (legacy || only(members, prefix, unix_keys, errp)) &&
               get_str(members, prefix, "path", &out->path, errp);
    }
    return (legacy || only(members, prefix, inet_keys, errp)) &&
           get_str(members, prefix, "host", &out->host, errp) &&
           get_port(members, prefix, &out->port, errp);
}

bool socket_address_decode(json_t *obj, const char *prefix,
                           SocketAddress *out, Error **errp)
{
    return decode(obj, obj, prefix, false, out, errp);
}

bool socket_address_decode_legacy(json_t *obj, const char *prefix,
                                  SocketAddress *out, Error **errp)
{
    return decode(obj, json_object_get(obj, "data"), prefix, true, out,
                  errp);
}

void socket_address_free(SocketAddress *a)
{
    free(a->path);
    free(a->host);
    free(a->port);
    memset(a, 0, sizeof(*a));
}

int socket_address_listen(const SocketAddress *a, int backlog, int flags,
                          int *fds, int max, Error **errp)
{
    if (max < 1) {
        error_setg(errp, "No room for a listening socket");
        return -1;
    }
    if (a->type == SOCKET_ADDRESS_UNIX) {
        fds[0] = unix_socket_listen(a->path, backlog, flags, errp);
        return fds[0] < 0 ? -1 : 1;
    }
    return inet_socket_listen_all(a->host, a->port, backlog, flags, fds, max,
                                  errp);
}
