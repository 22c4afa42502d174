// SPDX-License-Identifier: MIT
/*
 * End to end, as deployed: a real nginx (tests/support/nginx.h) with
 * fastcgi_pass to `nori-demo --workers 4 --fastcgi <unix socket>`, the
 * workers on the backend NORI_FCGI_BACKEND names (compiled in, one program
 * per backend; tests/fcgi/CMakeLists.txt):
 *   memory  one store per worker: what each worker does alone;
 *   redis   shared (a private redis-server the test starts): what the
 *           workers do together;
 *   other   CACHE_BACKEND=<name> for the workers (a backend shared by the
 *           processes of one machine), with the shared checks.
 * Checks: MISS then HIT, ETag, 304, HEAD, 405 through nginx, the binary
 * body byte for byte; 64 concurrent first requests for one page (shared:
 * one handler run in all; memory: at most one per worker); a POST through
 * one worker seen by all (shared); a worker SIGKILLed during a fill is
 * replaced and blocks nobody; the same demo as 4 HTTP workers
 * (--workers 4 without --fastcgi); spawn-fcgi + cgi-fcgi on fd 0 (the
 * inherited socket); a clean stop.
 * Handler runs are counted by the demo's test routes in its SQLite
 * database, which every worker shares (GET /slow/runs).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "demo_process.h"
#include "http_client.h"
#include "nginx.h"
#include "redis_server.h"
#include "test_support.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef NORI_FCGI_BACKEND
#define NORI_FCGI_BACKEND "memory"
#endif
#define WORKERS 4
/* Generous bounds: sanitizer builds on a loaded 2-core machine. */
#define START_TIMEOUT_MS 180000
#define BOUND_MS 20000

/* Set in main: the workers share one cache (not memory). */
static int shared;

static struct {
    char *dir;
    char sock[256], db[256], log[256], prefix[64];
    nori_test_redis *redis;
    pid_t demo; /* the --workers parent */
    nori_test_nginx *nginx;
} fx;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void print_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    if (f == NULL)
        return;
    fprintf(stderr, "---- %s ----\n", path);
    while (fgets(line, sizeof line, f) != NULL)
        fputs(line, stderr);
    fclose(f);
}

/* Lines of the demo's log that contain `what`. */
static int log_count(const char *what)
{
    FILE *f = fopen(fx.log, "r");
    char line[1024];
    int n = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        n += strstr(line, what) != NULL;
    if (f != NULL)
        fclose(f);
    return n;
}

/* The live children of the demo parent (its workers). */
static size_t workers(pid_t *out, size_t cap)
{
    int pids[16];
    size_t n = nori_test_children(fx.demo, NULL, pids, cap < 16 ? cap : 16);
    for (size_t i = 0; i < n; i++)
        out[i] = pids[i];
    return n;
}

/* Starts nori-demo with args (NULL-ended, after the common ones) and waits
 * until `ready` lines appear in its log. */
static pid_t start_demo(const char *const *args, const char *ready, int n_ready)
{
    static const char *exe = NORI_DEMO_EXE;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(fx.log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        const char *argv[32] = {exe, "--db", fx.db, "--prefix", fx.prefix, "--test-routes"};
        size_t n = 6;
        for (size_t i = 0; args[i] != NULL && n < 31; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    int64_t end = now_ms() + START_TIMEOUT_MS;
    while (log_count(ready) < n_ready) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            print_file(fx.log);
            fail_msg("nori-demo exited during startup (status %d)", status);
        }
        if (now_ms() > end) {
            print_file(fx.log);
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            fail_msg("nori-demo not ready within %d ms", START_TIMEOUT_MS);
        }
        sleep_ms(20);
    }
    return pid;
}

/* SIGTERM to the parent; its exit code (0 = every worker stopped cleanly,
 * sanitizer reports included), or -1 when it did not exit within the
 * bound (it is then SIGKILLed, and its workers with it). */
static int stop_demo(pid_t pid)
{
    kill(pid, SIGTERM);
    for (int64_t end = now_ms() + BOUND_MS; now_ms() < end; sleep_ms(20)) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    kill(pid, SIGKILL); /* its workers get SIGTERM (PR_SET_PDEATHSIG) */
    waitpid(pid, NULL, 0);
    return -1;
}

static int group_setup(void **state)
{
    (void)state;
    fx.dir = nori_test_mkdtemp();
    snprintf(fx.sock, sizeof fx.sock, "%s/fcgi.sock", fx.dir);
    snprintf(fx.db, sizeof fx.db, "%s/demo.db", fx.dir);
    snprintf(fx.log, sizeof fx.log, "%s/demo.log", fx.dir);
    snprintf(fx.prefix, sizeof fx.prefix, "fcgi%ld-%ld", (long)getpid(), (long)time(NULL));
    if (strcmp(NORI_FCGI_BACKEND, "redis") == 0) {
        fx.redis = nori_test_redis_start(NULL);
        setenv("CACHE_BACKEND", "redis", 1);
        setenv("REDIS_URL", fx.redis->url, 1);
    } else {
        setenv("CACHE_BACKEND", NORI_FCGI_BACKEND, 1);
        /* A backend named per machine (a shared-memory segment) gets a name
         * of this run's own; other backends ignore the variable. */
        char name[96];
        snprintf(name, sizeof name, "nori-test-%s", fx.prefix);
        setenv("CACHE_SHM_NAME", name, 1);
    }
    print_message("nginx + %d FastCGI workers on %s\n", WORKERS, NORI_FCGI_BACKEND);
    const char *args[] = {"--workers", "4", "--threads", "4", "--fastcgi", fx.sock, NULL};
    fx.demo = start_demo(args, "serving FastCGI", WORKERS);
    char upstream[300];
    snprintf(upstream, sizeof upstream, "unix:%s", fx.sock);
    fx.nginx = nori_test_nginx_start(upstream, 8);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    nori_test_nginx_stop(fx.nginx);
    if (fx.demo > 0)
        stop_demo(fx.demo);
    nori_test_redis_stop(fx.redis);
    if (strcmp(NORI_FCGI_BACKEND, "shm") == 0) {
        /* The workers' segments (pages, the throttle's counters). */
        char name[160];
        snprintf(name, sizeof name, "nori-test-%s", fx.prefix);
        (void)nori_shm_backend_unlink(name);
        snprintf(name, sizeof name, "nori-test-%s.counters", fx.prefix);
        (void)nori_shm_backend_unlink(name);
    }
    nori_test_rmtree(fx.dir);
    free(fx.dir);
    return 0;
}

/* A request through nginx, with a receive timeout of BOUND_MS (a fill may
 * wait for a dead worker's lease). 0, or -1 when no response came. */
static int through(const char *method, const char *target, const char *headers,
                   test_http_response *r)
{
    int fd = test_http_connect(fx.nginx->port);
    if (fd < 0)
        return -1;
    struct timeval tv = {BOUND_MS / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int rc = test_http_request(fd, method, target, headers, NULL, 0, r);
    close(fd);
    return rc;
}

static test_http_response get(const char *target, const char *headers)
{
    test_http_response r;
    if (through("GET", target, headers, &r) != 0) {
        nori_test_nginx_print_log(fx.nginx);
        print_file(fx.log);
        fail_msg("GET %s through nginx: no response", target);
    }
    return r;
}

static const char *hv(const test_http_response *r, const char *name)
{
    static char buf[512];
    return test_http_header(r, name, buf, sizeof buf);
}

/* GET target until the answer says X-Cache: HIT (memory: each worker
 * fills its own copy first). Returns the number of requests it took. */
static int until_hit(const char *target, test_http_response *out)
{
    for (int i = 1; i <= 40; i++) {
        *out = get(target, NULL);
        const char *x = hv(out, "X-Cache");
        if (x != NULL && strcmp(x, "HIT") == 0)
            return i;
        test_http_response_free(out);
    }
    fail_msg("%s: no HIT in 40 requests through nginx", target);
    return -1;
}

/* ------------------------------------------------------------------ tests */

static void test_rules_through_nginx(void **state)
{
    (void)state;
    test_http_response r = get("/report.pdf", NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(hv(&r, "X-Cache"), "MISS");
    test_http_response_free(&r);
    int n = until_hit("/report.pdf", &r);
    if (shared)
        assert_int_equal(n, 1); /* the fill is every worker's */
    /* The binary body byte for byte: "%PDF-1.4\n%", every byte value four
     * times, "\n%%EOF\n". */
    assert_int_equal(r.body_len, 10 + 1024 + 7);
    assert_memory_equal(r.body, "%PDF-1.4\n%", 10);
    for (int i = 0; i < 1024; i++)
        assert_int_equal((unsigned char)r.body[10 + i], i & 255);
    assert_memory_equal(r.body + 1034, "\n%%EOF\n", 7);
    assert_string_equal(hv(&r, "Content-Type"), "application/pdf");
    char etag[256];
    assert_non_null(hv(&r, "ETag"));
    snprintf(etag, sizeof etag, "%s", hv(&r, "ETag"));
    test_http_response_free(&r);

    /* HEAD from the GET entry: headers, no body. 304 on a matching ETag. */
    char cond[300];
    snprintf(cond, sizeof cond, "If-None-Match: %s\r\n", etag);
    int got_head = 0, got_304 = 0;
    for (int i = 0; i < 40 && !(got_head && got_304); i++) {
        assert_int_equal(through("HEAD", "/report.pdf", NULL, &r), 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_len, 0);
        assert_string_equal(hv(&r, "Content-Length"), "1041");
        got_head |= strcmp(hv(&r, "X-Cache"), "HIT") == 0;
        test_http_response_free(&r);
        r = get("/report.pdf", cond);
        if (r.status == 304) {
            got_304 = 1;
            assert_string_equal(hv(&r, "X-Cache"), "HIT");
            assert_string_equal(hv(&r, "ETag"), etag);
            assert_int_equal(r.body_len, 0);
        } else {
            assert_int_equal(r.status, 200); /* a worker without the entry yet */
            assert_false(shared);
        }
        test_http_response_free(&r);
    }
    assert_true(got_head && got_304);

    /* 405 + Allow, answered by the adapter: no X-Cache, no invalidation. */
    assert_int_equal(through("POST", "/report.pdf", NULL, &r), 0);
    assert_int_equal(r.status, 405);
    assert_string_equal(hv(&r, "Allow"), "GET, HEAD");
    assert_null(hv(&r, "X-Cache"));
    test_http_response_free(&r);
    if (shared) {
        r = get("/report.pdf", NULL);
        assert_string_equal(hv(&r, "X-Cache"), "HIT");
        test_http_response_free(&r);
    }
}

typedef struct {
    const char *target;
    pthread_barrier_t *start;
    test_http_response r;
    int rc;
} req_job;

static void *run_job(void *arg)
{
    req_job *j = arg;
    if (j->start != NULL)
        pthread_barrier_wait(j->start);
    j->rc = through("GET", j->target, NULL, &j->r);
    return NULL;
}

/* runs, version and pid of the last run of /slow?key= (GET /slow/runs). */
static void slow_runs(const char *key, long *runs, long *version, long *pid)
{
    char target[128];
    snprintf(target, sizeof target, "/slow/runs?key=%s", key);
    test_http_response r = get(target, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(sscanf(r.body, "runs %ld version %ld pid %ld", runs, version, pid), 3);
    test_http_response_free(&r);
}

static void test_64_concurrent_first_requests(void **state)
{
    (void)state;
    enum { N = 64 };
    static req_job jobs[N];
    pthread_t t[N];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N);
    const char *target = "/slow?key=k64&ms=300";
    for (int i = 0; i < N; i++) {
        jobs[i] = (req_job){target, &start, {0}, 0};
        assert_int_equal(pthread_create(&t[i], NULL, run_job, &jobs[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    long runs, version, pid;
    slow_runs("k64", &runs, &version, &pid);
    int same = 1;
    for (int i = 0; i < N; i++) {
        assert_int_equal(jobs[i].rc, 0);
        assert_int_equal(jobs[i].r.status, 200);
        same &= strcmp(jobs[i].r.body, jobs[0].r.body) == 0;
    }
    print_message("64 concurrent first requests: %ld handler run(s) on %s\n", runs,
                  NORI_FCGI_BACKEND);
    if (shared) {
        assert_int_equal(runs, 1); /* one run for all four workers */
        assert_true(same);         /* so every answer is that run's */
    } else {
        assert_true(runs >= 1 && runs <= WORKERS); /* at most one per worker */
    }
    for (int i = 0; i < N; i++)
        test_http_response_free(&jobs[i].r);
}

static void test_post_invalidates_for_all_workers(void **state)
{
    (void)state;
    /* Fill, then read it from many connections at once (spread over the
     * workers): on memory each worker then holds its own copy. */
    enum { N = 16 };
    req_job jobs[N];
    pthread_t t[N];
    const char *target = "/slow?key=kpost";
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            jobs[i] = (req_job){target, NULL, {0}, 0};
            pthread_create(&t[i], NULL, run_job, &jobs[i]);
        }
        for (int i = 0; i < N; i++) {
            pthread_join(t[i], NULL);
            assert_int_equal(jobs[i].rc, 0);
            assert_non_null(strstr(jobs[i].r.body, "\"version\":0"));
            test_http_response_free(&jobs[i].r);
        }
    }
    test_http_response r;
    assert_int_equal(through("POST", target, NULL, &r), 0);
    assert_int_equal(r.status, 201);
    test_http_response_free(&r);
    int stale = 0;
    for (int i = 0; i < N; i++) {
        jobs[i] = (req_job){target, NULL, {0}, 0};
        pthread_create(&t[i], NULL, run_job, &jobs[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(jobs[i].rc, 0);
        assert_int_equal(jobs[i].r.status, 200);
        stale += strstr(jobs[i].r.body, "\"version\":0") != NULL;
        test_http_response_free(&jobs[i].r);
    }
    print_message("after a POST through one worker: %d of %d answers still stale (%s)\n",
                  stale, N, NORI_FCGI_BACKEND);
    if (shared)
        assert_int_equal(stale, 0); /* invalidated for every worker */
}

static void test_worker_killed_during_fill(void **state)
{
    (void)state;
    pid_t before[16];
    assert_int_equal(workers(before, 16), WORKERS);
    int restarted = log_count("restarted as pid");
    /* A fill that lasts 2 s; find the worker running it, kill it. */
    req_job a = {"/slow?key=kkill&ms=2000", NULL, {0}, 0};
    pthread_t ta;
    pthread_create(&ta, NULL, run_job, &a);
    long runs = 0, version, pid = 0;
    for (int64_t end = now_ms() + BOUND_MS; runs < 1 && now_ms() < end; sleep_ms(20))
        slow_runs("kkill", &runs, &version, &pid);
    assert_int_equal(runs, 1);
    int ours = 0;
    for (int i = 0; i < WORKERS; i++)
        ours |= before[i] == pid;
    assert_true(ours);
    assert_int_equal(kill((pid_t)pid, SIGKILL), 0);
    int64_t t0 = now_ms();

    /* The same page again, and other pages, at once: nobody waits for the
     * dead worker beyond the fill lease (shared backends: lock_timeout,
     * 5 s) and the handler's own 2 s. */
    req_job b = {"/slow?key=kkill&ms=2000", NULL, {0}, 0};
    pthread_t tb;
    pthread_create(&tb, NULL, run_job, &b);
    for (int i = 0; i < 8; i++) {
        int64_t s = now_ms();
        test_http_response r = get("/hello", NULL);
        assert_int_equal(r.status, 200);
        test_http_response_free(&r);
        assert_true(now_ms() - s < BOUND_MS);
    }
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    /* The killed worker's client got nginx's error (or, had nginx retried
     * elsewhere, an answer); it was not left hanging. */
    assert_int_equal(a.rc, 0);
    print_message("the killed fill's client got %d; the next one %d after %lld ms\n",
                  a.r.status, b.r.status, (long long)(now_ms() - t0));
    assert_int_equal(b.rc, 0);
    assert_int_equal(b.r.status, 200);
    assert_null(strstr(b.r.body, "\"run\":1,")); /* not the dead worker's run */
    char pidstr[32];
    snprintf(pidstr, sizeof pidstr, "\"pid\":%ld}", pid);
    assert_null(strstr(b.r.body, pidstr));
    test_http_response_free(&a.r);
    test_http_response_free(&b.r);

    /* Replaced: four workers again, the dead one not among them. */
    pid_t after[16];
    size_t n = 0;
    for (int64_t end = now_ms() + BOUND_MS; now_ms() < end; sleep_ms(20)) {
        n = workers(after, 16);
        int dead_gone = 1;
        for (size_t i = 0; i < n; i++)
            dead_gone &= after[i] != (pid_t)pid;
        if (n == WORKERS && dead_gone && log_count("restarted as pid") > restarted)
            break;
    }
    assert_int_equal(n, WORKERS);
    assert_true(log_count("restarted as pid") > restarted);
}

static void test_http_workers(void **state)
{
    (void)state;
    /* nori-demo --workers 4 as an HTTP server (no nginx): one listener
     * shared by four processes. The database exists already. */
    int port = test_free_port();
    assert_true(port > 0);
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    const char *args[] = {"--workers", "4", "--threads", "2", "--port", ports, NULL};
    pid_t saved = fx.demo;
    int ready = log_count("serving http://");
    pid_t demo = fx.demo = start_demo(args, "serving http://", ready + WORKERS);
    test_http_response r;
    int hit = 0;
    for (int i = 0; i < 40 && !hit; i++) {
        assert_int_equal(test_http_once(port, "GET", "/dashboard", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        hit = strcmp(hv(&r, "X-Cache"), "HIT") == 0;
        if (shared && i == 1)
            assert_true(hit);
        test_http_response_free(&r);
    }
    assert_true(hit);
    assert_int_equal(test_http_once(port, "POST", "/dashboard", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 405);
    test_http_response_free(&r);
    /* A worker killed: the others answer at once, it is replaced. */
    pid_t w[16];
    assert_int_equal(workers(w, 16), WORKERS);
    int restarted = log_count("restarted as pid");
    kill(w[0], SIGKILL);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(test_http_once(port, "GET", "/hello", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        test_http_response_free(&r);
    }
    for (int64_t end = now_ms() + BOUND_MS;
         log_count("restarted as pid") == restarted && now_ms() < end; sleep_ms(20)) {
    }
    assert_true(log_count("restarted as pid") > restarted);
    assert_int_equal(stop_demo(demo), 0);
    fx.demo = saved;
}

static void test_spawn_fcgi_inherited_socket(void **state)
{
    (void)state;
    /* spawn-fcgi creates the socket and execs the demo with it as fd 0
     * (-n: in the foreground, same pid); cgi-fcgi is the FastCGI client. */
    if (access("/usr/bin/spawn-fcgi", X_OK) != 0 || access("/usr/bin/cgi-fcgi", X_OK) != 0)
        fail_msg("spawn-fcgi or cgi-fcgi missing: run scripts/setup.sh");
    char sock[300], out[300];
    snprintf(sock, sizeof sock, "%s/spawn.sock", fx.dir);
    snprintf(out, sizeof out, "%s/cgi-fcgi.out", fx.dir);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(fx.log, O_WRONLY | O_APPEND);
        dup2(fd, 1);
        dup2(fd, 2);
        execl("/usr/bin/spawn-fcgi", "spawn-fcgi", "-n", "-s", sock, "--", NORI_DEMO_EXE,
              "--db", fx.db, "--prefix", fx.prefix, "--threads", "2", "--fastcgi", "-",
              (char *)NULL);
        _exit(127);
    }
    pid_t saved = fx.demo;
    fx.demo = pid;
    int64_t end = now_ms() + START_TIMEOUT_MS;
    while (log_count("serving FastCGI on fd 0") < 1 && now_ms() < end)
        sleep_ms(20);
    assert_int_equal(log_count("serving FastCGI on fd 0"), 1);
    for (int i = 0; i < 2; i++) {
        fflush(NULL);
        pid_t c = fork();
        if (c == 0) {
            int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(fd, 1);
            int nul = open("/dev/null", O_RDONLY);
            dup2(nul, 0);
            setenv("REQUEST_METHOD", "GET", 1);
            setenv("SCRIPT_NAME", "/greeting", 1);
            setenv("QUERY_STRING", "", 1);
            setenv("HTTP_ACCEPT_LANGUAGE", "de", 1);
            execl("/usr/bin/cgi-fcgi", "cgi-fcgi", "-bind", "-connect", sock, (char *)NULL);
            _exit(127);
        }
        int status;
        assert_int_equal(waitpid(c, &status, 0), c);
        FILE *f = fopen(out, "r");
        char buf[2048];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        assert_non_null(strstr(buf, "Status: 200 OK\r\n"));
        assert_non_null(strstr(buf, "Hallo!\n"));
        assert_non_null(strstr(buf, i == 0 ? "X-Cache: MISS" : "X-Cache: HIT"));
    }
    kill(pid, SIGTERM);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    fx.demo = saved;
}

static void test_clean_stop(void **state)
{
    (void)state;
    pid_t w[16];
    size_t n = workers(w, 16);
    assert_int_equal(n, WORKERS);
    int code = stop_demo(fx.demo);
    if (code != 0)
        print_file(fx.log);
    assert_int_equal(code, 0);
    fx.demo = 0;
    for (size_t i = 0; i < n; i++)
        assert_true(kill(w[i], 0) != 0); /* every worker is gone */
    struct stat sb;
    assert_int_equal(lstat(fx.sock, &sb), -1); /* the parent removed the socket */
}

int main(void)
{
    shared = strcmp(NORI_FCGI_BACKEND, "memory") != 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_through_nginx),
        cmocka_unit_test(test_64_concurrent_first_requests),
        cmocka_unit_test(test_post_invalidates_for_all_workers),
        cmocka_unit_test(test_worker_killed_during_fill),
        cmocka_unit_test(test_http_workers),
        cmocka_unit_test(test_spawn_fcgi_inherited_socket),
        cmocka_unit_test(test_clean_stop),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
