/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - stream socket setup shared by every listener and client.
 *
 * Returned descriptors are SOCK_CLOEXEC; flags may add SOCK_NONBLOCK.
 * Messages follow QEMU's ("Failed to bind socket to PATH: ..."). */
#ifndef STRATA_UTIL_SOCKETS_H
#define STRATA_UTIL_SOCKETS_H

#include <stdbool.h>

#include "util/error.h"

/* Listens on a unix socket at path, replacing a stale socket file.  The
 * file appears only once the socket listens (it is bound under a
 * temporary name and renamed into place), so a client that waits for
 * the file never gets ECONNREFUSED.  The socket is mode 0600 (owner
 * only).  Returns the fd or -1 with errp. */
int unix_socket_listen(const char *path, int backlog, int flags,
                       Error **errp);

/* Listens on the first address host:port resolves to (NULL or "" host:
 * every local address), with SO_REUSEADDR.  Returns the fd or -1. */
int inet_socket_listen(const char *host, const char *port, int backlog,
                       int flags, Error **errp);

/* Listens on every address host:port resolves to (each IPv6 socket
 * IPv6-only), at most max of them, storing the descriptors in fds.
 * Returns how many, or -1 with errp when none could be bound. */
int inet_socket_listen_all(const char *host, const char *port, int backlog,
                           int flags, int *fds, int max, Error **errp);

/* How a host and port are resolved (QEMU's InetSocketAddress options). */
typedef struct InetResolve {
    int family;          /* AF_UNSPEC, AF_INET or AF_INET6 */
    bool numeric;        /* numeric host and port only, no lookups */
} InetResolve;

/* inet_socket_listen_all, resolving as r says (NULL: the defaults). */
int inet_socket_listen_opts(const char *host, const char *port,
                            const InetResolve *r, int backlog, int flags,
                            int *fds, int max, Error **errp);

/* Connects to host:port, trying each address it resolves to, as QEMU's
 * inet_connect_saddr: "address resolution failed for H:P: ...",
 * "Failed to connect to 'H:P': <errno text>".  keep_alive sets
 * SO_KEEPALIVE.  Returns the fd or -1 with errp. */
int inet_socket_connect(const char *host, const char *port,
                        const InetResolve *r, bool keep_alive, int flags,
                        Error **errp);

/* Connects to the unix socket at path.  Returns the fd or -1 with errp
 * ("Cannot connect to PATH: ..."). */
int unix_socket_connect(const char *path, int flags, Error **errp);

#endif
