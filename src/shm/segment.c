// SPDX-License-Identifier: MIT
/*
 * The shared-memory segment: names, the layout, the header, creation,
 * attachment and unlinking.
 *
 * Creation never exposes a half-built segment: the creator builds it under a
 * temporary name in /dev/shm ("<name>.tmp-<pid>-<random>", mode 0600),
 * complete with its header, and publishes it with link(2), which fails
 * with EEXIST when another process published first (that one is then
 * attached, and the temporary file removed). So an attacher needs no wait
 * for a creator to finish, and a creator that dies mid-way leaves only its
 * temporary file, which the next creator of the name removes once it is a
 * minute old (a live creator finishes in milliseconds).
 *
 * Attachment checks everything before the segment is used: a regular file,
 * owned by the caller, mode 0600, large enough for a header; then the header
 * (read with pread, not mapped): magic, layout version, byte order,
 * checksum, sizes, and a layout recomputed from the sizes that must match
 * the stored offsets and the file's size exactly. Only then is it mapped.
 */
#include "shm/internal.h"

#include "error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHM_DIR "/dev/shm"
#define STALE_TEMP_SECONDS 60

/* ---- names ---- */

int nori__shm_check_name(const char *name)
{
    if (name == NULL)
        return nori__fail(NORI_EINVAL, "shm segment name is NULL");
    size_t n = strnlen(name, NORI_SHM_NAME_MAX + 1);
    if (n == 0)
        return nori__fail(NORI_EINVAL, "shm segment name is empty");
    if (n > NORI_SHM_NAME_MAX)
        return nori__fail(NORI_EINVAL, "shm segment name '%.40s...' is %zu bytes, the limit is %d",
                          name, strlen(name), NORI_SHM_NAME_MAX);
    if (strchr(name, '/') != NULL)
        return nori__fail(NORI_EINVAL, "shm segment name '%s' contains '/': a name is one word "
                                       "(the segment is " SHM_DIR "/<name>)", name);
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++)
        if (*p < 0x20 || *p == 0x7f)
            return nori__fail(NORI_EINVAL, "shm segment name contains control character 0x%02x",
                              *p);
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return nori__fail(NORI_EINVAL, "shm segment name '%s' is not a file name", name);
    return NORI_OK;
}

static void segment_path(const char *name, char *out, size_t cap)
{
    snprintf(out, cap, SHM_DIR "/%s", name);
}

/* ---- the layout ---- */

static uint64_t round_up(uint64_t n, uint64_t to)
{
    return (n + to - 1) / to * to;
}

int nori__shm_layout_compute(uint64_t max_keys, uint64_t max_bytes, shm_layout *out)
{
    if (max_keys == 0 || max_keys > SHM_MAX_KEYS)
        return nori__fail(NORI_EINVAL, "shm backend: max_keys is %" PRIu64 ", it must be 1..%zu",
                          max_keys, SHM_MAX_KEYS);
    if (max_bytes < SHM_MIN_BYTES || max_bytes > NORI_SHM_MAX_BYTES)
        return nori__fail(NORI_EINVAL,
                          "shm backend: max_bytes (CACHE_MAX_BYTES) is %" PRIu64
                          ", it must be %zu..%" PRIu64 " (the arena is fixed at creation)",
                          max_bytes, SHM_MIN_BYTES, (uint64_t)NORI_SHM_MAX_BYTES);
    uint64_t per_shard = (max_keys + SHM_NSHARDS - 1) / SHM_NSHARDS;
    uint64_t bps = 1;
    while (bps < per_shard)
        bps <<= 1;
    shm_layout l = {0};
    l.buckets_per_shard = bps;
    l.npages = round_up(max_bytes, SHM_PAGE) / SHM_PAGE + SHM_NCLASSES;
    l.nflights = SHM_NFLIGHTS;
    l.off_global = round_up(sizeof(shm_header), 64);
    l.off_shards = l.off_global + round_up(sizeof(shm_global), 64);
    l.off_buckets = l.off_shards + (uint64_t)SHM_NSHARDS * sizeof(shm_shard);
    l.off_pages = l.off_buckets + round_up(bps * SHM_NSHARDS * sizeof(shm_bucket), 64);
    l.nslots = max_keys + SHM_SLOT_SLACK;
    l.off_flights = l.off_pages + round_up(l.npages * sizeof(shm_page), 64);
    l.off_stamps = l.off_flights + l.nflights * sizeof(shm_flight);
    l.off_slotmap = l.off_stamps + round_up(l.nslots * sizeof(uint64_t), 64);
    l.off_arena = round_up(l.off_slotmap + (l.nslots + 63) / 64 * sizeof(uint64_t), SHM_PAGE);
    l.total_bytes = l.off_arena + l.npages * SHM_PAGE;
    *out = l;
    return NORI_OK;
}

size_t nori_shm_segment_bytes(size_t max_keys, size_t max_bytes)
{
    shm_layout l = {0};
    if (nori__shm_layout_compute(max_keys, max_bytes, &l) != NORI_OK)
        return 0;
    return (size_t)l.total_bytes;
}

/* ---- the header ---- */

static uint64_t header_checksum(const shm_header *h)
{
    return nori__siphash(0x6e6f72692d73686dULL, 0x6865616465723031ULL, 1, 3, h,
                         offsetof(shm_header, checksum));
}

size_t nori__shm_header_bytes(void)
{
    return sizeof(shm_header);
}

static void header_fill(shm_header *h, const shm_layout *l, uint64_t max_keys,
                        uint64_t max_bytes, uint32_t uid)
{
    memset(h, 0, sizeof *h);
    h->magic = SHM_MAGIC;
    h->layout_version = SHM_LAYOUT_VERSION;
    h->header_bytes = sizeof(shm_header);
    h->byte_order = SHM_BYTE_ORDER;
    h->total_bytes = l->total_bytes;
    h->max_keys = max_keys;
    h->max_bytes = max_bytes;
    h->nshards = SHM_NSHARDS;
    h->page_bytes = SHM_PAGE;
    h->buckets_per_shard = (uint32_t)l->buckets_per_shard;
    h->nclasses = SHM_NCLASSES;
    h->npages = l->npages;
    h->off_global = l->off_global;
    h->off_shards = l->off_shards;
    h->off_buckets = l->off_buckets;
    h->off_pages = l->off_pages;
    h->off_flights = l->off_flights;
    h->nslots = l->nslots;
    h->off_stamps = l->off_stamps;
    h->off_slotmap = l->off_slotmap;
    h->off_arena = l->off_arena;
    h->nflights = l->nflights;
    h->owner_uid = uid;
    h->ready = SHM_READY;
}

int nori__shm_header_build(void *buf, uint64_t max_keys, uint64_t max_bytes, uint32_t uid)
{
    shm_layout l = {0};
    int rc = nori__shm_layout_compute(max_keys, max_bytes, &l);
    if (rc != NORI_OK)
        return rc;
    shm_header h;
    header_fill(&h, &l, max_keys, max_bytes, uid);
    h.k0 = 1;
    h.k1 = 2;
    h.generation = 3;
    h.creator_pid = 1;
    h.checksum = header_checksum(&h);
    memcpy(buf, &h, sizeof h);
    return NORI_OK;
}

void nori__shm_header_seal(void *buf)
{
    shm_header h;
    memcpy(&h, buf, sizeof h);
    h.checksum = header_checksum(&h);
    memcpy(buf, &h, sizeof h);
}

#define BAD(...) nori__fail(NORI_EINVAL, __VA_ARGS__)

int nori__shm_header_check(const void *buf, size_t len, uint64_t file_bytes, uint32_t uid,
                           const char *name)
{
    shm_header h;
    if (len < sizeof h)
        return BAD("shm segment '%s' is %" PRIu64 " bytes, too short for its %zu-byte header: "
                   "truncated or not a nori-cache segment; refused", name, file_bytes, sizeof h);
    memcpy(&h, buf, sizeof h);
    if (h.magic != SHM_MAGIC)
        return BAD("shm segment '%s' is not a nori-cache segment (bad magic %016" PRIx64
                   "); refused", name, h.magic);
    if (h.byte_order != SHM_BYTE_ORDER)
        return BAD("shm segment '%s' was made on a machine of another byte order; refused", name);
    if (h.layout_version != SHM_LAYOUT_VERSION || h.header_bytes != sizeof h)
        return BAD("shm segment '%s' has layout version %" PRIu32 " (header %" PRIu32
                   " bytes); this library reads version %u (header %zu bytes): unlink it "
                   "(nori_shm_backend_unlink) once no process of the other version uses it",
                   name, h.layout_version, h.header_bytes, SHM_LAYOUT_VERSION, sizeof h);
    if (h.checksum != header_checksum(&h))
        return BAD("shm segment '%s': header checksum mismatch (corrupted); refused", name);
    if (h.ready != SHM_READY)
        return BAD("shm segment '%s' was never completely initialised; refused", name);
    if (h.owner_uid != uid)
        return BAD("shm segment '%s' says it belongs to uid %" PRIu32 ", the file to uid %" PRIu32
                   "; refused", name, h.owner_uid, uid);
    if (h.nshards != SHM_NSHARDS || h.page_bytes != SHM_PAGE || h.nclasses != SHM_NCLASSES)
        return BAD("shm segment '%s' has %" PRIu32 " shards, %" PRIu32 "-byte pages and %" PRIu32
                   " classes, not %d, %u and %d; refused", name, h.nshards, h.page_bytes,
                   h.nclasses, SHM_NSHARDS, SHM_PAGE, SHM_NCLASSES);
    shm_layout l = {0};
    if (nori__shm_layout_compute(h.max_keys, h.max_bytes, &l) != NORI_OK)
        return BAD("shm segment '%s' holds impossible sizes (max_keys %" PRIu64
                   ", max_bytes %" PRIu64 "); refused", name, h.max_keys, h.max_bytes);
    if (h.total_bytes != l.total_bytes || h.npages != l.npages ||
        h.buckets_per_shard != l.buckets_per_shard || h.nflights != l.nflights ||
        h.off_global != l.off_global || h.off_shards != l.off_shards ||
        h.off_buckets != l.off_buckets || h.off_pages != l.off_pages ||
        h.off_flights != l.off_flights || h.off_arena != l.off_arena ||
        h.nslots != l.nslots || h.off_stamps != l.off_stamps || h.off_slotmap != l.off_slotmap)
        return BAD("shm segment '%s': its layout does not match its sizes (max_keys %" PRIu64
                   ", max_bytes %" PRIu64 "); refused", name, h.max_keys, h.max_bytes);
    if (file_bytes != h.total_bytes)
        return BAD("shm segment '%s' is %" PRIu64 " bytes, its header says %" PRIu64
                   ": truncated or corrupted; refused", name, file_bytes, h.total_bytes);
    return NORI_OK;
}

/* ---- opening ---- */

static int sys_fail(const char *what, const char *name, int err)
{
    return nori__fail(NORI_EBACKEND, "shm segment '%s': %s: %s", name, what, strerror(err));
}

static uint64_t random64(void)
{
    return nori__hash_seed(); /* getrandom()-backed, fresh on each call */
}

/* Removes "<name>.tmp-*" files older than a minute: left by creators that
 * died before publishing. */
static void remove_stale_temps(const char *name)
{
    DIR *d = opendir(SHM_DIR);
    if (d == NULL)
        return;
    char prefix[NORI_SHM_NAME_MAX + 8];
    int plen = snprintf(prefix, sizeof prefix, "%s.tmp-", name);
    int64_t now = nori__wall_s();
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, prefix, (size_t)plen) != 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            st.st_uid == geteuid() && now - st.st_mtime > STALE_TEMP_SECONDS)
            (void)unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

static int map_fd(shm_backend *sb, int fd, size_t bytes, const char *name)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return sys_fail("mmap", name, errno);
    sb->map = p;
    sb->map_bytes = bytes;
    return NORI_OK;
}

static void bind_regions(shm_backend *sb)
{
    shm_header *h = (shm_header *)sb->map;
    sb->hdr = h;
    sb->g = (shm_global *)(sb->map + h->off_global);
    sb->shards = (shm_shard *)(sb->map + h->off_shards);
    sb->buckets = (shm_bucket *)(sb->map + h->off_buckets);
    sb->pages = (shm_page *)(sb->map + h->off_pages);
    sb->flights = (shm_flight *)(sb->map + h->off_flights);
    sb->stamps = (_Atomic uint64_t *)(sb->map + h->off_stamps);
    sb->slotmap = (uint64_t *)(sb->map + h->off_slotmap);
    sb->arena = sb->map + h->off_arena;
    sb->k0 = h->k0;
    sb->k1 = h->k1;
    sb->generation = h->generation;
    sb->max_keys = h->max_keys;
    sb->max_bytes = h->max_bytes;
    sb->npages = h->npages;
    sb->arena_bytes = h->npages * SHM_PAGE;
    sb->nflights = h->nflights;
    sb->nslots = h->nslots;
    sb->bucket_mask = h->buckets_per_shard - 1;
}

int nori__shm_init_shared(shm_backend *sb)
{
    int rc = nori__shm_lock_init(&sb->g->arena_lock);
    for (int i = 0; rc == NORI_OK && i < SHM_NSHARDS; i++)
        rc = nori__shm_lock_init(&sb->shards[i].lock);
    for (uint64_t i = 0; rc == NORI_OK && i < sb->nflights; i++)
        rc = nori__shm_lock_init(&sb->flights[i].lock);
    if (rc != NORI_OK)
        return rc;
    for (int i = 0; i < SHM_NSHARDS; i++)
        atomic_store_explicit(&sb->g->tail_stamps[i], SHM_EMPTY_STAMP, memory_order_relaxed);
    nori__shm_slab_init(sb);
    return NORI_OK;
}


/*
 * Builds a new segment under a temporary name and publishes it as `name`.
 * NORI_OK: sb maps it (sb->created); NORI_MISS: another process published
 * the name first (attach that one); else an error.
 */
static int create_segment(shm_backend *sb, const char *name, size_t max_keys, size_t max_bytes)
{
    shm_layout l = {0};
    int rc = nori__shm_layout_compute(max_keys, max_bytes, &l);
    if (rc != NORI_OK)
        return rc;
    remove_stale_temps(name);
    char tmp[NORI_SHM_NAME_MAX + 64], tmp_path[sizeof tmp + 16], path[NORI_SHM_NAME_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld-%016" PRIx64, name, (long)getpid(), random64());
    segment_path(tmp, tmp_path, sizeof tmp_path);
    segment_path(name, path, sizeof path);
    int fd = open(tmp_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return sys_fail("cannot create it in " SHM_DIR, name, errno);
    rc = NORI_OK;
    if (fchmod(fd, 0600) != 0 || ftruncate(fd, (off_t)l.total_bytes) != 0)
        rc = sys_fail("cannot size it", name, errno);
    if (rc == NORI_OK)
        rc = map_fd(sb, fd, l.total_bytes, name);
    if (rc == NORI_OK) {
        shm_header *h = (shm_header *)sb->map;
        header_fill(h, &l, max_keys, max_bytes, (uint32_t)geteuid());
        h->k0 = random64();
        h->k1 = random64();
        h->generation = random64();
        h->creator_pid = (uint32_t)getpid();
        h->created_unix_ms = nori__wall_ms();
        h->checksum = header_checksum(h);
        bind_regions(sb);
        rc = nori__shm_init_shared(sb);
    }
    if (rc == NORI_OK)
        nori__shm_test_point("create"); /* built, not published yet */
    if (rc == NORI_OK && link(tmp_path, path) != 0) {
        int e = errno;
        rc = e == EEXIST ? NORI_MISS : sys_fail("cannot publish it", name, e);
    }
    (void)unlink(tmp_path);
    if (rc != NORI_OK) {
        if (sb->map != NULL)
            munmap(sb->map, sb->map_bytes);
        sb->map = NULL;
        close(fd);
        return rc;
    }
    sb->fd = fd;
    sb->created = true;
    return NORI_OK;
}

/* Attaches the segment published as `name`. NORI_MISS: there is none. */
static int attach_segment(shm_backend *sb, const char *name, size_t max_keys, size_t max_bytes)
{
    char path[NORI_SHM_NAME_MAX + 16];
    segment_path(name, path, sizeof path);
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            return NORI_MISS;
        if (errno == ELOOP)
            return nori__fail(NORI_EINVAL, "shm segment '%s' is a symbolic link; refused", name);
        return sys_fail("cannot open it", name, errno);
    }
    struct stat st;
    int rc = NORI_OK;
    if (fstat(fd, &st) != 0)
        rc = sys_fail("fstat", name, errno);
    else if (!S_ISREG(st.st_mode))
        rc = nori__fail(NORI_EINVAL, "shm segment '%s' is not a regular file; refused", name);
    else if (st.st_uid != geteuid())
        rc = nori__fail(NORI_EINVAL,
                        "shm segment '%s' belongs to uid %ld, not to this process's uid %ld; "
                        "refused (use a name of your own, e.g. nori-cache-%ld)",
                        name, (long)st.st_uid, (long)geteuid(), (long)geteuid());
    else if ((st.st_mode & 07777) != 0600)
        rc = nori__fail(NORI_EINVAL, "shm segment '%s' has mode %04o, not 0600; refused", name,
                        (unsigned)(st.st_mode & 07777));
    if (rc == NORI_OK) {
        unsigned char buf[sizeof(shm_header)];
        ssize_t got = pread(fd, buf, sizeof buf, 0);
        if (got < 0)
            rc = sys_fail("cannot read its header", name, errno);
        else
            rc = nori__shm_header_check(buf, (size_t)got, (uint64_t)st.st_size,
                                        (uint32_t)st.st_uid, name);
        if (rc == NORI_OK) {
            const shm_header *h = (const shm_header *)buf;
            if (h->max_keys != max_keys || h->max_bytes != max_bytes)
                rc = nori__fail(NORI_EINVAL,
                                "shm segment '%s' holds max_keys %" PRIu64 " and max_bytes %" PRIu64
                                ", this call asked for %zu and %zu: use the same sizes, or unlink "
                                "the segment (nori_shm_backend_unlink) to make a new one",
                                name, h->max_keys, h->max_bytes, max_keys, max_bytes);
        }
    }
    if (rc == NORI_OK)
        rc = map_fd(sb, fd, (size_t)st.st_size, name);
    if (rc == NORI_OK) {
        /* The mapped header must be the one checked (same file, same user). */
        rc = nori__shm_header_check(sb->map, sizeof(shm_header), (uint64_t)st.st_size,
                                    (uint32_t)st.st_uid, name);
        if (rc != NORI_OK) {
            munmap(sb->map, sb->map_bytes);
            sb->map = NULL;
        }
    }
    if (rc != NORI_OK) {
        close(fd);
        return rc;
    }
    sb->fd = fd;
    bind_regions(sb);
    return NORI_OK;
}

int nori__shm_open_segment(shm_backend *sb, const char *name, size_t max_keys, size_t max_bytes)
{
    int rc = nori__shm_check_name(name);
    if (rc != NORI_OK)
        return rc;
    shm_layout l = {0};
    rc = nori__shm_layout_compute(max_keys, max_bytes, &l);
    if (rc != NORI_OK)
        return rc;
    snprintf(sb->name, sizeof sb->name, "%s", name);
    /* Attach, or create; a creator that loses the race to publish attaches
     * the winner's. Three rounds cover an unlink between the two steps. */
    for (int round = 0; round < 3; round++) {
        rc = attach_segment(sb, name, max_keys, max_bytes);
        if (rc != NORI_MISS)
            return rc;
        rc = create_segment(sb, name, max_keys, max_bytes);
        if (rc != NORI_MISS)
            return rc;
    }
    return nori__fail(NORI_EBACKEND, "shm segment '%s' kept appearing and disappearing", name);
}

void nori__shm_close_segment(shm_backend *sb)
{
    if (sb->map != NULL)
        munmap(sb->map, sb->map_bytes);
    sb->map = NULL;
    if (sb->fd >= 0)
        close(sb->fd);
    sb->fd = -1;
}

int nori_shm_backend_unlink(const char *name)
{
    int rc = nori__shm_check_name(name);
    if (rc != NORI_OK)
        return rc;
    char path[NORI_SHM_NAME_MAX + 16];
    segment_path(name, path, sizeof path);
    if (unlink(path) == 0)
        return NORI_OK;
    if (errno == ENOENT)
        return NORI_MISS;
    return sys_fail("cannot unlink it", name, errno);
}
