/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the QMP protocol for one client: greeting, capabilities
 * negotiation, request checking and dispatch, replies. */
#include "qmp/qmp-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qmp/json-stream.h"
#include "util/cleanup.h"

struct QmpSession {
    JsonStream *js;
    QmpWriteFn *write;
    void *opaque;
    bool pretty;
    bool negotiated;
    bool oob;        /* client enabled out-of-band execution */
};

json_t *qmp_version_info(void)
{
    int major = 0, minor = 0, micro = 0;
    if (sscanf(STRATA_VERSION, "%d.%d.%d", &major, &minor, &micro) < 1) {
        major = minor = micro = 0;
    }
    /* QEMU's shape, so QMP libraries parse it; "package" says who we are. */
    return json_pack("{s:{s:i, s:i, s:i}, s:s}", "qemu", "micro", micro,
                     "minor", minor, "major", major,
                     "package", "strata " STRATA_VERSION);
}

void qmp_session_send(QmpSession *s, json_t *msg)
{
    size_t len;
    CLEANUP_FREE char *line = qmp_format_json(msg, s->pretty, &len);
    if (line) {
        s->write(s->opaque, line, len);
    }
}

/* QEMU prints a number that has no fraction without ".0" (1.0 and 1e3
 * come back as 1 and 1000); jansson would add it, so such reals in an
 * echoed id become integers. */
static json_t *qemu_number_form(json_t *v)
{
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == (double)(json_int_t)d && d > -9.2e18 && d < 9.2e18) {
            return json_integer((json_int_t)d);
        }
        return json_incref(v);
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            json_array_append_new(a, qemu_number_form(e));
        }
        return a;
    }
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e) {
            json_object_set_new(o, k, qemu_number_form(e));
        }
        return o;
    }
    return json_incref(v);
}

static json_t *error_response(json_t *id, ErrorClass cls, const char *desc)
{
    /* QEMU puts "id" first in error replies (and last in successes). */
    json_t *rsp = json_object();
    if (id) {
        json_object_set_new(rsp, "id", qemu_number_form(id));
    }
    json_object_set_new(rsp, "error",
                        json_pack("{s:s, s:s}", "class", error_class_name(cls),
                                  "desc", desc));
    return rsp;
}

static json_t *errorf_response(json_t *id, ErrorClass cls, const char *fmt,
                               const char *a, const char *b)
{
    char buf[512];
    snprintf(buf, sizeof(buf), fmt, a, b);
    return error_response(id, cls, buf);
}

static json_t *dispatch(QmpSession *s, json_t *req)
{
    if (!json_is_object(req)) {
        return error_response(NULL, ERROR_CLASS_GENERIC_ERROR,
                              "QMP input must be a JSON object");
    }
    json_t *id = json_object_get(req, "id");
    const char *cmd_key = NULL, *cmd = NULL;
    json_t *args = NULL;
    const char *key;
    json_t *v;
    json_object_foreach(req, key, v) {
        if (!strcmp(key, "execute")
            || (!strcmp(key, "exec-oob") && s->oob)) {
            if (!json_is_string(v)) {
                return errorf_response(id, ERROR_CLASS_GENERIC_ERROR,
                                       "QMP input member '%s' must be a string",
                                       key, NULL);
            }
            if (cmd_key) {
                return errorf_response(id, ERROR_CLASS_GENERIC_ERROR,
                                       "QMP input member '%s' clashes with '%s'",
                                       key, cmd_key);
            }
            cmd_key = key;
            cmd = json_string_value(v);
        } else if (!strcmp(key, "arguments")) {
            if (!json_is_object(v)) {
                return error_response(id, ERROR_CLASS_GENERIC_ERROR,
                                      "QMP input member 'arguments' must be an object");
            }
            args = v;
        } else if (strcmp(key, "id") != 0) {
            return errorf_response(id, ERROR_CLASS_GENERIC_ERROR,
                                   "QMP input member '%s' is unexpected", key,
                                   NULL);
        }
    }
    if (!cmd) {
        return error_response(id, ERROR_CLASS_GENERIC_ERROR,
                              "QMP input lacks member 'execute'");
    }
    bool oob = !strcmp(cmd_key, "exec-oob");

    CLEANUP_ERROR Error *err = NULL;
    json_t *empty = NULL;
    if (!args) {
        args = empty = json_object();
    }
    json_t *result = NULL;
    if (!s->negotiated) {
        bool want_oob = false;
        if (strcmp(cmd, "qmp_capabilities") != 0) {
            json_decref(empty);
            return error_response(id, ERROR_CLASS_COMMAND_NOT_FOUND,
                                  "Expecting capabilities negotiation with "
                                  "'qmp_capabilities'");
        }
        if (qmp_capabilities_parse(args, &want_oob, &err)) {
            s->negotiated = true;
            s->oob = want_oob;
            result = json_object();
        }
    } else {
        const QmpArgSpec *spec;
        QmpCommandFn *fn = qmp_find_command(cmd, &spec);
        if (!fn) {
            json_decref(empty);
            return errorf_response(id, ERROR_CLASS_COMMAND_NOT_FOUND,
                                   "The command %s has not been found", cmd,
                                   NULL);
        }
        if (oob) {
            /* No strata command runs out of band, as in qsd. */
            json_decref(empty);
            return errorf_response(id, ERROR_CLASS_GENERIC_ERROR,
                                   "The command %s does not support OOB", cmd,
                                   NULL);
        }
        if (!spec || qmp_args_check(args, "", spec, &err)) {
            result = fn(args, &err);
        }
        if (!result && !err) {
            error_setg(&err, "Command %s failed without a reason", cmd);
        }
    }
    json_decref(empty);
    if (!result) {
        return error_response(id, err->cls, error_get_pretty(err));
    }
    json_t *rsp = json_object();
    json_object_set_new(rsp, "return", result);
    if (id) {
        json_object_set_new(rsp, "id", qemu_number_form(id));
    }
    return rsp;
}

static void on_value(void *opaque, json_t *value, const char *err)
{
    QmpSession *s = opaque;
    json_t *rsp;
    if (!value) {
        rsp = error_response(NULL, ERROR_CLASS_GENERIC_ERROR, err);
    } else {
        rsp = dispatch(s, value);
        json_decref(value);
    }
    qmp_session_send(s, rsp);
    json_decref(rsp);
}

QmpSession *qmp_session_new(QmpWriteFn *write, void *opaque, bool pretty)
{
    QmpSession *s = calloc(1, sizeof(*s));
    if (!s) {
        return NULL;
    }
    s->js = json_stream_new(on_value, s);
    if (!s->js) {
        free(s);
        return NULL;
    }
    s->write = write;
    s->opaque = opaque;
    s->pretty = pretty;
    return s;
}

void qmp_session_free(QmpSession *s)
{
    if (s) {
        json_stream_free(s->js);
        free(s);
    }
}

void qmp_session_greet(QmpSession *s)
{
    json_t *g = json_pack("{s:{s:o, s:[s]}}", "QMP", "version",
                          qmp_version_info(), "capabilities", "oob");
    qmp_session_send(s, g);
    json_decref(g);
}

void qmp_session_feed(QmpSession *s, const char *buf, size_t len)
{
    json_stream_feed(s->js, buf, len);
}

bool qmp_session_negotiated(const QmpSession *s)
{
    return s->negotiated;
}
