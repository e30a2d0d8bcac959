/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - image parameters: runtime defaults that belong to an image
 * (copy-on-read, background prefetch from the backing chain, the
 * metadata cache size), kept in the image itself so that provisioning
 * scripts set them once per image and every daemon that opens it
 * applies them (docs/image-params.md).
 *
 * A format stores them as an opaque payload (qcow2: a header extension
 * of its own type, which QEMU keeps across its own rewrites).  The
 * payload is versioned; keys this version does not know are kept as
 * they are when the parameters are rewritten, so an older strata never
 * drops what a newer one set.
 *
 * Payload, version 1: a big-endian u32 version, then entries
 * "key=value" each ended by a NUL byte.  Keys are [a-z0-9-]+, values are
 * printable ASCII, at most 255 bytes.
 */
#ifndef STRATA_BLOCK_IMAGE_PARAMS_H
#define STRATA_BLOCK_IMAGE_PARAMS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define IMAGE_PARAMS_VERSION 1
#define IMAGE_PARAMS_MAX_VALUE 255
#define IMAGE_PARAMS_MAX_KEY 64

typedef struct ImageParams {
    /* key -> canonical value (string); known keys validated, unknown
     * keys kept verbatim. */
    json_t *kv;
} ImageParams;

typedef enum ImagePrefetch {
    IMAGE_PREFETCH_OFF,
    IMAGE_PREFETCH_ON_OPEN,
} ImagePrefetch;

/* The parameters an image has when it sets none. */
void image_params_init(ImageParams *ip);
void image_params_free(ImageParams *ip);

/* Decodes a stored payload.  Fails with a message naming what is wrong
 * (a version this strata does not read, a malformed entry, a known key
 * with a value it rejects). */
bool image_params_decode(const uint8_t *buf, size_t len, ImageParams *ip,
                         Error **errp);

/* Encodes ip (known keys in their documented order, then the others
 * sorted); *buf is malloc'd.  An empty set encodes to no payload
 * (*buf NULL, *len 0): the format then stores nothing. */
bool image_params_encode(const ImageParams *ip, uint8_t **buf, size_t *len,
                         Error **errp);

/* Sets key to value after checking it (known keys: their syntax, stored
 * canonically, e.g. "64M" as "67108864"; unknown keys: refused, so a typo
 * never becomes a parameter).  An empty value removes the key (back to
 * the default).  On failure ip is unchanged. */
bool image_params_set(ImageParams *ip, const char *key, const char *value,
                      Error **errp);

/* Parses "key=value" and sets it. */
bool image_params_set_kv(ImageParams *ip, const char *assignment,
                         Error **errp);

/* Sets every member of obj (a JSON object, as QMP gives parameters):
 * strings as they are, booleans as on/off, non-negative integers in
 * decimal.  path names obj in messages ("image-params").  Empty values
 * are refused (they would remove a key).  On failure some members may
 * be set: work on a copy. */
bool image_params_set_json(ImageParams *ip, json_t *obj, const char *path,
                           Error **errp);

/* Whether key is one this version knows. */
bool image_params_known_key(const char *key);

/* The canonical value of key, or NULL when not set. */
const char *image_params_get(const ImageParams *ip, const char *key);

/* Typed views, with the defaults of an image that sets nothing. */
bool image_params_copy_on_read(const ImageParams *ip);
ImagePrefetch image_params_prefetch(const ImageParams *ip);
/* *adaptive true: the controller decides, with *rate (0 = none) as the
 * ceiling. */
void image_params_prefetch_rate(const ImageParams *ip, bool *adaptive,
                                uint64_t *rate);
uint64_t image_params_prefetch_delay(const ImageParams *ip);
/* 0 = not set (the format's default). */
uint64_t image_params_l2_cache_size(const ImageParams *ip);

/* The set parameters as JSON, typed (booleans, integers, strings) as
 * info shows them; unknown keys as strings.  Never NULL unless out of
 * memory. */
json_t *image_params_to_json(const ImageParams *ip);

static inline void image_params_cleanup(ImageParams *ip)
{
    image_params_free(ip);
}
#define CLEANUP_IMAGE_PARAMS __attribute__((cleanup(image_params_cleanup)))

/* A deep copy (for all-or-nothing changes). */
bool image_params_copy(ImageParams *dst, const ImageParams *src);

#endif
