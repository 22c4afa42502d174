/*
 * The SIGPIPE guard of the Redis backend (src/redis/pool.c): a SIGPIPE
 * raised on the calling thread during a guarded call is swallowed, the
 * thread's signal mask is restored, and a SIGPIPE that was pending before
 * the call is left for the application.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis/pool.h"
#include "test_support.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

static bool pipe_pending(void)
{
    sigset_t pending;
    assert_int_equal(sigpending(&pending), 0);
    return sigismember(&pending, SIGPIPE) == 1;
}

static bool pipe_blocked(void)
{
    sigset_t mask;
    assert_int_equal(pthread_sigmask(SIG_SETMASK, NULL, &mask), 0);
    return sigismember(&mask, SIGPIPE) == 1;
}

static void test_write_to_closed_pipe_is_swallowed(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[0]);
    assert_false(pipe_blocked());
    nori__sigpipe_guard g;
    nori__sigpipe_block(&g);
    assert_true(pipe_blocked());
    /* Without the guard this write would kill the test (default action). */
    assert_int_equal(write(p[1], "x", 1), -1);
    assert_true(pipe_pending());
    nori__sigpipe_restore(&g);
    assert_false(pipe_pending());
    assert_false(pipe_blocked());
    close(p[1]);
}

static void test_earlier_pending_signal_is_kept(void **state)
{
    (void)state;
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
    assert_int_equal(pthread_kill(pthread_self(), SIGPIPE), 0);
    nori__sigpipe_guard g;
    nori__sigpipe_block(&g);
    nori__sigpipe_restore(&g);
    /* Not ours: still pending, and the application's mask still blocks it. */
    assert_true(pipe_pending());
    assert_true(pipe_blocked());
    struct timespec zero = {0, 0};
    assert_int_equal(sigtimedwait(&set, NULL, &zero), SIGPIPE);
    assert_int_equal(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_to_closed_pipe_is_swallowed),
        cmocka_unit_test(test_earlier_pending_signal_is_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
