// SPDX-License-Identifier: MIT
/*
 * The response cache's background refresh pool (stale_while_revalidate): a few
 * worker threads owned by the cache run the handler for entries served
 * stale within stale_while_revalidate, so the request that found the stale
 * entry is answered at once. Started on the first refresh, so a cache that
 * never serves stale owns no thread. The queue is bounded: when it is full
 * the refresh is dropped (the entry stays stale a little longer, the next
 * stale hit asks again), never an unbounded backlog.
 */
#include "http/internal.h"

#include "error.h"

#include <pthread.h>
#include <stdlib.h>

#define QUEUE_MAX 1024

typedef struct job {
    struct job *next;
    nori__refresh_fn run, drop;
    void *arg;
} job;

struct nori__refresher {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t *threads;
    size_t n_threads, started;
    job *head, *tail;
    size_t queued;
    bool stopping;
};

int nori__refresher_new(size_t n_threads, nori__refresher **out)
{
    nori__refresher *r = calloc(1, sizeof *r);
    if (r == NULL || (r->threads = calloc(n_threads, sizeof *r->threads)) == NULL) {
        free(r);
        return nori__fail(NORI_ENOMEM, "out of memory creating the refresh pool");
    }
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->wake, NULL);
    r->n_threads = n_threads;
    *out = r;
    return NORI_OK;
}

static void *worker(void *arg)
{
    nori__refresher *r = arg;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (r->head == NULL && !r->stopping)
            pthread_cond_wait(&r->wake, &r->lock);
        if (r->stopping)
            break;
        job *j = r->head;
        r->head = j->next;
        if (r->head == NULL)
            r->tail = NULL;
        r->queued--;
        pthread_mutex_unlock(&r->lock);
        j->run(j->arg);
        free(j);
        pthread_mutex_lock(&r->lock);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

int nori__refresher_submit(nori__refresher *r, nori__refresh_fn run, nori__refresh_fn drop,
                           void *arg)
{
    job *j = malloc(sizeof *j);
    if (j == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory queuing a refresh");
    j->next = NULL;
    j->run = run;
    j->drop = drop;
    j->arg = arg;
    pthread_mutex_lock(&r->lock);
    if (r->stopping || r->queued >= QUEUE_MAX) {
        pthread_mutex_unlock(&r->lock);
        free(j);
        return nori__fail(NORI_ETOOBIG, "refresh queue full (%d jobs)", QUEUE_MAX);
    }
    /* Start one more worker while there is queued work and room for one. */
    if (r->started < r->n_threads && (r->started == 0 || r->queued > 0)) {
        if (pthread_create(&r->threads[r->started], NULL, worker, r) == 0)
            r->started++;
    }
    if (r->started == 0) {
        pthread_mutex_unlock(&r->lock);
        free(j);
        return nori__fail(NORI_ENOMEM, "cannot start a refresh thread");
    }
    if (r->tail != NULL)
        r->tail->next = j;
    else
        r->head = j;
    r->tail = j;
    r->queued++;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
    return NORI_OK;
}

void nori__refresher_free(nori__refresher *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    pthread_cond_broadcast(&r->wake);
    pthread_mutex_unlock(&r->lock);
    /* A running refresh finishes (its handler is bounded by the app); the
     * queued ones are dropped. */
    for (size_t i = 0; i < r->started; i++)
        pthread_join(r->threads[i], NULL);
    for (job *j = r->head, *n; j != NULL; j = n) {
        n = j->next;
        j->drop(j->arg);
        free(j);
    }
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->lock);
    free(r->threads);
    free(r);
}
