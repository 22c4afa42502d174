// SPDX-License-Identifier: MIT
/*
 * Configuration from the process environment and a `.env` file.
 *
 * Precedence: a variable set in the environment (even to a bad value) wins
 * over `.env`; `.env` is read from the working directory when present.
 * The `.env` file is only read, never exported into the environment.
 */
#ifndef NORI_SRC_CONFIG_H
#define NORI_SRC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nori/cache.h"

/*
 * The backends CACHE_BACKEND can name, one row each: ROW(name, constructor),
 * the first row being the default. config.c accepts exactly these names
 * (and lists them when refusing another); default_backend.c expands the
 * rows into its table of constructors, each a function there that builds
 * its backend from a nori__config. A new backend is one row here and its
 * constructor.
 */
#define NORI__BACKENDS(ROW)    \
    ROW("memory", open_memory) \
    ROW("redis", open_redis)   \
    ROW("shm", open_shm)

typedef struct nori__config {
    const char *backend; /* CACHE_BACKEND: a name of NORI__BACKENDS (static storage) */
    size_t max_keys;     /* CACHE_MAX_KEYS */
    size_t max_value;    /* CACHE_MAX_VALUE_BYTES */
    size_t max_bytes;    /* CACHE_MAX_BYTES (0: no byte bound) */
    char redis_url[4097]; /* REDIS_URL, validated */
    size_t near_max_keys;  /* CACHE_NEAR_MAX_KEYS: near cache entries, 0 = off */
    size_t near_max_bytes; /* CACHE_NEAR_MAX_BYTES: near cache bytes, 0 = off */
    int64_t near_max_ttl_ms; /* CACHE_NEAR_MAX_TTL_MS: cap on a near copy's life */
    /* CACHE_SHM_NAME, validated (default "nori-cache-<euid>", one per user) */
    char shm_name[NORI_SHM_NAME_MAX + 1];
} nori__config;

/* Largest accepted CACHE_MAX_BYTES: 1 TiB. */
#define NORI_MAX_MAX_BYTES ((size_t)1 << 40)

/* Largest accepted CACHE_MAX_KEYS. */
#define NORI_MAX_MAX_KEYS ((size_t)1 << 32)
/* Largest accepted CACHE_NEAR_MAX_BYTES: 1 TiB. */
#define NORI_MAX_NEAR_BYTES ((size_t)1 << 40)
/* Largest accepted CACHE_NEAR_MAX_TTL_MS: one day (the default is the near
 * cache's, NORI_NEAR_DEFAULT_MAX_TTL_MS: 60 s). */
#define NORI_MAX_NEAR_TTL_MS 86400000

/*
 * Called by the .env parser for each NAME=VALUE, with the value unquoted.
 * Return non-zero to stop parsing.
 */
typedef int (*nori__dotenv_cb)(const char *name, const char *value, void *ud);

/*
 * Parses `.env` text: blank lines, '#' comment lines, `NAME=VALUE` with
 * optional `export ` prefix, spaces around name and value, values in single
 * quotes (literal), double quotes (\" \\ \n \t escapes) or bare (a ' #'
 * starts a comment). Returns NORI_OK, the callback's non-zero value, or
 * NORI_EINVAL naming `source` and the line number of a malformed line.
 */
int nori__dotenv_parse(const char *text, size_t len, const char *source, nori__dotenv_cb cb,
                       void *ud);

/*
 * Loads the configuration from the environment, then from the .env file at
 * `dotenv_path` (NULL: ".env"; a missing file is not an error).
 */
int nori__config_load(const char *dotenv_path, nori__config *out);

/*
 * Called by nori__config_unknown_names() for each name that looks like a
 * nori-cache variable (CACHE_* or REDIS_*) but is not one: `source` is
 * "environment" or the .env path, `nearest` the known name it is closest to
 * (NULL when none is close). Return non-zero to stop.
 */
typedef int (*nori__unknown_var_cb)(const char *name, const char *source, const char *nearest,
                                    void *ud);

/*
 * Reports the CACHE_* and REDIS_* names of the environment, then of the
 * .env file at `dotenv_path` (NULL: ".env"), that nori-cache does not know,
 * so that a misspelt CACHE_BACKND is not silently ignored. Such names are
 * not errors (another program may own them). NORI_OK, or NORI_EINVAL when
 * the .env cannot be read or parsed (nori__config_load says the same).
 */
int nori__config_unknown_names(const char *dotenv_path, nori__unknown_var_cb cb, void *ud);

#endif
