/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - scope-based cleanup built on __attribute__((cleanup)).
 *
 * Variables declared with these must be initialised at declaration.
 */
#ifndef STRATA_UTIL_CLEANUP_H
#define STRATA_UTIL_CLEANUP_H

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static inline void cleanup_free(void *ptr)
{
    free(*(void **)ptr);
}
#define CLEANUP_FREE __attribute__((cleanup(cleanup_free)))

static inline void cleanup_close(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
    }
}
#define CLEANUP_CLOSE __attribute__((cleanup(cleanup_close)))

static inline void cleanup_unlock(pthread_mutex_t **m)
{
    if (*m) {
        pthread_mutex_unlock(*m);
    }
}
#define CLEANUP_CONCAT_(a, b) a##b
#define CLEANUP_CONCAT(a, b) CLEANUP_CONCAT_(a, b)
/* Holds mutex m until the end of the enclosing scope. */
#define LOCK_GUARD(m)                                                      \
    __attribute__((cleanup(cleanup_unlock), unused)) pthread_mutex_t *     \
        CLEANUP_CONCAT(lock_guard_, __LINE__) =                            \
            (pthread_mutex_lock(m), (m))

static inline void cleanup_rwunlock(pthread_rwlock_t **l)
{
    if (*l) {
        pthread_rwlock_unlock(*l);
    }
}
/* Holds rwlock l for reading / writing until the end of the scope. */
#define RDLOCK_GUARD(l)                                                    \
    __attribute__((cleanup(cleanup_rwunlock), unused)) pthread_rwlock_t *  \
        CLEANUP_CONCAT(rdlock_guard_, __LINE__) =                          \
            (pthread_rwlock_rdlock(l), (l))
#define WRLOCK_GUARD(l)                                                    \
    __attribute__((cleanup(cleanup_rwunlock), unused)) pthread_rwlock_t *  \
        CLEANUP_CONCAT(wrlock_guard_, __LINE__) =                          \
            (pthread_rwlock_wrlock(l), (l))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
/* Power-of-two alignment helpers. */
#define ALIGN_DOWN(n, a) ((n) & ~((__typeof__(n))(a) - 1))
#define ALIGN_UP(n, a) ALIGN_DOWN((n) + (a) - 1, (a))
#define IS_ALIGNED(n, a) (((n) & ((__typeof__(n))(a) - 1)) == 0)

#endif
