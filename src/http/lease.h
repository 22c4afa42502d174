// SPDX-License-Identifier: MIT
/*
 * Leases of the response cache (lease.c): coalescing a key's fills across
 * processes sharing a backend (nori__traits.shared), and the lease a
 * background refresh takes (revalidate.c). Built on entries.c; used by
 * revalidate.c and cache.c.
 */
#ifndef NORI_SRC_HTTP_LEASE_H
#define NORI_SRC_HTTP_LEASE_H

#include "http/entries.h"

/* "{key}:lock" into lease_key[NORI_MAX_KEY_LEN + 1]; false when too long. */
bool nori__http_lease_name(const char *key, char *lease_key);
/* A token unique to this call into token[64]. */
void nori__http_lease_token(char *token);
/* Marks the fill of the lease just taken (a backend that waits for fills:
 * see lease.c); the release ends the mark. */
void nori__http_lease_mark(nori_backend *b, const char *lease_key);
/* Releases the lease if it still holds token (else it ends by expiry), and
 * the mark of this thread. */
void nori__http_lease_release(nori_backend *b, const char *lease_key, const char *token);

typedef enum { NORI__LEASE_NONE, NORI__LEASE_HELD, NORI__LEASE_SERVED } nori__lease_result;

/* The in-process leader's lease of key across processes (see lease.c):
 * NORI__LEASE_HELD (lease_key/token: release it after the fill),
 * NORI__LEASE_SERVED (*resp and *meta hold the entry another process
 * filled; req selects the variant), or NORI__LEASE_NONE (run the handler
 * without it). */
nori__lease_result nori__http_remote_lease(nori_http_cache *c, nori_backend *b, const char *key,
                                           const nori_http_request *req, char *lease_key,
                                           char *token, nori_http_response *resp,
                                           nori__entry_meta *meta);

#endif
