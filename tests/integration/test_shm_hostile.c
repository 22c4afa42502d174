/*
 * The shared-memory backend against what an outside reviewer tries:
 *  - a lock-free read stopped between checking an entry and copying its
 *    value, while another process frees the entry and reuses its chunk for
 *    an entry of another shape: the read must neither leave the mapping
 *    nor return what it copied (a guard region right after the mapping
 *    turns any read past its end into a crash of the reader);
 *  - a segment whose contents (not its header) a buggy process of the same
 *    user broke: a cyclic bucket chain. Writes and reads of that shard must
 *    end (an error or a repair), never loop for ever holding its lock.
 * Children never call cmocka: they report through their exit status.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "shm/shm.h"
#include "shm_checks.h"
#include "test_support.h"

#include <inttypes.h>

static char name[64];

static int setup(void **state)
{
    (void)state;
    static int n;
    snprintf(name, sizeof name, "nori-test-hostile-%ld-%d", (long)getpid(), n++);
    (void)nori_shm_backend_unlink(name);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    (void)nori_shm_backend_unlink(name);
    return 0;
}

static void assert_exit0(pid_t pid, int64_t timeout_ms)
{
    int status = shm_test_wait(pid, timeout_ms);
    if (status == -1)
        fail_msg("child %ld did not finish within %lld ms (killed)", (long)pid,
                 (long long)timeout_ms);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child %ld failed: status %d (exit %d, signal %d)", (long)pid, status,
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* Waits (bounded) until pid is stopped. */
static void wait_stopped(pid_t pid)
{
    for (int i = 0; i < 10000; i++) {
        char path[64], st = 0;
        snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
        FILE *f = fopen(path, "r");
        if (f != NULL) {
            int n = fscanf(f, "%*d %*s %c", &st);
            fclose(f);
            if (n == 1 && st == 'T')
                return;
        }
        shm_test_sleep_us(1000);
    }
    fail_msg("child %ld never stopped", (long)pid);
}

/* The end address of this process's mapping of segment `name`, 0 if none. */
static uintptr_t mapping_end(const char *seg)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL)
        return 0;
    char line[512], want[128];
    snprintf(want, sizeof want, "/dev/shm/%s", seg);
    uintptr_t end = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        const char *path = strchr(line, '/');
        if (path == NULL || strcmp(path, want) != 0)
            continue;
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2)
            end = (uintptr_t)hi;
    }
    fclose(f);
    return end;
}

/* ---- a lock-free read whose entry is freed and reused under it ---- */

enum { RR_MAX_KEYS = 1000, RR_MAX_BYTES = 2 << 20, RR_FILL = 150, RR_VLEN = 1887436 };
#define RR_GUARD ((size_t)64 << 20)

/*
 * The reader: maps the segment right below a PROT_NONE guard (mmap places
 * mappings top-down: the segment goes just below the guard reserved
 * first), then reads "k" and stops after checking it (pause point
 * "read_copy"). Resumed, it must get a miss (the entry was deleted) and
 * must not have touched anything past the mapping.
 */
static int reuse_reader(void *arg)
{
    (void)arg;
    /* A fault kills the child (cmocka's handler would carry on in it). */
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    void *guard = mmap(NULL, RR_GUARD, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
    if (guard == MAP_FAILED)
        return 20;
    nori_backend *b = NULL;
    if (nori__shm_backend_new_opts(name, RR_MAX_KEYS, RR_MAX_BYTES, false, &b) != NORI_OK)
        return 21;
    if (mapping_end(name) != (uintptr_t)guard)
        return 22; /* the guard is not right after the mapping: nothing proven */
    nori__shm_pause_at("read_copy");
    nori_buf v = {NULL, 0};
    int rc = nori_backend_get(b, "k", &v);
    nori_buf_free(&v);
    nori_backend_free(b);
    return rc == NORI_MISS ? 0 : 23;
}

/*
 * The entry read is LARGE (a 1.8 MiB value in pages; its header and key in
 * a 48-byte chunk placed 150 pages into the arena). While the reader is
 * stopped after its checks, the writer deletes it and writes a small entry
 * that takes the same chunk. A reader that reloads the entry's shape
 * (flags, key length) after its checks copies 1.8 MiB from that chunk as a
 * small value: past the end of the mapping.
 */
static void test_read_of_reused_chunk_stays_inside(void **state)
{
    (void)state;
    nori_backend *b = NULL;
    assert_nori(nori__shm_backend_new_opts(name, RR_MAX_KEYS, RR_MAX_BYTES, false, &b), NORI_OK);
    /* Pages 1..150 taken, then given back in order: the free list starts
     * at page 150, so the next chunk is carved far into the arena. */
    char *val = malloc(RR_VLEN);
    assert_non_null(val);
    memset(val, 'f', 4000);
    char key[32];
    for (int i = 0; i < RR_FILL; i++) {
        snprintf(key, sizeof key, "fill-%d", i);
        assert_nori(nori_backend_set(b, key, val, 4000, 0), NORI_OK);
    }
    for (int i = 0; i < RR_FILL; i++) {
        snprintf(key, sizeof key, "fill-%d", i);
        assert_nori(nori_backend_delete(b, key), NORI_OK);
    }
    memset(val, 'L', RR_VLEN);
    assert_nori(nori_backend_set(b, "k", val, RR_VLEN, 0), NORI_OK);
    free(val);

    pid_t pid = shm_test_spawn(reuse_reader, NULL);
    wait_stopped(pid);
    /* The chunk of "k" is freed (its page goes back to the head of the
     * free list) and taken again by "j", a 4-byte value. */
    assert_nori(nori_backend_delete(b, "k"), NORI_OK);
    assert_nori(nori_backend_set(b, "j", "abcd", 4, 0), NORI_OK);
    assert_int_equal(kill(pid, SIGCONT), 0);
    assert_exit0(pid, 30000);
    assert_true(nori__shm_audit(b) >= 0);
    nori_backend_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read_of_reused_chunk_stays_inside, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
