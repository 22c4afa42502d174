// SPDX-License-Identifier: MIT
/*
 * Time from a master's death to the first successful write through the
 * backend, next to the server's own failover time, for a Redis Cluster
 * (3 masters + 3 replicas, cluster-node-timeout 1000) and for Sentinel
 * (master + replica + 3 sentinels, down-after 1000 ms). Each round starts a
 * fresh set-up (tests/support), runs one writer thread (incr on a key of the
 * master to be killed, back to back), SIGKILLs that master after 1 s, and
 * records: when the server side had failed over (the cluster names a new
 * master for the slot / the sentinels name the replica), and when the
 * backend's first write after the kill was acknowledged. Prints each round
 * and the medians. Not a test: built with the tests (it needs their
 * harness), run by hand:
 *     ./build/tests/failover_time [ROUNDS]        (default 5)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis/route/cluster_slots.h"
#include "redis_cluster.h"
#include "test_support.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int rounds = 5;

typedef struct writer {
    nori_backend *b;
    const char *key;
    atomic_bool stop;
    _Atomic long long kill_at;
    _Atomic long long first_ok; /* first acknowledged write that started after the kill */
    char last_error[300];       /* the writer's; read after it is joined */
} writer;

static void *write_loop(void *arg)
{
    writer *w = arg;
    while (!atomic_load(&w->stop)) {
        long long t0 = nori_test_now_ms();
        int64_t n;
        int rc = nori_backend_incr(w->b, w->key, 0, &n);
        long long k = atomic_load(&w->kill_at);
        if (rc == NORI_OK && k != 0 && t0 >= k && atomic_load(&w->first_ok) == 0)
            atomic_store(&w->first_ok, nori_test_now_ms());
        if (rc != NORI_OK)
            snprintf(w->last_error, sizeof w->last_error, "%s", nori_last_error());
    }
    return NULL;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int cmp(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static long long median(long long *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void test_cluster_failover(void **state)
{
    (void)state;
    long long server[32], client[32];
    for (int r = 0; r < rounds; r++) {
        nori_test_cluster *c = nori_test_cluster_start();
        writer w = {.key = "failover"};
        atomic_init(&w.stop, false);
        atomic_init(&w.kill_at, 0);
        atomic_init(&w.first_ok, 0);
        assert_nori(nori_redis_backend_new(c->url, &w.b), NORI_OK);
        unsigned slot = nori__cluster_keyslot("cache:failover", 14);
        int victim = nori_test_cluster_slot_master(c, slot);
        assert_true(victim >= 0);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, write_loop, &w), 0);
        sleep_ms(1000);
        /* Dead once reaped: a write that starts after this cannot be served
         * by the old master. */
        nori_test_node_kill(&c->node[victim], SIGKILL);
        long long killed = nori_test_now_ms();
        atomic_store(&w.kill_at, killed);
        long long promoted = 0;
        while (nori_test_now_ms() < killed + 30000 &&
               (promoted == 0 || atomic_load(&w.first_ok) == 0)) {
            int m = nori_test_cluster_slot_master(c, slot);
            if (promoted == 0 && m >= 0 && m != victim)
                promoted = nori_test_now_ms();
            sleep_ms(10);
        }
        atomic_store(&w.stop, true);
        pthread_join(t, NULL);
        assert_true(promoted > 0 && atomic_load(&w.first_ok) > 0);
        server[r] = promoted - killed;
        client[r] = atomic_load(&w.first_ok) - killed;
        printf("cluster round %d: replica promoted after %lld ms, first write through the "
               "backend after %lld ms\n", r + 1, server[r], client[r]);
        fflush(stdout);
        nori_backend_free(w.b);
        nori_test_cluster_stop(c);
    }
    printf("cluster (median of %d): server failover %lld ms, first successful write %lld ms\n",
           rounds, median(server, rounds), median(client, rounds));
}

static void test_sentinel_failover(void **state)
{
    (void)state;
    long long server[32], client[32];
    for (int r = 0; r < rounds; r++) {
        nori_test_sentinel *s = nori_test_sentinel_start(NULL);
        writer w = {.key = "failover"};
        atomic_init(&w.stop, false);
        atomic_init(&w.kill_at, 0);
        atomic_init(&w.first_ok, 0);
        assert_nori(nori_redis_backend_new(s->url, &w.b), NORI_OK);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, write_loop, &w), 0);
        sleep_ms(1000);
        int old = s->master.port;
        nori_test_node_kill(&s->master, SIGKILL);
        long long killed = nori_test_now_ms();
        atomic_store(&w.kill_at, killed);
        long long switched = 0;
        while (nori_test_now_ms() < killed + 30000 &&
               (switched == 0 || atomic_load(&w.first_ok) == 0)) {
            int p = nori_test_sentinel_master_port(s);
            if (switched == 0 && p != 0 && p != old)
                switched = nori_test_now_ms();
            sleep_ms(10);
        }
        atomic_store(&w.stop, true);
        pthread_join(t, NULL);
        if (switched == 0 || atomic_load(&w.first_ok) == 0) {
            for (int i = 0; i < 3; i++) {
                char cmd[4300];
                snprintf(cmd, sizeof cmd, "tail -n 25 %s/log", s->sentinel[i].dir);
                if (system(cmd) != 0)
                    print_error("cannot show %s/log\n", s->sentinel[i].dir);
            }
        }
        if (switched == 0 || atomic_load(&w.first_ok) == 0)
            fail_msg("round %d: sentinels switched: %s, a write succeeded: %s (after 30 s); "
                     "last error: %s",
                     r + 1, switched ? "yes" : "no", atomic_load(&w.first_ok) ? "yes" : "no",
                     w.last_error);
        server[r] = switched - killed;
        client[r] = atomic_load(&w.first_ok) - killed;
        printf("sentinel round %d: sentinels switched after %lld ms, first write through the "
               "backend after %lld ms\n", r + 1, server[r], client[r]);
        fflush(stdout);
        nori_backend_free(w.b);
        nori_test_sentinel_stop(s);
    }
    printf("sentinel (median of %d): server failover %lld ms, first successful write %lld ms\n",
           rounds, median(server, rounds), median(client, rounds));
}

int main(int argc, char **argv)
{
    if (argc > 1)
        rounds = atoi(argv[1]);
    if (rounds < 1 || rounds > 32) {
        fprintf(stderr, "usage: failover_time [ROUNDS 1..32]\n");
        return 2;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cluster_failover),
        cmocka_unit_test(test_sentinel_failover),
    };
    if (getenv("NORI_FAILOVER_ONLY") != NULL) /* "cluster" or "sentinel" */
        cmocka_set_test_filter(strcmp(getenv("NORI_FAILOVER_ONLY"), "cluster") == 0
                                   ? "test_cluster_failover"
                                   : "test_sentinel_failover");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
