// SPDX-License-Identifier: MIT
/*
 * nori_backend_from_env, the process-wide default backend, and the
 * nori_cache_* convenience calls on it.
 *
 * The default backend is published through an atomic pointer so that the
 * common path (already built) costs one acquire load and no lock; the mutex
 * only serialises the first build and nori_reset_backend().
 *
 * fork(): a child forked while another thread held the mutex (building the
 * backend) would hang in its first nori_cache_* call, so a pthread_atfork
 * prepare handler takes it (waiting for a build in progress) and the
 * parent and child handlers release it. A memory backend's build takes the
 * memory backend's registry lock under this mutex (a shm backend's, the
 * shm registry's), so this prepare handler must run before theirs: it is
 * registered after them (prepare handlers run in the reverse order of
 * registration).
 */
#include "backend.h"
#include "config.h"
#include "error.h"
#include "memory/memory.h"
#include "shm/shm.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

/* CACHE_BACKEND=memory: CACHE_MAX_KEYS entries, CACHE_MAX_BYTES bytes. */
static int open_memory(const nori__config *cfg, nori_backend **out)
{
    int rc = nori_memory_backend_new(cfg->max_keys, out);
    if (rc != NORI_OK)
        return rc;
    rc = nori_memory_backend_set_max_bytes(*out, cfg->max_bytes);
    if (rc != NORI_OK) {
        nori_backend_free(*out);
        *out = NULL;
    }
    return rc;
}

/* CACHE_BACKEND=redis: REDIS_URL, with the near cache in front when
 * CACHE_NEAR_MAX_KEYS or CACHE_NEAR_MAX_BYTES is set. */
static int open_redis(const nori__config *cfg, nori_backend **out)
{
    int rc = nori_redis_backend_new(cfg->redis_url, out);
    if (rc != NORI_OK || (cfg->near_max_keys == 0 && cfg->near_max_bytes == 0))
        return rc;
    rc = nori_redis_backend_enable_near(*out, cfg->near_max_keys, cfg->near_max_bytes,
                                        cfg->near_max_ttl_ms);
    if (rc != NORI_OK) {
        nori_backend_free(*out);
        *out = NULL;
    }
    return rc;
}

/* CACHE_BACKEND=shm: the segment CACHE_SHM_NAME (created or attached),
 * CACHE_MAX_KEYS entries, CACHE_MAX_BYTES bytes (its arena: 0 is
 * refused, an arena has a size). */
static int open_shm(const nori__config *cfg, nori_backend **out)
{
    return nori_shm_backend_new(cfg->shm_name, cfg->max_keys, cfg->max_bytes, out);
}

/* The constructors of the backends CACHE_BACKEND names (config.h). */
#define BACKEND_ROW(name, constructor) {name, constructor},
static const struct {
    const char *name;
    int (*open)(const nori__config *cfg, nori_backend **out);
} backends[] = {NORI__BACKENDS(BACKEND_ROW)};
#define N_BACKENDS (sizeof backends / sizeof backends[0])

int nori_backend_from_env(nori_backend **out)
{
    if (out == NULL)
        return nori__fail(NORI_EINVAL, "backend_from_env: out is NULL");
    nori__config cfg;
    int rc = nori__config_load(NULL, &cfg);
    if (rc != NORI_OK)
        return rc;
    size_t i = 0;
    while (i < N_BACKENDS && strcmp(backends[i].name, cfg.backend) != 0)
        i++;
    if (i == N_BACKENDS) /* config.c accepts only the names of the same rows */
        return nori__fail(NORI_EINVAL, "CACHE_BACKEND=%s has no constructor", cfg.backend);
    nori_backend *b;
    rc = backends[i].open(&cfg, &b);
    if (rc != NORI_OK)
        return rc;
    rc = nori_backend_set_max_value(b, cfg.max_value);
    if (rc != NORI_OK) {
        nori_backend_free(b);
        return rc;
    }
    *out = b;
    return NORI_OK;
}

static _Atomic(nori_backend *) default_backend;
static pthread_mutex_t default_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void lock_default(void)
{
    pthread_mutex_lock(&default_lock);
}

static void unlock_default(void)
{
    pthread_mutex_unlock(&default_lock);
}

static void register_atfork(void)
{
    nori__memory_fork_init(); /* first: see the opening comment */
    nori__shm_fork_init();
    (void)pthread_atfork(lock_default, unlock_default, unlock_default);
}

int nori_get_backend(nori_backend **out)
{
    if (out == NULL)
        return nori__fail(NORI_EINVAL, "get_backend: out is NULL");
    nori_backend *b = atomic_load_explicit(&default_backend, memory_order_acquire);
    if (b != NULL) {
        *out = b;
        return NORI_OK;
    }
    int rc = NORI_OK;
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&default_lock);
    b = atomic_load_explicit(&default_backend, memory_order_relaxed);
    if (b == NULL) {
        rc = nori_backend_from_env(&b);
        if (rc == NORI_OK)
            atomic_store_explicit(&default_backend, b, memory_order_release);
    }
    pthread_mutex_unlock(&default_lock);
    if (rc == NORI_OK)
        *out = b;
    return rc;
}

void nori_reset_backend(void)
{
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&default_lock);
    nori_backend *b = atomic_exchange_explicit(&default_backend, NULL, memory_order_acq_rel);
    pthread_mutex_unlock(&default_lock);
    nori_backend_free(b);
}

int nori_cache_get(const char *key, nori_buf *out)
{
    nori_backend *b;
    if (out != NULL) {
        out->data = NULL;
        out->len = 0;
    }
    int rc = nori_get_backend(&b);
    return rc != NORI_OK ? rc : nori_backend_get(b, key, out);
}

int nori_cache_set(const char *key, const void *val, size_t len, int64_t ttl)
{
    nori_backend *b;
    int rc = nori_get_backend(&b);
    return rc != NORI_OK ? rc : nori_backend_set(b, key, val, len, ttl);
}

int nori_cache_delete(const char *key)
{
    nori_backend *b;
    int rc = nori_get_backend(&b);
    return rc != NORI_OK ? rc : nori_backend_delete(b, key);
}

int nori_cache_flush(void)
{
    nori_backend *b;
    int rc = nori_get_backend(&b);
    return rc != NORI_OK ? rc : nori_backend_flush(b);
}

int nori_cache_delete_prefix(const char *prefix)
{
    nori_backend *b;
    int rc = nori_get_backend(&b);
    return rc != NORI_OK ? rc : nori_backend_delete_prefix(b, prefix);
}

int nori_cache_incr(const char *key, int64_t ttl, int64_t *out)
{
    nori_backend *b;
    int rc = nori_get_backend(&b);
    return rc != NORI_OK ? rc : nori_backend_incr(b, key, ttl, out);
}

int nori_cache_atomic_update(const char *key, nori_update_fn fn, void *ud, int64_t ttl,
                             nori_buf *out)
{
    nori_backend *b;
    if (out != NULL) {
        out->data = NULL;
        out->len = 0;
    }
    int rc = nori_get_backend(&b);
    return rc != NORI_OK ? rc : nori_backend_atomic_update(b, key, fn, ud, ttl, out);
}
