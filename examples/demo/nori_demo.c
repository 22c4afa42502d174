/*
 * nori-demo: an HTTP service that shows every feature of libnoricache's
 * response cache (DESIGN 6), on libmicrohttpd and SQLite.
 *
 *   nori-demo [--port N] [--db PATH] [--prefix P] [--max-conns N]
 *             [--max-conns-per-ip N] [--conn-timeout S]
 *
 * Listens on 127.0.0.1:8080 (--port or PORT), keeps its data in ./nori-demo.db
 * (created with 200k orders on first start), caches in the backend the
 * environment names (CACHE_BACKEND=memory|redis, REDIS_URL, CACHE_MAX_KEYS).
 * --prefix sets the key prefix (default "view"), so several runs can share
 * one Redis without seeing each other's entries; each cache of the demo
 * has its own prefix under it (P, P.greeting, P.me; counters P.login).
 * Stops cleanly on SIGINT or SIGTERM.
 *
 * The login throttle's counters live in a backend of their own, never in
 * the one that holds page entries: 10,000 requests for distinct pages
 * would otherwise evict them and reset the throttle. The throttle fails
 * closed: when the counter cannot be incremented, the login is refused
 * (503), not let through uncounted.
 */
#include "nori/cache.h"
#include "nori/http.h"
#include "nori/mhd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_ORDERS 200000
#define N_PRODUCTS 500
#define PAGE_SIZE 10
#define LOGIN_LIMIT 5
#define LOGIN_WINDOW 60

static struct {
    sqlite3 *db;
    sqlite3_stmt *dashboard, *products, *stock, *touch;
    _Atomic int db_down; /* POST /admin/db?state=down: simulated outage */
    _Atomic uint64_t stock_runs; /* per-process count of /stock handler runs */
    pthread_mutex_t db_lock; /* one connection, prepared statements reused */
    _Atomic uint64_t db_queries;
    _Atomic int64_t connections; /* open HTTP connections (MHD's notify callback) */
    nori_backend *backend;  /* page entries (the response caches) */
    nori_backend *counters; /* security counters: login throttle; never evicted by pages */
    const char *prefix;
    char greet_prefix[128], me_prefix[128], login_prefix[128], stock_prefix[128],
        short_prefix[128];
    nori_http_cache *main_cache, *greet_cache, *me_cache, *stock_cache, *short_cache;
} demo = {.db_lock = PTHREAD_MUTEX_INITIALIZER};

/* ------------------------------------------------------------- database */

static int exec(const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(demo.db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "nori-demo: sqlite: %s\n", err ? err : "error");
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

/* Creates and fills the tables on first start, in one transaction so that
 * startup takes well under a second. */
static int db_open(const char *path)
{
    if (sqlite3_open_v2(path, &demo.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        fprintf(stderr, "nori-demo: cannot open %s: %s\n", path, sqlite3_errmsg(demo.db));
        return -1;
    }
    sqlite3_stmt *st;
    int have = 0;
    if (sqlite3_prepare_v2(demo.db,
                           "SELECT count(*) FROM sqlite_master WHERE name = 'orders'", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        have = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (!have) {
        if (exec("BEGIN;"
                 "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                 " price_cents INTEGER NOT NULL);"
                 "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER NOT NULL,"
                 " product INTEGER NOT NULL, status TEXT NOT NULL,"
                 " amount_cents INTEGER NOT NULL, created INTEGER NOT NULL);") < 0)
            return -1;
        static const char *statuses[] = {"new", "paid", "shipped", "delivered", "refunded"};
        uint64_t x = 42; /* deterministic data: same database on every machine */
        sqlite3_stmt *ins;
        sqlite3_prepare_v2(demo.db, "INSERT INTO products VALUES (?, ?, ?)", -1, &ins, NULL);
        for (int i = 1; i <= N_PRODUCTS; i++) {
            char name[32];
            snprintf(name, sizeof name, "product %d", i);
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            sqlite3_bind_int(ins, 1, i);
            sqlite3_bind_text(ins, 2, name, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int(ins, 3, (int)(100 + (x >> 33) % 20000));
            sqlite3_step(ins);
            sqlite3_reset(ins);
        }
        sqlite3_finalize(ins);
        sqlite3_prepare_v2(demo.db, "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", -1, &ins,
                           NULL);
        for (int i = 1; i <= N_ORDERS; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            uint64_t r = x >> 16;
            sqlite3_bind_int(ins, 1, i);
            sqlite3_bind_int(ins, 2, (int)(r % 20000));
            sqlite3_bind_int(ins, 3, (int)(1 + (r >> 16) % N_PRODUCTS));
            sqlite3_bind_text(ins, 4, statuses[(r >> 28) % 5], -1, SQLITE_STATIC);
            sqlite3_bind_int(ins, 5, (int)(100 + (r >> 32) % 50000));
            sqlite3_bind_int64(ins, 6, 1700000000 + i * 60);
            if (sqlite3_step(ins) != SQLITE_DONE) {
                fprintf(stderr, "nori-demo: insert: %s\n", sqlite3_errmsg(demo.db));
                sqlite3_finalize(ins);
                return -1;
            }
            sqlite3_reset(ins);
        }
        sqlite3_finalize(ins);
        /* A covering index for the dashboard's GROUP BY: the aggregate then
         * reads the index only (about 20 ms for 200k rows instead of 80). */
        if (exec("CREATE INDEX orders_status ON orders(status, amount_cents);"
                 "COMMIT;") < 0)
            return -1;
    }
    if (sqlite3_prepare_v2(demo.db,
                           "SELECT status, count(*), sum(amount_cents), avg(amount_cents)"
                           " FROM orders GROUP BY status"
                           " ORDER BY status",
                           -1, &demo.dashboard, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(demo.db,
                           "SELECT id, name, price_cents FROM products ORDER BY id"
                           " LIMIT ? OFFSET ?",
                           -1, &demo.products, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(demo.db, "SELECT price_cents FROM products WHERE id = ?", -1,
                           &demo.stock, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(demo.db,
                           "UPDATE products SET price_cents = price_cents WHERE id = 1", -1,
                           &demo.touch, NULL) != SQLITE_OK) {
        fprintf(stderr, "nori-demo: prepare: %s\n", sqlite3_errmsg(demo.db));
        return -1;
    }
    return 0;
}

static void db_close(void)
{
    sqlite3_finalize(demo.dashboard);
    sqlite3_finalize(demo.products);
    sqlite3_finalize(demo.stock);
    sqlite3_finalize(demo.touch);
    sqlite3_close(demo.db);
}

/* ------------------------------------------------------------- handlers */

/* Bodies are built in an open_memstream buffer, then adopted by the
 * response (no copy). */
typedef struct {
    char *data;
    size_t len;
    FILE *f;
} text;

static void text_open(text *t)
{
    t->data = NULL;
    t->len = 0;
    t->f = open_memstream(&t->data, &t->len);
}

static int text_finish(text *t, nori_http_response *resp, const char *media_type)
{
    if (t->f == NULL || fclose(t->f) != 0) {
        free(t->data);
        return NORI_ENOMEM;
    }
    nori_http_response_take_body(resp, t->data, t->len);
    return nori_http_response_set_media_type(resp, media_type);
}

static int plain(nori_http_response *resp, int status, const char *body)
{
    resp->status = status;
    int rc = nori_http_response_set_body(resp, body, strlen(body));
    return rc ? rc : nori_http_response_set_media_type(resp, "text/plain; charset=utf-8");
}

/* The simulated outage (POST /admin/db?state=down): every handler that
 * needs the database answers 503, as a real one would with the database
 * gone. Returns 1 when the handler must stop there. */
static int db_unavailable(nori_http_response *resp, int *rc)
{
    if (!atomic_load(&demo.db_down))
        return 0;
    *rc = plain(resp, 503, "database unavailable\n");
    if (*rc == NORI_OK)
        *rc = nori_http_response_add_header(resp, "Retry-After", "5");
    return 1;
}

static int dashboard(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    (void)ud;
    int down_rc;
    if (db_unavailable(resp, &down_rc))
        return down_rc;
    text t;
    text_open(&t);
    if (t.f == NULL)
        return NORI_ENOMEM;
    fputs("{\"by_status\":[", t.f);
    pthread_mutex_lock(&demo.db_lock);
    atomic_fetch_add(&demo.db_queries, 1);
    int first = 1, rc;
    while ((rc = sqlite3_step(demo.dashboard)) == SQLITE_ROW) {
        fprintf(t.f,
                "%s{\"status\":\"%s\",\"orders\":%d,\"revenue_cents\":%lld,"
                "\"avg_cents\":%.2f}",
                first ? "" : ",", (const char *)sqlite3_column_text(demo.dashboard, 0),
                sqlite3_column_int(demo.dashboard, 1),
                (long long)sqlite3_column_int64(demo.dashboard, 2),
                sqlite3_column_double(demo.dashboard, 3));
        first = 0;
    }
    sqlite3_reset(demo.dashboard);
    pthread_mutex_unlock(&demo.db_lock);
    fputs("]}\n", t.f);
    if (rc != SQLITE_DONE) {
        fclose(t.f);
        free(t.data);
        return plain(resp, 500, "database error\n");
    }
    return text_finish(&t, resp, "application/json");
}

static int hello(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    (void)ud;
    return plain(resp, 200, "hello\n");
}

static int products(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)ud;
    int down_rc;
    if (db_unavailable(resp, &down_rc))
        return down_rc;
    if (strcmp(req->method, "POST") == 0) {
        /* A write: the response cache invalidates every cached
         * /products?... after its 201 (RFC 9111 4.4). */
        pthread_mutex_lock(&demo.db_lock);
        atomic_fetch_add(&demo.db_queries, 1);
        int rc = sqlite3_step(demo.touch);
        sqlite3_reset(demo.touch);
        pthread_mutex_unlock(&demo.db_lock);
        return plain(resp, rc == SQLITE_DONE ? 201 : 500,
                     rc == SQLITE_DONE ? "created\n" : "database error\n");
    }
    char v[32];
    long page = 1;
    const char *q = req->query != NULL ? req->query : "";
    if (nori_http_form_value(q, strlen(q), "page", v, sizeof v) == NORI_OK) {
        char *end;
        page = strtol(v, &end, 10);
        if (*end != '\0' || page < 1 || page > 1000000)
            return plain(resp, 400, "page must be a positive integer\n");
    }
    text t;
    text_open(&t);
    if (t.f == NULL)
        return NORI_ENOMEM;
    fprintf(t.f, "{\"page\":%ld,\"products\":[", page);
    pthread_mutex_lock(&demo.db_lock);
    atomic_fetch_add(&demo.db_queries, 1);
    sqlite3_bind_int(demo.products, 1, PAGE_SIZE);
    sqlite3_bind_int64(demo.products, 2, (sqlite3_int64)(page - 1) * PAGE_SIZE);
    int first = 1;
    while (sqlite3_step(demo.products) == SQLITE_ROW) {
        fprintf(t.f, "%s{\"id\":%d,\"name\":\"%s\",\"price_cents\":%d}", first ? "" : ",",
                sqlite3_column_int(demo.products, 0),
                (const char *)sqlite3_column_text(demo.products, 1),
                sqlite3_column_int(demo.products, 2));
        first = 0;
    }
    sqlite3_reset(demo.products);
    pthread_mutex_unlock(&demo.db_lock);
    fputs("]}\n", t.f);
    return text_finish(&t, resp, "application/json");
}

/* GET /stock?item=N: cached 1 s, stale_while_revalidate 30 s,
 * stale_if_error 300 s. Each run returns a different body (the run count),
 * so a test can tell a stale answer from a fresh one. */
static int stock(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)ud;
    int down_rc;
    if (db_unavailable(resp, &down_rc))
        return down_rc;
    char v[32];
    long item = 1;
    const char *q = req->query != NULL ? req->query : "";
    if (nori_http_form_value(q, strlen(q), "item", v, sizeof v) == NORI_OK) {
        char *end;
        item = strtol(v, &end, 10);
        if (*end != '\0' || item < 1 || item > N_PRODUCTS)
            return plain(resp, 400, "item must be 1..500\n");
    }
    pthread_mutex_lock(&demo.db_lock);
    atomic_fetch_add(&demo.db_queries, 1);
    sqlite3_bind_int64(demo.stock, 1, item);
    int price = sqlite3_step(demo.stock) == SQLITE_ROW ? sqlite3_column_int(demo.stock, 0) : -1;
    sqlite3_reset(demo.stock);
    pthread_mutex_unlock(&demo.db_lock);
    uint64_t run = atomic_fetch_add(&demo.stock_runs, 1) + 1;
    char body[128];
    snprintf(body, sizeof body, "{\"item\":%ld,\"price_cents\":%d,\"run\":%" PRIu64 ",\"pid\":%ld}\n",
             item, price, run, (long)getpid());
    int rc = nori_http_response_set_body(resp, body, strlen(body));
    return rc ? rc : nori_http_response_set_media_type(resp, "application/json");
}

/* POST /admin/db?state=down|up: switches the simulated database outage
 * (its route declares POST alone: other methods get the adapter's 405).
 * Loopback only: nori-demo listens on 127.0.0.1 alone, and a request that
 * came through a proxy (X-Forwarded-For) is refused. */
static int admin_db(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)ud;
    if (nori_http_request_header(req, "X-Forwarded-For") != NULL)
        return plain(resp, 403, "loopback only\n");
    char state[16];
    const char *q = req->query != NULL ? req->query : "";
    if (nori_http_form_value(q, strlen(q), "state", state, sizeof state) != NORI_OK &&
        nori_http_form_value(req->body, req->body_len, "state", state, sizeof state) != NORI_OK)
        return plain(resp, 400, "state=down|up is required\n");
    if (strcmp(state, "down") == 0)
        atomic_store(&demo.db_down, 1);
    else if (strcmp(state, "up") == 0)
        atomic_store(&demo.db_down, 0);
    else
        return plain(resp, 400, "state must be down or up\n");
    return plain(resp, 200, atomic_load(&demo.db_down) ? "database down\n" : "database up\n");
}

/* A "PDF" whose body holds every byte value, NULs included: it proves that
 * binary bodies round-trip through the cache byte for byte. */
static int report(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    (void)ud;
    static const char head[] = "%PDF-1.4\n%";
    static const char tail[] = "\n%%EOF\n";
    size_t len = sizeof head - 1 + 4 * 256 + sizeof tail - 1;
    char *b = malloc(len + 1);
    if (b == NULL)
        return NORI_ENOMEM;
    memcpy(b, head, sizeof head - 1);
    for (int i = 0; i < 4 * 256; i++)
        b[sizeof head - 1 + (size_t)i] = (char)(i & 255);
    memcpy(b + len - (sizeof tail - 1), tail, sizeof tail - 1);
    nori_http_response_take_body(resp, b, len);
    int rc = nori_http_response_set_media_type(resp, "application/pdf");
    return rc ? rc : nori_http_response_add_header(resp, "Content-Disposition",
                                                   "attachment; filename=\"report.pdf\"");
}

static int greeting(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)ud;
    static const struct {
        const char *lang, *text;
    } words[] = {{"fr", "Bonjour"}, {"de", "Hallo"}, {"es", "Hola"}, {"en", "Hello"}};
    const char *al = nori_http_request_header(req, "Accept-Language");
    size_t w = 3;
    for (size_t i = 0; al != NULL && i < 4; i++)
        if (strncasecmp(al, words[i].lang, 2) == 0)
            w = i;
    char body[64];
    snprintf(body, sizeof body, "%s!\n", words[w].text);
    int rc = plain(resp, 200, body);
    return rc ? rc : nori_http_response_add_header(resp, "Content-Language", words[w].lang);
}

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

/* Per-user scoping: each X-User gets its own cache slot; requests without
 * one are not cached at all. */
static int user_key(const nori_http_request *req, void *ud, char *out, size_t cap)
{
    (void)ud;
    const char *u = nori_http_request_header(req, "X-User");
    if (u == NULL || u[0] == '\0')
        return -1;
    return snprintf(out, cap, "user=%s", u);
}

static int me(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)ud;
    const char *u = nori_http_request_header(req, "X-User");
    char body[256];
    snprintf(body, sizeof body, "you are %.200s\n", u != NULL && u[0] ? u : "anonymous");
    return plain(resp, 200, body);
}

/* A cached route whose handler sets a cookie: the cache must never store
 * it (a stored Set-Cookie would hand one client's session to the next), so
 * every request runs the handler and gets its own session id. */
static int session(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    (void)ud;
    static _Atomic unsigned long next_id;
    unsigned long id = atomic_fetch_add(&next_id, 1) + 1;
    char body[64], cookie[64];
    snprintf(body, sizeof body, "session %lu\n", id);
    snprintf(cookie, sizeof cookie, "sid=%lu; Path=/; HttpOnly", id);
    int rc = plain(resp, 200, body);
    return rc ? rc : nori_http_response_add_header(resp, "Set-Cookie", cookie);
}

static int fail(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    (void)ud;
    return plain(resp, 500, "this route always fails, and is never cached\n");
}

/* POST /login (its route declares POST alone: other methods get the
 * adapter's 405). A login throttle: attempts per user counted with incr (TTL set on the
 * first attempt only, so the window is fixed), 429 from the 6th. */
static int login(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)ud;
    char user[128];
    const char *q = req->query != NULL ? req->query : "";
    if (nori_http_form_value(req->body, req->body_len, "user", user, sizeof user) != NORI_OK &&
        nori_http_form_value(q, strlen(q), "user", user, sizeof user) != NORI_OK)
        return plain(resp, 400, "user= is required (form body or query), up to 127 bytes\n");
    if (user[0] == '\0')
        return plain(resp, 400, "user= is empty\n");
    char key[NORI_MAX_KEY_LEN + 1];
    snprintf(key, sizeof key, "%s:%s:attempts", demo.login_prefix, user);
    int64_t n;
    int rc = nori_backend_incr(demo.counters, key, LOGIN_WINDOW, &n);
    if (rc != NORI_OK) {
        /* Fail closed: a throttle that lets attempts through when its
         * counter is unavailable is no throttle (an attacker only has to
         * make the backend fail). Unlike the response cache, which fails
         * open because a miss is only slower. */
        fprintf(stderr, "nori-demo: login counter: %s: %s\n", nori_strerror(rc),
                nori_last_error());
        rc = plain(resp, 503, "login temporarily unavailable, try again later\n");
        return rc ? rc : nori_http_response_add_header(resp, "Retry-After", "5");
    }
    char body[128];
    if (n > LOGIN_LIMIT) {
        snprintf(body, sizeof body, "too many attempts (%" PRId64 "), try again later\n", n);
        rc = plain(resp, 429, body);
        return rc ? rc : nori_http_response_add_header(resp, "Retry-After", "60");
    }
    snprintf(body, sizeof body, "attempt %" PRId64 " of %d\n", n, LOGIN_LIMIT);
    return plain(resp, 200, body);
}

static int metrics(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    (void)ud;
    nori_http_cache_stats sum, s;
    memset(&sum, 0, sizeof sum);
    nori_http_cache *caches[] = {demo.main_cache, demo.greet_cache, demo.me_cache,
                                 demo.stock_cache, demo.short_cache};
    for (int i = 0; i < 5; i++) {
        nori_http_cache_get_stats(caches[i], &s);
        sum.hits += s.hits;
        sum.misses += s.misses;
        sum.stores += s.stores;
        sum.errors += s.errors;
        sum.bypass_method += s.bypass_method;
        sum.bypass_authorization += s.bypass_authorization;
        sum.bypass_cookie += s.bypass_cookie;
        sum.not_encodable += s.not_encodable;
        sum.too_big += s.too_big;
        sum.unsendable += s.unsendable;
        sum.coalesced += s.coalesced;
        sum.lock_timeouts += s.lock_timeouts;
        sum.hit_for_miss += s.hit_for_miss;
        sum.stale_revalidate += s.stale_revalidate;
        sum.stale_error += s.stale_error;
        sum.refreshes += s.refreshes;
        sum.refreshes_dropped += s.refreshes_dropped;
        sum.not_modified += s.not_modified;
        sum.invalidations += s.invalidations;
        sum.memo_hits += s.memo_hits;
        sum.memo_bytes += s.memo_bytes;
    }
    nori_backend_stats b = {0};
    nori_backend_get_stats(demo.backend, &b);
    text t;
    text_open(&t);
    if (t.f == NULL)
        return NORI_ENOMEM;
#define METRIC(name, help, value)                                                           \
    fprintf(t.f, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %" PRIu64 "\n", \
            (uint64_t)(value))
    METRIC("nori_cache_hits_total", "Responses served from the cache.", sum.hits);
    METRIC("nori_cache_misses_total", "Cacheable requests the cache could not serve.",
           sum.misses);
    METRIC("nori_cache_stores_total", "Responses written to the cache.", sum.stores);
    METRIC("nori_cache_evictions_total", "Entries evicted by the memory backend's bound.",
           b.evictions);
    METRIC("nori_cache_errors_total", "Response-cache failures (served uncached).", sum.errors);
    METRIC("nori_backend_errors_total", "Backend calls that failed.", b.errors);
    METRIC("nori_db_queries_total", "Queries run against the database.",
           atomic_load(&demo.db_queries));
    /* A gauge: the connections libmicrohttpd has accepted and not yet
     * closed (this one included). Counted after MHD's connection limits
     * admitted them, so a test can wait until the connections it opened
     * are all held before it checks a limit. */
    fprintf(t.f,
            "# HELP nori_demo_connections Open HTTP connections, this one included.\n"
            "# TYPE nori_demo_connections gauge\nnori_demo_connections %" PRId64 "\n",
            atomic_load(&demo.connections));
    fputs("# HELP nori_cache_bypass_total Requests on cached routes that did not consult the"
          " cache, by reason.\n# TYPE nori_cache_bypass_total counter\n",
          t.f);
    fprintf(t.f, "nori_cache_bypass_total{reason=\"method\"} %" PRIu64 "\n", sum.bypass_method);
    fprintf(t.f, "nori_cache_bypass_total{reason=\"authorization\"} %" PRIu64 "\n",
            sum.bypass_authorization);
    fprintf(t.f, "nori_cache_bypass_total{reason=\"cookie\"} %" PRIu64 "\n", sum.bypass_cookie);
    fputs("# HELP nori_cache_not_stored_total Storable responses that were not stored, by"
          " reason.\n# TYPE nori_cache_not_stored_total counter\n",
          t.f);
    fprintf(t.f, "nori_cache_not_stored_total{reason=\"not_encodable\"} %" PRIu64 "\n",
            sum.not_encodable);
    fprintf(t.f, "nori_cache_not_stored_total{reason=\"too_big\"} %" PRIu64 "\n", sum.too_big);
    METRIC("nori_cache_unsendable_total", "Cache hits the adapter could not send (re-served).",
           sum.unsendable);
    METRIC("nori_cache_coalesced_total", "Requests served from another request's fill.",
           sum.coalesced);
    METRIC("nori_cache_lock_timeouts_total", "Waits for another fill that reached lock_timeout.",
           sum.lock_timeouts);
    METRIC("nori_cache_hit_for_miss_total",
           "Requests that skipped waiting: key remembered as unstorable.", sum.hit_for_miss);
    fputs("# HELP nori_cache_stale_total Answers from an expired entry, by reason.\n"
          "# TYPE nori_cache_stale_total counter\n",
          t.f);
    fprintf(t.f, "nori_cache_stale_total{reason=\"revalidate\"} %" PRIu64 "\n",
            sum.stale_revalidate);
    fprintf(t.f, "nori_cache_stale_total{reason=\"error\"} %" PRIu64 "\n", sum.stale_error);
    METRIC("nori_cache_background_refreshes_total", "Background refreshes run.", sum.refreshes);
    METRIC("nori_cache_background_refreshes_dropped_total",
           "Background refreshes not run (queue full, key changed).", sum.refreshes_dropped);
    METRIC("nori_cache_not_modified_total", "304 Not Modified answers.", sum.not_modified);
    METRIC("nori_cache_invalidations_total", "Path invalidations after successful writes.",
           sum.invalidations);
    METRIC("nori_cache_memo_hits_total",
           "Hits whose JSON entry was already decoded (same key, same bytes).", sum.memo_hits);
    fprintf(t.f, "# HELP nori_cache_memo_bytes Bytes held by the decoded-entry memo.\n"
                 "# TYPE nori_cache_memo_bytes gauge\nnori_cache_memo_bytes %" PRIu64 "\n",
            sum.memo_bytes);
    fprintf(t.f, "# HELP nori_cache_entries Entries held by the memory backend.\n"
                 "# TYPE nori_cache_entries gauge\nnori_cache_entries %" PRIu64 "\n",
            b.entries);
    fprintf(t.f, "# HELP nori_cache_bytes Bytes held by the memory backend (byte bound's count).\n"
                 "# TYPE nori_cache_bytes gauge\nnori_cache_bytes %" PRIu64 "\n",
            b.bytes);
    fprintf(t.f, "# HELP nori_cache_max_bytes The memory backend's byte bound (0: none).\n"
                 "# TYPE nori_cache_max_bytes gauge\nnori_cache_max_bytes %" PRIu64 "\n",
            b.max_bytes);
    fprintf(t.f, "# HELP nori_cache_expired_total Expired entries removed (on read or by the"
                 " sweeper).\n# TYPE nori_cache_expired_total counter\n"
                 "nori_cache_expired_total %" PRIu64 "\n",
            b.expired);
    fprintf(t.f, "# HELP nori_redis_circuit_state Redis circuit breaker: 0 closed, 1 open,"
                 " 2 half-open.\n# TYPE nori_redis_circuit_state gauge\n"
                 "nori_redis_circuit_state %" PRIu64 "\n",
            b.circuit_state);
    METRIC("nori_redis_circuit_opens_total", "Times the Redis circuit breaker opened.",
           b.circuit_opens);
    METRIC("nori_redis_circuit_rejected_total", "Calls failed fast while the circuit was open.",
           b.circuit_rejected);
    METRIC("nori_redis_timeouts_total", "Redis commands and connects that ran out of time.",
           b.timeouts);
    nori_near_stats near;
    if (nori_backend_get_near_stats(demo.backend, &near) == NORI_OK) {
        METRIC("nori_near_hits_total", "Gets served by the near cache.", near.hits);
        METRIC("nori_near_misses_total", "Gets the near cache sent to Redis.", near.misses);
        METRIC("nori_near_invalidations_total", "Keys named by Redis invalidation messages.",
               near.invalidations);
        METRIC("nori_near_evictions_total", "Local copies dropped by the near cache's bounds.",
               near.evictions);
        fputs("# HELP nori_near_flushes_total Near cache emptied, by cause.\n"
              "# TYPE nori_near_flushes_total counter\n",
              t.f);
        const struct {
            const char *cause;
            uint64_t n;
        } flushes[] = {{"own", near.flushes_own},
                       {"server", near.flushes_server},
                       {"listener_lost", near.flushes_listener_lost},
                       {"heartbeat", near.flushes_heartbeat},
                       {"tracking_lost", near.flushes_tracking_lost},
                       {"topology", near.flushes_topology}};
        for (size_t i = 0; i < sizeof flushes / sizeof *flushes; i++)
            fprintf(t.f, "nori_near_flushes_total{cause=\"%s\"} %" PRIu64 "\n",
                    flushes[i].cause, flushes[i].n);
        fprintf(t.f, "# HELP nori_near_entries Local copies held by the near cache.\n"
                     "# TYPE nori_near_entries gauge\nnori_near_entries %" PRIu64 "\n"
                     "# HELP nori_near_bytes Bytes held by the near cache.\n"
                     "# TYPE nori_near_bytes gauge\nnori_near_bytes %" PRIu64 "\n"
                     "# HELP nori_near_active 1 while Redis tracking is proved.\n"
                     "# TYPE nori_near_active gauge\nnori_near_active %d\n",
                near.entries, near.bytes, near.active);
    }
    fprintf(t.f, "# HELP nori_backend_info The configured backend.\n"
                 "# TYPE nori_backend_info gauge\nnori_backend_info{kind=\"%s\"} 1\n",
            nori_backend_kind(demo.backend));
    return text_finish(&t, resp, "text/plain; version=0.0.4");
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *f)
{
    fputs("usage: nori-demo [--port N] [--db PATH] [--prefix P] [--max-conns N]\n"
          "                 [--max-conns-per-ip N] [--conn-timeout S]\n"
          "  --port N    listen on 127.0.0.1:N (default: $PORT, else 8080)\n"
          "  --db PATH   SQLite database, created on first start (default ./nori-demo.db)\n"
          "  --prefix P  cache key prefix (default view)\n"
          "  --max-conns N         connections at once, all clients (default 1000)\n"
          "  --max-conns-per-ip N  connections at once from one address (default 256)\n"
          "  --conn-timeout S      close a connection idle for S seconds (default 10)\n"
          "  --no-coalescing       run the handler for every concurrent miss (benchmarks)\n"
          "  --threads N           libmicrohttpd worker threads (default: one per CPU)\n"
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
    int port = 8080;
    /* Slowloris defence (issue 10 item 18; see nori/mhd.h): without a
     * per-address limit one client holding 1020 half-sent requests starves
     * everyone, and an idle timeout alone does not stop a client that sends
     * a byte every few seconds. */
    unsigned max_conns = 1000, max_conns_ip = 256, conn_timeout = 10;
    int no_coalescing = 0; /* benchmarks: behave like Nori's Python (no single-flight) */
    unsigned threads = 0;  /* MHD worker threads; 0 = one per CPU */
    const char *db_path = "./nori-demo.db";
    demo.prefix = "view";
    const char *env_port = getenv("PORT");
    if (env_port != NULL && parse_port(env_port, &port) < 0) {
        fprintf(stderr, "nori-demo: PORT=%s is not a port number\n", env_port);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            if (parse_port(argv[++i], &port) < 0) {
                fprintf(stderr, "nori-demo: --port %s is not a port number\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
            db_path = argv[++i];
        } else if (strcmp(argv[i], "--prefix") == 0 && i + 1 < argc && argv[i + 1][0]) {
            demo.prefix = argv[++i];
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            if (parse_uint(argv[++i], 256, &threads) < 0) {
                fprintf(stderr, "nori-demo: --threads %s is not 1..256\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--no-coalescing") == 0) {
            no_coalescing = 1;
        } else if ((strcmp(argv[i], "--max-conns") == 0 ||
                    strcmp(argv[i], "--max-conns-per-ip") == 0 ||
                    strcmp(argv[i], "--conn-timeout") == 0) &&
                   i + 1 < argc) {
            unsigned *dst = strcmp(argv[i], "--conn-timeout") == 0 ? &conn_timeout
                            : strcmp(argv[i], "--max-conns") == 0  ? &max_conns
                                                                   : &max_conns_ip;
            if (parse_uint(argv[i + 1], 1000000, dst) < 0) {
                fprintf(stderr, "nori-demo: %s %s is not a positive integer\n", argv[i],
                        argv[i + 1]);
                return 2;
            }
            i++;
        } else {
            usage(stderr);
            return 2;
        }
    }

    int rc = nori_backend_from_env(&demo.backend);
    if (rc != NORI_OK) {
        fprintf(stderr, "nori-demo: cache backend: %s: %s\n", nori_strerror(rc), nori_last_error());
        return 1;
    }
    /* Counters that enforce security get a backend of their own: on
     * memory a separate store (page entries cannot evict them); on Redis a
     * separate connection pool to the same server, whose keys have their
     * own prefix (see README: run such a Redis with a noeviction or
     * volatile-* policy, or use a separate instance). */
    if (strcmp(nori_backend_kind(demo.backend), "memory") == 0)
        rc = nori_memory_backend_new(100000, &demo.counters);
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
    if (db_open(db_path) < 0) {
        db_close();
        nori_backend_free(demo.counters);
        nori_backend_free(demo.backend);
        return 1;
    }

    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.ttl = 60;
    o.prefix = demo.prefix;
    o.backend = demo.backend;
    if (no_coalescing)
        o.lock_timeout_ms = 0;
    const char *vary[] = {"Accept-Language"};
    nori_http_cache_options og = o, om = o;
    og.vary_on = vary;
    og.n_vary_on = 1;
    og.prefix = demo.greet_prefix;
    om.key_fn = user_key;
    om.prefix = demo.me_prefix;
    const char *user_headers[] = {"X-User"};
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
    snprintf(demo.short_prefix, sizeof demo.short_prefix, "%.100s.short", demo.prefix);
    oshort.prefix = demo.short_prefix;
    if (nori_http_cache_new(&o, &demo.main_cache) != NORI_OK ||
        nori_http_cache_new(&og, &demo.greet_cache) != NORI_OK ||
        nori_http_cache_new(&om, &demo.me_cache) != NORI_OK ||
        nori_http_cache_new(&os, &demo.stock_cache) != NORI_OK ||
        nori_http_cache_new(&oshort, &demo.short_cache) != NORI_OK) {
        fprintf(stderr, "nori-demo: %s\n", nori_last_error());
        return 1;
    }

    /* Each route declares the methods it serves; any other is answered 405
     * by the adapter before the handler and the cache, so a POST to
     * /dashboard cannot invalidate its entries. */
    enum { GET = NORI_HTTP_GET, POST = NORI_HTTP_POST };
    const nori_mhd_route routes[] = {
        {"/dashboard", dashboard, NULL, demo.main_cache, GET},
        {"/dashboard/uncached", dashboard, NULL, NULL, GET},
        {"/dashboard/short", dashboard, NULL, demo.short_cache, GET},
        {"/hello", hello, NULL, NULL, GET},
        {"/products", products, NULL, demo.main_cache, GET | POST},
        {"/report.pdf", report, NULL, demo.main_cache, GET},
        {"/greeting", greeting, NULL, demo.greet_cache, GET},
        {"/me", me, NULL, demo.me_cache, GET},
        {"/fail", fail, NULL, demo.main_cache, GET},
        {"/session", session, NULL, demo.main_cache, GET},
        {"/login", login, NULL, NULL, POST},
        {"/stock", stock, NULL, demo.stock_cache, GET},
        {"/admin/db", admin_db, NULL, NULL, POST},
        {"/metrics", metrics, NULL, NULL, GET},
    };
    nori_mhd_app app = {routes, sizeof routes / sizeof routes[0], 64 * 1024};

    /* Block the stop signals in every thread (MHD's threads inherit this
     * mask) and wait for them in main with sigwait: no async handler. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (threads == 0)
        threads = ncpu > 0 ? (unsigned)ncpu : 1;
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL,
        nori_mhd_handler, &app, NORI_MHD_OPTIONS(&app), MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_TIMEOUT, conn_timeout,
        MHD_OPTION_CONNECTION_LIMIT, max_conns, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        max_conns_ip, MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "nori-demo: cannot listen on 127.0.0.1:%d\n", port);
        rc = 1;
    } else {
        printf("nori-demo: listening on http://127.0.0.1:%d (backend %s, db %s, %u threads)\n",
               port, nori_backend_kind(demo.backend), db_path, threads);
        fflush(stdout);
        int sig = 0;
        sigwait(&stop, &sig);
        printf("nori-demo: signal %d, stopping\n", sig);
        MHD_stop_daemon(d);
        rc = 0;
    }
    nori_http_cache_free(demo.main_cache);
    nori_http_cache_free(demo.greet_cache);
    nori_http_cache_free(demo.me_cache);
    nori_http_cache_free(demo.stock_cache);
    nori_http_cache_free(demo.short_cache);
    db_close();
    nori_backend_free(demo.counters);
    nori_backend_free(demo.backend);
    return rc;
}
