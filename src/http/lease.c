// SPDX-License-Identifier: MIT
/*
 * The response cache's leases: coalescing fills across processes sharing a
 * backend (one whose traits say shared, such as Redis), and the lease a
 * background refresh takes (revalidate.c). A lease is "{key}:lock", taken
 * with nori_backend_add for lock_timeout_ms and released by its token. On a
 * backend that waits for fills (traits.waits_for_fills: the shared-memory
 * segment), the holder also marks its fill (fill_claim: a robust lock it
 * holds until the fill ends), and the other processes sleep on that mark
 * instead of polling: they wake the moment the fill ends, or its filler
 * dies.
 */
#include "http/lease.h"

#include "backend.h"
#include "clock.h"
#include "error.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The lease of an entry key: "{key}:lock" (an entry key can never end so:
 * ':' inside the query and the vary values is escaped) into
 * lease_key[NORI_MAX_KEY_LEN + 1]. false when it would be too long. */
bool nori__http_lease_name(const char *key, char *lease_key)
{
    return (size_t)snprintf(lease_key, NORI_MAX_KEY_LEN + 1, "%s:lock", key) <=
           NORI_MAX_KEY_LEN;
}

/* A token unique to this call, "pid-sec.nsec-seq" (sec: the wall clock),
 * into token[64]. */
void nori__http_lease_token(char *token)
{
    static _Atomic uint64_t seq;
    struct timespec ts = nori__wall_timespec();
    snprintf(token, 64, "%ld-%lld.%09ld-%llu", (long)getpid(), (long long)ts.tv_sec, ts.tv_nsec,
             (unsigned long long)atomic_fetch_add(&seq, 1));
}

/* Marks the holder's fill (a backend that waits for fills), after the
 * lease was taken. Without the mark (it failed) waiters poll. */
void nori__http_lease_mark(nori_backend *b, const char *lease_key)
{
    (void)nori__backend_fill_claim(b, lease_key);
}

void nori__http_lease_release(nori_backend *b, const char *lease_key, const char *token)
{
    int deleted;
    /* On failure the lease ends by its own expiry. Deleted before the mark
     * goes, so that a waiter woken by the mark finds the lease free. */
    (void)nori_backend_delete_if_equal(b, lease_key, token, strlen(token), &deleted);
    nori__backend_fill_release(b, lease_key);
}

/* A holder that died leaves its lease until it expires: the waiter that
 * learnt of the death removes it (if it is still the one it finds), so
 * that the next add takes over at once. */
static void drop_dead_lease(nori_backend *b, const char *lease_key)
{
    nori_buf v;
    int deleted;
    if (nori_backend_get(b, lease_key, &v) != NORI_OK)
        return;
    (void)nori_backend_delete_if_equal(b, lease_key, v.data, v.len, &deleted);
    nori_buf_free(&v);
}

/*
 * True when the lease value at lease_key is a token of this library
 * ("pid-sec.nsec-seq", sec the wall clock when it was taken) no longer
 * ago than a lease lasts, give or take lock_timeout_ms of clock skew
 * between hosts. Anything else was left by another client (no TTL, a
 * foreign or past token): waiting for it would delay every miss of the key
 * by lock_timeout_ms for as long as it lives. A lease gone meanwhile (or a
 * failed read) is not judged here: the loop's next add decides.
 */
static bool lease_looks_genuine(nori_backend *b, const char *lease_key, int64_t timeout_ms)
{
    nori_buf v;
    if (nori_backend_get(b, lease_key, &v) != NORI_OK)
        return true;
    bool ok = false;
    long pid = 0;
    long long sec = 0;
    long nsec = 0;
    unsigned long long seq = 0;
    int used = 0;
    char text[64];
    if (v.len < sizeof text && memchr(v.data, '\0', v.len) == NULL) {
        memcpy(text, v.data, v.len);
        text[v.len] = '\0';
    } else {
        text[0] = '\0';
    }
    if (text[0] != '\0' &&
        sscanf(text, "%ld-%lld.%9ld-%llu%n", &pid, &sec, &nsec, &seq, &used) == 4 &&
        (size_t)used == v.len && pid > 0) {
        int64_t taken_ms = nori__sat_add(nori__sat_mul(sec, 1000), nsec / 1000000);
        int64_t now = nori__wall_ms();
        ok = taken_ms >= nori__sat_sub(now, nori__sat_mul(2, timeout_ms)) &&
             taken_ms <= nori__sat_add(now, timeout_ms);
    }
    nori_buf_free(&v);
    return ok;
}

/*
 * The cross-process half of coalescing, on a shared backend: a lease
 * "{key}:lock" (an entry key can never end so: ':' inside the query and
 * the vary values is escaped) taken with nori_backend_add (Redis: SET NX
 * PX) for lock_timeout_ms, holding a token unique to this call, released
 * by nori_backend_delete_if_equal (a script: only our own token). A holder
 * that dies leaves the lease to expire: nobody waits past lock_timeout.
 * Without the lease, this process waits until the holder's fill lands
 * (NORI__LEASE_SERVED, *resp filled), the lease goes away without an entry
 * (then it tries to take it), or lock_timeout passes (NORI__LEASE_NONE: run
 * the handler). It sleeps on the holder's mark where the backend has one
 * (woken when the fill ends; when the holder died, its lease is dropped and
 * taken over at once), and polls the entry otherwise (Redis: there is
 * nothing to wait on across processes: 5 ms doubling to 50 ms). A backend
 * error is NORI__LEASE_NONE too: fail open.
 */
nori__lease_result nori__http_remote_lease(nori_http_cache *c, nori_backend *b, const char *key,
                                           const nori_http_request *req, char *lease_key,
                                           char *token, nori_http_response *resp,
                                           nori__entry_meta *meta)
{
    if (!nori__http_lease_name(key, lease_key))
        return NORI__LEASE_NONE;
    nori__http_lease_token(token);
    int64_t deadline = nori__sat_add(nori__wall_ms(), c->lock_timeout_ms);
    int64_t pause = 5;
    bool judged = false;
    for (;;) {
        int added = 0;
        /* A failing lease is not counted here: the fill that follows meets
         * the same backend and counts its failure once (the backend's own
         * stats count every failed call). */
        if (nori_backend_add(b, lease_key, token, strlen(token), c->lock_timeout_ms, &added) !=
            NORI_OK)
            return NORI__LEASE_NONE;
        int64_t now = nori__wall_ms();
        /* Quiet: an undecodable entry was counted by the first lookup. */
        nori__lookup_result l = nori__http_lookup(c, b, key, req, resp, meta, now, true);
        if (l == NORI__LOOK_FRESH) {
            /* Filled meanwhile (maybe just before our lease): no run. */
            if (added)
                nori__http_lease_release(b, lease_key, token);
            return NORI__LEASE_SERVED;
        }
        nori_http_response_clear(resp);
        if (added) {
            nori__http_lease_mark(b, lease_key);
            return NORI__LEASE_HELD;
        }
        if (l == NORI__LOOK_ERROR || now >= deadline) {
            if (now >= deadline)
                count(&c->lock_timeouts);
            return NORI__LEASE_NONE;
        }
        /* Held by someone: once, check that it is a lease at all. */
        if (!judged) {
            judged = true;
            if (!lease_looks_genuine(b, lease_key, c->lock_timeout_ms)) {
                count(&c->errors); /* an undecodable lease, as an undecodable entry */
                return NORI__LEASE_NONE;
            }
        }
        int64_t left = deadline - now;
        int w = nori__backend_fill_wait(b, lease_key, left);
        if (w == NORI_EABORT)
            drop_dead_lease(b, lease_key);
        if (w != NORI_MISS)
            continue; /* the fill ended, its filler died, or time is up: look again */
        nori__sleep_ms(pause < left ? pause : left);
        if (pause < 50)
            pause *= 2;
    }
}
