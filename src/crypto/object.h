/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - user-created objects: QEMU's --object and object-add.
 *
 * An object is a named piece of configuration that other parts refer to
 * by id: TLS credentials (x509, PSK), authorization lists, secrets, and
 * iothreads (accepted for command-line compatibility).  Objects are
 * created and deleted from the main thread; other threads (NBD
 * connections, the nbd client driver) look them up by id and hold a
 * reference while they use one, so object-del never pulls an object
 * from under a user: the id is gone at once, the object when its last
 * user lets go (as in QEMU, where object-del of credentials in use
 * succeeds and the server keeps its reference).
 */
#ifndef STRATA_CRYPTO_OBJECT_H
#define STRATA_CRYPTO_OBJECT_H

#include <jansson.h>
#include <stdbool.h>

#include "util/error.h"

typedef struct StrataObject StrataObject;

typedef struct ObjectClass {
    const char *type;          /* QEMU's qom-type */
    /* Builds the object's state from its properties.  props holds only
     * the type's own members (qom-type and id are gone); the callback
     * deletes each member it knows, and what is left is reported as
     * unexpected by the caller.  Values may be JSON or keyval strings
     * (util/keyval.h's getters take both).  Returns the state, or NULL
     * with errp set. */
    void *(*create)(json_t *props, Error **errp);
    /* Frees the state once the last reference is gone. */
    void (*destroy)(void *state);
} ObjectClass;

/* object-add: args holds qom-type, id and the properties (QMP's flat
 * form, or a parsed --object keyval).  args is not changed. */
bool object_add(json_t *args, Error **errp);
/* object-del: removes the id; the object lives on while referenced. */
bool object_del(const char *id, Error **errp);
/* Deletes every object (daemon shutdown). */
void object_del_all(void);

/* A new reference to the object with this id, or NULL. */
StrataObject *object_ref_by_id(const char *id);
/* Another reference to obj (which the caller holds). */
StrataObject *object_ref(StrataObject *obj);
void object_unref(StrataObject *obj);
const char *object_type(const StrataObject *obj);
const char *object_id(const StrataObject *obj);
/* The state create() returned. */
void *object_state(const StrataObject *obj);
/* Whether obj's type is cls. */
bool object_is(const StrataObject *obj, const ObjectClass *cls);

/* The ids and types of the live objects as qom-list shows them under
 * /objects: [{"name": id, "type": "child<TYPE>"}]. */
json_t *object_list_json(void);

static inline void cleanup_object_unref(StrataObject **p)
{
    if (*p) {
        object_unref(*p);
    }
}
#define CLEANUP_OBJECT __attribute__((cleanup(cleanup_object_unref)))

/* The object classes (one file each). */
extern const ObjectClass tls_creds_x509_class;
extern const ObjectClass tls_creds_psk_class;
extern const ObjectClass secret_class;
extern const ObjectClass authz_simple_class;
extern const ObjectClass authz_list_class;
extern const ObjectClass authz_listfile_class;
extern const ObjectClass iothread_class;

#endif
