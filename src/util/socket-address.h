/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QEMU's SocketAddress, decoded once for every listener and
 * client (the NBD server, the metrics endpoint, the NBD client driver).
 *
 * The flat form is {"type": "unix", "path"} or {"type": "inet", "host",
 * "port"}, from typed JSON or the command line's keyval strings; QMP's
 * nbd-server-start uses the legacy form {"type", "data": {...}}.  Error
 * texts are QEMU's, with the members named by their full path
 * ("Parameter 'addr.path' is missing").
 */
#ifndef STRATA_UTIL_SOCKET_ADDRESS_H
#define STRATA_UTIL_SOCKET_ADDRESS_H

#include <jansson.h>
#include <stdbool.h>

#include "util/error.h"
#include "util/sockets.h"

typedef enum SocketAddressType {
    SOCKET_ADDRESS_INET,
    SOCKET_ADDRESS_UNIX,
} SocketAddressType;

typedef struct SocketAddress {
    SocketAddressType type;
    char *path;               /* unix */
    char *host;               /* inet */
    char *port;               /* inet: a number or a service name */
    InetResolve resolve;      /* inet: "ipv4", "ipv6", "numeric" */
    bool keep_alive;          /* inet: "keep-alive" (clients only) */
    int to;                   /* inet: "to", the last port to try when
                               * listening; -1 when not given */
} SocketAddress;

/* Decodes the flat form.  prefix names obj in messages ("addr." or "").
 * QEMU's members are known; "mptcp" and "abstract" are refused as not
 * supported, and so are the vsock and fd types.
 * Free with socket_address_free, also after a failure. */
bool socket_address_decode(json_t *obj, const char *prefix,
                           SocketAddress *out, Error **errp);
/* Decodes the legacy form {"type", "data": {...}}. */
bool socket_address_decode_legacy(json_t *obj, const char *prefix,
                                  SocketAddress *out, Error **errp);
void socket_address_free(SocketAddress *a);

/* Listens on a: a unix socket, or every address an inet host resolves to
 * (as QEMU's listeners do), at most max of them.  Returns the number of
 * descriptors stored in fds, or -1 with errp. */
int socket_address_listen(const SocketAddress *a, int backlog, int flags,
                          int *fds, int max, Error **errp);
/* Connects to a, with QEMU's messages ("Failed to connect to 'PATH':
 * ..."; for inet, those of inet_socket_connect).  Returns the fd or -1
 * with errp. */
int socket_address_connect(const SocketAddress *a, int flags, Error **errp);

#endif
