// SPDX-License-Identifier: MIT
/*
 * get_many of K keys against K single gets, on one backend, alternating
 * blocks of about 0.5 s each, ROUNDS times; prints keys read per second for
 * each and the ratio of the medians (one thread, values of VALUE bytes).
 *   redis_bulk URL|memory [ROUNDS] [K] [VALUE]
 *   redis_bulk_cluster cluster [ROUNDS] [K] [VALUE]
 * Defaults: 5 rounds, 100 keys, 100-byte values. On Redis a get_many is one
 * round trip per node holding some of the keys (a pipeline of GETs); K
 * single gets are K round trips.
 *
 * redis_bulk_cluster is this file built with the tests' harness
 * (tests/CMakeLists.txt, NORI_BENCH_CLUSTER): "cluster" starts a private
 * Redis Cluster of 3 masters and 3 replicas on loopback
 * (tests/support/redis_cluster.h), measures against it and stops it.
 */
#ifdef NORI_BENCH_CLUSTER
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_cluster.h"
#endif

#include <nori/cache.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: redis_bulk URL|memory|cluster [ROUNDS] [K] [VALUE]\n");
        return 2;
    }
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    int k = argc > 3 ? atoi(argv[3]) : 100;
    int vlen = argc > 4 ? atoi(argv[4]) : 100;
    if (rounds < 1 || rounds > 100 || k < 1 || k > NORI_MAX_BULK || vlen < 0) {
        fprintf(stderr, "redis_bulk: bad ROUNDS, K or VALUE\n");
        return 2;
    }
    const char *url = argv[1];
#ifdef NORI_BENCH_CLUSTER
    nori_test_cluster *cluster = NULL;
    if (strcmp(url, "cluster") == 0) {
        cluster = nori_test_cluster_start();
        url = cluster->url;
    }
#else
    if (strcmp(url, "cluster") == 0) {
        fprintf(stderr, "redis_bulk: for a cluster run redis_bulk_cluster (built with the tests)\n");
        return 2;
    }
#endif
    nori_backend *b;
    int rc = strcmp(url, "memory") == 0 ? nori_memory_backend_new((size_t)k + 10, &b)
                                        : nori_redis_backend_new(url, &b);
    if (rc != NORI_OK) {
        fprintf(stderr, "redis_bulk: %s\n", nori_last_error());
#ifdef NORI_BENCH_CLUSTER
        nori_test_cluster_stop(cluster);
#endif
        return 1;
    }
    char **names = calloc((size_t)k, sizeof *names);
    const char **keys = calloc((size_t)k, sizeof *keys);
    nori_set_item *items = calloc((size_t)k, sizeof *items);
    nori_get_result *res = calloc((size_t)k, sizeof *res);
    char *value = malloc((size_t)vlen + 1);
    double *single = calloc((size_t)rounds, sizeof *single);
    double *bulk = calloc((size_t)rounds, sizeof *bulk);
    if (names == NULL || keys == NULL || items == NULL || res == NULL || value == NULL ||
        single == NULL || bulk == NULL)
        return 1;
    memset(value, 'v', (size_t)vlen);
    for (int i = 0; i < k; i++) {
        names[i] = malloc(32);
        snprintf(names[i], 32, "bulk:%d", i);
        keys[i] = names[i];
        items[i] = (nori_set_item){names[i], value, (size_t)vlen, 0};
    }
    if (nori_backend_set_many(b, items, (size_t)k, NULL) != NORI_OK) {
        fprintf(stderr, "redis_bulk: set_many: %s\n", nori_last_error());
#ifdef NORI_BENCH_CLUSTER
        nori_test_cluster_stop(cluster);
#endif
        return 1;
    }
    long failures = 0;
    for (int r = 0; r < rounds; r++) {
        long n = 0;
        double t0 = now_s(), t;
        do {
            for (int i = 0; i < k; i++) {
                nori_buf v;
                if (nori_backend_get(b, keys[i], &v) != NORI_OK)
                    failures++;
                nori_buf_free(&v);
            }
            n += k;
        } while ((t = now_s()) - t0 < 0.5);
        single[r] = (double)n / (t - t0);
        n = 0;
        t0 = now_s();
        do {
            if (nori_backend_get_many(b, keys, (size_t)k, res) != NORI_OK)
                failures++;
            nori_get_results_free(res, (size_t)k);
            n += k;
        } while ((t = now_s()) - t0 < 0.5);
        bulk[r] = (double)n / (t - t0);
        printf("round %d: single gets %.0f keys/s, get_many(%d) %.0f keys/s\n", r + 1,
               single[r], k, bulk[r]);
    }
    qsort(single, (size_t)rounds, sizeof *single, cmp);
    qsort(bulk, (size_t)rounds, sizeof *bulk, cmp);
    double ms = single[rounds / 2], mb = bulk[rounds / 2];
    printf("%s%s, %d keys of %d bytes, median of %d: single gets %.0f keys/s, get_many %.0f "
           "keys/s, ratio %.1fx (%ld failures)\n",
           nori_backend_kind(b), strcmp(argv[1], "cluster") == 0 ? " cluster" : "", k, vlen,
           rounds, ms, mb, mb / ms, failures);
    nori_backend_delete_many(b, keys, (size_t)k, NULL);
    nori_backend_free(b);
    for (int i = 0; i < k; i++)
        free(names[i]);
    free(names);
    free(keys);
    free(items);
    free(res);
    free(value);
    free(single);
    free(bulk);
#ifdef NORI_BENCH_CLUSTER
    nori_test_cluster_stop(cluster);
#endif
    return failures != 0;
}
