// SPDX-License-Identifier: MIT
/*
 * A response cache's life: the options' defaults, creation (the options
 * checked and copied), its statistics, and freeing it. Serving is cache.c.
 */
#include "http/entries.h"

#include "error.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

void nori_http_cache_options_init(nori_http_cache_options *o)
{
    memset(o, 0, sizeof *o);
    o->ttl = 60;
    o->prefix = "view";
    o->lock_timeout_ms = 5000;
    o->hit_for_miss_ms = 5000;
    o->refresh_threads = 2;
}

void nori_http_cache_free(nori_http_cache *c)
{
    if (c == NULL)
        return;
    /* Refreshes first: a running one still uses the tables below. */
    nori__refresher_free(c->refresher);
    nori__flights_free(c->flights);
    nori__gens_free(c->gens);
    nori__memo_free(c->memo);
    pthread_mutex_destroy(&c->refresher_lock);
    for (size_t i = 0; i < c->n_vary_on; i++)
        free(c->vary_on[i]);
    free(c->vary_on);
    for (size_t i = 0; i < c->n_refresh_headers; i++)
        free(c->refresh_headers[i]);
    free(c->refresh_headers);
    for (size_t i = 0; i < c->rules.n_targeted; i++)
        free(c->rules.targeted[i]);
    free(c->rules.targeted);
    free(c->vary_header);
    free(c->prefix);
    free(c);
}

int nori_http_cache_new(const nori_http_cache_options *opts, nori_http_cache **out)
{
    nori_http_cache_options defaults;
    if (out == NULL)
        return nori__fail(NORI_EINVAL, "out is NULL");
    if (opts == NULL) {
        nori_http_cache_options_init(&defaults);
        opts = &defaults;
    }
    if (opts->ttl < 0 || opts->ttl > NORI_MAX_TTL)
        return nori__fail(NORI_EINVAL, "response cache ttl %lld is out of range",
                          (long long)opts->ttl);
    if (opts->stale_while_revalidate < 0 || opts->stale_while_revalidate > NORI_MAX_TTL ||
        opts->stale_if_error < 0 || opts->stale_if_error > NORI_MAX_TTL)
        return nori__fail(NORI_EINVAL,
                          "stale_while_revalidate %lld / stale_if_error %lld out of range",
                          (long long)opts->stale_while_revalidate,
                          (long long)opts->stale_if_error);
    if (opts->lock_timeout_ms < 0 || opts->lock_timeout_ms > 3600 * 1000 ||
        opts->hit_for_miss_ms < 0 || opts->hit_for_miss_ms > NORI_MAX_TTL)
        return nori__fail(NORI_EINVAL, "lock_timeout_ms %lld / hit_for_miss_ms %lld out of range",
                          (long long)opts->lock_timeout_ms, (long long)opts->hit_for_miss_ms);
    if (opts->n_refresh_headers > 0 && opts->refresh_headers == NULL)
        return nori__fail(NORI_EINVAL, "refresh_headers is NULL with n_refresh_headers > 0");
    for (size_t i = 0; i < opts->n_refresh_headers; i++)
        if (opts->refresh_headers[i] == NULL || opts->refresh_headers[i][0] == '\0')
            return nori__fail(NORI_EINVAL, "refresh_headers[%zu] is empty", i);
    if ((unsigned)opts->rules > NORI_HTTP_RULES_RFC9111 || opts->heuristic_percent > 100 ||
        opts->keep < 0 || opts->keep > NORI_MAX_TTL)
        return nori__fail(NORI_EINVAL, "rules %d / heuristic_percent %u / keep %lld out of range",
                          (int)opts->rules, opts->heuristic_percent, (long long)opts->keep);
    if (opts->n_targeted_fields > 0 && opts->targeted_fields == NULL)
        return nori__fail(NORI_EINVAL, "targeted_fields is NULL with n_targeted_fields > 0");
    for (size_t i = 0; i < opts->n_targeted_fields; i++)
        if (opts->targeted_fields[i] == NULL ||
            !nori__http_field_name_ok(opts->targeted_fields[i], strlen(opts->targeted_fields[i])))
            return nori__fail(NORI_EINVAL, "targeted_fields[%zu] is not a field name", i);
    if (opts->refresh_threads > 64)
        return nori__fail(NORI_EINVAL, "refresh_threads %zu is over 64", opts->refresh_threads);
    const char *prefix = opts->prefix != NULL ? opts->prefix : "view";
    if (prefix[0] == '\0')
        return nori__fail(NORI_EINVAL, "response cache prefix is empty");
    if (opts->n_vary_on > 0 && opts->vary_on == NULL)
        return nori__fail(NORI_EINVAL, "vary_on is NULL with n_vary_on > 0");
    size_t vary_len = 0;
    for (size_t i = 0; i < opts->n_vary_on; i++) {
        if (opts->vary_on[i] == NULL || opts->vary_on[i][0] == '\0')
            return nori__fail(NORI_EINVAL, "vary_on[%zu] is empty", i);
        vary_len += strlen(opts->vary_on[i]) + 2;
    }

    nori_http_cache *c = calloc(1, sizeof *c);
    if (c == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory creating a response cache");
    pthread_mutex_init(&c->refresher_lock, NULL);
    if ((c->prefix = strdup(prefix)) == NULL || nori__flights_new(&c->flights) != NORI_OK ||
        nori__gens_new(&c->gens) != NORI_OK ||
        nori__memo_new(NORI__MEMO_MAX_BYTES, &c->memo) != NORI_OK)
        goto oom;
    if (opts->n_vary_on > 0 &&
        ((c->vary_on = calloc(opts->n_vary_on, sizeof *c->vary_on)) == NULL ||
         (c->vary_header = calloc(1, vary_len + 1)) == NULL))
        goto oom;
    for (size_t i = 0; i < opts->n_vary_on; i++) {
        if ((c->vary_on[i] = strdup(opts->vary_on[i])) == NULL)
            goto oom;
        c->n_vary_on++;
        /* Names are lower-cased once here: the key uses the lower-case form,
         * and header lookups are case-insensitive anyway. */
        for (char *p = c->vary_on[i]; *p != '\0'; p++)
            *p = (char)tolower((unsigned char)*p);
        if (i > 0)
            strcat(c->vary_header, ", ");
        strcat(c->vary_header, c->vary_on[i]);
    }
    if (opts->n_refresh_headers > 0 &&
        (opts->refresh_headers == NULL ||
         (c->refresh_headers = calloc(opts->n_refresh_headers, sizeof *c->refresh_headers)) ==
             NULL))
        goto oom;
    for (size_t i = 0; i < opts->n_refresh_headers; i++) {
        if (opts->refresh_headers[i] == NULL ||
            (c->refresh_headers[i] = strdup(opts->refresh_headers[i])) == NULL)
            goto oom;
        c->n_refresh_headers++;
    }
    if (opts->n_targeted_fields > 0 &&
        (c->rules.targeted = calloc(opts->n_targeted_fields, sizeof *c->rules.targeted)) == NULL)
        goto oom;
    for (size_t i = 0; i < opts->n_targeted_fields; i++) {
        if ((c->rules.targeted[i] = strdup(opts->targeted_fields[i])) == NULL)
            goto oom;
        c->rules.n_targeted++;
    }
    c->rules.rfc = opts->rules == NORI_HTTP_RULES_RFC9111;
    c->rules.ttl = opts->ttl;
    c->rules.heuristic_percent = opts->heuristic_percent;
    c->rules.keep_ms = opts->keep * 1000;
    c->key_fn = opts->key_fn;
    c->key_fn_ud = opts->key_fn_ud;
    c->backend = opts->backend;
    c->allow_authorized = opts->allow_authorized != 0;
    c->allow_cookie = opts->allow_cookie != 0;
    c->swr_ms = opts->stale_while_revalidate * 1000;
    c->sie_ms = opts->stale_if_error * 1000;
    c->lock_timeout_ms = opts->lock_timeout_ms;
    c->hfm_ms = opts->hit_for_miss_ms;
    c->refresh_threads = opts->refresh_threads > 0 ? opts->refresh_threads : 1;
    *out = c;
    return NORI_OK;
oom:
    nori_http_cache_free(c);
    return nori__fail(NORI_ENOMEM, "out of memory creating a response cache");
}

nori__memo *nori__http_cache_memo(nori_http_cache *c)
{
    return c->memo;
}

#define LOAD(field) atomic_load_explicit(&c->field, memory_order_relaxed)

void nori_http_cache_get_stats(const nori_http_cache *c, nori_http_cache_stats *out)
{
    if (c == NULL || out == NULL)
        return;
    out->hits = LOAD(hits);
    out->misses = LOAD(misses);
    out->stores = LOAD(stores);
    out->errors = LOAD(errors);
    out->bypass_method = LOAD(bypass_method);
    out->bypass_authorization = LOAD(bypass_authorization);
    out->bypass_cookie = LOAD(bypass_cookie);
    out->not_encodable = LOAD(not_encodable);
    out->too_big = LOAD(too_big);
    out->unsendable = LOAD(unsendable);
    out->coalesced = LOAD(coalesced);
    out->lock_timeouts = LOAD(lock_timeouts);
    out->hit_for_miss = LOAD(hit_for_miss);
    out->stale_revalidate = LOAD(stale_revalidate);
    out->stale_error = LOAD(stale_error);
    out->refreshes = LOAD(refreshes);
    out->refreshes_dropped = LOAD(refreshes_dropped);
    out->not_modified = LOAD(not_modified);
    out->invalidations = LOAD(invalidations);
    out->superseded = LOAD(superseded);
    out->refreshes_skipped = LOAD(refreshes_skipped);
    nori__memo_stats ms;
    nori__memo_get_stats(c->memo, &ms);
    out->memo_hits = ms.hits;
    out->memo_bytes = ms.bytes;
    out->revalidations = LOAD(revalidations);
    out->revalidated = LOAD(revalidated);
}
