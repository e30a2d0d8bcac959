/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the object registry (see object.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/object.h"
#include "util/cleanup.h"
#include "util/keyval.h"

struct StrataObject {
    const ObjectClass *cls;
    char *id;
    void *state;
    int refcnt;                 /* the registry's + one per user */
    StrataObject *next;
};

static const ObjectClass *const classes[] = {
    &authz_list_class, &authz_listfile_class, &authz_simple_class,
    &iothread_class, &secret_class, &tls_creds_psk_class,
    &tls_creds_x509_class,
};

static pthread_mutex_t objects_lock = PTHREAD_MUTEX_INITIALIZER;
static StrataObject *objects;   /* newest first, as qom-list shows them */

static const ObjectClass *find_class(const char *type)
{
    for (size_t i = 0; i < ARRAY_SIZE(classes); i++) {
        if (strcmp(classes[i]->type, type) == 0) {
            return classes[i];
        }
    }
    return NULL;
}

static StrataObject *find_locked(const char *id)
{
    for (StrataObject *o = objects; o; o = o->next) {
        if (strcmp(o->id, id) == 0) {
            return o;
        }
    }
    return NULL;
}

bool object_add(json_t *args, Error **errp)
{
    const char *type, *id;

    if (!json_is_object(args)) {
        error_setg(errp, "Invalid parameter type, expected: object");
        return false;
    }
    /* QEMU checks the type (the union's tag) before the id. */
    if (!opt_get_required_str(args, "qom-type", &type, errp)) {
        return false;
    }
    const ObjectClass *cls = find_class(type);
    if (!cls) {
        error_setg(errp, "Parameter 'qom-type' does not accept value '%s'",
                   type);
        return false;
    }
    if (!opt_get_required_str(args, "id", &id, errp)) {
        return false;
    }
    if (!id_wellformed(id)) {
        error_setg(errp, "Parameter 'id' expects an identifier");
        error_append_hint(errp, "Identifiers consist of letters, digits, "
                          "'-', '.', '_', starting with a letter.\n");
        return false;
    }
    CLEANUP_JSON json_t *props = json_deep_copy(args);
    json_object_del(props, "qom-type");
    json_object_del(props, "id");
    {
        LOCK_GUARD(&objects_lock);
        if (find_locked(id)) {
            error_setg(errp, "attempt to add duplicate property '%s' to "
                       "object (type 'container')", id);
            return false;
        }
    }
    void *state = cls->create(props, errp);
    if (!state) {
        return false;
    }
    if (!opt_check_empty(props, errp)) {
        cls->destroy(state);
        return false;
    }
    StrataObject *obj = calloc(1, sizeof(*obj));
    char *copy = strdup(id);
    if (!obj || !copy) {
        free(obj);
        free(copy);
        cls->destroy(state);
        error_setg(errp, "Out of memory");
        return false;
    }
    *obj = (StrataObject){ .cls = cls, .id = copy, .state = state,
                           .refcnt = 1 };
    bool added = false;
    {
        LOCK_GUARD(&objects_lock);
        /* Creation ran unlocked (it reads files): the id may have been
         * taken meanwhile. */
        if (!find_locked(id)) {
            obj->next = objects;
            objects = obj;
            added = true;
        }
    }
    if (!added) {
        error_setg(errp, "attempt to add duplicate property '%s' to "
                   "object (type 'container')", id);
        object_unref(obj);
    }
    return added;
}

static StrataObject *unlink_by_id(const char *id)
{
    LOCK_GUARD(&objects_lock);
    for (StrataObject **p = &objects; *p; p = &(*p)->next) {
        if (strcmp((*p)->id, id) == 0) {
            StrataObject *o = *p;
            *p = o->next;
            o->next = NULL;
            return o;
        }
    }
    return NULL;
}

bool object_del(const char *id, Error **errp)
{
    StrataObject *o = unlink_by_id(id);
    if (!o) {
        error_setg(errp, "object '%s' not found", id);
        return false;
    }
    object_unref(o);
    return true;
}

void object_del_all(void)
{
    for (;;) {
        StrataObject *o;
        {
            LOCK_GUARD(&objects_lock);
            o = objects;
            if (o) {
                objects = o->next;
            }
        }
        if (!o) {
            return;
        }
        object_unref(o);
    }
}

StrataObject *object_ref_by_id(const char *id)
{
    LOCK_GUARD(&objects_lock);
    StrataObject *o = find_locked(id);
    if (o) {
        o->refcnt++;
    }
    return o;
}

StrataObject *object_ref(StrataObject *obj)
{
    LOCK_GUARD(&objects_lock);
    obj->refcnt++;
    return obj;
}

void object_unref(StrataObject *obj)
{
    bool last;
    {
        LOCK_GUARD(&objects_lock);
        last = --obj->refcnt == 0;
    }
    if (last) {
        obj->cls->destroy(obj->state);
        free(obj->id);
        free(obj);
    }
}

const char *object_type(const StrataObject *obj)
{
    return obj->cls->type;
}

const char *object_id(const StrataObject *obj)
{
    return obj->id;
}

void *object_state(const StrataObject *obj)
{
    return obj->state;
}

bool object_is(const StrataObject *obj, const ObjectClass *cls)
{
    return obj->cls == cls;
}

json_t *object_list_json(void)
{
    json_t *list = json_array();
    LOCK_GUARD(&objects_lock);
    for (StrataObject *o = objects; o; o = o->next) {
        char type[64];
        snprintf(type, sizeof(type), "child<%s>", o->cls->type);
        json_array_append_new(list, json_pack("{s:s, s:s}", "name", o->id,
                                              "type", type));
    }
    return list;
}
