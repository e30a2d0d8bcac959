/* SPDX-License-Identifier: BSD-3-Clause */
/* libFuzzer target: blkdebug rules files (block/drivers/inject-config.c).
 * The input is written to a scratch file and read back as a config;
 * every input gives rule lists or an error, never both missing. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "block/drivers/inject.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[] = "/tmp/fuzz-blkdebug-config-XXXXXX";

static void remove_scratch(void)
{
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    if (fd < 0) {
        if ((fd = mkstemp(path)) < 0) {
            return 0;
        }
        atexit(remove_scratch);
    }
    if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size) {
        return 0;
    }
    json_t *inject = NULL, *states = NULL;
    Error *err = NULL;
    bool ok = inject_read_config(path, &inject, &states, &err);
    if (ok == (err != NULL)) {
        __builtin_trap();
    }
    json_decref(inject);
    json_decref(states);
    error_free(err);
    return 0;
}
