// SPDX-License-Identifier: MIT
/*
 * nori-demo: an HTTP service that shows every feature of libnoricache's
 * response cache (docs/HTTP.md, "The demo service"), on libmicrohttpd (or FastCGI behind a web
 * server) and SQLite.
 *
 *   nori-demo [--port N] [--db PATH] [--prefix P] [--threads N]
 *             [--workers N] [--fastcgi HOST:PORT|/path.sock|-]
 *             [--max-conns N] [--max-conns-per-ip N] [--conn-timeout S]
 *
 * Listens on 127.0.0.1:8080 (--port or PORT), keeps its data in ./nori-demo.db
 * (created with 200k orders on first start), caches in the backend the
 * environment names (CACHE_BACKEND=memory|redis, REDIS_URL, CACHE_MAX_KEYS).
 * --prefix sets the key prefix (default "view"), so several runs can share
 * one Redis without seeing each other's entries; each cache of the demo
 * has its own prefix under it (P, P.greeting, P.me; counters P.login).
 * Stops cleanly on SIGINT or SIGTERM.
 *
 * --fastcgi ADDRESS serves the same routes as a FastCGI responder (nginx's
 * fastcgi_pass) instead of HTTP; "-" serves the socket a FastCGI process
 * manager passed as fd 0 (spawn-fcgi). --workers N runs N processes on one
 * listener that the parent opens (HTTP: SO_REUSEADDR + SO_REUSEPORT) and
 * they inherit: see demo_workers.c. Each worker builds its own backend,
 * database connection and caches after fork().
 *
 * The login throttle's counters live in a backend of their own, never in
 * the one that holds page entries: 10,000 requests for distinct pages
 * would otherwise evict them and reset the throttle. The throttle fails
 * closed: when the counter cannot be incremented, the login is refused
 * (503), not let through uncounted.
 */
#include "demo.h"
#include "nori/fcgi.h"
#include "nori/mhd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct demo_state demo = {.db_lock = PTHREAD_MUTEX_INITIALIZER};

/* What the command line asked for (read by every worker). */
static struct {
    int port;
    const char *db_path;
    const char *fastcgi; /* NULL = HTTP; "-" = the inherited socket */
    unsigned threads;    /* serving threads; 0 = one per CPU */
    unsigned workers;    /* 0 = serve in this process */
    /* Slowloris defence (see nori/mhd.h): without a per-address limit one
     * client holding 1020 half-sent requests starves everyone, and an idle
     * timeout alone does not stop a client that sends a byte every few
     * seconds. */
    unsigned max_conns, max_conns_ip, conn_timeout;
    int no_coalescing; /* benchmarks: behave like Nori's Python (no single-flight) */
    int test_routes;
} cfg = {8080, "./nori-demo.db", NULL, 0, 0, 1000, 256, 10, 0, 0};

/* MHD_OPTION_NOTIFY_CONNECTION: STARTED once a connection has been
 * accepted and admitted (per-address and total limits), CLOSED when it is
 * gone. Feeds the nori_demo_connections gauge. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)cls;
    (void)c;
    (void)socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&demo.connections, 1);
    else if (toe == MHD_CONNECTION_NOTIFY_CLOSED)
        atomic_fetch_sub(&demo.connections, 1);
}

/* ---------------------------------------------------------- one process */

static int make_caches(void)
{
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.ttl = 60;
    o.prefix = demo.prefix;
    o.backend = demo.backend;
    if (cfg.no_coalescing)
        o.lock_timeout_ms = 0;
    static const char *vary[] = {"Accept-Language"};
    nori_http_cache_options og = o, om = o;
    og.vary_on = vary;
    og.n_vary_on = 1;
    og.prefix = demo.greet_prefix;
    om.key_fn = demo_user_key;
    om.prefix = demo.me_prefix;
    static const char *user_headers[] = {"X-User"};
    om.refresh_headers = user_headers;
    om.n_refresh_headers = 1;
    nori_http_cache_options os = o;
    os.ttl = 1;
    os.stale_while_revalidate = 30;
    os.stale_if_error = 300;
    os.prefix = demo.stock_prefix;
    /* /dashboard/short: the dashboard cached 1 s with no stale window, so
     * that a benchmark sees an expiry every second under load. */
    nori_http_cache_options oshort = o;
    oshort.ttl = 1;
    oshort.prefix = demo.short_prefix;
    if (nori_http_cache_new(&o, &demo.main_cache) != NORI_OK ||
        nori_http_cache_new(&og, &demo.greet_cache) != NORI_OK ||
        nori_http_cache_new(&om, &demo.me_cache) != NORI_OK ||
        nori_http_cache_new(&os, &demo.stock_cache) != NORI_OK ||
        nori_http_cache_new(&oshort, &demo.short_cache) != NORI_OK) {
        fprintf(stderr, "nori-demo: %s\n", nori_last_error());
        return -1;
    }
    return 0;
}

static void free_all(void)
{
    nori_http_cache_free(demo.main_cache);
    nori_http_cache_free(demo.greet_cache);
    nori_http_cache_free(demo.me_cache);
    nori_http_cache_free(demo.stock_cache);
    nori_http_cache_free(demo.short_cache);
    demo_db_close();
    nori_backend_free(demo.counters);
    nori_backend_free(demo.backend);
}

static int wait_for_stop(void)
{
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    int sig = 0;
    sigwait(&stop, &sig);
    return sig;
}

/*
 * On a shared-memory segment the throttle's counters get a segment of
 * their own, "<CACHE_SHM_NAME>.counters" (every worker attaches to it): in
 * the pages' segment a flood of distinct pages would evict them.
 */
static int open_shm_counters(nori_backend **out)
{
    char name[NORI_SHM_NAME_MAX + 16];
    const char *base = getenv("CACHE_SHM_NAME");
    if (base != NULL)
        snprintf(name, sizeof name, "%.200s.counters", base);
    else
        snprintf(name, sizeof name, "nori-cache-%ld.counters", (long)geteuid());
    return nori_shm_backend_new(name, 100000, 16 << 20, out);
}

/*
 * Everything one serving process does: backend, database, caches, then
 * HTTP or FastCGI until SIGINT/SIGTERM. listen_fd: the listener inherited
 * from the --workers parent, or -1 (open our own). Returns the exit code.
 */
static int serve(int listen_fd, void *ud)
{
    (void)ud;
    const char *role = listen_fd >= 0 ? "worker" : "nori-demo";
    int rc = nori_backend_from_env(&demo.backend);
    if (rc != NORI_OK) {
        fprintf(stderr, "nori-demo: cache backend: %s: %s\n", nori_strerror(rc),
                nori_last_error());
        return 1;
    }
    /* Counters that enforce security get a backend of their own: on
     * memory a separate store (page entries cannot evict them); on Redis a
     * separate connection pool to the same server, whose keys have their
     * own prefix (see README: run such a Redis with a noeviction or
     * volatile-* policy, or use a separate instance). */
    if (strcmp(nori_backend_kind(demo.backend), "memory") == 0)
        rc = nori_memory_backend_new(100000, &demo.counters);
    else if (strcmp(nori_backend_kind(demo.backend), "shm") == 0)
        rc = open_shm_counters(&demo.counters);
    else
        rc = nori_backend_from_env(&demo.counters);
    if (rc != NORI_OK) {
        fprintf(stderr, "nori-demo: counter backend: %s: %s\n", nori_strerror(rc),
                nori_last_error());
        nori_backend_free(demo.backend);
        return 1;
    }
    snprintf(demo.greet_prefix, sizeof demo.greet_prefix, "%.100s.greeting", demo.prefix);
    snprintf(demo.me_prefix, sizeof demo.me_prefix, "%.100s.me", demo.prefix);
    snprintf(demo.login_prefix, sizeof demo.login_prefix, "%.100s.login", demo.prefix);
    snprintf(demo.stock_prefix, sizeof demo.stock_prefix, "%.100s.stock", demo.prefix);
    snprintf(demo.short_prefix, sizeof demo.short_prefix, "%.100s.short", demo.prefix);
    if (demo_db_open(cfg.db_path) < 0 || make_caches() < 0) {
        free_all();
        return 1;
    }
    nori_http_route routes[DEMO_MAX_ROUTES];
    size_t n_routes = demo_routes(routes, cfg.test_routes);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned threads = cfg.threads ? cfg.threads : ncpu > 0 ? (unsigned)ncpu : 1;

    if (cfg.fastcgi != NULL) {
        nori_fcgi_app app = {routes, n_routes, 64 * 1024};
        nori_fcgi_options o;
        nori_fcgi_options_init(&o);
        o.threads = threads;
        if (listen_fd >= 0)
            o.listen_fd = listen_fd;
        else if (strcmp(cfg.fastcgi, "-") != 0)
            o.address = cfg.fastcgi;
        rc = nori_fcgi_server_new(&app, &o, &demo.fcgi);
        if (rc != NORI_OK) {
            fprintf(stderr, "nori-demo: fastcgi: %s: %s\n", nori_strerror(rc),
                    nori_last_error());
            free_all();
            return 1;
        }
        printf("%s: pid %ld serving FastCGI on %s (backend %s, db %s, %u threads)\n", role,
               (long)getpid(), strcmp(cfg.fastcgi, "-") == 0 ? "fd 0" : cfg.fastcgi,
               nori_backend_kind(demo.backend), cfg.db_path, threads);
        fflush(stdout);
        int sig = wait_for_stop();
        printf("%s: pid %ld: signal %d, stopping\n", role, (long)getpid(), sig);
        nori_fcgi_server_free(demo.fcgi);
        demo.fcgi = NULL;
        free_all();
        return 0;
    }

    nori_mhd_app app = {routes, n_routes, 64 * 1024};
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)cfg.port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    if (listen_fd >= 0)
        d = MHD_start_daemon(
            flags, 0, NULL, NULL, nori_mhd_handler, &app, NORI_MHD_OPTIONS(&app),
            MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_THREAD_POOL_SIZE, threads,
            MHD_OPTION_CONNECTION_TIMEOUT, cfg.conn_timeout, MHD_OPTION_CONNECTION_LIMIT,
            cfg.max_conns, MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg.max_conns_ip,
            MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL, MHD_OPTION_END);
    else
        d = MHD_start_daemon(
            flags, (uint16_t)cfg.port, NULL, NULL, nori_mhd_handler, &app,
            NORI_MHD_OPTIONS(&app), MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_THREAD_POOL_SIZE,
            threads, MHD_OPTION_CONNECTION_TIMEOUT, cfg.conn_timeout,
            MHD_OPTION_CONNECTION_LIMIT, cfg.max_conns, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
            cfg.max_conns_ip, MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
            MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "nori-demo: cannot listen on 127.0.0.1:%d\n", cfg.port);
        free_all();
        return 1;
    }
    if (listen_fd >= 0)
        printf("worker: pid %ld serving http://127.0.0.1:%d (backend %s, %u threads)\n",
               (long)getpid(), cfg.port, nori_backend_kind(demo.backend), threads);
    else
        printf("nori-demo: listening on http://127.0.0.1:%d (backend %s, db %s, %u threads)\n",
               cfg.port, nori_backend_kind(demo.backend), cfg.db_path, threads);
    fflush(stdout);
    int sig = wait_for_stop();
    printf("%s: pid %ld: signal %d, stopping\n", role, (long)getpid(), sig);
    MHD_stop_daemon(d);
    free_all();
    return 0;
}

/* ------------------------------------------------------- --workers parent */

/* The HTTP listener the workers share: 127.0.0.1:port, non-blocking (the
 * workers' threads race for each connection), SO_REUSEPORT so that
 * another nori-demo can bind the port beside it during a restart. */
static int http_listener(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 1024) != 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

static int run_workers(void)
{
    /* The database is created (200k rows) once, here, before any worker
     * opens it; no connection crosses the fork. */
    if (demo_db_open(cfg.db_path) < 0) {
        demo_db_close();
        return 1;
    }
    demo_db_close();
    int fd;
    if (cfg.fastcgi == NULL) {
        if ((fd = http_listener(cfg.port)) < 0) {
            fprintf(stderr, "nori-demo: cannot listen on 127.0.0.1:%d: %s\n", cfg.port,
                    strerror(errno));
            return 1;
        }
        printf("nori-demo: listening on http://127.0.0.1:%d with %u workers\n", cfg.port,
               cfg.workers);
    } else if (strcmp(cfg.fastcgi, "-") == 0) {
        if (!nori_fcgi_inherited()) {
            fprintf(stderr, "nori-demo: --fastcgi -: fd 0 is not a listening socket\n");
            return 1;
        }
        fd = 0;
        printf("nori-demo: FastCGI on fd 0 with %u workers\n", cfg.workers);
    } else {
        int rc = nori_fcgi_listen(cfg.fastcgi, 1024, 0, &fd);
        if (rc != NORI_OK) {
            fprintf(stderr, "nori-demo: fastcgi: %s: %s\n", nori_strerror(rc),
                    nori_last_error());
            return 1;
        }
        printf("nori-demo: FastCGI on %s with %u workers\n", cfg.fastcgi, cfg.workers);
    }
    fflush(stdout);
    int rc = demo_run_workers(cfg.workers, fd, serve, NULL);
    if (fd != 0)
        close(fd);
    if (cfg.fastcgi != NULL && strchr(cfg.fastcgi, '/') != NULL)
        unlink(cfg.fastcgi);
    printf("nori-demo: stopped (%s)\n", rc == 0 ? "clean" : "not clean");
    return rc;
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *f)
{
    fputs("usage: nori-demo [--port N] [--db PATH] [--prefix P] [--threads N]\n"
          "                 [--workers N] [--fastcgi HOST:PORT|/path.sock|-]\n"
          "                 [--max-conns N] [--max-conns-per-ip N] [--conn-timeout S]\n"
          "  --port N    listen on 127.0.0.1:N (default: $PORT, else 8080)\n"
          "  --db PATH   SQLite database, created on first start (default ./nori-demo.db)\n"
          "  --prefix P  cache key prefix (default view)\n"
          "  --workers N           N worker processes on one listener (1..64); a worker\n"
          "                        that dies is replaced\n"
          "  --fastcgi ADDRESS     serve FastCGI instead of HTTP (nginx: fastcgi_pass),\n"
          "                        on HOST:PORT, a unix socket path, or - (fd 0, spawn-fcgi)\n"
          "  --threads N           serving threads per process (default: one per CPU)\n"
          "  --max-conns N         connections at once, all clients (default 1000)\n"
          "  --max-conns-per-ip N  connections at once from one address (default 256)\n"
          "  --conn-timeout S      close a connection idle for S seconds (default 10)\n"
          "  --no-coalescing       run the handler for every concurrent miss (benchmarks)\n"
          "  --test-routes         also serve /slow and /slow/runs (tests)\n"
          "Backend from the environment: CACHE_BACKEND=memory|redis, REDIS_URL, CACHE_MAX_KEYS.\n",
          f);
}

static int parse_uint(const char *s, long max, unsigned *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end != '\0' || end == s || v < 1 || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int parse_port(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end != '\0' || end == s || v < 1 || v > 65535)
        return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    demo.prefix = "view";
    const char *env_port = getenv("PORT");
    if (env_port != NULL && parse_port(env_port, &cfg.port) < 0) {
        fprintf(stderr, "nori-demo: PORT=%s is not a port number\n", env_port);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            if (parse_port(argv[++i], &cfg.port) < 0) {
                fprintf(stderr, "nori-demo: --port %s is not a port number\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
            cfg.db_path = argv[++i];
        } else if (strcmp(argv[i], "--prefix") == 0 && i + 1 < argc && argv[i + 1][0]) {
            demo.prefix = argv[++i];
        } else if (strcmp(argv[i], "--fastcgi") == 0 && i + 1 < argc && argv[i + 1][0]) {
            cfg.fastcgi = argv[++i];
        } else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
            if (parse_uint(argv[++i], 64, &cfg.workers) < 0) {
                fprintf(stderr, "nori-demo: --workers %s is not 1..64\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            if (parse_uint(argv[++i], 256, &cfg.threads) < 0) {
                fprintf(stderr, "nori-demo: --threads %s is not 1..256\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--no-coalescing") == 0) {
            cfg.no_coalescing = 1;
        } else if (strcmp(argv[i], "--test-routes") == 0) {
            cfg.test_routes = 1;
        } else if ((strcmp(argv[i], "--max-conns") == 0 ||
                    strcmp(argv[i], "--max-conns-per-ip") == 0 ||
                    strcmp(argv[i], "--conn-timeout") == 0) &&
                   i + 1 < argc) {
            unsigned *dst = strcmp(argv[i], "--conn-timeout") == 0 ? &cfg.conn_timeout
                            : strcmp(argv[i], "--max-conns") == 0  ? &cfg.max_conns
                                                                   : &cfg.max_conns_ip;
            if (parse_uint(argv[i + 1], 1000000, dst) < 0) {
                fprintf(stderr, "nori-demo: %s %s is not a positive integer\n", argv[i],
                        argv[i + 1]);
                return 2;
            }
            i++;
        } else {
            /* Name what was wrong: an unknown option, or a known one whose
             * value is missing (or empty where a value is required). */
            static const char *const with_value[] = {
                "--port", "--db", "--prefix", "--fastcgi", "--workers", "--threads",
                "--max-conns", "--max-conns-per-ip", "--conn-timeout"};
            const char *why = "unknown option";
            for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++)
                if (strcmp(argv[i], with_value[k]) == 0)
                    why = i + 1 < argc ? "needs a non-empty value" : "needs a value";
            fprintf(stderr, "nori-demo: %s: %s (try --help)\n", argv[i], why);
            return 2;
        }
    }

    /* Block the stop signals in every thread (the servers' threads inherit
     * this mask, and so do forked workers) and wait for them with sigwait
     * or sigtimedwait: no async handler. SIGCHLD too, for the --workers
     * parent. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (cfg.workers > 0)
        return run_workers();
    return serve(-1, NULL);
}
