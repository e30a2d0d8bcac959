/* SPDX-License-Identifier: BSD-3-Clause */
/* stratad - pidfile, daemonizing, signals (see daemon.h). */
#include "stratad/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "block/user.h"
#include "util/cleanup.h"
#include "util/log.h"

static char *pidfile_path;
static int pidfile_fd = -1;

bool pidfile_write(const char *path, Error **errp)
{
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) {
        error_setg_errno(errp, errno,
                         "cannot create PID file: Could not create '%s'",
                         path);
        return false;
    }
    /* The lock tells a second daemon using the same pidfile that this
     * one is alive; it lasts as long as the fd. */
    if (lockf(fd, F_TLOCK, 0) < 0) {
        error_setg_errno(errp, errno,
                         "cannot create PID file: Cannot lock pid file");
        close(fd);
        return false;
    }
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || write(fd, buf, (size_t)n) != n) {
        error_setg_errno(errp, errno,
                         "cannot create PID file: Failed to write pid file");
        close(fd);
        return false;
    }
    pidfile_path = strdup(path);
    pidfile_fd = fd;
    return true;
}

void pidfile_remove(void)
{
    if (pidfile_path) {
        unlink(pidfile_path);
        free(pidfile_path);
        pidfile_path = NULL;
    }
    if (pidfile_fd >= 0) {
        close(pidfile_fd);
        pidfile_fd = -1;
    }
}

static int ready_fd = -1;

bool daemon_start(Error **errp)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        error_setg_errno(errp, errno, "Cannot daemonize");
        return false;
    }
    pid_t pid = fork();
    if (pid < 0) {
        error_setg_errno(errp, errno, "Cannot daemonize");
        close(fds[0]);
        close(fds[1]);
        return false;
    }
    if (pid > 0) {
        close(fds[1]);
        char c;
        ssize_t n;
        do {
            n = read(fds[0], &c, 1);
        } while (n < 0 && errno == EINTR);
        if (n == 1) {
            _exit(0);
        }
        /* The child failed and reported why on our shared stderr. */
        int status;
        waitpid(pid, &status, 0);
        _exit(1);
    }
    close(fds[0]);
    ready_fd = fds[1];
    setsid();
    return true;
}

void daemon_ready(void)
{
    if (ready_fd < 0) {
        return;
    }
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO) {
            close(null);
        }
    }
    char c = 1;
    if (write(ready_fd, &c, 1) < 0) {
        /* The parent died; nobody is waiting. */
    }
    close(ready_fd);
    ready_fd = -1;
}

static int signal_fd = -1;
static const char *signal_name;

static void signals_set(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
}

void signals_block(void)
{
    sigset_t set;
    signals_set(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void signal_ready(int fd, short revents, void *opaque)
{
    PollLoop *loop = opaque;
    struct signalfd_siginfo si;
    if (read(fd, &si, sizeof(si)) != sizeof(si)) {
        return;
    }
    signal_name = si.ssi_signo == SIGTERM ? "SIGTERM"
                  : si.ssi_signo == SIGINT ? "SIGINT" : "SIGHUP";
    /* Requests held by paused exports would fail: refuse once, and let
     * a second signal force it (as QMP 'quit' with "force"). */
    static bool refused;
    size_t paused = 0, held = block_user_held_requests(&paused);
    if (held && !refused) {
        refused = true;
        log_warn("%s received while %zu request(s) are held by %zu paused "
                 "export(s): not stopping.  Resume them with QMP 'cont', or "
                 "send the signal again (or QMP 'quit' with \"force\": true) "
                 "to stop and fail them", signal_name, held, paused);
        signal_name = NULL;
        return;
    }
    poll_loop_quit(loop);
}

bool signals_watch(PollLoop *loop, Error **errp)
{
    sigset_t set;
    signals_set(&set);
    signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd < 0) {
        error_setg_errno(errp, errno, "Cannot create a signalfd");
        return false;
    }
    return poll_loop_add_fd(loop, signal_fd, POLLIN, signal_ready, loop,
                            errp);
}

const char *signals_received(void)
{
    return signal_name;
}

void signals_cleanup(PollLoop *loop)
{
    if (signal_fd >= 0) {
        poll_loop_remove_fd(loop, signal_fd);
        close(signal_fd);
        signal_fd = -1;
    }
}
