// SPDX-License-Identifier: MIT
/* The process key of the keyed hash in hash.h. */
#include "hash.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

uint64_t nori__hash_k0, nori__hash_k1;

static pthread_once_t key_once = PTHREAD_ONCE_INIT;

/* n random bytes: getrandom() (blocks only until the kernel's pool is first
 * initialised, early at boot), else /dev/urandom. 0 or -1. */
static int random_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(p + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (got == n)
        return 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    return got == n ? 0 : -1;
}

static void draw_key(void)
{
    uint64_t k[2];
    if (random_bytes(k, sizeof k) != 0) {
        fputs("libnoricache: no randomness (getrandom and /dev/urandom failed) for the "
              "hash key\n",
              stderr);
        abort();
    }
    nori__hash_k0 = k[0];
    nori__hash_k1 = k[1];
}

uint64_t nori__hash_seed(void)
{
    pthread_once(&key_once, draw_key);
    uint64_t seed;
    if (random_bytes(&seed, sizeof seed) != 0) {
        fputs("libnoricache: no randomness (getrandom and /dev/urandom failed)\n", stderr);
        abort();
    }
    return seed;
}
