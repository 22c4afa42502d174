// SPDX-License-Identifier: MIT
/*
 * The shared-memory backend against what an outside reviewer tries:
 *  - a lock-free read stopped between checking an entry and copying its
 *    value, while another process frees the entry and reuses its chunk for
 *    an entry of another shape: the read must neither leave the mapping
 *    nor return what it copied (a guard region right after the mapping
 *    turns any read past its end into a crash of the reader);
 *  - a segment whose contents (not its header) a buggy process of the same
 *    user broke: a bucket chain made cyclic or pointed outside the arena.
 *    Reads and writes of that bucket must end with an error naming the
 *    segment (the shard emptied), never loop for ever holding the shard's
 *    lock nor fault.
 * Children never call cmocka: they report through their exit status.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "shm/internal.h"
#include "shm/shm.h"
#include "shm_checks.h"
#include "test_support.h"

#include <inttypes.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000 /* Linux 4.17 */
#endif

static int setup(void **state)
{
    (void)state;
    return shm_test_segment_setup("hostile");
}

static int teardown(void **state)
{
    (void)state;
    shm_test_segment_teardown();
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

/* The end address of this process's mapping of segment `seg`, 0 if none. */
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
 * first; if it went elsewhere, a guard is placed right after it), then
 * reads "k" and stops after checking it (pause point
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
    if (nori__shm_backend_new_opts(shm_test_name, RR_MAX_KEYS, RR_MAX_BYTES, false, &b) != NORI_OK)
        return 21;
    uintptr_t end = mapping_end(shm_test_name);
    if (end != (uintptr_t)guard) {
        /* Placed elsewhere (a hole higher up): a guard right after it. */
        void *g2 = mmap((void *)end, RR_GUARD, PROT_NONE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
        if (g2 != (void *)end)
            return 22; /* something else is mapped right after it: nothing proven */
    }
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
    assert_nori(nori__shm_backend_new_opts(shm_test_name, RR_MAX_KEYS, RR_MAX_BYTES, false, &b),
                NORI_OK);
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
    nori_test_wait_stopped((int)pid);
    /* The chunk of "k" is freed (its page goes back to the head of the
     * free list) and taken again by "j", a 4-byte value. */
    assert_nori(nori_backend_delete(b, "k"), NORI_OK);
    assert_nori(nori_backend_set(b, "j", "abcd", 4, 0), NORI_OK);
    assert_int_equal(kill(pid, SIGCONT), 0);
    assert_exit0(pid, 30000);
    assert_true(nori__shm_audit(b) >= 0);
    nori_backend_free(b);
}

/* ---- a bucket chain broken by a faulty process of the same user ---- */

enum { BC_MAX_KEYS = 1000, BC_MAX_BYTES = 1 << 20 };

/* Three keys of one bucket: the first two stored, the third absent. */
static char bc_keys[3][32];

static void find_bucket_mates(shm_backend *sb)
{
    shm_bucket *want = NULL;
    int found = 0;
    for (int i = 0; found < 3 && i < 10000000; i++) {
        char key[32];
        snprintf(key, sizeof key, "mate-%d", i);
        shm_bucket *bk = shm_bucket_of(sb, shm_hash(sb, key, strlen(key)));
        if (want == NULL)
            want = bk;
        if (bk == want)
            snprintf(bc_keys[found++], sizeof bc_keys[0], "%s", key);
    }
    assert_int_equal(found, 3);
}

/* Breaks the chain of bc_keys' bucket: the older entry's link points back
 * at the head (a cycle), or out of the arena. */
static void break_chain(nori_backend *b, bool cycle)
{
    shm_backend *sb = nori__shm_as_shm(b);
    shm_bucket *bk = shm_bucket_of(sb, shm_hash(sb, bc_keys[0], strlen(bc_keys[0])));
    uint32_t head = atomic_load(&bk->head);
    shm_entry *first = shm_entry_at(sb, head);
    shm_entry *second = shm_entry_at(sb, first->hnext);
    second->hnext = cycle ? head : 0xfffffff0u;
}

/*
 * In a child (a walk that never ends is killed at the bound): reads and
 * writes of the broken bucket fail with NORI_EBACKEND naming the segment
 * and the shard, the shard is emptied (its entries are lost, counted in
 * shard_resets), and the next calls work.
 */
static int broken_chain_child(void *arg)
{
    bool cycle = *(bool *)arg;
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    nori_backend *b = NULL;
    if (nori__shm_backend_new_opts(shm_test_name, BC_MAX_KEYS, BC_MAX_BYTES, false, &b) != NORI_OK)
        return 30;
    /* Every operation that walks the chain under the lock, each on a chain
     * broken again. */
    for (int op = 0; op < 7; op++) {
        for (int k = 0; k < 2; k++)
            if (nori_backend_set(b, bc_keys[k], "old", 3, 0) != NORI_OK)
                return 31;
        break_chain(b, cycle);
        nori_shm_stats before, after;
        nori_shm_backend_get_stats(b, &before);
        nori_buf v = {NULL, 0};
        int64_t n = 0;
        int deleted = 0;
        int rc;
        switch (op) {
        case 0:
            rc = nori_backend_get(b, bc_keys[2], &v);
            break;
        case 1:
            rc = nori_backend_set(b, bc_keys[2], "new", 3, 0);
            break;
        case 2:
            rc = nori_backend_delete(b, bc_keys[2]);
            break;
        case 3:
            rc = nori_backend_incr(b, bc_keys[2], 0, &n);
            break;
        case 4:
            rc = nori_backend_delete_if_equal(b, bc_keys[2], "x", 1, &deleted);
            break;
        case 5:
            rc = nori_backend_delete_prefix(b, "mate-");
            break;
        default: /* the expiry sweep: its error goes nowhere, the reset shows */
            nori__shm_sweep_now(b);
            rc = NORI_EBACKEND;
            break;
        }
        nori_buf_free(&v);
        if (op < 6 && (rc != NORI_EBACKEND || strstr(nori_last_error(), shm_test_name) == NULL ||
            strstr(nori_last_error(), "broken") == NULL)) {
            fprintf(stderr, "op %d: rc %d, %s\n", op, rc, nori_last_error());
            return 40 + op;
        }
        nori_shm_backend_get_stats(b, &after);
        if (after.shard_resets != before.shard_resets + 1)
            return 50 + op;
        /* Emptied: the old entries are gone, the bucket works again. */
        if (nori_backend_get(b, bc_keys[0], &v) != NORI_MISS)
            return 60 + op;
        if (nori_backend_set(b, bc_keys[2], "new", 3, 0) != NORI_OK ||
            nori_backend_get(b, bc_keys[2], &v) != NORI_OK || strcmp(v.data, "new") != 0)
            return 70 + op;
        nori_buf_free(&v);
        if (nori_backend_delete(b, bc_keys[2]) != NORI_OK)
            return 80 + op;
    }
    nori_backend_free(b);
    return 0;
}

static void test_broken_chain_refused_and_shard_emptied(void **state)
{
    (void)state;
    nori_backend *b = NULL;
    assert_nori(nori__shm_backend_new_opts(shm_test_name, BC_MAX_KEYS, BC_MAX_BYTES, false, &b),
                NORI_OK);
    find_bucket_mates(nori__shm_as_shm(b));
    for (int cycle = 1; cycle >= 0; cycle--) {
        bool c = cycle;
        pid_t pid = shm_test_spawn(broken_chain_child, &c);
        /* A bounded walk of a 1000-key segment takes microseconds; 20 s is
         * for a loaded machine. */
        assert_exit0(pid, 20000);
    }
    nori_backend_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read_of_reused_chunk_stays_inside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_chain_refused_and_shard_emptied, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
