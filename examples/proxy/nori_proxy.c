// SPDX-License-Identifier: MIT
/*
 * nori-proxy: a caching reverse proxy on libnoricache's response cache.
 *
 *   nori-proxy --listen [ADDR:]PORT --origin URL [options]   (see --help)
 *
 * Every request, any method, path and query, goes through one route of the
 * libmicrohttpd adapter (path NULL: any path; all methods) into
 * nori_http_cache_serve(); on a miss, and for whatever the cache does not
 * store, the handler forwards it to the origin with libcurl (upstream.c)
 * and the origin's status, headers and body come back as they were. The
 * cache's backend comes from the environment (nori_backend_from_env):
 * memory, Redis, Redis with a near cache; several proxies sharing one Redis
 * share their entries.
 *
 * Threads: by default libmicrohttpd runs one thread per connection, since
 * a miss blocks its thread for as long as the origin takes (up to
 * --timeout-ms): with a fixed pool, one slow origin response would hold up
 * every connection of its thread, hits included. --threads N selects a
 * pool of N threads instead (fewer threads; a slow miss delays the others
 * of its thread).
 *
 * The request path reaches the cache and the origin as the client sent it,
 * percent-escapes untouched (libmicrohttpd's unescaping is switched off):
 * "/a%2Fb" and "/a/b" are different resources to an origin, and a proxy
 * must not merge them.
 *
 * Stops cleanly on SIGINT or SIGTERM.
 */
#include "upstream.h"

#include "nori/cache.h"
#include "nori/http.h"
#include "nori/mhd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fputs(
        "usage: nori-proxy --listen [ADDR:]PORT --origin URL [options]\n"
        "A caching reverse proxy: requests go to the origin through libnoricache's\n"
        "response cache; the cache's backend comes from the environment.\n"
        "  --listen [ADDR:]PORT     listen on ADDR (IPv4, default 127.0.0.1) port PORT\n"
        "  --origin URL             the origin: http[s]://host[:port][/base-path]\n"
        "  --prefix P               cache key prefix (default proxy)\n"
        "  --ttl S                  the longest a stored response stays fresh, whatever\n"
        "                           the origin says (default 0: as the origin says)\n"
        "  --keep S                 how long a stale response with a validator is kept to\n"
        "                           be revalidated with a conditional request (default 3600)\n"
        "  --heuristic-percent P    freshness of a response that states none: P% of the\n"
        "                           time since its Last-Modified (default 10; 0: none)\n"
        "  --stale-while-revalidate S, --stale-if-error S\n"
        "                           serve stale entries while refreshing / when the origin\n"
        "                           fails, within S seconds of expiry (default 0; the\n"
        "                           origin's own directives of the same names count too)\n"
        "  --targeted-field NAME    a targeted cache-control field (RFC 9213), such as\n"
        "                           CDN-Cache-Control, that replaces Cache-Control for\n"
        "                           this cache when present (repeatable, priority order)\n"
        "  --threads N              a pool of N libmicrohttpd threads (default 0: one\n"
        "                           thread per connection)\n"
        "  --connect-timeout-ms MS  bound on connecting to the origin (default 5000)\n"
        "  --timeout-ms MS          bound on the whole origin exchange (default 30000);\n"
        "                           past it the answer is 504, an unreachable origin 502\n"
        "  --max-response-bytes N   larger origin bodies are answered 502 (default 67108864)\n"
        "  --max-request-bytes N    larger request bodies are answered 413 (default 1048576)\n"
        "  --max-conns N            client connections at once (default 1000)\n"
        "  --conn-timeout S         close a client connection idle for S seconds (default 30)\n"
        "  --preserve-host          send the client's Host to the origin and keep entries\n"
        "                           apart by Host (default: the origin URL's host, the\n"
        "                           client's in X-Forwarded-Host)\n"
        "  --bypass-cookie          requests with a Cookie bypass the cache (default: they\n"
        "                           use it, as RFC 9111 has it: an origin that answers per\n"
        "                           user says private, no-store or Vary: Cookie)\n"
        "  --allow-cookie           the default, kept for older command lines\n"
        "  --help                   this text\n"
        "Backend (environment): CACHE_BACKEND=memory|redis, REDIS_URL, CACHE_MAX_KEYS,\n"
        "CACHE_MAX_BYTES, CACHE_MAX_VALUE_BYTES, CACHE_NEAR_MAX_KEYS (Redis + near cache).\n"
        "Every response carries X-Cache: HIT, MISS or BYPASS.\n",
        f);
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end != '\0' || end == s || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* "PORT" or "ADDR:PORT" (IPv4). */
static int parse_listen(const char *s, struct sockaddr_in *addr)
{
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const char *colon = strrchr(s, ':');
    const char *port = s;
    if (colon != NULL) {
        char host[64];
        size_t n = (size_t)(colon - s);
        if (n == 0 || n >= sizeof host)
            return -1;
        memcpy(host, s, n);
        host[n] = '\0';
        if (inet_pton(AF_INET, host, &addr->sin_addr) != 1)
            return -1;
        port = colon + 1;
    }
    long p;
    if (parse_long(port, 1, 65535, &p) < 0)
        return -1;
    addr->sin_port = htons((uint16_t)p);
    return 0;
}

/* MHD_OPTION_UNESCAPE_CALLBACK that leaves the URL as received. */
static size_t keep_escapes(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

/* What the proxy's one route caches, and how (the command line's). */
typedef struct {
    const char *prefix;
    long ttl, keep, heuristic_percent, swr, sie;
    int preserve_host, allow_cookie;
    const char *targeted[8];
    size_t n_targeted;
} proxy_cache_config;

/* The options of the proxy's one route. The place where the cache's
 * behaviour for a proxy is decided: a shared cache by RFC 9111
 * (NORI_HTTP_RULES_RFC9111), with heuristic freshness of 10% of a
 * response's age since Last-Modified (RFC 9111 4.2.2's suggestion), stale
 * entries with validators kept an hour to be revalidated, and the origin's
 * freshness uncapped unless --ttl says otherwise. Requests with a Cookie
 * use the cache (allow_cookie), as RFC 9111, nginx and Squid have it: the
 * origin says which answers are one user's (private, no-store, Vary:
 * Cookie), and a response that sets a cookie is stored only when it states
 * its freshness; --bypass-cookie restores Varnish's builtin.vcl choice.
 * Authorization still bypasses (see nori/http.h). */
static void proxy_cache_options(nori_http_cache_options *o, nori_backend *backend,
                                const proxy_cache_config *pc)
{
    static const char *const by_host[] = {"Host"};
    nori_http_cache_options_init(o);
    o->backend = backend;
    o->prefix = pc->prefix;
    o->rules = NORI_HTTP_RULES_RFC9111;
    o->ttl = pc->ttl;
    o->keep = pc->keep;
    o->heuristic_percent = (unsigned)pc->heuristic_percent;
    o->stale_while_revalidate = pc->swr;
    o->stale_if_error = pc->sie;
    o->allow_cookie = pc->allow_cookie;
    o->targeted_fields = pc->n_targeted > 0 ? pc->targeted : NULL;
    o->n_targeted_fields = pc->n_targeted;
    if (pc->preserve_host) {
        /* The origin sees the client's Host, so its answer may depend on
         * it: entries are kept apart by Host (and say so with Vary). */
        o->vary_on = by_host;
        o->n_vary_on = 1;
    }
}

int main(int argc, char **argv)
{
    const char *listen_arg = NULL;
    proxy_upstream_config ucfg = {NULL, 5000, 30000, (size_t)64 * 1024 * 1024, 0};
    proxy_cache_config pc = {"proxy", 0, 3600, 10, 0, 0, 0, 1, {NULL}, 0};
    long threads = 0, max_request = 1024 * 1024, max_conns = 1000, conn_timeout = 30;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--preserve-host") == 0) {
            ucfg.preserve_host = 1;
            continue;
        } else if (strcmp(a, "--allow-cookie") == 0) {
            pc.allow_cookie = 1;
            continue;
        } else if (strcmp(a, "--bypass-cookie") == 0) {
            pc.allow_cookie = 0;
            continue;
        } else if (v == NULL) {
            fprintf(stderr, "nori-proxy: %s needs a value (or is unknown); see --help\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--listen") == 0) {
            listen_arg = v;
        } else if (strcmp(a, "--origin") == 0) {
            ucfg.origin = v;
        } else if (strcmp(a, "--prefix") == 0 && v[0] != '\0') {
            pc.prefix = v;
        } else if (strcmp(a, "--ttl") == 0 && parse_long(v, 0, NORI_MAX_TTL, &n) == 0) {
            pc.ttl = n;
        } else if (strcmp(a, "--keep") == 0 && parse_long(v, 0, NORI_MAX_TTL, &n) == 0) {
            pc.keep = n;
        } else if (strcmp(a, "--heuristic-percent") == 0 && parse_long(v, 0, 100, &n) == 0) {
            pc.heuristic_percent = n;
        } else if (strcmp(a, "--stale-while-revalidate") == 0 &&
                   parse_long(v, 0, NORI_MAX_TTL, &n) == 0) {
            pc.swr = n;
        } else if (strcmp(a, "--stale-if-error") == 0 &&
                   parse_long(v, 0, NORI_MAX_TTL, &n) == 0) {
            pc.sie = n;
        } else if (strcmp(a, "--targeted-field") == 0 &&
                   pc.n_targeted < sizeof pc.targeted / sizeof pc.targeted[0]) {
            pc.targeted[pc.n_targeted++] = v;
        } else if (strcmp(a, "--threads") == 0 && parse_long(v, 0, 1024, &n) == 0) {
            threads = n;
        } else if (strcmp(a, "--connect-timeout-ms") == 0 &&
                   parse_long(v, 1, 3600000, &n) == 0) {
            ucfg.connect_timeout_ms = n;
        } else if (strcmp(a, "--timeout-ms") == 0 && parse_long(v, 1, 3600000, &n) == 0) {
            ucfg.timeout_ms = n;
        } else if (strcmp(a, "--max-response-bytes") == 0 &&
                   parse_long(v, 1, LONG_MAX, &n) == 0) {
            ucfg.max_response_bytes = (size_t)n;
        } else if (strcmp(a, "--max-request-bytes") == 0 &&
                   parse_long(v, 1, LONG_MAX, &n) == 0) {
            max_request = n;
        } else if (strcmp(a, "--max-conns") == 0 && parse_long(v, 1, 1000000, &n) == 0) {
            max_conns = n;
        } else if (strcmp(a, "--conn-timeout") == 0 && parse_long(v, 1, 86400, &n) == 0) {
            conn_timeout = n;
        } else {
            fprintf(stderr, "nori-proxy: %s %s: unknown option or bad value; see --help\n", a,
                    v);
            return 2;
        }
    }
    struct sockaddr_in addr;
    if (listen_arg == NULL || ucfg.origin == NULL) {
        fprintf(stderr, "nori-proxy: --listen and --origin are required; see --help\n");
        return 2;
    }
    if (parse_listen(listen_arg, &addr) < 0) {
        fprintf(stderr, "nori-proxy: --listen %s is not [IPv4-ADDR:]PORT\n", listen_arg);
        return 2;
    }

    proxy_upstream *up = NULL;
    if (proxy_upstream_new(&ucfg, &up) < 0)
        return 1;
    nori_backend *backend = NULL;
    int rc = nori_backend_from_env(&backend);
    if (rc != NORI_OK) {
        fprintf(stderr, "nori-proxy: cache backend: %s: %s\n", nori_strerror(rc),
                nori_last_error());
        proxy_upstream_free(up);
        return 1;
    }
    nori_http_cache_options o;
    pc.preserve_host = ucfg.preserve_host;
    proxy_cache_options(&o, backend, &pc);
    nori_http_cache *cache = NULL;
    if (nori_http_cache_new(&o, &cache) != NORI_OK) {
        fprintf(stderr, "nori-proxy: %s\n", nori_last_error());
        nori_backend_free(backend);
        proxy_upstream_free(up);
        return 1;
    }
    const nori_mhd_route routes[] = {
        {NULL, proxy_upstream_handler, up, cache, NORI_HTTP_ANY_METHOD},
    };
    nori_mhd_app app = {routes, 1, (size_t)max_request};

    /* The stop signals are blocked in every thread (MHD's inherit the mask)
     * and taken in main with sigwait: no asynchronous handler. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    unsigned flags = MHD_USE_ERROR_LOG | MHD_USE_INTERNAL_POLLING_THREAD;
    flags |= threads == 0 ? MHD_USE_THREAD_PER_CONNECTION : MHD_USE_EPOLL;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, ntohs(addr.sin_port), NULL, NULL, nori_mhd_handler, &app,
        NORI_MHD_OPTIONS(&app), MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_UNESCAPE_CALLBACK,
        keep_escapes, NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned)max_conns,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)conn_timeout,
        threads > 0 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (unsigned)threads,
        MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "nori-proxy: cannot listen on %s\n", listen_arg);
        rc = 1;
    } else {
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &addr.sin_addr, ip, sizeof ip);
        printf("nori-proxy: listening on http://%s:%u, origin %s (Host %s), backend %s, %s\n",
               ip, ntohs(addr.sin_port), ucfg.origin,
               ucfg.preserve_host ? "the client's" : proxy_upstream_origin_host(up),
               nori_backend_kind(backend), threads ? "thread pool" : "thread per connection");
        fflush(stdout);
        int sig = 0;
        sigwait(&stop, &sig);
        printf("nori-proxy: signal %d, stopping\n", sig);
        fflush(stdout);
        MHD_stop_daemon(d); /* joins its threads: no handler runs past this */
        /* What the cache did, for whoever reads the log after a run. */
        nori_http_cache_stats st;
        nori_http_cache_get_stats(cache, &st);
        printf("nori-proxy: hits %llu, misses %llu, stores %llu, errors %llu, not stored "
               "(superseded %llu, too big %llu, not encodable %llu), revalidated %llu of %llu, "
               "invalidations %llu\n",
               (unsigned long long)st.hits, (unsigned long long)st.misses,
               (unsigned long long)st.stores, (unsigned long long)st.errors,
               (unsigned long long)st.superseded, (unsigned long long)st.too_big,
               (unsigned long long)st.not_encodable, (unsigned long long)st.revalidated,
               (unsigned long long)st.revalidations, (unsigned long long)st.invalidations);
        fflush(stdout);
        rc = 0;
    }
    nori_http_cache_free(cache); /* joins the refresh workers */
    nori_backend_free(backend);
    proxy_upstream_free(up);
    return rc;
}
