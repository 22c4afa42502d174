// SPDX-License-Identifier: MIT
/*
 * Vary, generically (RFC 9111 4.1): a response that names request headers
 * in Vary is stored as a variant of its URL, under a secondary key made of
 * the values the request that fetched it had for those headers; a later
 * request is answered from it only when its own values select the same key.
 *
 * How a lookup learns which headers to read before it has the response
 * (as Varnish and Traffic Server do): next to the variants, each URL whose
 * responses vary has a names record, "{key}:vary" (an entry key never ends
 * so: ':' inside the query and the vary values is escaped), whose value is
 * the names of the latest stored response's Vary, lower-cased and sorted:
 * "accept-language,x-foo". It lives in the backend with the variants, so
 * every process sharing a Redis reads the same one. The variant key,
 * "{key}:v=accept-language=fr,x-foo", holds the names as well as the values,
 * so an entry found under it was stored for exactly the values the request
 * has for exactly the names its own Vary lists, whatever the record says
 * meanwhile: a record that changed only makes older variants unreachable
 * until they expire.
 *
 * Bounded: a flood of distinct values makes distinct variant keys, each
 * an ordinary entry that the backend's own bounds (entries, bytes, TTLs)
 * limit; nothing in the process grows with them. A record holds at most
 * NORI__VARY_NAMES_MAX bytes of names, and a variant key over
 * NORI_MAX_KEY_LEN is neither stored nor looked up (never cut: a cut key
 * could select another request's variant).
 */
#include "http/internal.h"

#include "error.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

#define MAX_NAMES 32

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int nori__vary_names(const nori_http_response *r, char *const *skip, size_t n_skip, char *out)
{
    char buf[NORI__VARY_NAMES_MAX];
    char *names[MAX_NAMES];
    size_t n = 0, used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < r->n_headers; i++) {
        if (strcasecmp(r->headers[i].name, "Vary") != 0)
            continue;
        const char *p = r->headers[i].value;
        for (;;) {
            while (*p == ' ' || *p == '\t' || *p == ',')
                p++;
            if (*p == '\0')
                break;
            const char *start = p;
            while (*p != '\0' && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            size_t len = (size_t)(p - start);
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p != '\0' && *p != ',')
                return -1; /* "a b": not a list of names */
            if (len == 1 && *start == '*')
                return -1; /* never matches (4.1) */
            for (size_t k = 0; k < len; k++)
                if (!tchar((unsigned char)start[k]))
                    return -1;
            if (used + len + 1 > sizeof buf || n == MAX_NAMES)
                return -1;
            char *name = buf + used;
            for (size_t k = 0; k < len; k++)
                name[k] = (char)tolower((unsigned char)start[k]);
            name[len] = '\0';
            bool dup = false;
            for (size_t k = 0; k < n && !dup; k++)
                dup = strcmp(names[k], name) == 0;
            for (size_t k = 0; k < n_skip && !dup; k++)
                dup = strcmp(skip[k], name) == 0;
            if (dup)
                continue;
            names[n++] = name;
            used += len + 1;
        }
    }
    if (n == 0)
        return 0;
    qsort(names, n, sizeof names[0], cmp_names);
    size_t o = 0;
    for (size_t k = 0; k < n; k++) {
        size_t len = strlen(names[k]);
        if (o + len + 2 > NORI__VARY_NAMES_MAX)
            return -1;
        if (k > 0)
            out[o++] = ',';
        memcpy(out + o, names[k], len);
        o += len;
    }
    out[o] = '\0';
    return 1;
}

bool nori__vary_names_ok(const char *names, size_t len)
{
    if (len == 0 || len >= NORI__VARY_NAMES_MAX || names[0] == ',' || names[len - 1] == ',')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)names[i];
        if (c == ',' ? names[i + 1] == ',' : !tchar(c) || (c >= 'A' && c <= 'Z'))
            return false;
    }
    return true;
}

bool nori__vary_names_key(const char *key, char *out)
{
    return (size_t)snprintf(out, NORI_MAX_KEY_LEN + 1, "%s:vary", key) <= NORI_MAX_KEY_LEN;
}

/* ------------------------------------------------------- variant keys */

typedef struct {
    char *out;
    size_t len;
    bool overflow;
} writer;

static void put(writer *w, char c)
{
    if (w->len < NORI_MAX_KEY_LEN)
        w->out[w->len++] = c;
    else
        w->overflow = true;
}

static void put_escaped(writer *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ':' || c == '%' || c == ',' || c == '=') {
            put(w, '%');
            put(w, hex[c >> 4]);
            put(w, hex[c & 15]);
        } else {
            put(w, (char)c);
        }
    }
}

/* The value of one header as a list: its lines joined, members trimmed. */
typedef struct {
    writer *w;
    const char *name;
    bool fold; /* lower-case */
    bool seen; /* a line of the header was written */
    bool member; /* a member was written (the next one needs a ',') */
} value_walk;

/* Appends a line's members: split at the commas outside quoted strings,
 * OWS around each dropped, empty ones dropped. */
static void put_members(value_walk *v, const char *p)
{
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *start = p;
        p = nori__http_member_end(p);
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end > start) {
            if (v->member)
                put(v->w, ',');
            v->member = true;
            if (v->fold) {
                char low[64];
                for (const char *q = start; q < end;) {
                    size_t k = 0;
                    for (; q < end && k < sizeof low; q++)
                        low[k++] = (char)tolower((unsigned char)*q);
                    put_escaped(v->w, low, k);
                }
            } else {
                put_escaped(v->w, start, (size_t)(end - start));
            }
        }
        if (*p == '\0')
            return;
        p++; /* the comma */
    }
}

static int visit_line(void *ud, const char *name, const char *value)
{
    value_walk *v = ud;
    if (strcasecmp(name, v->name) != 0)
        return 0;
    if (!v->seen)
        put(v->w, '=');
    v->seen = true;
    put_members(v, value);
    return 0;
}

int nori__vary_key(const char *key, const char *names, const nori_http_request *req,
                   char out[NORI_MAX_KEY_LEN + 1])
{
    writer w = {out, 0, false};
    for (const char *k = key; *k != '\0'; k++)
        put(&w, *k);
    for (const char *s = ":v="; *s != '\0'; s++)
        put(&w, *s);
    const char *p = names;
    while (*p != '\0' && !w.overflow) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        char name[NORI__VARY_NAMES_MAX];
        memcpy(name, p, len);
        name[len] = '\0';
        if (p != names)
            put(&w, ',');
        put_escaped(&w, name, len);
        value_walk v = {&w, name,
                        strcmp(name, "accept-language") == 0 ||
                            strcmp(name, "accept-encoding") == 0 ||
                            strcmp(name, "accept-charset") == 0,
                        false, false};
        if (req->each_header != NULL) {
            nori_http_request_each_header(req, visit_line, &v);
        } else {
            const char *value = nori_http_request_header(req, name);
            if (value != NULL)
                visit_line(&v, name, value);
        }
        p += len;
        if (*p == ',')
            p++;
    }
    out[w.len] = '\0';
    if (w.overflow)
        return nori__fail(NORI_ETOOBIG, "variant key of %.64s is over the key limit", key);
    return NORI_OK;
}
