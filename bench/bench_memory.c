// SPDX-License-Identifier: MIT
/*
 * bench_memory: the memory backend next to its practical limits, in one run.
 *
 *   get      10000 keys (18-byte keys, 64-byte values), one thread:
 *            a bare single-threaded open-addressing table doing the same
 *            lookups and copying the value to a caller buffer, vs
 *            nori_backend_get_into (caller buffer) and nori_backend_get (malloc'd copy)
 *   getpair  the same contenders in alternating slices of 500,000 lookups
 *            (20 to 40 ms, long enough that the first pass over the keys,
 *            cold after the other contender's slice, weighs 2%), 40 slices
 *            each: the median of the ratios of neighbouring slices. On a
 *            shared machine whose load changes over seconds, this is
 *            steadier than whole runs
 *   mixed    90% get / 10% set on the same keys, from 1, 2, 4 and 8 threads,
 *            and 100% get from 1 and 2 threads (2 cores here: 4 and 8 show
 *            oversubscription)
 *   evict    100% set over 100000 keys into max_keys=10000 (eviction on
 *            nearly every insert), 1 thread
 *   memory   resident memory for 1M entries (16-byte keys, 64-byte values)
 *            minus the raw bytes, per entry
 *   threads  90/10 from 1, 2, 4 and 8 threads (for the chart)
 *   bytes    1M sets of random sizes (64 B .. 64 KiB) over 20000 keys from 4
 *            threads into a 64 MiB byte bound: peak and final RSS beyond the
 *            empty process
 *   expiry   1M entries with ttl 1 s, no reads: entries held and RSS after
 *            3 s, next to the empty process (malloc_trim on/off is the
 *            sweeper's choice; see docs/BENCHMARKS.md)
 *
 * Runs alternate between the contenders and the best of several rounds is
 * kept, because the machines are shared and noisy. Prints one line per
 * figure and the ratios at the end. Usage: bench_memory [rounds] [section...]
 *
 * NORI_BENCH_GET_OPS=N runs N operations per contender in the get section
 * instead of 5,000,000: under valgrind --tool=callgrind, the inclusive cost of
 * run_bare, run_nori and run_nori_malloc divided by N is the cost of one
 * lookup with its loop (bench/memory_get.sh). The same source is built twice:
 * bench_memory links the static library, bench_memory_shared the shared one
 * (libnoricache.so, as an application would: calls through the PLT).
 */
#include <nori/cache.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NKEYS 10000
#define KEY_LEN 18
#define VAL_LEN 64
#define GET_OPS 5000000
#define MIXED_OPS 4000000

static char keys[NKEYS][KEY_LEN + 1];
static char vals[NKEYS][VAL_LEN];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_memory: %s: %s (%s)\n", what, nori_strerror(rc), nori_last_error());
    exit(1);
}

/* A fixed, reproducible access sequence shared by every contender. */
static uint32_t *make_sequence(size_t n, uint32_t seed)
{
    uint32_t *seq = malloc(n * sizeof *seq);
    if (seq == NULL)
        exit(1);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        seq[i] = (uint32_t)(x % NKEYS);
    }
    return seq;
}

/* ---- the bare table: open addressing, linear probing, no locks ---- */

typedef struct {
    char key[KEY_LEN + 1];
    uint8_t used;
    uint32_t vlen;
    char val[VAL_LEN];
} bare_slot;

#define BARE_SLOTS 16384 /* load 0.61 */
static bare_slot bare[BARE_SLOTS];

static uint64_t bare_hash(const char *k, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, k, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
        k += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, k, n);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 31);
}

static void bare_put(const char *k, const char *v, uint32_t vlen)
{
    size_t n = strlen(k);
    for (uint64_t i = bare_hash(k, n);; i++) {
        bare_slot *s = &bare[i & (BARE_SLOTS - 1)];
        if (!s->used || strcmp(s->key, k) == 0) {
            memcpy(s->key, k, n + 1);
            memcpy(s->val, v, vlen);
            s->vlen = vlen;
            s->used = 1;
            return;
        }
    }
}

static bool bare_get(const char *k, char *out, size_t *len)
{
    size_t n = strlen(k);
    for (uint64_t i = bare_hash(k, n);; i++) {
        bare_slot *s = &bare[i & (BARE_SLOTS - 1)];
        if (!s->used)
            return false;
        if (memcmp(s->key, k, n + 1) == 0) {
            memcpy(out, s->val, s->vlen);
            *len = s->vlen;
            return true;
        }
    }
}

/* ---- contenders ---- */

typedef struct {
    nori_backend *b;
    const uint32_t *seq;
    size_t ops;
    int set_every; /* 0: get only; 10: one set in ten */
    double seconds;
    uint64_t checksum;
} run_args;

static void *run_nori(void *arg)
{
    run_args *a = arg;
    char buf[VAL_LEN];
    size_t len;
    uint64_t sum = 0;
    double t0 = now_s();
    for (size_t i = 0; i < a->ops; i++) {
        uint32_t k = a->seq[i];
        if (a->set_every != 0 && i % (size_t)a->set_every == 0) {
            int rc = nori_backend_set(a->b, keys[k], vals[k], VAL_LEN, 0);
            if (rc != NORI_OK)
                die("set", rc);
        } else {
            int rc = nori_backend_get_into(a->b, keys[k], buf, sizeof buf, &len);
            if (rc != NORI_OK)
                die("get_into", rc);
            sum += (unsigned char)buf[len - 1];
        }
    }
    a->seconds = now_s() - t0;
    a->checksum = sum;
    return NULL;
}

static void *run_nori_malloc(void *arg)
{
    run_args *a = arg;
    uint64_t sum = 0;
    double t0 = now_s();
    for (size_t i = 0; i < a->ops; i++) {
        nori_buf out;
        int rc = nori_backend_get(a->b, keys[a->seq[i]], &out);
        if (rc != NORI_OK)
            die("get", rc);
        sum += (unsigned char)out.data[out.len - 1];
        nori_buf_free(&out);
    }
    a->seconds = now_s() - t0;
    a->checksum = sum;
    return NULL;
}

static void *run_bare(void *arg)
{
    run_args *a = arg;
    char buf[VAL_LEN];
    size_t len;
    uint64_t sum = 0;
    double t0 = now_s();
    for (size_t i = 0; i < a->ops; i++) {
        if (!bare_get(keys[a->seq[i]], buf, &len))
            exit(2);
        sum += (unsigned char)buf[len - 1];
    }
    a->seconds = now_s() - t0;
    a->checksum = sum;
    return NULL;
}

/* Runs fn on `threads` threads at once, each over its own sequence; returns
 * total operations per second. */
static double run_threads(void *(*fn)(void *), nori_backend *b, uint32_t **seqs, size_t ops,
                          int set_every, int threads)
{
    pthread_t tid[8];
    run_args args[8];
    for (int t = 0; t < threads; t++) {
        args[t] = (run_args){b, seqs[t], ops, set_every, 0, 0};
        pthread_create(&tid[t], NULL, fn, &args[t]);
    }
    double slowest = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        if (args[t].seconds > slowest)
            slowest = args[t].seconds;
    }
    return (double)ops * threads / slowest;
}

static nori_backend *loaded_backend(size_t max_keys)
{
    nori_backend *b;
    int rc = nori_memory_backend_new(max_keys, &b);
    if (rc != NORI_OK)
        die("memory_backend_new", rc);
    for (int i = 0; i < NKEYS; i++)
        if ((rc = nori_backend_set(b, keys[i], vals[i], VAL_LEN, 0)) != NORI_OK)
            die("set", rc);
    return b;
}

static double maxd(double a, double b)
{
    return a > b ? a : b;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f == NULL || fscanf(f, "%ld %ld", &pages, &resident) != 2)
        exit(1);
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* ---- the byte bound: RSS under 4 writer threads of mixed sizes ---- */

#define BYTES_BOUND ((size_t)64 * 1024 * 1024)
#define BYTES_SETS 1000000
#define BYTES_KEYS 20000
#define BYTES_THREADS 4

typedef struct {
    nori_backend *b;
    int id;
    const char *val;
} bytes_args;

static void *bytes_writer(void *arg)
{
    bytes_args *a = arg;
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(a->id + 1);
    char key[32];
    for (int i = 0; i < BYTES_SETS / BYTES_THREADS; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        snprintf(key, sizeof key, "blob:%d", (int)(x % BYTES_KEYS));
        size_t len = 64 + (size_t)((x >> 20) % (64 * 1024 - 64 + 1));
        int rc = nori_backend_set(a->b, key, a->val, len, 0);
        if (rc != NORI_OK)
            die("set", rc);
    }
    return NULL;
}

static _Atomic int sampling;
static _Atomic long peak_kib;

static void *rss_sampler(void *arg)
{
    (void)arg;
    while (atomic_load(&sampling)) {
        long r = rss_kib();
        if (r > atomic_load(&peak_kib))
            atomic_store(&peak_kib, r);
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void bench_bytes(void)
{
    char *val = malloc(64 * 1024);
    if (val == NULL)
        exit(1);
    memset(val, 'b', 64 * 1024);
    long empty = rss_kib();
    nori_backend *b;
    int rc = nori_memory_backend_new(1000000, &b);
    if (rc == NORI_OK)
        rc = nori_memory_backend_set_max_bytes(b, BYTES_BOUND);
    if (rc != NORI_OK)
        die("memory_backend_new", rc);
    atomic_store(&sampling, 1);
    atomic_store(&peak_kib, empty);
    pthread_t sampler, tid[BYTES_THREADS];
    bytes_args args[BYTES_THREADS];
    pthread_create(&sampler, NULL, rss_sampler, NULL);
    double t0 = now_s();
    for (int t = 0; t < BYTES_THREADS; t++) {
        args[t] = (bytes_args){b, t, val};
        pthread_create(&tid[t], NULL, bytes_writer, &args[t]);
    }
    for (int t = 0; t < BYTES_THREADS; t++)
        pthread_join(tid[t], NULL);
    double secs = now_s() - t0;
    atomic_store(&sampling, 0);
    pthread_join(sampler, NULL);
    long end = rss_kib();
    nori_backend_stats st;
    nori_backend_get_stats(b, &st);
    double bound_mib = (double)BYTES_BOUND / 1048576.0;
    double peak_mib = (double)(atomic_load(&peak_kib) - empty) / 1024.0;
    printf("bytes %d sets of 64 B..64 KiB, %d threads, bound %.0f MiB: %.0f sets/s; held %.1f MiB "
           "in %llu entries; RSS beyond the empty process: peak %.1f MiB (%.2fx the bound), "
           "end %.1f MiB\n",
           BYTES_SETS, BYTES_THREADS, bound_mib, BYTES_SETS / secs, (double)st.bytes / 1048576.0,
           (unsigned long long)st.entries, peak_mib, peak_mib / bound_mib,
           (double)(end - empty) / 1024.0);
    nori_backend_free(b);
    free(val);
}

/* ---- active expiry: 1M entries with ttl 1 s, never read ---- */

static void bench_expiry(void)
{
    enum { EXP_ENTRIES = 1000000 };
    long no_backend = rss_kib();
    nori_backend *b;
    int rc = nori_memory_backend_new(EXP_ENTRIES, &b);
    if (rc != NORI_OK)
        die("memory_backend_new", rc);
    /* "Empty": the process with the backend created and its expiry thread
     * running, before the first write. */
    struct timespec settle = {0, 50000000};
    nanosleep(&settle, NULL);
    long empty = rss_kib();
    char key[32], val[64];
    memset(val, 'e', sizeof val);
    for (int i = 0; i < EXP_ENTRIES; i++) {
        snprintf(key, sizeof key, "exp:%012d", i);
        if ((rc = nori_backend_set(b, key, val, sizeof val, 1)) != NORI_OK)
            die("set", rc);
    }
    double t0 = now_s();
    long full = rss_kib();
    nori_backend_stats st;
    double drained = -1;
    while (now_s() - t0 < 3.0) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
        nori_backend_get_stats(b, &st);
        if (drained < 0 && st.entries < EXP_ENTRIES / 100)
            drained = now_s() - t0;
    }
    nori_backend_get_stats(b, &st);
    long after = rss_kib();
    printf("expiry %d entries ttl 1 s, no reads: after 3 s %llu held (%.2f%%), below 1%% %.2f s "
           "after the last write; RSS without a backend %.1f MiB, empty backend %.1f MiB, full "
           "%.1f MiB, after 3 s %.1f MiB (%.2fx empty)\n",
           EXP_ENTRIES, (unsigned long long)st.entries, 100.0 * (double)st.entries / EXP_ENTRIES,
           drained, no_backend / 1024.0, empty / 1024.0, full / 1024.0, after / 1024.0,
           (double)after / (double)empty);
    nori_backend_free(b);
}

/* ---- getpair: contenders in alternating short slices ---- */

#define PAIR_SLICE 500000
#define PAIR_SLICES 40

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One slice of fn over seq[from, from + PAIR_SLICE): its rate in ops/s. */
static double slice_rate(void *(*fn)(void *), nori_backend *b, const uint32_t *seq, size_t from)
{
    run_args a = {b, seq + from, PAIR_SLICE, 0, 0, 0};
    fn(&a);
    return PAIR_SLICE / a.seconds;
}

static void bench_getpair(const uint32_t *seq, size_t seq_len)
{
    nori_backend *b = loaded_backend(NKEYS);
    static double into[PAIR_SLICES], copy[PAIR_SLICES], bare_rates[PAIR_SLICES];
    for (int i = 0; i < PAIR_SLICES; i++) {
        size_t from = (size_t)i * PAIR_SLICE % (seq_len - PAIR_SLICE);
        /* bare, get_into, bare, get: each nori slice next to a bare one */
        double b1 = slice_rate(run_bare, NULL, seq, from);
        double r1 = slice_rate(run_nori, b, seq, from);
        double b2 = slice_rate(run_bare, NULL, seq, from);
        double r2 = slice_rate(run_nori_malloc, b, seq, from);
        into[i] = r1 / ((b1 + b2) / 2);
        copy[i] = r2 / b2;
        bare_rates[i] = b1;
    }
    printf("getpair bare table, median slice      %12.0f ops/s\n", median(bare_rates, PAIR_SLICES));
    printf("getpair nori get_into / bare, median  %12.2fx\n", median(into, PAIR_SLICES));
    printf("getpair nori get / bare, median       %12.2fx\n", median(copy, PAIR_SLICES));
    nori_backend_free(b);
}

static bool wanted(int argc, char **argv, const char *section)
{
    if (argc <= 2)
        return true;
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], section) == 0)
            return true;
    return false;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    if (rounds < 1)
        rounds = 1;
    for (int i = 0; i < NKEYS; i++) {
        snprintf(keys[i], sizeof keys[i], "user:%08d:prof", i); /* 18 bytes */
        for (int j = 0; j < VAL_LEN; j++)
            vals[i][j] = (char)('a' + (i + j) % 26);
        bare_put(keys[i], vals[i], VAL_LEN);
    }
    /* The access sequences only for the sections that use them, so that the
     * bytes and expiry sections measure RSS next to a small empty process. */
    uint32_t *seqs[8] = {NULL};
    size_t get_ops = GET_OPS;
    const char *ops_env = getenv("NORI_BENCH_GET_OPS");
    if (ops_env != NULL && atol(ops_env) > 0 && atol(ops_env) <= GET_OPS)
        get_ops = (size_t)atol(ops_env);
    if (wanted(argc, argv, "get") || wanted(argc, argv, "getpair") ||
        wanted(argc, argv, "mixed") || wanted(argc, argv, "threads"))
        for (int i = 0; i < 8; i++)
            seqs[i] = make_sequence(GET_OPS, (uint32_t)i + 1);
    printf("bench_memory: %d rounds, best of each; %d keys of %d bytes, values of %d bytes\n",
           rounds, NKEYS, KEY_LEN, VAL_LEN);

    if (wanted(argc, argv, "get")) {
        nori_backend *b = loaded_backend(NKEYS);
        double best_bare = 0, best_into = 0, best_malloc = 0;
        for (int r = 0; r < rounds; r++) {
            best_bare = maxd(best_bare, run_threads(run_bare, NULL, seqs, get_ops, 0, 1));
            best_into = maxd(best_into, run_threads(run_nori, b, seqs, get_ops, 0, 1));
            best_malloc = maxd(best_malloc, run_threads(run_nori_malloc, b, seqs, get_ops, 0, 1));
        }
        printf("get  bare open-addressing table   %12.0f ops/s\n", best_bare);
        printf("get  nori get_into (caller buf)   %12.0f ops/s  ratio %.2fx bare\n", best_into,
               best_into / best_bare);
        printf("get  nori get (malloc'd copy)     %12.0f ops/s  ratio %.2fx bare\n", best_malloc,
               best_malloc / best_bare);
        nori_backend_free(b);
    }

    if (wanted(argc, argv, "getpair") && argc > 2) /* only when asked for */
        bench_getpair(seqs[0], GET_OPS);

    if (wanted(argc, argv, "mixed")) {
        nori_backend *b = loaded_backend(NKEYS);
        double best1 = 0, best2 = 0, bare1 = 0, bare2 = 0, best4 = 0, best8 = 0, get1 = 0,
               get2 = 0;
        for (int r = 0; r < rounds; r++) {
            /* The machine's own ceiling: the lock-free bare table scales only
             * as far as the two cores really run in parallel. */
            bare1 = maxd(bare1, run_threads(run_bare, NULL, seqs, MIXED_OPS, 0, 1));
            bare2 = maxd(bare2, run_threads(run_bare, NULL, seqs, MIXED_OPS, 0, 2));
            best1 = maxd(best1, run_threads(run_nori, b, seqs, MIXED_OPS, 10, 1));
            best2 = maxd(best2, run_threads(run_nori, b, seqs, MIXED_OPS, 10, 2));
            best4 = maxd(best4, run_threads(run_nori, b, seqs, MIXED_OPS / 2, 10, 4));
            best8 = maxd(best8, run_threads(run_nori, b, seqs, MIXED_OPS / 4, 10, 8));
            get1 = maxd(get1, run_threads(run_nori, b, seqs, MIXED_OPS, 0, 1));
            get2 = maxd(get2, run_threads(run_nori, b, seqs, MIXED_OPS, 0, 2));
        }
        printf("scale bare table get, 1 thread    %12.0f ops/s\n", bare1);
        printf("scale bare table get, 2 threads   %12.0f ops/s  ratio %.2fx 1 thread\n", bare2,
               bare2 / bare1);
        printf("mixed 90/10 1 thread              %12.0f ops/s\n", best1);
        printf("mixed 90/10 2 threads             %12.0f ops/s  ratio %.2fx 1 thread\n", best2,
               best2 / best1);
        printf("mixed 90/10 4 threads             %12.0f ops/s  ratio %.2fx 2 threads\n", best4,
               best4 / best2);
        printf("mixed 90/10 8 threads             %12.0f ops/s  ratio %.2fx 2 threads\n", best8,
               best8 / best2);
        printf("get 100%% 1 thread                 %12.0f ops/s\n", get1);
        printf("get 100%% 2 threads                %12.0f ops/s  ratio %.2fx 1 thread\n", get2,
               get2 / get1);
        nori_backend_free(b);
    }

    if (wanted(argc, argv, "evict")) {
        enum { EVICT_KEYS = 100000, EVICT_OPS = 2000000 };
        char (*ekeys)[24] = malloc(sizeof(*ekeys) * EVICT_KEYS);
        if (ekeys == NULL)
            return 1;
        for (int i = 0; i < EVICT_KEYS; i++)
            snprintf(ekeys[i], sizeof ekeys[i], "evict:%012d", i);
        double best = 0;
        uint64_t evictions = 0;
        for (int r = 0; r < rounds; r++) {
            nori_backend *b;
            nori_memory_backend_new(NKEYS, &b);
            uint64_t x = 88172645463325252ull;
            double t0 = now_s();
            for (int i = 0; i < EVICT_OPS; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                int rc = nori_backend_set(b, ekeys[x % EVICT_KEYS], vals[i % NKEYS], VAL_LEN, 0);
                if (rc != NORI_OK)
                    die("set", rc);
            }
            best = maxd(best, EVICT_OPS / (now_s() - t0));
            nori_backend_stats st;
            nori_backend_get_stats(b, &st);
            evictions = st.evictions;
            nori_backend_free(b);
        }
        printf("evict set-heavy, max_keys 10000    %12.0f ops/s  (%llu evictions per round)\n",
               best, (unsigned long long)evictions);
        free(ekeys);
    }

    if (wanted(argc, argv, "memory")) {
        enum { MEM_ENTRIES = 1000000, MEM_KEY = 16, MEM_VAL = 64 };
        long before = rss_kib();
        nori_backend *b;
        nori_memory_backend_new(MEM_ENTRIES, &b);
        char key[MEM_KEY + 1], val[MEM_VAL];
        memset(val, 'v', sizeof val);
        for (int i = 0; i < MEM_ENTRIES; i++) {
            snprintf(key, sizeof key, "mem:%012d", i); /* 16 bytes */
            int rc = nori_backend_set(b, key, val, MEM_VAL, 0);
            if (rc != NORI_OK)
                die("set", rc);
        }
        long after = rss_kib();
        double per_entry = (double)(after - before) * 1024.0 / MEM_ENTRIES;
        printf("memory 1M entries: %.1f bytes resident per entry, %.1f beyond the %d raw "
               "bytes\n",
               per_entry, per_entry - (MEM_KEY + MEM_VAL), MEM_KEY + MEM_VAL);
        nori_backend_free(b);
    }
    if (wanted(argc, argv, "threads")) {
        /* For the chart: 90/10 throughput by thread count (2 cores here, so
         * 4 and 8 threads show the cost of oversubscription). */
        nori_backend *b = loaded_backend(NKEYS);
        for (int t = 1; t <= 8; t *= 2) {
            double best = 0;
            for (int r = 0; r < rounds; r++)
                best = maxd(best, run_threads(run_nori, b, seqs, MIXED_OPS / 2, 10, t));
            printf("threads %d mixed 90/10 %12.0f ops/s\n", t, best);
        }
        nori_backend_free(b);
    }
    if (wanted(argc, argv, "bytes"))
        bench_bytes();
    if (wanted(argc, argv, "expiry"))
        bench_expiry();
    for (int i = 0; i < 8; i++)
        free(seqs[i]);
    return 0;
}
