/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - SocketAddress decoding and listening (see socket-address.h). */
#include "util/socket-address.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/keyval.h"
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

/* An optional boolean member (JSON, or a keyval string). */
static bool get_flag(json_t *obj, const char *prefix, const char *key,
                     bool *present, bool *out, Error **errp)
{
    char path[128];
    snprintf(path, sizeof(path), "%s%s", prefix, key);
    *present = json_object_get(obj, key) != NULL;
    *out = false;
    if (!*present) {
        return true;
    }
    json_t *wrap = json_pack("{s:O}", path, json_object_get(obj, key));
    bool ok = wrap && opt_get_bool(wrap, path, false, out, errp);
    json_decref(wrap);
    return ok;
}

/* QEMU's inet_ai_family_from_address(). */
static bool inet_options(json_t *m, const char *prefix, SocketAddress *out,
                         Error **errp)
{
    bool has4, has6, v4, v6, has_numeric, has_ka, has_mptcp, mptcp;
    if (!get_flag(m, prefix, "numeric", &has_numeric, &out->resolve.numeric,
                  errp) ||
        !get_flag(m, prefix, "ipv4", &has4, &v4, errp) ||
        !get_flag(m, prefix, "ipv6", &has6, &v6, errp) ||
        !get_flag(m, prefix, "keep-alive", &has_ka, &out->keep_alive,
                  errp) ||
        !get_flag(m, prefix, "mptcp", &has_mptcp, &mptcp, errp)) {
        return false;
    }
    out->to = -1;
    if (json_object_get(m, "to")) {
        char path[128];
        snprintf(path, sizeof(path), "%sto", prefix);
        json_t *wrap = json_pack("{s:O}", path, json_object_get(m, "to"));
        uint64_t to = 0;
        bool ok = wrap && opt_get_uint64(wrap, path, 0, &to, errp);
        json_decref(wrap);
        if (!ok) {
            return false;
        }
        if (to > 65535) {
            error_setg(errp, "Parameter 'to' expects uint16_t");
            return false;
        }
        out->to = (int)to;
    }
    if (mptcp) {
        error_setg(errp, "MPTCP ('%smptcp') is not supported by strata",
                   prefix);
        return false;
    }
    const char *host = out->host;
    out->resolve.family = AF_UNSPEC;
    if (has4 && has6 && !v4 && !v6) {
        error_setg(errp, "Cannot disable IPv4 and IPv6 at same time");
        return false;
    }
    if (has4 && has6 && v4 && v6) {
        out->resolve.family = !host || !*host ? AF_INET6 : AF_UNSPEC;
    } else if ((has6 && v6) || (has4 && !v4)) {
        out->resolve.family = AF_INET6;
    } else if ((has4 && v4) || (has6 && !v6)) {
        out->resolve.family = AF_INET;
    }
    return true;
}

/* type from type_obj, members from members. */
static bool decode(json_t *type_obj, json_t *members, const char *prefix,
                   bool legacy, SocketAddress *out, Error **errp)
{
    memset(out, 0, sizeof(*out));
    out->to = -1;
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
    } else if (!strcmp(t, "vsock") || !strcmp(t, "fd")) {
        error_setg(errp, "Socket address type '%s' is not supported by "
                   "strata (use 'unix' or 'inet')", t);
        return false;
    } else {
        /* QEMU names the discriminator without its path here. */
        error_setg(errp, "Parameter 'type' does not accept value '%s'", t);
        return false;
    }
    if (legacy && !json_is_object(members)) {
        error_setg(errp, "Parameter '%sdata' is missing", prefix);
        return false;
    }
    /* QEMU's UnixSocketAddress and InetSocketAddress (the legacy form's
     * "data" also has "type" in the flat form's place). */
    static const char *const unix_keys[] = { "type", "path", "abstract",
                                             "tight", NULL };
    static const char *const inet_keys[] = { "type", "host", "port",
                                             "numeric", "to", "ipv4", "ipv6",
                                             "keep-alive", "mptcp", NULL };
    if (out->type == SOCKET_ADDRESS_UNIX) {
        bool has_abstract, abstract, has_tight, tight;
        if (!(legacy || only(members, prefix, unix_keys, errp)) ||
            !get_str(members, prefix, "path", &out->path, errp) ||
            !get_flag(members, prefix, "abstract", &has_abstract, &abstract,
                      errp) ||
            !get_flag(members, prefix, "tight", &has_tight, &tight, errp)) {
            return false;
        }
        if (abstract) {
            error_setg(errp, "Abstract unix sockets ('%sabstract') are not "
                       "supported by strata", prefix);
            return false;
        }
        return true;
    }
    return (legacy || only(members, prefix, inet_keys, errp)) &&
           get_str(members, prefix, "host", &out->host, errp) &&
           get_port(members, prefix, &out->port, errp) &&
           inet_options(members, prefix, out, errp);
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

static int inet_listen_range(const SocketAddress *a, int backlog, int flags,
                             int *fds, int max, Error **errp);

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
    int n = inet_listen_range(a, backlog, flags, fds, max, errp);
    /* Accepted connections inherit SO_KEEPALIVE (as qsd 7.2.22). */
    int one = 1;
    for (int i = 0; a->keep_alive && i < n; i++) {
        setsockopt(fds[i], SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    }
    return n;
}

static int inet_listen_range(const SocketAddress *a, int backlog, int flags,
                             int *fds, int max, Error **errp)
{
    if (a->to < 0) {
        return inet_socket_listen_opts(a->host, a->port, &a->resolve,
                                       backlog, flags, fds, max, errp);
    }
    /* "to": the first port from "port" up to "to" that is free, as QEMU
     * (which asks the same of every address the host resolves to). */
    char *end;
    long first = strtol(a->port, &end, 10);
    if (*a->port == '\0' || *end != '\0') {
        struct servent *se = getservbyname(a->port, "tcp");
        if (!se) {
            error_setg(errp, "address resolution failed for %s:%s: %s",
                       a->host, a->port, gai_strerror(EAI_SERVICE));
            return -1;
        }
        first = ntohs((uint16_t)se->s_port);
    }
    for (long p = first; p <= a->to; p++) {
        char port[24];
        snprintf(port, sizeof(port), "%ld", p);
        Error *err = NULL;
        int n = inet_socket_listen_opts(a->host, port, &a->resolve, backlog,
                                        flags, fds, max, &err);
        if (n > 0) {
            return n;
        }
        if (err->errnum != EADDRINUSE) {
            error_propagate(errp, err);
            return -1;
        }
        error_free(err);
    }
    error_setg_errno(errp, EADDRINUSE, "Failed to find an available port");
    return -1;
}

int socket_address_connect(const SocketAddress *a, int flags, Error **errp)
{
    if (a->type == SOCKET_ADDRESS_INET) {
        return inet_socket_connect(a->host, a->port, &a->resolve,
                                   a->keep_alive, flags, errp);
    }
    Error *err = NULL;
    int fd = unix_socket_connect(a->path, flags, &err);
    if (fd < 0 && err->errnum) {
        error_setg_errno(errp, err->errnum, "Failed to connect to '%s'",
                         a->path);
        error_free(err);
    } else if (fd < 0) {
        error_propagate(errp, err);
    }
    return fd;
}
