// SPDX-License-Identifier: MIT
/*
 * The library's virtual clock (src/clock.h) for a test: installed at a
 * chosen time, advanced by hand, or run forward by itself.
 */
#ifndef NORI_TEST_VIRTUAL_CLOCK_H
#define NORI_TEST_VIRTUAL_CLOCK_H

#include <stdint.h>

/* Installs the virtual clock at start_ms, the monotonic and the wall clock
 * alike (nori__clock_override). */
void nori_test_clock_install(int64_t start_ms);

/* Stops the runner if it runs, and restores the real clock. */
void nori_test_clock_uninstall(void);

/* The virtual time now. */
int64_t nori_test_clock_now(void);

/*
 * Starts a thread that runs the virtual clock forward by itself: whenever a
 * thread waits on it (a back-off, a timed wait), the clock jumps to the
 * earliest deadline waited for. Time then passes only while every thread
 * that uses it waits, as fast as they wait: for tests of a thread that
 * sleeps inside one call (the topology's back-off). Not with a thread that
 * waits on the clock all the time (a memory backend's sweeper): it would
 * run the clock forward without end. Stopped by nori_test_clock_uninstall.
 */
void nori_test_clock_run(void);

#endif
