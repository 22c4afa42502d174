// SPDX-License-Identifier: MIT
/*
 * What a cluster or sentinel client takes from outside, on arbitrary bytes.
 * The first byte picks the parser:
 *   'u'  the REDIS_URL topology forms (?addr=, redis+sentinel://): never
 *        crashes or leaks; no password (the parser's spans, url_oracle.h:
 *        userinfo, password= and sentinel_password= in any case) shows in
 *        an accepted URL's display or in the message about a refused one;
 *   'r'  a server error line as a redirection (MOVED/ASK/...): slot and
 *        port in range;
 *   anything else: the rest is fed to hiredis's reply reader as a server's
 *        CLUSTER SLOTS answer, and the slot map parser must accept it with
 *        every owner in range or refuse it, never crash (a lying server).
 */
#include "fuzz.h"
#include "nori/cache.h"
#include "redis/route/cluster_slots.h"
#include "redis/wire/io.h"
#include "redis/route/url_topology.h"
#include "url_oracle.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static void url_case(const char *s)
{
    static secret secrets[MAX_SPANS];
    size_t nsecrets = secrets_of(s, secrets);
    nori__redis_target t;
    int rc = nori__redis_target_parse(s, &t);
    if (rc == NORI_OK) {
        if (t.display == NULL || (t.sentinel && (t.master_name == NULL || t.naddrs == 0)))
            abort();
        for (size_t i = 0; i < nsecrets; i++)
            if (strstr(t.display, secrets[i].text) != NULL)
                abort();
        /* Every password the parser took is one of the spans. */
        if ((t.node.password != NULL || t.sentinel_password != NULL) &&
            strstr(t.display, "***") == NULL)
            abort();
        for (size_t i = 0; i < t.naddrs; i++)
            if (t.addrs[i].port < 1 || t.addrs[i].port > 65535 || t.addrs[i].host[0] == '\0')
                abort();
        /* The display form parses again to the same shape. */
        nori__redis_target again;
        if (nori__redis_target_parse(t.display, &again) != NORI_OK)
            abort();
        if (again.sentinel != t.sentinel || again.naddrs != t.naddrs ||
            (again.node.password != NULL) != (t.node.password != NULL) ||
            (again.sentinel_password != NULL) != (t.sentinel_password != NULL))
            abort();
        nori__redis_target_free(&again);
        nori__redis_target_free(&t);
    } else if (rc != NORI_EINVAL) {
        abort();
    } else {
        /* Every message echoes the URL as written, masked into 256 bytes by
         * the one masker; the topology layer once re-rendered the inner
         * parser's message with a masker of its own ("?PASSWORD=" shown). */
        char echo[256];
        nori__redis_url_mask(s, echo, sizeof echo);
        const char *msg = nori_last_error();
        if (quotes_other_form(msg, echo))
            abort();
        for (size_t i = 0; i < nsecrets; i++)
            if (shows(msg, echo, &secrets[i]))
                abort();
    }
}

static void redirect_case(const char *s, size_t n)
{
    nori__redirect r;
    nori__redirect_kind k = nori__redirect_parse(s, n, &r);
    if ((k == NORI_REDIRECT_MOVED || k == NORI_REDIRECT_ASK) &&
        (r.slot >= NORI_CLUSTER_SLOTS || r.port < 1 || r.port > 65535 ||
         memchr(r.host, '\0', sizeof r.host) == NULL))
        abort();
}

static void slots_case(const uint8_t *data, size_t n)
{
    /* The same bounds as a real round trip (a CLUSTER SLOTS answer is read
     * with the 1 MiB string limit and 2^20 elements), so an announced
     * "*2222774160" is refused as it is in production, not allocated. */
    const nori__redis_limits lim = {(size_t)1 << 20, (size_t)64 << 20,
                                    NORI__REDIS_MAX_REPLY_ELEMENTS};
    redisReply *reply = nori__redis_reply_parse((const char *)data, n, &lim);
    if (reply != NULL) {
        nori__slot_map m;
        if (nori__slot_map_parse(reply, "seed", "fuzz", &m) == NORI_OK) {
            size_t served = 0;
            for (size_t s = 0; s < NORI_CLUSTER_SLOTS; s++) {
                if (m.owner[s] == NORI_SLOT_UNSERVED)
                    continue;
                if (m.owner[s] >= m.nnodes || !m.nodes[m.owner[s]].is_master)
                    abort();
                served++;
            }
            if (served != m.served)
                abort();
            nori__slot_map_free(&m);
        }
        freeReplyObject(reply);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *s = malloc(size);
    if (s == NULL)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    if (data[0] == 'u')
        url_case(s);
    else if (data[0] == 'r')
        redirect_case(s, size - 1);
    else
        slots_case(data + 1, size - 1);
    free(s);
    return 0;
}
