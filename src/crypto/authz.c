/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - authz-simple, authz-list and authz-listfile (see authz.h).
 *
 * A list is a default policy and rules tried in order; the first rule
 * whose match (exact, or a glob as fnmatch(3) reads it) fits the
 * identity decides.  authz-listfile keeps the same list in a JSON file
 * ({"policy": ..., "rules": [...]}); with refresh on, every check looks
 * at the file's identity and modification time and reloads it when it
 * changed, so an edit takes effect for the next connection without a
 * watcher thread.  A file that fails to reload denies everyone until it
 * loads again, as QEMU does.
 */
#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crypto/authz.h"
#include "crypto/object.h"
#include "util/cleanup.h"
#include "util/keyval.h"
#include "util/log.h"

typedef enum { POLICY_DENY, POLICY_ALLOW } Policy;
typedef enum { FORMAT_EXACT, FORMAT_GLOB } MatchFormat;

typedef struct Rule {
    char *match;
    Policy policy;
    MatchFormat format;
} Rule;

typedef struct RuleList {
    Policy policy;
    Rule *rules;
    size_t nrules;
} RuleList;

static const char *const policies[] = { "deny", "allow", NULL };
static const char *const formats[] = { "exact", "glob", NULL };

static void rules_clear(RuleList *l)
{
    for (size_t i = 0; i < l->nrules; i++) {
        free(l->rules[i].match);
    }
    free(l->rules);
    l->rules = NULL;
    l->nrules = 0;
}

/* Decodes "policy" and "rules" from obj (deleting them). */
static bool rules_decode(json_t *obj, RuleList *l, Error **errp)
{
    int policy;
    memset(l, 0, sizeof(*l));
    if (!opt_get_enum(obj, "policy", policies, POLICY_DENY, &policy, errp)) {
        return false;
    }
    l->policy = policy;
    json_object_del(obj, "policy");
    json_t *rules = json_object_get(obj, "rules");
    if (!rules) {
        return true;
    }
    if (!json_is_array(rules)) {
        error_setg(errp, "Invalid parameter type for 'rules', expected: "
                   "array");
        return false;
    }
    l->rules = calloc(json_array_size(rules) + 1, sizeof(Rule));
    if (!l->rules) {
        error_setg(errp, "Out of memory");
        return false;
    }
    size_t i;
    json_t *r;
    json_array_foreach(rules, i, r) {
        const char *match;
        int rp, fmt;
        if (!json_is_object(r)) {
            error_setg(errp, "Invalid parameter type for 'rules[%zu]', "
                       "expected: object", i);
            rules_clear(l);
            return false;
        }
        CLEANUP_JSON json_t *copy = json_deep_copy(r);
        if (!opt_get_required_str(copy, "match", &match, errp) ||
            !opt_get_enum(copy, "policy", policies, -1, &rp, errp) ||
            !opt_get_enum(copy, "format", formats, FORMAT_EXACT, &fmt,
                          errp)) {
            rules_clear(l);
            return false;
        }
        if (rp < 0) {
            error_setg(errp, "Parameter 'policy' is missing");
            rules_clear(l);
            return false;
        }
        l->rules[i] = (Rule){ strdup(match), rp, fmt };
        l->nrules = i + 1;
        json_object_del(copy, "match");
        json_object_del(copy, "policy");
        json_object_del(copy, "format");
        if (!l->rules[i].match || !opt_check_empty(copy, errp)) {
            if (!l->rules[i].match) {
                error_setg(errp, "Out of memory");
            }
            rules_clear(l);
            return false;
        }
    }
    json_object_del(obj, "rules");
    return true;
}

static bool rules_allow(const RuleList *l, const char *identity)
{
    for (size_t i = 0; i < l->nrules; i++) {
        const Rule *r = &l->rules[i];
        bool hit = r->format == FORMAT_GLOB
                   ? fnmatch(r->match, identity, 0) == 0
                   : strcmp(r->match, identity) == 0;
        if (hit) {
            return r->policy == POLICY_ALLOW;
        }
    }
    return l->policy == POLICY_ALLOW;
}

/* ---- authz-simple ---- */

static void *simple_create(json_t *props, Error **errp)
{
    const char *identity;
    if (!opt_get_required_str(props, "identity", &identity, errp)) {
        return NULL;
    }
    char *copy = strdup(identity);
    if (!copy) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    json_object_del(props, "identity");
    return copy;
}

const ObjectClass authz_simple_class = {
    .type = "authz-simple",
    .create = simple_create,
    .destroy = free,
};

/* ---- authz-list ---- */

static void *list_create(json_t *props, Error **errp)
{
    RuleList *l = calloc(1, sizeof(*l));
    if (!l) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    if (!rules_decode(props, l, errp)) {
        free(l);
        return NULL;
    }
    return l;
}

static void list_destroy(void *state)
{
    rules_clear(state);
    free(state);
}

const ObjectClass authz_list_class = {
    .type = "authz-list",
    .create = list_create,
    .destroy = list_destroy,
};

/* ---- authz-listfile ---- */

typedef struct ListFile {
    char *filename;
    bool refresh;
    pthread_mutex_t lock;
    RuleList list;
    bool loaded;              /* false after a failed reload: deny all */
    struct stat seen;         /* the file as last loaded */
} ListFile;

static bool listfile_load(ListFile *f, Error **errp)
{
    struct stat st;
    json_error_t jerr;
    if (stat(f->filename, &st) < 0) {
        error_setg_errno(errp, errno, "Unable to access '%s'", f->filename);
        return false;
    }
    CLEANUP_JSON json_t *doc = json_load_file(f->filename, 0, &jerr);
    if (!doc) {
        error_setg(errp, "Unable to parse '%s': %s", f->filename, jerr.text);
        return false;
    }
    if (!json_is_object(doc)) {
        error_setg(errp, "Unable to parse '%s': expected a JSON object",
                   f->filename);
        return false;
    }
    RuleList l;
    if (!rules_decode(doc, &l, errp) || !opt_check_empty(doc, errp)) {
        rules_clear(&l);
        return false;
    }
    rules_clear(&f->list);
    f->list = l;
    f->seen = st;
    f->loaded = true;
    return true;
}

static void listfile_destroy(void *state)
{
    ListFile *f = state;
    rules_clear(&f->list);
    pthread_mutex_destroy(&f->lock);
    free(f->filename);
    free(f);
}

static void *listfile_create(json_t *props, Error **errp)
{
    const char *filename;
    bool refresh;
    if (!opt_get_required_str(props, "filename", &filename, errp) ||
        !opt_get_bool(props, "refresh", true, &refresh, errp)) {
        return NULL;
    }
    ListFile *f = calloc(1, sizeof(*f));
    if (!f || !(f->filename = strdup(filename))) {
        free(f);
        error_setg(errp, "Out of memory");
        return NULL;
    }
    f->refresh = refresh;
    pthread_mutex_init(&f->lock, NULL);
    if (!listfile_load(f, errp)) {
        listfile_destroy(f);
        return NULL;
    }
    json_object_del(props, "filename");
    json_object_del(props, "refresh");
    return f;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
           a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
           a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
           a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static bool listfile_allow(ListFile *f, const char *identity, Error **errp)
{
    LOCK_GUARD(&f->lock);
    struct stat st;
    if (f->refresh && (stat(f->filename, &st) < 0 || !same_file(&st, &f->seen)
                       || !f->loaded)) {
        Error *err = NULL;
        if (!listfile_load(f, &err)) {
            log_error("authz-listfile: %s; denying until it loads",
                      error_get_pretty(err));
            error_free(err);
            f->loaded = false;
            memset(&f->seen, 0, sizeof(f->seen));
        }
    }
    if (!f->loaded) {
        error_setg(errp, "Authorization list '%s' could not be loaded",
                   f->filename);
        return false;
    }
    return rules_allow(&f->list, identity);
}

const ObjectClass authz_listfile_class = {
    .type = "authz-listfile",
    .create = listfile_create,
    .destroy = listfile_destroy,
};

bool authz_is_allowed(const char *authz_id, const char *identity,
                      Error **errp)
{
    CLEANUP_OBJECT StrataObject *obj = object_ref_by_id(authz_id);
    if (!obj) {
        error_setg(errp, "Cannot find QAuthZ object '%s'", authz_id);
        return false;
    }
    if (object_is(obj, &authz_simple_class)) {
        return strcmp(object_state(obj), identity) == 0;
    }
    if (object_is(obj, &authz_list_class)) {
        return rules_allow(object_state(obj), identity);
    }
    if (object_is(obj, &authz_listfile_class)) {
        return listfile_allow(object_state(obj), identity, errp);
    }
    error_setg(errp, "Object '%s' is not a QAuthZ subclass", authz_id);
    return false;
}
