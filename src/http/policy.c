// SPDX-License-Identifier: MIT
/*
 * What may be stored, and for how long: the response's Cache-Control (or
 * its targeted field, RFC 9213), Expires, Date, Age and Last-Modified read
 * by RFC 9111's rules, and the cache's own rules (application or RFC 9111,
 * nori/http.h "Semantics").
 *
 * Parsing is strict where the HTTP caching test suite checks it and where
 * leniency would make a response live longer than its origin said:
 *  - Cache-Control is a list of `token [ "=" ( token / quoted-string ) ]`,
 *    directive names in any case; a quoted argument is its content
 *    (max-age="5" is max-age=5), so `extension="max-age=5"` holds no
 *    max-age; the first occurrence of a directive counts; an argument that
 *    is not delta-seconds (-5, '5', 5.0, "= 5", a malformed element) makes
 *    the directive invalid, and an invalid max-age or s-maxage means stale
 *    (RFC 9111 4.2.1 encourages it); a delta over 2^31 reads as 2^31.
 *    Restrictive directives count even in a malformed element, `public`
 *    only in a well-formed one.
 *  - Expires: an HTTP-date in any of its three forms (date.c, strict); an
 *    invalid one means already expired (RFC 9111 5.3).
 *  - Age: exactly one line holding one delta-seconds; anything else (a
 *    list, two lines, a sign, a fraction, parameters) makes the response
 *    stale on arrival. RFC 9111 5.1 says to take a list's first member and
 *    to ignore an invalid value; this cache takes a response it cannot age
 *    for an old one (revalidated before reuse, never served as fresh), the
 *    safe side, and what the suite's age-parse tests expect.
 *  - Date: the first line; invalid or absent, the time the response came.
 */
#include "http/internal.h"

#include "error.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------ Cache-Control */

static bool tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* delta-seconds = 1*DIGIT (RFC 9111 1.2.2), clamped at 2^31. */
static int64_t delta_seconds(const char *s, size_t n)
{
    if (n == 0)
        return NORI__CC_BAD;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return NORI__CC_BAD;
        if (v < NORI__DELTA_MAX)
            v = v * 10 + (s[i] - '0');
    }
    return v > NORI__DELTA_MAX ? NORI__DELTA_MAX : v;
}

static bool name_is(const char *name, size_t n, const char *what)
{
    return strlen(what) == n && strncasecmp(name, what, n) == 0;
}

/* One directive: name[0..nl), its argument arg[0..al) when has_arg, and
 * whether the element was well-formed. */
static void apply(nori__cc *cc, const char *name, size_t nl, bool has_arg, bool ok,
                  const char *arg, size_t al)
{
    static const struct {
        const char *name;
        unsigned bit;
        bool restrictive;
    } flags[] = {{"no-store", NORI__CC_NO_STORE, true},
                 {"no-cache", NORI__CC_NO_CACHE, true},
                 {"private", NORI__CC_PRIVATE, true},
                 {"public", NORI__CC_PUBLIC, false},
                 {"must-revalidate", NORI__CC_MUST_REVALIDATE, true},
                 {"proxy-revalidate", NORI__CC_PROXY_REVALIDATE, true},
                 {"must-understand", NORI__CC_MUST_UNDERSTAND, true}};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (name_is(name, nl, flags[i].name)) {
            if (ok || flags[i].restrictive)
                cc->has |= flags[i].bit;
            return;
        }
    static const struct {
        const char *name;
        unsigned bit;
        size_t off;
    } deltas[] = {{"max-age", NORI__CC_MAX_AGE, offsetof(nori__cc, max_age)},
                  {"s-maxage", NORI__CC_S_MAXAGE, offsetof(nori__cc, s_maxage)},
                  {"stale-while-revalidate", NORI__CC_SWR, offsetof(nori__cc, swr)},
                  {"stale-if-error", NORI__CC_SIE, offsetof(nori__cc, sie)}};
    for (size_t i = 0; i < sizeof deltas / sizeof deltas[0]; i++)
        if (name_is(name, nl, deltas[i].name)) {
            if (cc->has & deltas[i].bit)
                return; /* the first occurrence counts */
            cc->has |= deltas[i].bit;
            *(int64_t *)((char *)cc + deltas[i].off) =
                ok && has_arg ? delta_seconds(arg, al) : NORI__CC_BAD;
            return;
        }
}

/* Parses one field line into cc; true when it held a directive. */
static bool parse_line(const char *p, nori__cc *cc)
{
    bool any = false;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            return any;
        const char *name = p;
        while (tchar((unsigned char)*p))
            p++;
        size_t nl = (size_t)(p - name);
        bool ok = nl > 0, has_arg = false;
        /* A quoted argument that matters is short (a number): a longer
         * one is kept cut, which no delta-seconds survives. */
        char arg[32];
        size_t al = 0;
        if (*p == '=') {
            has_arg = true;
            p++;
            if (*p == '"') {
                bool closed = false;
                for (p++; *p != '\0'; p++) {
                    if (*p == '"') {
                        closed = true;
                        p++;
                        break;
                    }
                    if (*p == '\\' && p[1] != '\0')
                        p++;
                    if (al < sizeof arg)
                        arg[al++] = *p;
                    else
                        ok = false;
                }
                ok = ok && closed;
            } else {
                const char *a = p;
                while (tchar((unsigned char)*p))
                    p++;
                al = (size_t)(p - a);
                if (al == 0 || al > sizeof arg)
                    ok = false;
                else
                    memcpy(arg, a, al);
            }
        }
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != ',' && *p != '\0') {
            /* Not `directive[=argument]` up to the comma: skip the rest of
             * the element (a quoted string may hold commas). */
            ok = false;
            p = nori__http_member_end(p);
        }
        if (nl > 0) {
            any = true;
            apply(cc, name, nl, has_arg, ok, arg, al);
        }
    }
}

bool nori__cc_parse(const nori_http_response *r, const char *name, nori__cc *out)
{
    *out = (nori__cc){0, NORI__CC_BAD, NORI__CC_BAD, NORI__CC_BAD, NORI__CC_BAD};
    bool any = false;
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            any |= parse_line(r->headers[i].value, out);
    return any;
}

bool nori__cc_of(const nori__rules *rules, const nori_http_response *r, nori__cc *out)
{
    for (size_t i = 0; i < rules->n_targeted; i++)
        if (nori__cc_parse(r, rules->targeted[i], out))
            return true;
    nori__cc_parse(r, "Cache-Control", out);
    return false;
}

/* ------------------------------------------------- Age, Date, Expires */

int64_t nori__http_age_value(const nori_http_response *r)
{
    const char *v = NULL;
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, "Age") == 0) {
            if (v != NULL)
                return NORI__AGE_INVALID; /* two lines */
            v = r->headers[i].value;
        }
    if (v == NULL)
        return 0;
    int64_t a = delta_seconds(v, strlen(v));
    return a == NORI__CC_BAD ? NORI__AGE_INVALID : a;
}

static const char *first_header(const nori_http_response *r, const char *name)
{
    return nori_http_response_header(r, name);
}

/* The HTTP-date of header `name` in ms; false when absent or invalid. */
static bool date_ms(const nori_http_response *r, const char *name, int64_t now_ms, int64_t *out)
{
    const char *v = first_header(r, name);
    int64_t s;
    if (v == NULL || nori__http_date_parse(v, strlen(v), now_ms / 1000, &s) != NORI_OK)
        return false;
    *out = s * 1000;
    return true;
}

bool nori__http_has_validator(const nori_http_response *r)
{
    const char *etag = first_header(r, "ETag"), *lm = first_header(r, "Last-Modified");
    return (etag != NULL && etag[0] != '\0') || (lm != NULL && lm[0] != '\0');
}

bool nori__http_explicit_freshness(const nori__rules *rules, const nori_http_response *r)
{
    nori__cc cc;
    bool targeted = nori__cc_of(rules, r, &cc);
    return (cc.has & (NORI__CC_S_MAXAGE | NORI__CC_MAX_AGE)) ||
           (!targeted && first_header(r, "Expires") != NULL);
}

int64_t nori__http_current_age(const nori__entry_meta *m, int64_t now_ms)
{
    if (m->stored_at_ms < 0)
        return 0;
    int64_t resident = nori__sat_sub(now_ms, m->stored_at_ms);
    return nori__sat_add(m->age_ms, resident > 0 ? resident : 0);
}

/* ------------------------------------------------------------- statuses */

/* RFC 9110 15.1 / RFC 9111 4.2.2: heuristically cacheable by default. */
static bool heuristic_status(int s)
{
    switch (s) {
    case 200: case 203: case 204: case 206: case 300: case 301: case 308:
    case 404: case 405: case 410: case 414: case 501:
        return true;
    default:
        return false;
    }
}

/* The final statuses RFC 9110 defines: what this cache "understands" for
 * must-understand (RFC 9111 5.2.2.3). */
static bool understood_status(int s)
{
    return (s >= 200 && s <= 206) || (s >= 300 && s <= 305) || s == 307 || s == 308 ||
           (s >= 400 && s <= 417) || s == 421 || s == 422 || s == 426 ||
           (s >= 500 && s <= 505);
}

/* ------------------------------------------------------------- judging */

static bool vary_star(const nori_http_response *r)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, "Vary") == 0 &&
            nori__http_has_token(r->headers[i].value, "*"))
            return true;
    return false;
}

/* RFC 9111 4.2.3: corrected_initial_age. An invalid Age says stale. */
static int64_t initial_age(const nori_http_response *r, int64_t request_ms, int64_t response_ms,
                           int64_t date)
{
    int64_t age = nori__http_age_value(r);
    if (age == NORI__AGE_INVALID)
        return NORI__AGE_INVALID;
    int64_t apparent = response_ms > date ? response_ms - date : 0;
    int64_t delay = response_ms > request_ms ? response_ms - request_ms : 0;
    int64_t corrected = nori__sat_add(nori__sat_mul(age, 1000), delay);
    return apparent > corrected ? apparent : corrected;
}

bool nori__http_judge(const nori__rules *rules, const nori_http_response *r, int64_t request_ms,
                      int64_t response_ms, nori__entry_meta *m)
{
    *m = NORI__META(response_ms, -1);
    int s = r->status;
    nori__cc cc;
    bool targeted = nori__cc_of(rules, r, &cc);
    bool cookie = nori_http_response_header(r, "Set-Cookie") != NULL;
    if (vary_star(r) || (cc.has & NORI__CC_PRIVATE)) /* a shared cache */
        return false;
    if (rules->rfc) {
        if (!nori__entry_status_ok(s))
            return false;
        /* must-understand: only a cache that knows the status may store
         * it, and such a cache ignores no-store (5.2.2.3). */
        if (cc.has & NORI__CC_MUST_UNDERSTAND) {
            if (!understood_status(s))
                return false;
        } else if (cc.has & NORI__CC_NO_STORE) {
            return false;
        }
    } else {
        /* Nori's application rules: 2xx but 204/205/206, no cookie set. */
        if (s < 200 || s > 299 || s == 204 || s == 205 || s == 206 || cookie ||
            (cc.has & (NORI__CC_NO_STORE | NORI__CC_NO_CACHE)))
            return false;
    }
    int64_t date;
    if (!date_ms(r, "Date", response_ms, &date))
        date = response_ms;
    /* Explicit freshness: s-maxage (a shared cache's), max-age, Expires. */
    int64_t life = -1;
    bool explicit = true;
    if (cc.has & NORI__CC_S_MAXAGE) {
        life = cc.s_maxage == NORI__CC_BAD ? 0 : cc.s_maxage * 1000;
        m->flags |= NORI__META_NO_STALE; /* s-maxage implies proxy-revalidate */
    } else if (cc.has & NORI__CC_MAX_AGE) {
        life = cc.max_age == NORI__CC_BAD ? 0 : cc.max_age * 1000;
    } else if (!targeted && first_header(r, "Expires") != NULL) {
        int64_t exp;
        life = date_ms(r, "Expires", response_ms, &exp) && exp > date ? exp - date : 0;
    } else {
        explicit = false;
    }
    if (!explicit) {
        if (rules->rfc) {
            /* Set-Cookie is stored only where the origin said how long. */
            if (cookie || !(heuristic_status(s) || (cc.has & NORI__CC_PUBLIC)))
                return false;
            int64_t lm;
            life = 0; /* storable, stale at once: reusable after validation */
            if (rules->heuristic_percent > 0 && date_ms(r, "Last-Modified", response_ms, &lm) &&
                lm < date)
                life = nori__sat_mul(date - lm, rules->heuristic_percent) / 100;
        } else {
            /* The route's ttl is the heuristic freshness (0: no limit). */
            if (!heuristic_status(s))
                return false;
            life = rules->ttl > 0 ? rules->ttl * 1000 : -1;
        }
    }
    if (cc.has & NORI__CC_NO_CACHE) {
        life = 0; /* reused only after validation */
        m->flags |= NORI__META_NO_STALE;
    }
    if (cc.has & (NORI__CC_MUST_REVALIDATE | NORI__CC_PROXY_REVALIDATE))
        m->flags |= NORI__META_NO_STALE;
    if (rules->ttl > 0 && (life < 0 || life > rules->ttl * 1000))
        life = rules->ttl * 1000;
    if (life > NORI_MAX_TTL * 1000)
        life = NORI_MAX_TTL * 1000;
    m->fresh_ms = life;
    m->age_ms = initial_age(r, request_ms, response_ms, date);
    if (rules->rfc && !(m->flags & NORI__META_NO_STALE)) {
        /* RFC 5861: the origin's own permission to serve it stale. */
        if ((cc.has & NORI__CC_SWR) && cc.swr != NORI__CC_BAD)
            m->swr_ms = cc.swr * 1000;
        if ((cc.has & NORI__CC_SIE) && cc.sie != NORI__CC_BAD)
            m->sie_ms = cc.sie * 1000;
    }
    /* Stale on arrival: worth keeping only to revalidate. */
    if (life >= 0 && m->age_ms >= life)
        return rules->keep_ms > 0 && nori__http_has_validator(r);
    return true;
}
