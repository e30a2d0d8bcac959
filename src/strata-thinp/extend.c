/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-thinp - growing a volume.
 *
 * The command template is what production uses (lvextend, a storage
 * array's CLI, a call to an SPM); the built-ins cover regular files and
 * loop devices so that the agent works out of the box on a test host. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "strata-thinp/thinp.h"
#include "util/cleanup.h"

extern char **environ;

struct ExtendJob {
    pid_t pid;            /* command child, or 0 for a finished built-in */
    int pidfd;            /* -1 when finished */
    const char *method;
    char *command;        /* for messages */
};

/* Substitutes {path}, {size}, {node} and {socket}; values are quoted for
 * the shell so a path with spaces stays one word. */
static char *expand_template(const char *tmpl, const char *path,
                             uint64_t size, const char *node,
                             const char *socket)
{
    char sizebuf[32];
    snprintf(sizebuf, sizeof(sizebuf), "%llu", (unsigned long long)size);
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    if (!f) {
        return NULL;
    }
    for (const char *p = tmpl; *p;) {
        const char *value = NULL;
        size_t skip = 0;
        static const char *const keys[] = { "{path}", "{size}", "{node}",
                                            "{socket}" };
        const char *values[] = { path, sizebuf, node, socket };
        for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
            if (!strncmp(p, keys[i], strlen(keys[i]))) {
                value = values[i];
                skip = strlen(keys[i]);
            }
        }
        if (!value) {
            fputc(*p++, f);
            continue;
        }
        fputc('\'', f);
        for (const char *v = value; *v; v++) {
            if (*v == '\'') {
                fputs("'\\''", f);
            } else {
                fputc(*v, f);
            }
        }
        fputc('\'', f);
        p += skip;
    }
    fclose(f);
    return out;
}

/* The backing file of /dev/loopN, from sysfs. */
static char *loop_backing_file(const struct stat *st)
{
    char sys[PATH_MAX];
    snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u/loop/backing_file",
             major(st->st_rdev), minor(st->st_rdev));
    FILE *f = fopen(sys, "re");
    if (!f) {
        return NULL;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    fclose(f);
    if (n <= 0) {
        free(line);
        return NULL;
    }
    if (line[n - 1] == '\n') {
        line[n - 1] = '\0';
    }
    return line;
}

static unsigned long long loop_offset(const struct stat *st)
{
    char sys[PATH_MAX];
    snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u/loop/offset",
             major(st->st_rdev), minor(st->st_rdev));
    unsigned long long off = 0;
    FILE *f = fopen(sys, "re");
    if (f) {
        if (fscanf(f, "%llu", &off) != 1) {
            off = 0;
        }
        fclose(f);
    }
    return off;
}

static bool grow_regular(const char *path, uint64_t size, Error **errp)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Cannot open '%s' to extend it", path);
        return false;
    }
    /* Only ever grows.  The daemon may be appending clusters past the
     * file's end at this very moment (a regular file grows with its
     * writes), so "stat, then ftruncate if smaller" could cut off data
     * written in between.  fallocate() of the last byte extends the size
     * and never shrinks it, atomically in the kernel. */
    bool ok = size == 0 || fallocate(fd, 0, (off_t)size - 1, 1) == 0;
    if (!ok && (errno == EOPNOTSUPP || errno == ENOSYS)) {
        /* No fallocate here: the racy way, the best this file system
         * allows. */
        struct stat st;
        ok = fstat(fd, &st) == 0 &&
             ((uint64_t)st.st_size >= size || ftruncate(fd, (off_t)size) == 0);
    }
    if (!ok) {
        error_setg_errno(errp, errno, "Cannot extend '%s' to %llu bytes",
                         path, (unsigned long long)size);
    }
    close(fd);
    return ok;
}

static bool grow_loop(const char *dev, const struct stat *st, uint64_t size,
                      Error **errp)
{
    CLEANUP_FREE char *backing = loop_backing_file(st);
    if (!backing) {
        error_setg(errp, "'%s' is a block device but not a loop device "
                   "with a backing file; give --extend-cmd", dev);
        return false;
    }
    if (!grow_regular(backing, size + loop_offset(st), errp)) {
        return false;
    }
    int fd = open(dev, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Cannot open '%s'", dev);
        return false;
    }
    int r = ioctl(fd, LOOP_SET_CAPACITY, 0);
    int saved = errno;
    close(fd);
    if (r < 0) {
        error_setg_errno(errp, saved, "LOOP_SET_CAPACITY on '%s' failed",
                         dev);
        return false;
    }
    return true;
}

ExtendJob *extend_start(const char *tmpl, const char *path, uint64_t size,
                        const char *node, const char *socket, Error **errp)
{
    ExtendJob *j = calloc(1, sizeof(*j));
    if (!j) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    j->pidfd = -1;
    if (!tmpl) {
        struct stat st;
        if (stat(path, &st) < 0) {
            error_setg_errno(errp, errno, "Cannot stat '%s'", path);
            free(j);
            return NULL;
        }
        bool ok;
        if (S_ISBLK(st.st_mode)) {
            j->method = "builtin-loop";
            ok = grow_loop(path, &st, size, errp);
        } else {
            j->method = "builtin-file";
            ok = grow_regular(path, size, errp);
        }
        if (!ok) {
            free(j);
            return NULL;
        }
        return j;
    }
    j->method = "command";
    j->command = expand_template(tmpl, path, size, node, socket);
    if (!j->command) {
        error_setg(errp, "Out of memory");
        free(j);
        return NULL;
    }
    char *argv[] = { "/bin/sh", "-c", j->command, NULL };
    int r = posix_spawn(&j->pid, "/bin/sh", NULL, NULL, argv, environ);
    if (r != 0) {
        error_setg_errno(errp, r, "Cannot run '%s'", j->command);
        free(j->command);
        free(j);
        return NULL;
    }
    j->pidfd = (int)syscall(SYS_pidfd_open, j->pid, 0);
    if (j->pidfd < 0) {
        /* Old kernel: wait for it here rather than lose track of it. */
        j->pidfd = -1;
    }
    return j;
}

int extend_job_fd(const ExtendJob *j)
{
    return j->pidfd;
}

const char *extend_job_method(const ExtendJob *j)
{
    return j->method;
}

bool extend_finish(ExtendJob *j, Error **errp)
{
    bool ok = true;
    if (j->pid > 0) {
        int status;
        pid_t r;
        while ((r = waitpid(j->pid, &status, 0)) < 0 && errno == EINTR) {
        }
        if (r < 0) {
            error_setg_errno(errp, errno, "Cannot collect '%s'", j->command);
            ok = false;
        } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
            error_setg(errp, "'%s' exited with status %d", j->command,
                       WEXITSTATUS(status));
            ok = false;
        } else if (WIFSIGNALED(status)) {
            error_setg(errp, "'%s' was killed by signal %d", j->command,
                       WTERMSIG(status));
            ok = false;
        }
    }
    if (j->pidfd >= 0) {
        close(j->pidfd);
    }
    free(j->command);
    free(j);
    return ok;
}

void extend_abort(ExtendJob *j)
{
    if (j->pid > 0) {
        kill(j->pid, SIGTERM);
    }
    extend_finish(j, NULL);
}
