/*
 * quickstart: the seed's examples with the convenience API on the default
 * backend (CACHE_BACKEND, CACHE_MAX_KEYS and REDIS_URL from the environment
 * or .env): a cached computed value, a rate-limit counter, and an atomic
 * read-modify-write.
 */
#include <nori/cache.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int check(int rc, const char *what)
{
    if (rc < 0) {
        fprintf(stderr, "quickstart: %s failed: %s (%s)\n", what, nori_strerror(rc),
                nori_last_error());
        exit(1);
    }
    return rc;
}

/* Stands for an expensive query: only runs on a cache miss. */
static int compute_calls;
static void compute_profile(char *out, size_t size)
{
    compute_calls++;
    snprintf(out, size, "{\"id\": 42, \"name\": \"Ada\", \"plan\": \"pro\"}");
}

static const char *cached_profile(nori_buf *buf)
{
    if (check(nori_cache_get("user:42:profile", buf), "get") == NORI_OK)
        return "hit";
    char profile[128];
    compute_profile(profile, sizeof profile);
    check(nori_cache_set("user:42:profile", profile, strlen(profile), NORI_DEFAULT_TTL), "set");
    check(nori_cache_get("user:42:profile", buf), "get");
    return "miss, computed and stored";
}

/* atomic_update callback: appends a visit timestamp count to "visits=N". */
static int bump_visits(const nori_buf *current, nori_buf *next, void *ud)
{
    (void)ud;
    long visits = 0;
    if (current != NULL && sscanf(current->data, "visits=%ld", &visits) != 1)
        return 1; /* not ours: decline rather than overwrite */
    next->data = malloc(32);
    if (next->data == NULL)
        return 1;
    next->len = (size_t)snprintf(next->data, 32, "visits=%ld", visits + 1);
    return 0;
}

int main(void)
{
    nori_backend *b;
    check(nori_get_backend(&b), "configure the default backend");
    printf("backend: %s (nori-cache %s)\n", nori_backend_kind(b), nori_version());
    check(nori_cache_flush(), "flush");

    /* 1. Cache a computed value. */
    for (int i = 0; i < 2; i++) {
        nori_buf buf;
        const char *how = cached_profile(&buf);
        printf("profile #%d: %s -> %s\n", i + 1, how, buf.data);
        nori_buf_free(&buf);
    }
    printf("expensive computation ran %d time(s)\n", compute_calls);

    /* 2. A rate limit: 5 login attempts per 60 s window, the 6th refused. */
    for (int i = 0; i < 6; i++) {
        int64_t attempts;
        check(nori_cache_incr("login:ada@example.com:attempts", 60, &attempts), "incr");
        printf("login attempt %" PRId64 ": %s\n", attempts,
               attempts > 5 ? "429 Too Many Requests" : "allowed");
    }

    /* 3. Read-modify-write without a race. */
    for (int i = 0; i < 3; i++) {
        nori_buf state;
        check(nori_cache_atomic_update("page:home:stats", bump_visits, NULL, 300, &state),
              "atomic_update");
        printf("atomic update: %s\n", state.data);
        nori_buf_free(&state);
    }

    check(nori_cache_delete("user:42:profile"), "delete");
    nori_buf gone;
    printf("after delete: %s\n",
           check(nori_cache_get("user:42:profile", &gone), "get") == NORI_MISS ? "miss" : "hit");
    nori_reset_backend();
    return 0;
}
