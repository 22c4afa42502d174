// SPDX-License-Identifier: MIT
/* The shared-memory segment's header check (src/shm/segment.c) on arbitrary
 * bytes, the gate every attaching process passes before it maps a segment.
 * The first input byte picks how the rest is presented: bit 0 recomputes
 * the checksum (so that mutations reach the checks behind it), bit 1 takes
 * the file's size from the header's own total (else from the next 8 bytes),
 * bit 2 gives the file another owner. Whatever is accepted must describe a
 * segment that can be mapped and addressed safely: its layout recomputes
 * from its sizes, every region lies inside the file, the arena ends exactly
 * at the end of the file, and the sizes are within the documented limits.
 */
#include "fuzz.h"
#include "shm/internal.h"
#include "shm/shm.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    data++;
    size--;
    uint64_t file_bytes = 0;
    if (!(mode & 2)) {
        for (size_t i = 0; i < 8 && i < size; i++)
            file_bytes = file_bytes << 8 | data[i];
        data += size < 8 ? size : 8;
        size -= size < 8 ? size : 8;
    }
    unsigned char buf[sizeof(shm_header)];
    memset(buf, 0, sizeof buf);
    size_t len = size < sizeof buf ? size : sizeof buf;
    memcpy(buf, data, len);
    if (mode & 1)
        nori__shm_header_seal(buf);
    shm_header h;
    memcpy(&h, buf, sizeof h);
    if (mode & 2)
        file_bytes = h.total_bytes;
    uint32_t uid = (mode & 4) ? h.owner_uid + 1 : h.owner_uid;
    if (nori__shm_header_check(buf, len, file_bytes, uid, "fuzz") != NORI_OK)
        return 0;
    shm_layout l;
    if (len != sizeof buf || (mode & 4) ||
        nori__shm_layout_compute(h.max_keys, h.max_bytes, &l) != NORI_OK)
        abort();
    if (h.max_keys == 0 || h.max_keys > SHM_MAX_KEYS || h.max_bytes < SHM_MIN_BYTES ||
        h.max_bytes > NORI_SHM_MAX_BYTES)
        abort();
    if (file_bytes != h.total_bytes || h.off_arena + h.npages * SHM_PAGE != h.total_bytes ||
        h.npages * SHM_PAGE < h.max_bytes || h.npages * SHM_PAGE > SHM_MAX_ARENA)
        abort();
    uint64_t ends[] = {
        h.off_global + sizeof(shm_global),
        h.off_shards + SHM_NSHARDS * sizeof(shm_shard),
        h.off_buckets + (uint64_t)h.buckets_per_shard * SHM_NSHARDS * sizeof(shm_bucket),
        h.off_pages + h.npages * sizeof(shm_page),
        h.off_flights + h.nflights * sizeof(shm_flight),
        h.off_stamps + h.nslots * sizeof(uint64_t),
        h.off_slotmap + (h.nslots + 63) / 64 * sizeof(uint64_t),
    };
    uint64_t starts[] = {h.off_global, h.off_shards,  h.off_buckets, h.off_pages,
                         h.off_flights, h.off_stamps, h.off_slotmap};
    if (h.nslots < h.max_keys)
        abort();
    for (int i = 0; i < 7; i++)
        if (starts[i] < sizeof(shm_header) || ends[i] > h.off_arena ||
            (i > 0 && starts[i] < ends[i - 1]))
            abort();
    if ((h.buckets_per_shard & (h.buckets_per_shard - 1)) != 0 || h.off_arena % SHM_PAGE != 0)
        abort();
    return 0;
}
