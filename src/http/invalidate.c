// SPDX-License-Identifier: MIT
/*
 * Invalidation after a successful unsafe request (RFC 9111 4.4): the
 * request's own path, and the paths its response's Location and
 * Content-Location name on the same origin.
 *
 * The scope of a path is "{prefix}:{E(path)}:", a literal prefix of every
 * entry of the path (all queries, vary values, variants, names records and
 * leases); with a key function the user's component comes before the path,
 * so no prefix selects one path for every user, and the whole cache
 * ("{prefix}:") is invalidated instead. The scope's generation moves first
 * (generation.c): a fill that began before this write either stored before
 * the deletion, which removes its entry, or finds the generation moved and
 * stores nothing.
 */
#include "http/entries.h"

#include "backend.h"
#include "error.h"

#include <string.h>
#include <strings.h>

bool nori__http_unsafe_method(const char *m)
{
    /* RFC 9110 9.2.1: the safe methods; any other, known or not
     * (M-SEARCH, PROPPATCH...), may change state. */
    return strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0 && strcmp(m, "OPTIONS") != 0 &&
           strcmp(m, "TRACE") != 0;
}

/* Invalidates the scope of path (the request's own, or a location's). */
static void invalidate_path(nori_http_cache *c, nori_backend *b, const nori_http_request *req,
                            const char *path)
{
    nori_http_request at = *req;
    at.path = path;
    char scope[NORI_MAX_KEY_LEN + 1];
    int rc = nori__gen_scope(c->prefix, c->key_fn != NULL, &at, scope, sizeof scope);
    if (rc == NORI_OK) {
        if (nori__gen_bump(c->gens, b, c->prefix, scope) != NORI_OK)
            count(&c->errors); /* the entries still go; a fill in flight may store */
        rc = nori_backend_delete_prefix(b, scope);
    }
    count(rc == NORI_OK ? &c->invalidations : &c->errors);
}

/* See entries.h. Another host is refused because RFC 9111 4.4 forbids
 * invalidating it: a response could otherwise empty another site's
 * entries. */
bool nori__http_location_path(const nori_http_request *req, const char *v, char *out,
                              size_t cap, const char **query)
{
    *query = NULL;
    const char *p = v;
    const char *slashes = NULL;
    if (strncasecmp(p, "http://", 7) == 0)
        slashes = p + 5;
    else if (strncasecmp(p, "https://", 8) == 0)
        slashes = p + 6;
    else if (p[0] == '/' && p[1] == '/')
        slashes = p;
    size_t n = 0;
    if (slashes != NULL) {
        const char *auth = slashes + 2, *end = auth + strcspn(auth, "/?#");
        const char *host = nori_http_request_header(req, "Host");
        if (host == NULL || strlen(host) != (size_t)(end - auth) ||
            strncasecmp(host, auth, (size_t)(end - auth)) != 0)
            return false;
        p = *end == '/' ? end : "/";
    } else if (p[0] != '/') {
        /* Relative: the request path up to its last '/'. */
        const char *slash = strrchr(req->path, '/');
        if (slash == NULL || p[0] == '\0')
            return false;
        n = (size_t)(slash - req->path) + 1;
        if (n >= cap)
            return false;
        memcpy(out, req->path, n);
    }
    size_t len = strcspn(p, "?#");
    if (n + len >= cap)
        return false;
    if (p[len] == '?')
        *query = p + len + 1;
    memcpy(out + n, p, len);
    out[n + len] = '\0';
    /* Dot segments would need resolving (RFC 3986 5.2.4): not worth the
     * risk of invalidating the wrong path; such a location is left alone. */
    return strstr(out, "/./") == NULL && strstr(out, "/../") == NULL &&
           (n + len < 2 || strcmp(out + n + len - 2, "/.") != 0) &&
           (n + len < 3 || strcmp(out + n + len - 3, "/..") != 0) && out[0] == '/';
}

void nori__http_invalidate(nori_http_cache *c, const nori_http_request *req,
                           const nori_http_response *resp)
{
    nori_backend *b = c->backend;
    if (b == NULL && nori_get_backend(&b) != NORI_OK) {
        count(&c->errors);
        return;
    }
    invalidate_path(c, b, req, req->path != NULL ? req->path : "");
    if (c->key_fn != NULL)
        return; /* the whole prefix went */
    static const char *const fields[] = {"Location", "Content-Location"};
    char done[2][NORI_MAX_KEY_LEN + 1];
    for (size_t f = 0; f < 2; f++) {
        const char *v = nori_http_response_header(resp, fields[f]), *query;
        if (v == NULL || !nori__http_location_path(req, v, done[f], sizeof done[f], &query)) {
            done[f][0] = '\0';
            continue;
        }
        if (strcmp(done[f], req->path != NULL ? req->path : "") == 0 ||
            (f == 1 && strcmp(done[1], done[0]) == 0))
            continue;
        invalidate_path(c, b, req, done[f]);
    }
}
