// SPDX-License-Identifier: MIT
/* The library's virtual clock for a test; see virtual_clock.h. */
#include "virtual_clock.h"

#include "clock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

static _Atomic int64_t now;
static pthread_t runner;
static atomic_bool running, stop;

void nori_test_clock_install(int64_t start_ms)
{
    atomic_store(&now, start_ms);
    nori__clock_override(&now, &now);
}

static void *run(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        /* Each wait is bounded, so that stop is seen within 20 ms. */
        if (!nori__clock_await_blocked(1, 20))
            continue;
        int64_t next = nori__clock_next_wake(), at = atomic_load(&now);
        if (next != INT64_MAX && next > at)
            nori__clock_advance(next - at);
    }
    return NULL;
}

void nori_test_clock_run(void)
{
    atomic_store(&stop, false);
    if (pthread_create(&runner, NULL, run, NULL) != 0) {
        fprintf(stderr, "nori_test_clock_run: cannot start the thread\n");
        abort();
    }
    atomic_store(&running, true);
}

void nori_test_clock_uninstall(void)
{
    if (atomic_exchange(&running, false)) {
        atomic_store(&stop, true);
        pthread_join(runner, NULL);
    }
    nori__clock_override(NULL, NULL);
}

int64_t nori_test_clock_now(void)
{
    return atomic_load(&now);
}
