/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - stream socket setup (see sockets.h). */
#include "util/sockets.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static bool fill_sun(struct sockaddr_un *sun, const char *path, Error **errp)
{
    *sun = (struct sockaddr_un){ .sun_family = AF_UNIX };
    size_t len = strlen(path);
    if (len >= sizeof(sun->sun_path)) {
        error_setg(errp, "UNIX socket path '%s' is too long", path);
        return false;
    }
    memcpy(sun->sun_path, path, len + 1);
    return true;
}

static bool bind_listen(int fd, const char *path, int backlog, Error **errp)
{
    struct sockaddr_un sun;
    if (!fill_sun(&sun, path, errp)) {
        return false;
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        error_setg_errno(errp, errno, "Failed to bind socket to %s", path);
        return false;
    }
    /* Owner only, whatever the umask: a QMP or NBD socket is full
     * control of the daemon's disks.  Before listen(), so nobody can
     * connect while the mode is wider. */
    if (chmod(path, 0600) < 0) {
        error_setg_errno(errp, errno, "Failed to set the mode of %s", path);
        unlink(path);
        return false;
    }
    if (listen(fd, backlog) < 0) {
        error_setg_errno(errp, errno, "Failed to listen on socket %s", path);
        unlink(path);
        return false;
    }
    return true;
}

int unix_socket_listen(const char *path, int backlog, int flags,
                       Error **errp)
{
    struct sockaddr_un sun;
    if (!fill_sun(&sun, path, errp)) {
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Failed to create Unix socket");
        return -1;
    }
    char tmp[sizeof(sun.sun_path)];
    int n = snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
    if (n > 0 && (size_t)n < sizeof(tmp)) {
        unlink(tmp);
        if (!bind_listen(fd, tmp, backlog, errp)) {
            close(fd);
            return -1;
        }
        if (rename(tmp, path) < 0) {
            error_setg_errno(errp, errno, "Failed to bind socket to %s", path);
            unlink(tmp);
            close(fd);
            return -1;
        }
        return fd;
    }
    /* No room for a temporary name: bind in place. */
    unlink(path);
    if (!bind_listen(fd, path, backlog, errp)) {
        close(fd);
        return -1;
    }
    return fd;
}

int inet_socket_listen_all(const char *host, const char *port, int backlog,
                           int flags, int *fds, int max, Error **errp)
{
    return inet_socket_listen_opts(host, port, NULL, backlog, flags, fds, max,
                                   errp);
}

int inet_socket_listen_opts(const char *host, const char *port,
                            const InetResolve *r, int backlog, int flags,
                            int *fds, int max, Error **errp)
{
    struct addrinfo hints = {
        .ai_flags = AI_PASSIVE | AI_ADDRCONFIG,
        .ai_family = r ? r->family : AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
    };
    if (r && r->numeric) {
        hints.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
    }
    struct addrinfo *res = NULL;
    int err = getaddrinfo(host && *host ? host : NULL, port, &hints, &res);
    if (err != 0) {
        error_setg(errp, "address resolution failed for %s:%s: %s",
                   host ? host : "", port, gai_strerror(err));
        return -1;
    }
    int n = 0, saved_errno = EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | flags,
                        ai->ai_protocol);
        if (fd < 0) {
            saved_errno = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        /* With both families resolved, each socket takes its own, so the
         * IPv6 one does not also claim the IPv4 port. */
        if (ai->ai_family == AF_INET6 && max > 1) {
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        }
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            listen(fd, backlog) == 0) {
            fds[n++] = fd;
            continue;
        }
        saved_errno = errno;
        close(fd);
    }
    freeaddrinfo(res);
    if (n == 0) {
        error_setg_errno(errp, saved_errno, "Failed to bind socket to %s:%s",
                         host ? host : "", port);
        return -1;
    }
    return n;
}

int inet_socket_listen(const char *host, const char *port, int backlog,
                       int flags, Error **errp)
{
    int fd = -1;
    return inet_socket_listen_all(host, port, backlog, flags, &fd, 1,
                                  errp) == 1 ? fd : -1;
}

int inet_socket_connect(const char *host, const char *port,
                        const InetResolve *r, bool keep_alive, int flags,
                        Error **errp)
{
    struct addrinfo hints = {
        .ai_flags = AI_CANONNAME | AI_ADDRCONFIG,
        .ai_family = r ? r->family : AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
    };
    if (r && r->numeric) {
        hints.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
    }
    struct addrinfo *res = NULL;
    int err = getaddrinfo(host, port, &hints, &res);
    if (err != 0) {
        error_setg(errp, "address resolution failed for %s:%s: %s", host,
                   port, gai_strerror(err));
        return -1;
    }
    int fd = -1, saved_errno = EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            saved_errno = errno;
            continue;
        }
        int ret;
        do {
            ret = connect(fd, ai->ai_addr, ai->ai_addrlen);
        } while (ret < 0 && errno == EINTR);
        if (ret < 0) {
            saved_errno = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        error_setg_errno(errp, saved_errno, "Failed to connect to '%s:%s'",
                         host, port);
        return -1;
    }
    int one = 1;
    if (keep_alive &&
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0) {
        error_setg_errno(errp, errno, "Unable to set KEEPALIVE");
        close(fd);
        return -1;
    }
    if (flags & SOCK_NONBLOCK) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
            error_setg_errno(errp, errno, "Failed to make the socket "
                             "non-blocking");
            close(fd);
            return -1;
        }
    }
    return fd;
}

int unix_socket_connect(const char *path, int flags, Error **errp)
{
    struct sockaddr_un sun;
    if (!fill_sun(&sun, path, errp)) {
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        error_setg_errno(errp, errno, "Cannot connect to %s", path);
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}
