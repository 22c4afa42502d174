/*
 * Review: the memory backend's epoch slots are published by a lock-free
 * push; a thread reading the list while another pushes its new slot must
 * see that slot's fields (acquire). On the merged main of stage 2 the push
 * read s->next->index after a relaxed load: TSan reported a data race in
 * test_http_coalesce (two request threads doing their first read at once).
 * Here many fresh threads do their first read at the same moment, round
 * after round. Labelled "concurrency": meaningful under TSan.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nori/cache.h"

#include <pthread.h>
#include <unistd.h>

#define THREADS 8
#define ROUNDS 40

static nori_backend *backend;
static pthread_barrier_t start;

static void *first_read(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&start);
    nori_buf v;
    int rc = nori_backend_get(backend, "k", &v);
    if (rc == NORI_OK)
        nori_buf_free(&v);
    return NULL;
}

static void test_first_reads_at_once(void **state)
{
    (void)state;
    alarm(60);
    assert_int_equal(nori_memory_backend_new(100, &backend), NORI_OK);
    assert_int_equal(nori_backend_set(backend, "k", "v", 1, 0), NORI_OK);
    for (int r = 0; r < ROUNDS; r++) {
        pthread_t t[THREADS];
        pthread_barrier_init(&start, NULL, THREADS);
        for (int i = 0; i < THREADS; i++)
            assert_int_equal(pthread_create(&t[i], NULL, first_read, NULL), 0);
        for (int i = 0; i < THREADS; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&start);
    }
    nori_backend_free(backend);
    alarm(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_reads_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
