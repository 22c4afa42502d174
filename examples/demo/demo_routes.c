// SPDX-License-Identifier: MIT
/*
 * nori-demo's handlers and its route table: the same routes whether it
 * serves HTTP (libmicrohttpd) or FastCGI (behind nginx).
 */
#include "demo.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define PAGE_SIZE 10
#define LOGIN_LIMIT 5
#define LOGIN_WINDOW 60
/* The longest sleep GET /slow?ms= accepts. */
#define SLOW_MAX_MS 10000

void demo_text_open(demo_text *t)
{
    t->data = NULL;
    t->len = 0;
    t->f = open_memstream(&t->data, &t->len);
}

int demo_text_finish(demo_text *t, nori_http_response *resp, const char *media_type)
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
    demo_text t;
    demo_text_open(&t);
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
    return demo_text_finish(&t, resp, "application/json");
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
    demo_text t;
    demo_text_open(&t);
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
    return demo_text_finish(&t, resp, "application/json");
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
/* Per-user scoping: each X-User gets its own cache slot; requests without
 * one are not cached at all. */
int demo_user_key(const nori_http_request *req, void *ud, char *out, size_t cap)
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

/* ------------------------------------------------------------ test routes */

/* The key= of a /slow request into out[cap]: 1..64 bytes of [A-Za-z0-9_-].
 * 0, or -1 (the caller answers 400). */
static int slow_key(const nori_http_request *req, char *out, size_t cap)
{
    const char *q = req->query != NULL ? req->query : "";
    if (nori_http_form_value(q, strlen(q), "key", out, cap) != NORI_OK || out[0] == '\0' ||
        strlen(out) > 64)
        return -1;
    for (const char *p = out; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return -1;
    return 0;
}

/*
 * GET /slow?key=K&ms=M (--test-routes): counts the run in the database
 * (every worker process shares the count), then sleeps M ms (0..10000)
 * and answers {"key","version","run","pid"}: which run of K this is and
 * which process ran it. A test starts fills that last long enough to kill
 * the process running one, and counts handler runs across processes.
 * POST /slow?key=K moves K's version (201), which invalidates every cached
 * /slow answer.
 */
static int slow(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)ud;
    char key[80], v[16];
    if (slow_key(req, key, sizeof key) < 0)
        return plain(resp, 400, "key= is required: 1..64 of [A-Za-z0-9_-]\n");
    if (strcmp(req->method, "POST") == 0) {
        pthread_mutex_lock(&demo.db_lock);
        atomic_fetch_add(&demo.db_queries, 1);
        sqlite3_bind_text(demo.slow_bump, 1, key, -1, SQLITE_TRANSIENT);
        int rc = sqlite3_step(demo.slow_bump);
        sqlite3_reset(demo.slow_bump);
        pthread_mutex_unlock(&demo.db_lock);
        return plain(resp, rc == SQLITE_DONE ? 201 : 500,
                     rc == SQLITE_DONE ? "version moved\n" : "database error\n");
    }
    long ms = 0;
    const char *q = req->query != NULL ? req->query : "";
    if (nori_http_form_value(q, strlen(q), "ms", v, sizeof v) == NORI_OK) {
        char *end;
        ms = strtol(v, &end, 10);
        if (*end != '\0' || ms < 0 || ms > SLOW_MAX_MS)
            return plain(resp, 400, "ms must be 0..10000\n");
    }
    pthread_mutex_lock(&demo.db_lock);
    atomic_fetch_add(&demo.db_queries, 1);
    sqlite3_bind_text(demo.slow_run, 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(demo.slow_run, 2, (sqlite3_int64)getpid());
    int64_t run = -1, version = -1;
    if (sqlite3_step(demo.slow_run) == SQLITE_ROW) {
        run = sqlite3_column_int64(demo.slow_run, 0);
        version = sqlite3_column_int64(demo.slow_run, 1);
    }
    sqlite3_reset(demo.slow_run);
    pthread_mutex_unlock(&demo.db_lock);
    if (run < 0)
        return plain(resp, 500, "database error\n");
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
    char body[256];
    snprintf(body, sizeof body,
             "{\"key\":\"%s\",\"version\":%" PRId64 ",\"run\":%" PRId64 ",\"pid\":%ld}\n", key,
             version, run, (long)getpid());
    int rc = nori_http_response_set_body(resp, body, strlen(body));
    return rc ? rc : nori_http_response_set_media_type(resp, "application/json");
}

/* GET /slow/runs?key=K (--test-routes, never cached): "runs R version V
 * pid P": how often /slow ran for K, and the process of the last run. */
static int slow_runs(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)ud;
    char key[80], body[128];
    if (slow_key(req, key, sizeof key) < 0)
        return plain(resp, 400, "key= is required: 1..64 of [A-Za-z0-9_-]\n");
    pthread_mutex_lock(&demo.db_lock);
    atomic_fetch_add(&demo.db_queries, 1);
    sqlite3_bind_text(demo.slow_get, 1, key, -1, SQLITE_TRANSIENT);
    int64_t runs = 0, version = 0, pid = 0;
    if (sqlite3_step(demo.slow_get) == SQLITE_ROW) {
        runs = sqlite3_column_int64(demo.slow_get, 0);
        version = sqlite3_column_int64(demo.slow_get, 1);
        pid = sqlite3_column_int64(demo.slow_get, 2);
    }
    sqlite3_reset(demo.slow_get);
    pthread_mutex_unlock(&demo.db_lock);
    snprintf(body, sizeof body, "runs %" PRId64 " version %" PRId64 " pid %" PRId64 "\n", runs,
             version, pid);
    return plain(resp, 200, body);
}

/* ------------------------------------------------------------ the routes */

size_t demo_routes(nori_http_route *routes, int test_routes)
{
    /* Each route declares the methods it serves; any other is answered 405
     * by the adapter before the handler and the cache, so a POST to
     * /dashboard cannot invalidate its entries. */
    enum { GET = NORI_HTTP_GET, POST = NORI_HTTP_POST };
    const nori_http_route all[] = {
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
        {"/metrics", demo_metrics, NULL, NULL, GET},
        {"/slow", slow, NULL, demo.main_cache, GET | POST},
        {"/slow/runs", slow_runs, NULL, NULL, GET},
    };
    size_t n = sizeof all / sizeof all[0];
    if (!test_routes)
        n -= 2; /* the test routes are the last two */
    memcpy(routes, all, n * sizeof all[0]);
    return n;
}
