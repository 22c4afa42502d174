// SPDX-License-Identifier: MIT
/*
 * Host names resolved within a deadline, and TCP connects bounded as a
 * whole.
 *
 * hiredis resolves a host name with getaddrinfo() inside
 * redisConnectWithTimeout, on the calling thread and without a bound: the
 * connect timeout starts only after it. A slow or unreachable DNS server
 * (a container's embedded resolver under load, a resolv.conf naming a dead
 * server: glibc waits 5 s per try, 2 tries, per address family) then held
 * every call that opened a connection to redis://redis:6379 for 10 s or
 * more, whatever connect_timeout_ms said.
 *
 * So names are resolved here: the lookup runs in a thread of its own, the
 * caller waits for it no longer than its deadline, and hiredis is handed a
 * numeric address (for which getaddrinfo makes no lookup). Messages keep
 * naming the host as the URL does.
 *
 *  - One lookup per name at a time: a caller that needs a name while a
 *    lookup of it is in flight waits for that one, so a stalled resolver
 *    costs one thread per name, not one per call.
 *  - The last answer for each name (NORI_RESOLVE_NAMES names) is kept. A
 *    caller always waits for a fresh lookup first; only when that one does
 *    not finish in time (half the caller's time when there is a last answer
 *    to fall back on, leaving the other half to connect), or fails for a
 *    temporary reason (EAI_AGAIN: the servers did not answer), does it take
 *    the last answer, if that is younger than NORI_RESOLVE_STALE_MS
 *    (serve-stale, as RFC 8767 lets DNS resolvers do): a resolver slower
 *    than connect_timeout_ms still lets connections be made, and one that
 *    stalls fails calls within the bound once its last answer is too old
 *    (at once when there is none).
 *  - hiredis's order: the IPv4 addresses, or the IPv6 ones when the name
 *    has no IPv4 address; each is tried in turn until one connects.
 *  - fork(): the child forgets the lookups in flight (their threads are not
 *    in it) and starts its own.
 *
 * Thread-safe.
 */
#ifndef NORI_SRC_REDIS_WIRE_RESOLVE_H
#define NORI_SRC_REDIS_WIRE_RESOLVE_H

#include <hiredis/hiredis.h>
#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Names whose last answer is kept; past it the least recently used name
 * without a lookup in flight is forgotten. */
#define NORI_RESOLVE_NAMES 64
/* Most addresses kept of one answer. */
#define NORI_RESOLVE_MAX_ADDRS 8
/* How old a kept answer may be to serve a caller whose fresh lookup did
 * not finish in time. */
#define NORI_RESOLVE_STALE_MS 60000

/*
 * Connects to host:port over TCP, the lookup of a host name and the
 * connects together within timeout_ms. Returns a connected hiredis context
 * (c->err == 0, blocking, as redisConnectWithTimeout leaves it), or NULL
 * with `why` filled (never longer than why_size; "resolving 'h' took longer
 * than 300 ms (connect_timeout_ms)", "cannot resolve 'h': Name or service
 * not known", hiredis's "Connection refused", "out of memory", ...) and
 * *timed_out set when the time ran out (a lookup or a connect), clear when
 * something answered no.
 */
redisContext *nori__redis_connect_tcp(const char *host, int port, int timeout_ms, char *why,
                                      size_t why_size, bool *timed_out);

/*
 * The same, for a caller that waits for several sockets at once (the
 * sentinel watch): the lookup as above (bounded by timeout_ms; it blocks
 * the caller that long at most), then a connect to the first address,
 * started without waiting. Returns the context, its socket connecting
 * (hiredis marks it connected already): wait until it is writable, then
 * call nori__redis_connect_finish. NULL with why / *timed_out as above.
 */
redisContext *nori__redis_connect_start(const char *host, int port, int timeout_ms, char *why,
                                        size_t why_size, bool *timed_out);

/* After c's socket became writable: 0 when its connect succeeded, -1 with
 * why filled when it failed (c is then to be freed). */
int nori__redis_connect_finish(redisContext *c, char *why, size_t why_size);

/* ---- for tests ---- */

/* The function a lookup thread calls in place of getaddrinfo(3) (same
 * contract; its result is released with freeaddrinfo). NULL: getaddrinfo.
 * Set before the lookups it is meant for start; a lookup in flight keeps the
 * function it started with. */
typedef int (*nori__getaddrinfo_fn)(const char *node, const char *service,
                                    const struct addrinfo *hints, struct addrinfo **res);
void nori__resolve_set_hook(nori__getaddrinfo_fn fn);

/* Lookups started since the process started (numeric addresses make none). */
uint64_t nori__resolve_lookups(void);

/* Forgets every kept answer (lookups in flight go on). */
void nori__resolve_forget(void);

#endif
