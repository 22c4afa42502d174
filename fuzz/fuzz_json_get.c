// SPDX-License-Identifier: MIT
/* Arbitrary bytes stored under a key (as another client could write them
 * into Redis), read back with nori_backend_get_json: never crashes; what it
 * accepts writes back with set_json and reads back equal. */
#include "fuzz.h"
#include <jansson.h>
#include <nori/cache.h>
#include <nori/json.h>

#include <stdint.h>
#include <stdlib.h>

static nori_backend *backend;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (backend == NULL && nori_memory_backend_new(16, &backend) != NORI_OK)
        abort();
    if (nori_backend_set(backend, "fuzz", data, size, 0) != NORI_OK)
        return 0; /* over the value limit */
    json_t *value = NULL;
    int rc = nori_backend_get_json(backend, "fuzz", &value);
    if (rc == NORI_OK) {
        if (value == NULL)
            abort();
        if (nori_backend_set_json(backend, "again", value, 0) == NORI_OK) {
            json_t *again = NULL;
            if (nori_backend_get_json(backend, "again", &again) != NORI_OK ||
                !json_equal(value, again))
                abort();
            json_decref(again);
        }
        json_decref(value);
    } else if (rc != NORI_ETYPE && rc != NORI_EINVAL) {
        abort();
    } else if (value != NULL) {
        abort();
    }
    return 0;
}
