// SPDX-License-Identifier: MIT
/*
 * Hot-key reads, side by side in one run, 1 and 8 threads: the Redis backend
 * with its near cache (nori_backend_get served locally), the memory
 * backend's get, the plain Redis backend's get, and the near cache store
 * alone (nori__near_get: what the backend adds on top is its argument checks
 * and dispatch). The phases are interleaved over ROUNDS rounds of SECONDS
 * seconds each and the best round of each is kept, so that a burst of
 * other load on the machine hits every variant alike; ratios are what count.
 *
 * Usage: bench_near [REDIS_URL] [SECONDS] [ROUNDS]   (defaults 0.3 s, 5
 * rounds; no URL or "-": only the store and the memory backend)
 */
#include "redis/near/near.h"

#include <nori/cache.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { KIND_NEAR, KIND_BACKEND };

typedef struct {
    int kind;
    nori__near *near;
    nori_backend *b;
    double seconds;
    long ops;
    long failures;
} job;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
    job *j = arg;
    double end = now_s() + j->seconds;
    long ops = 0;
    for (;;) {
        for (int i = 0; i < 256; i++) {
            nori_buf v;
            int rc = j->kind == KIND_NEAR ? nori__near_get(j->near, "hot", 3, &v)
                                          : nori_backend_get(j->b, "hot", &v);
            if (rc != NORI_OK)
                j->failures++;
            nori_buf_free(&v);
        }
        ops += 256;
        if (now_s() >= end)
            break;
    }
    j->ops = ops;
    return NULL;
}

static double phase(const char *name, int kind, nori__near *near, nori_backend *b, int threads,
                    double seconds)
{
    pthread_t t[64];
    job jobs[64];
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        jobs[i] = (job){.kind = kind, .near = near, .b = b, .seconds = seconds};
        pthread_create(&t[i], NULL, run, &jobs[i]);
    }
    long ops = 0, failures = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        ops += jobs[i].ops;
        failures += jobs[i].failures;
    }
    double rate = (double)ops / (now_s() - t0);
    if (failures != 0)
        printf("%s, %d threads: %ld FAILURES\n", name, threads, failures);
    return rate;
}

int main(int argc, char **argv)
{
    const char *url = argc > 1 && strcmp(argv[1], "-") != 0 ? argv[1] : NULL;
    double seconds = argc > 2 ? atof(argv[2]) : 0.3;
    if (seconds <= 0)
        seconds = 0.3;
    int rounds = argc > 3 ? atoi(argv[3]) : 5;
    if (rounds <= 0)
        rounds = 5;
    const char value[] = "{\"total\": 12345, \"orders\": 678}"; /* a small cached value */

    nori__near_limits lim = {10000, 0, 0};
    nori__near *near;
    if (nori__near_new(&lim, &near) != NORI_OK)
        return 1;
    nori__near_set_active(near, true, NORI__NEAR_FLUSH_OWN);
    nori__near_fill f;
    if (!nori__near_fill_begin(near, "hot", 3, &f) ||
        !nori__near_fill_end(near, "hot", 3, &f, value, sizeof value - 1, -1))
        return 1;
    nori_backend *mem;
    if (nori_memory_backend_new(10000, &mem) != NORI_OK ||
        nori_backend_set(mem, "hot", value, sizeof value - 1, 0) != NORI_OK)
        return 1;
    nori_backend *redis = NULL, *redis_near = NULL;
    if (url != NULL && (nori_redis_backend_new(url, &redis) != NORI_OK ||
                        nori_backend_set(redis, "hot", value, sizeof value - 1, 0) != NORI_OK ||
                        nori_redis_backend_new(url, &redis_near) != NORI_OK ||
                        nori_redis_backend_enable_near(redis_near, 10000, 0, 0) != NORI_OK)) {
        fprintf(stderr, "redis: %s\n", nori_last_error());
        return 1;
    }
    if (redis_near != NULL) {
        /* Until the listener has subscribed nothing is kept: read until a
         * read is served locally (bounded). */
        nori_near_stats st = {0};
        for (int i = 0; i < 5000 && st.hits == 0; i++) {
            nori_buf v;
            nori_backend_get(redis_near, "hot", &v);
            nori_buf_free(&v);
            nori_backend_get_near_stats(redis_near, &st);
            struct timespec gap = {0, 1000000};
            nanosleep(&gap, NULL);
        }
        if (st.hits == 0) {
            fprintf(stderr, "the near cache never served the hot key locally\n");
            return 1;
        }
    }
    static const int counts[] = {1, 8};
    for (size_t c = 0; c < 2; c++) {
        int n = counts[c];
        double rb = 0, rm = 0, rr = 0, rn = 0;
        for (int r = 0; r < rounds; r++) {
            double x;
            if (redis_near != NULL &&
                (x = phase("near backend", KIND_BACKEND, NULL, redis_near, n, seconds)) > rb)
                rb = x;
            if ((x = phase("memory", KIND_BACKEND, NULL, mem, n, seconds)) > rm)
                rm = x;
            if (redis != NULL && (x = phase("redis", KIND_BACKEND, NULL, redis, n, seconds)) > rr)
                rr = x;
            if ((x = phase("near store", KIND_NEAR, near, NULL, n, seconds)) > rn)
                rn = x;
        }
        printf("hot-key get, %d thread%s, best of %d rounds of %.1f s:\n", n, n > 1 ? "s" : "",
               rounds, seconds);
        if (redis_near != NULL)
            printf("  Redis backend + near cache  %14.0f gets/s  %.2fx memory, %.0fx plain Redis\n",
                   rb, rb / rm, rb / rr);
        printf("  memory backend              %14.0f gets/s\n", rm);
        if (redis != NULL)
            printf("  Redis backend, no near      %14.0f gets/s\n", rr);
        printf("  near cache store alone      %14.0f gets/s  %.2fx memory\n", rn, rn / rm);
    }
    nori_backend_free(redis_near);
    nori_backend_free(redis);
    nori_backend_free(mem);
    nori__near_free(near);
    return 0;
}
