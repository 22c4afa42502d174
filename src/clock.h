// SPDX-License-Identifier: MIT
/*
 * The library's one home for time: every read of a clock, every sleep and
 * every timed wait goes through this file, so that a test can replace time
 * in one place.
 *
 * Two kinds of time, kept apart on purpose:
 *
 *  - Logical time (nori__now_ms, nori__wall_ms, nori__sleep_until,
 *    nori__cond_wait_until ...): what the library's policies are made of.
 *    TTLs and the near cache's expiry, HTTP stored-at times and ages,
 *    hit-for-miss and stale windows, the response cache's single-flight
 *    waits and leases, the topology's back-off, retry budget and refresh
 *    rate limit, the circuit breaker's cool-down, the memory sweeper's pace.
 *    A test may replace it by a virtual clock (below).
 *
 *  - Real time (nori__real_*, nori__poll_ms, nori__real_cond_wait_until,
 *    nori__nap_backoff, nori__mutex_lock_within): what the operating system
 *    measures and no test can make pass faster. Deadlines of network I/O
 *    (poll(2), hiredis's connect timeouts, name lookups, heartbeats), the
 *    sweeper's CPU budget per cycle, waits for another thread's progress
 *    (a lock holder, a write in flight, a fork being prepared), and the
 *    idle and staleness ages of connections and DNS answers, which measure
 *    a real server's state. Never virtual: a socket read cannot be.
 *
 * Both are milliseconds on CLOCK_MONOTONIC when no virtual clock is
 * installed (the wall clock: on CLOCK_REALTIME), so a wall-clock jump (NTP,
 * a manual date change) neither expires every entry nor keeps them forever.
 *
 * The virtual clock (tests): nori__clock_override(&cell, &cell) makes
 * every logical read return cell (the monotonic and the wall clock alike),
 * and makes logical sleeps and timed waits block until the clock is
 * advanced past their deadline (a timed wait also ends when its condition
 * is signalled), without using the CPU meanwhile. nori__clock_advance()
 * moves the time and wakes whom it concerns; nori__clock_await_blocked()
 * and nori__clock_next_wake() let a test drive a thread that sleeps inside
 * the library (tests/support/virtual_clock.h runs time forward whenever a
 * thread waits on it). Under it, time passes only when advanced: a retry
 * budget, for one, counts the back-off slept, not the I/O between. Real
 * time is not affected.
 */
#ifndef NORI_SRC_CLOCK_H
#define NORI_SRC_CLOCK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/time.h>
#include <time.h>

/* ---- logical time ---- */

/* Milliseconds from an arbitrary fixed point (CLOCK_MONOTONIC). Used where
 * an expiry time is computed, so an entry never expires early. */
int64_t nori__now_ms(void);

/*
 * The same clock read coarsely (CLOCK_MONOTONIC_COARSE: about 5 ns instead
 * of about 20 ns here, with a resolution of a few milliseconds, 4 ms on this
 * kernel). Used on the read path, for expiry checks and LRU stamps, where it
 * was an eighth of a get's cost: an entry may be seen alive up to one tick
 * past its expiry, never before it. Never ahead of nori__now_ms().
 */
int64_t nori__now_coarse_ms(void);

/* Wall-clock milliseconds since the Unix epoch (CLOCK_REALTIME), and
 * seconds: for what other processes and hosts compare (the HTTP entries'
 * stored-at times, lease tokens) and for HTTP dates. */
int64_t nori__wall_ms(void);
int64_t nori__wall_s(void);
/* The wall clock as a timespec, to the nanosecond (lease tokens). */
struct timespec nori__wall_timespec(void);

/* The nori__now_ms() time timeout_ms from now (saturating; a negative
 * timeout is 0). */
int64_t nori__deadline_after(int64_t timeout_ms);
/* Milliseconds left before deadline (nori__now_ms() base); 0 once passed. */
int64_t nori__ms_left(int64_t deadline);
/* Whether deadline (nori__now_ms() base) has passed. */
bool nori__deadline_passed(int64_t deadline);

/* Sleeps for ms (<= 0: returns at once), restarting after signals. Under
 * the virtual clock: until it is advanced by ms. */
void nori__sleep_ms(int64_t ms);
/* Sleeps until deadline (nori__now_ms() base). */
void nori__sleep_until(int64_t deadline);

/*
 * Initialises a condition variable for nori__cond_wait_until and
 * nori__real_cond_wait_until (their timed waits measure CLOCK_MONOTONIC).
 * 0 or an errno value (ENOMEM).
 */
int nori__cond_init(pthread_cond_t *cond);

/*
 * pthread_cond_timedwait against a deadline of logical time (nori__now_ms()
 * base). The caller holds mutex, as for pthread_cond_wait, and checks its
 * predicate again after every return: 0 means woken (signalled, or
 * spuriously), ETIMEDOUT that the deadline has passed. cond must come from
 * nori__cond_init. Under the virtual clock it returns ETIMEDOUT only once
 * the clock was advanced past deadline, and may release and retake mutex
 * once more before returning (as a wakeup does).
 */
int nori__cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mutex, int64_t deadline);

/* ---- real time (never virtual) ---- */

/* CLOCK_MONOTONIC in milliseconds, microseconds, nanoseconds: the base of
 * I/O deadlines (nori__redis_io_* and the like). */
int64_t nori__real_ms(void);
int64_t nori__real_us(void);
int64_t nori__real_ns(void);

/* What poll(2) waits for a deadline of nori__real_ms() base: the time left,
 * 0 once passed, INT_MAX at most. */
int nori__poll_ms(int64_t real_deadline);

/* nori__cond_wait_until against a deadline of real time (nori__real_ms()
 * base): for waits bounded by an I/O deadline. 0 or ETIMEDOUT. */
int nori__real_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mutex,
                               int64_t real_deadline);

/*
 * One step of waiting for another thread's progress (a write in flight, a
 * critical section before a fork): the first 4 calls yield the CPU, the
 * later ones sleep 50 us doubling to 1 ms, so that a long wait (a user's
 * callback running) does not burn a core. *nap_ns starts at 0.
 */
void nori__nap_backoff(long *nap_ns);

/*
 * pthread_mutex_timedlock for timeout_ms (CLOCK_REALTIME is that
 * function's clock: the wait may end early or late by a wall-clock jump).
 * Works on process-shared and robust mutexes. Returns pthread's code: 0,
 * ETIMEDOUT, EOWNERDEAD (robust: the owner died; the caller now holds the
 * lock and makes the state consistent), or another error.
 */
int nori__mutex_lock_within(pthread_mutex_t *m, int64_t timeout_ms);

/* ---- conversions ---- */

/* A duration of ms (>= 0) as a timespec or timeval. */
struct timespec nori__ms_timespec(int64_t ms);
struct timeval nori__ms_timeval(int64_t ms);
/* A timespec in milliseconds (rounded down). */
int64_t nori__timespec_ms(const struct timespec *ts);
/* The absolute time on clk (CLOCK_MONOTONIC, CLOCK_REALTIME) ms from now,
 * real time: the argument of pthread's timed waits. */
struct timespec nori__timespec_in(clockid_t clk, int64_t ms);

/* ---- the virtual clock (tests) ---- */

/*
 * Installs the virtual clock: the monotonic base (nori__now_ms, sleeps,
 * timed waits) reads *mono, the wall clock (nori__wall_ms) reads *wall;
 * NULL leaves that one real, and (NULL, NULL) restores the real clock. The
 * cells are the caller's, kept alive while installed; one cell may serve
 * both. A cell may lie in shared memory, so that forked processes read one
 * clock: a virtual wall clock alone (mono NULL) is for those, since nothing
 * there blocks on it. Writing a cell directly moves the time without waking
 * anyone (enough for reads, and the only way from another process).
 * Threads blocked on the virtual clock when it is replaced are woken: a
 * sleep ends, a timed wait returns 0 and the caller's next wait uses the
 * new clock.
 */
void nori__clock_override(_Atomic int64_t *mono, _Atomic int64_t *wall);

/*
 * Moves the virtual clock ms forward (both cells, when they are two), then
 * wakes the sleeps and timed waits whose deadline it passed. For a timed
 * wait, it takes the waiter's mutex before signalling (so a waiter between
 * reading the time and waiting cannot miss it): never call it holding a
 * mutex that a timed wait uses. Nothing without a virtual clock.
 */
void nori__clock_advance(int64_t ms);

/* How many threads wait for the virtual clock to reach their deadline. */
int nori__clock_blocked(void);

/* Waits, up to real_timeout_ms of real time, until at least n threads wait
 * for the virtual clock. True when they do. */
bool nori__clock_await_blocked(int n, int64_t real_timeout_ms);

/* The earliest deadline that a thread waits for on the virtual clock, or
 * INT64_MAX when none does. */
int64_t nori__clock_next_wake(void);

#endif
