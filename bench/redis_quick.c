// SPDX-License-Identifier: MIT
/*
 * A quick throughput check of the Redis backend: THREADS threads sharing one
 * backend handle run N set calls, then N get calls (3-byte values, keys
 * spread over 10000 names, as redis-benchmark's defaults do), and print
 * requests per second for each. Compare with
 *   redis-benchmark -q -n N -c THREADS -t get,set -p PORT
 * on the same server. Usage: redis_quick URL [THREADS] [N]
 */
#include <nori/cache.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    nori_backend *b;
    int id, nthreads;
    long n; /* total ops of the phase, split between threads */
    bool do_get;
    long failures;
} job;

static void *run(void *arg)
{
    job *j = arg;
    char key[32];
    for (long i = j->id; i < j->n; i += j->nthreads) {
        snprintf(key, sizeof key, "bench:%ld", i % 10000);
        int rc;
        if (j->do_get) {
            nori_buf v;
            rc = nori_backend_get(j->b, key, &v);
            nori_buf_free(&v);
        } else {
            rc = nori_backend_set(j->b, key, "xxx", 3, 0);
        }
        if (rc < 0)
            j->failures++;
    }
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int phase(nori_backend *b, int nthreads, long n, bool do_get)
{
    pthread_t *t = calloc((size_t)nthreads, sizeof *t);
    job *jobs = calloc((size_t)nthreads, sizeof *jobs);
    if (t == NULL || jobs == NULL)
        return 1;
    double t0 = now_s();
    for (int i = 0; i < nthreads; i++) {
        jobs[i] = (job){.b = b, .id = i, .nthreads = nthreads, .n = n, .do_get = do_get};
        pthread_create(&t[i], NULL, run, &jobs[i]);
    }
    long failures = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(t[i], NULL);
        failures += jobs[i].failures;
    }
    double secs = now_s() - t0;
    printf("nori %s: %.2f requests per second (%d threads, %ld ops, %ld failures)\n",
           do_get ? "GET" : "SET", (double)n / secs, nthreads, n, failures);
    free(t);
    free(jobs);
    return failures != 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: redis_quick URL [THREADS] [N]\n");
        return 2;
    }
    int nthreads = argc > 2 ? atoi(argv[2]) : 8;
    long n = argc > 3 ? atol(argv[3]) : 100000;
    if (nthreads < 1 || n < 1) {
        fprintf(stderr, "redis_quick: THREADS and N must be positive\n");
        return 2;
    }
    nori_backend *b;
    int rc = nori_redis_backend_new(argv[1], &b);
    if (rc == NORI_OK)
        rc = nori_backend_verify(b);
    if (rc != NORI_OK) {
        fprintf(stderr, "redis_quick: %s\n", nori_last_error());
        return 1;
    }
    int failed = phase(b, nthreads, n, false);
    failed |= phase(b, nthreads, n, true);
    nori_backend_free(b);
    return failed;
}
