/*
 * Review: the near cache's invalidation listener reads its subscribed
 * connection with the same bounded reply objects as every round trip
 * (issue 10 item 3: "bound what a reply may allocate"). On the merged main
 * of stage 2 the listener's read loop ran hiredis's reader with no budget:
 * a server that answers the subscription and then pushes a 64 MiB bulk
 * string had it buffered and copied whole (RSS +128 MiB), and a
 * "*2147483647" array header was allocated (16 GiB of address space).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hostile_server.h"
#include "nori/cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static long peak_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Every command is answered with: CLIENT ID's integer, SUBSCRIBE's
 * confirmation, then an invalidation message whose payload announces `big`
 * bytes and carries them. */
static void test_listener_reply_bounded(void **state)
{
    (void)state;
    const size_t big = (size_t)64 << 20;
    const char head[] = ":7\r\n*3\r\n$9\r\nsubscribe\r\n$20\r\n__redis__:invalidate\r\n:1\r\n"
                        "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n";
    char hdr[32];
    int hl = snprintf(hdr, sizeof hdr, "$%zu\r\n", big);
    size_t n = sizeof head - 1 + (size_t)hl + big + 2;
    char *reply = malloc(n);
    assert_non_null(reply);
    memcpy(reply, head, sizeof head - 1);
    memcpy(reply + sizeof head - 1, hdr, (size_t)hl);
    memset(reply + sizeof head - 1 + hl, 'x', big);
    memcpy(reply + n - 2, "\r\n", 2);
    nori_test_hostile *h = nori_test_hostile_start(reply, n, 0);
    long base = rss_kb(), peak0 = peak_kb();

    char url[200];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d?timeout_ms=300&connect_timeout_ms=300",
             nori_test_hostile_port(h));
    nori_backend *b;
    assert_int_equal(nori_redis_backend_new(url, &b), NORI_OK);
    int rc = nori_redis_backend_enable_near(b, 100, 1 << 20, 0);
    print_message("enable_near: %d %s\n", rc, rc != NORI_OK ? nori_last_error() : "");
    /* Give the listener time to subscribe and read what follows. */
    struct timespec d = {1, 500000000L};
    nanosleep(&d, NULL);
    long grown = peak_kb() > peak0 ? peak_kb() - peak0 : 0;
    print_message("listener connections %d, RSS %ld -> %ld KiB, peak grew %ld KiB\n",
                  nori_test_hostile_connections(h), base, rss_kb(), grown);
    nori_backend_free(b);
    nori_test_hostile_stop(h);
    free(reply);
    /* The reply blob itself (64 MiB, in this process) is counted in base;
     * the bounded reader buffers at most ~1 MiB of it. */
    assert_true(grown < 32 * 1024);
}

/* A message that is an array of 128 strings of 1 MiB each (each within the
 * 1 MiB string limit): the limit on string bytes (64 MiB per reply) holds
 * over the whole reply, however many reads it spans. */
static void test_listener_reply_total_bounded(void **state)
{
    (void)state;
    const size_t each = (size_t)1 << 20, count = 128;
    const char head[] = ":7\r\n*3\r\n$9\r\nsubscribe\r\n$20\r\n__redis__:invalidate\r\n:1\r\n"
                        "*128\r\n";
    char hdr[32];
    int hl = snprintf(hdr, sizeof hdr, "$%zu\r\n", each);
    size_t item = (size_t)hl + each + 2;
    size_t n = sizeof head - 1 + count * item;
    char *reply = malloc(n);
    assert_non_null(reply);
    memcpy(reply, head, sizeof head - 1);
    for (size_t i = 0; i < count; i++) {
        char *p = reply + sizeof head - 1 + i * item;
        memcpy(p, hdr, (size_t)hl);
        memset(p + hl, 'y', each);
        memcpy(p + hl + each, "\r\n", 2);
    }
    nori_test_hostile *h = nori_test_hostile_start(reply, n, 0);
    long peak0 = peak_kb();
    char url[200];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d?timeout_ms=300&connect_timeout_ms=300",
             nori_test_hostile_port(h));
    nori_backend *b;
    assert_int_equal(nori_redis_backend_new(url, &b), NORI_OK);
    (void)nori_redis_backend_enable_near(b, 100, 1 << 20, 0);
    struct timespec d = {1, 500000000L};
    nanosleep(&d, NULL);
    long grown = peak_kb() > peak0 ? peak_kb() - peak0 : 0;
    print_message("128 x 1 MiB message: peak RSS grew %ld KiB\n", grown);
    nori_backend_free(b);
    nori_test_hostile_stop(h);
    free(reply);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* The sanitizers keep freed buffers resident (quarantine): RSS says
     * nothing there; the normal build checks the bound. */
    (void)grown;
#else
    assert_true(grown < 100 * 1024);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listener_reply_bounded),
        cmocka_unit_test(test_listener_reply_total_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
