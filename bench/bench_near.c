/*
 * Hot-key reads: the near cache store's local read (the path a Redis backend
 * with the near cache takes on a hit), the memory backend's get, and the
 * plain Redis backend's get, side by side in one run, 1 and 8 threads.
 * Each phase runs SECONDS seconds; ratios are what count.
 *
 * Usage: bench_near [REDIS_URL] [SECONDS]   (no URL: the Redis rows are skipped)
 *
 * The near row measures the store alone (nori__near_get, the copy to the
 * caller included); once the near cache is wired into the Redis backend the
 * backend's argument checks and dispatch come on top, as they do for the
 * memory backend's row.
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
    printf("%-34s %2d threads: %14.0f gets/s%s\n", name, threads, rate,
           failures != 0 ? "  (FAILURES)" : "");
    return rate;
}

int main(int argc, char **argv)
{
    const char *url = argc > 1 && strcmp(argv[1], "-") != 0 ? argv[1] : NULL;
    double seconds = argc > 2 ? atof(argv[2]) : 1.0;
    if (seconds <= 0)
        seconds = 1.0;
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
    nori_backend *redis = NULL;
    if (url != NULL && (nori_redis_backend_new(url, &redis) != NORI_OK ||
                        nori_backend_set(redis, "hot", value, sizeof value - 1, 0) != NORI_OK)) {
        fprintf(stderr, "redis: %s\n", nori_last_error());
        return 1;
    }
    static const int counts[] = {1, 8};
    for (size_t c = 0; c < 2; c++) {
        int n = counts[c];
        double rn = phase("near cache store, hot key", KIND_NEAR, near, NULL, n, seconds);
        double rm = phase("memory backend get, hot key", KIND_BACKEND, NULL, mem, n, seconds);
        printf("  near / memory: %.2fx\n", rn / rm);
        if (redis != NULL) {
            double rr = phase("Redis backend get, hot key", KIND_BACKEND, NULL, redis, n, seconds);
            printf("  near / Redis: %.1fx\n", rn / rr);
        }
    }
    nori_backend_free(redis);
    nori_backend_free(mem);
    nori__near_free(near);
    return 0;
}
