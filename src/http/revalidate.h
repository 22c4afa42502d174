// SPDX-License-Identifier: MIT
/*
 * Background refreshes of the response cache (revalidate.c), built on
 * entries.c and lease.c; used by cache.c.
 */
#ifndef NORI_SRC_HTTP_REVALIDATE_H
#define NORI_SRC_HTTP_REVALIDATE_H

#include "http/entries.h"

/* Starts one background refresh of key unless one (or a fill) is already
 * running for it; entry is the stale entry answered and *seen its
 * metadata (the refresh copies the request headers its Vary names). */
void nori__http_schedule_refresh(nori_http_cache *c, const char *key,
                                 const nori_http_request *req, nori_http_handler_fn handler,
                                 void *ud, const nori_http_response *entry,
                                 const nori__entry_meta *seen);

#endif
