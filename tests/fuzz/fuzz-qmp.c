/* SPDX-License-Identifier: BSD-3-Clause */
/* libFuzzer target: QMP stream framing, request checks and dispatch.
 *
 * Input byte 0 picks whether the session is negotiated first and how
 * the rest is cut into reads (the framer must give the same answers
 * however the bytes arrive).  Only side-effect-free commands are
 * registered: the monitor's own, plus test commands; two of them check
 * their arguments against QEMU's biggest types (BlockdevOptions,
 * ObjectOptions) and echo them.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "qmp/json-stream.h"
#include "qmp/qapi-schema.h"
#include "qmp/qmp-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t written;

static void sink(void *opaque, const char *buf, size_t len)
{
    bool pretty = opaque != NULL;
    /* Every reply ends in CRLF and, unless pretty, is one line. */
    if (len < 2 || buf[len - 2] != '\r' || buf[len - 1] != '\n'
        || (!pretty && memchr(buf, '\n', len - 1))) {
        __builtin_trap();
    }
    written += len;
}

static json_t *cmd_echo(json_t *args, Error **errp)
{
    return json_incref(args);
}

static json_t *cmd_fail(json_t *args, Error **errp)
{
    error_setg(errp, "x-fail always fails");
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool registered;
    if (!registered) {
        qmp_register_core_commands();
        qmp_register_command("x-echo", cmd_echo);
        qmp_register_command("x-fail", cmd_fail);
        qmp_register_command_args("x-blockdev", cmd_echo,
                                  qapi_BlockdevOptions);
        qmp_register_command_args("x-object", cmd_echo, qapi_ObjectOptions);
        registered = true;
    }
    if (size == 0) {
        return 0;
    }
    uint8_t mode = data[0];
    data++;
    size--;

    bool pretty = mode & 0x80;
    QmpSession *s = qmp_session_new(sink, pretty ? &written : NULL, pretty);
    if (!s) {
        return 0;
    }
    qmp_session_greet(s);
    if (mode & 1) {
        static const char neg[] = "{\"execute\": \"qmp_capabilities\"}\n";
        qmp_session_feed(s, neg, sizeof(neg) - 1);
    }
    size_t chunk = (mode >> 1) & 0x3f;
    if (chunk == 0) {
        qmp_session_feed(s, (const char *)data, size);
    } else {
        for (size_t off = 0; off < size; off += chunk) {
            size_t n = size - off < chunk ? size - off : chunk;
            qmp_session_feed(s, (const char *)data + off, n);
        }
    }
    qmp_session_free(s);

    /* The diagnosis walker must cope with any balanced text too. */
    char buf[128];
    json_stream_diagnose((const char *)data, size, buf, sizeof(buf));
    return 0;
}
