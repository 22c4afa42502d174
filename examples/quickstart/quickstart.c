// SPDX-License-Identifier: MIT
/*
 * quickstart: the seed's examples with the convenience API on the default
 * backend (CACHE_BACKEND, CACHE_MAX_KEYS and REDIS_URL from the environment
 * or .env): a cached computed value, a rate-limit counter, an atomic
 * read-modify-write, and a JSON record with dates, a UUID and a decimal
 * spelled as Nori's Python side spells them.
 */
#include <nori/cache.h>
#include <nori/json.h>

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

/*
 * Builds {id, name, signup, uuid, balance}, stores it with set_json and reads
 * it back with get_json. The typed constructors refuse impossible values
 * (Feb 30, "1.2.3") with NORI_ETYPE naming the field, before anything is
 * written.
 */
static void cache_profile_record(void)
{
    static const unsigned char id_bytes[16] = {0x9f, 0x1c, 0x2b, 0x4e, 0x61, 0x0a, 0x4d, 0x8b,
                                               0xa3, 0x5e, 0x77, 0x10, 0xc2, 0xd4, 0x0e, 0x5f};
    const nori_datetime signup = {.year = 2026, .month = 1, .day = 1, .hour = 12,
                                  .has_offset = true, .offset_seconds = 2 * 3600};
    json_t *when, *uuid, *balance;
    check(nori_json_datetime(&signup, "profile.signup", &when), "datetime");
    check(nori_json_uuid(id_bytes, "profile.uuid", &uuid), "uuid");
    check(nori_json_decimal("19.99", "profile.balance", &balance), "decimal");
    /* "o" hands each new reference over to the object. */
    json_t *profile = json_pack("{s:i, s:s, s:o, s:o, s:o}", "id", 42, "name", "Ada Lovelace",
                                "signup", when, "uuid", uuid, "balance", balance);
    if (profile == NULL)
        check(NORI_ENOMEM, "json_pack");
    check(nori_cache_set_json("user:42:record", profile, NORI_DEFAULT_TTL), "set_json");
    json_decref(profile);

    json_t *back;
    check(nori_cache_get_json("user:42:record", &back), "get_json");
    char *text = json_dumps(back, JSON_COMPACT | JSON_ENCODE_ANY);
    printf("profile record: %s\n", text != NULL ? text : "(out of memory)");
    printf("balance read back: %s\n", json_string_value(json_object_get(back, "balance")));
    nori_buf raw; /* the bytes a Python service sharing the Redis would read */
    check(nori_cache_get("user:42:record", &raw), "get");
    printf("stored bytes:   %s\n", raw.data);
    nori_buf_free(&raw);
    free(text);
    json_decref(back);

    json_t *bad;
    int rc = nori_json_date(&(nori_date){2026, 2, 30}, "profile.birthday", &bad);
    printf("impossible date refused: %s (%s)\n", nori_strerror(rc), nori_last_error());
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

    /* 4. A JSON record with the types JSON lacks, readable by Nori's Python side. */
    cache_profile_record();

    check(nori_cache_delete("user:42:profile"), "delete");
    nori_buf gone;
    printf("after delete: %s\n",
           check(nori_cache_get("user:42:profile", &gone), "get") == NORI_MISS ? "miss" : "hit");
    nori_reset_backend();
    return 0;
}
