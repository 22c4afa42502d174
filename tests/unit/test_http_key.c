// SPDX-License-Identifier: MIT
/* Keys of the response cache: Nori's shape, and no two requests sharing one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"

#include "http/internal.h"
#include "http_test_headers.h"

#include <stdio.h>
#include <string.h>

static nori_http_request get(const char *path, const char *query, test_headers *h)
{
    nori_http_request r = {"GET", path, query, test_header_lookup, h, NULL, 0, NULL};
    return r;
}

/* The key a cache with these options gives the request, in a static buffer. */
static const char *key_of(const nori_http_cache_options *o, const nori_http_request *req)
{
    static char key[NORI_MAX_KEY_LEN + 1];
    nori_http_cache *c;
    assert_nori(nori_http_cache_new(o, &c), NORI_OK);
    int rc = nori_http_cache_key(c, req, key, sizeof key);
    nori_http_cache_free(c);
    if (rc == NORI_MISS)
        return "(opted out)";
    assert_nori(rc, NORI_OK);
    return key;
}

static void test_nori_shape(void **state)
{
    (void)state;
    test_headers none = {NULL, 0};
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    assert_int_equal(o.ttl, 60);
    assert_string_equal(o.prefix, "view");
    nori_http_request r = get("/dashboard", NULL, &none);
    assert_string_equal(key_of(&o, &r), "view:/dashboard:");
    r = get("/dashboard", "", &none);
    assert_string_equal(key_of(&o, &r), "view:/dashboard:");
    /* Ordinary queries keep Nori's exact shape, '=' and '&' included. */
    r = get("/products", "page=2&sort=name", &none);
    assert_string_equal(key_of(&o, &r), "view:/products:page=2&sort=name");
    o.prefix = "shop";
    assert_string_equal(key_of(&o, &r), "shop:/products:page=2&sort=name");
}

static int user_key(const nori_http_request *req, void *ud, char *out, size_t cap)
{
    (void)ud;
    const char *u = nori_http_request_header(req, "X-User");
    if (u == NULL)
        return -1;
    return snprintf(out, cap, "%s", u);
}

static void test_key_function(void **state)
{
    (void)state;
    test_header hs[] = {{"x-user", "alice"}};
    test_headers h = {hs, 1}, none = {NULL, 0};
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.key_fn = user_key;
    nori_http_request r = get("/me", "", &h);
    assert_string_equal(key_of(&o, &r), "view:alice:/me:");
    r = get("/me", "", &none);
    assert_string_equal(key_of(&o, &r), "(opted out)");
    /* A user name with ':' cannot impersonate another user's path. */
    test_header evil[] = {{"X-User", "alice:/me"}};
    test_headers he = {evil, 1};
    r = get("", "", &he);
    char k1[NORI_MAX_KEY_LEN + 1];
    snprintf(k1, sizeof k1, "%s", key_of(&o, &r));
    assert_string_equal(k1, "view:alice%3A/me::");
    r = get("/me", "", &h);
    assert_string_not_equal(k1, key_of(&o, &r));
}

static void test_vary(void **state)
{
    (void)state;
    const char *vary[] = {"Accept-Language", "X-TENANT"};
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.vary_on = vary;
    o.n_vary_on = 2;
    test_header hs[] = {{"accept-language", "fr"}, {"x-tenant", "acme"}};
    test_headers both = {hs, 2}, first = {hs, 1}, none = {NULL, 0};
    nori_http_request r = get("/greeting", "", &both);
    assert_string_equal(key_of(&o, &r), "view:/greeting::vary=accept-language=fr,x-tenant=acme");
    r = get("/greeting", "", &first);
    assert_string_equal(key_of(&o, &r), "view:/greeting::vary=accept-language=fr,x-tenant=");
    r = get("/greeting", "a=1", &none);
    assert_string_equal(key_of(&o, &r), "view:/greeting:a=1:vary=accept-language=,x-tenant=");
    /* Header names in the options and in the request, in any case: same key. */
    const char *vary_lower[] = {"accept-language", "x-tenant"};
    o.vary_on = vary_lower;
    test_header upper[] = {{"ACCEPT-LANGUAGE", "fr"}, {"X-Tenant", "acme"}};
    test_headers hu = {upper, 2};
    r = get("/greeting", "", &hu);
    assert_string_equal(key_of(&o, &r), "view:/greeting::vary=accept-language=fr,x-tenant=acme");
    /* Request header values keep their case: they are the value. */
    test_header mixed[] = {{"accept-language", "FR"}};
    test_headers hm = {mixed, 1};
    r = get("/greeting", "", &hm);
    assert_string_equal(key_of(&o, &r), "view:/greeting::vary=accept-language=FR,x-tenant=");
}

/* Pairs of requests that Nori's literal shape would merge into one entry. */
static void test_no_collisions(void **state)
{
    (void)state;
    test_headers none = {NULL, 0};
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    char a[NORI_MAX_KEY_LEN + 1];

    nori_http_request r1 = get("/a:b", "c", &none), r2 = get("/a", "b:c", &none);
    snprintf(a, sizeof a, "%s", key_of(&o, &r1));
    assert_string_equal(a, "view:/a%3Ab:c");
    assert_string_equal(key_of(&o, &r2), "view:/a:b%3Ac");

    /* The escape character itself is escaped: a literal "%3A" is not ':'. */
    r1 = get("/a%3Ab", "c", &none);
    assert_string_equal(key_of(&o, &r1), "view:/a%253Ab:c");
    assert_string_not_equal(key_of(&o, &r1), a);

    /* A query cannot forge the vary suffix. */
    const char *vary[] = {"accept-language"};
    o.vary_on = vary;
    o.n_vary_on = 1;
    test_header en[] = {{"Accept-Language", "en"}};
    test_headers hen = {en, 1};
    r1 = get("/g", ":vary=accept-language=en", &none);
    r2 = get("/g", "", &hen);
    snprintf(a, sizeof a, "%s", key_of(&o, &r1));
    assert_string_not_equal(a, key_of(&o, &r2));

    /* A vary value with ',' and '=' cannot forge a second pair. */
    const char *vary2[] = {"a", "b"};
    o.vary_on = vary2;
    o.n_vary_on = 2;
    test_header forged[] = {{"a", "1,b=2"}};
    test_header honest[] = {{"a", "1"}, {"b", "2"}};
    test_headers hf = {forged, 1}, hh = {honest, 2};
    r1 = get("/g", "", &hf);
    r2 = get("/g", "", &hh);
    snprintf(a, sizeof a, "%s", key_of(&o, &r1));
    assert_string_equal(a, "view:/g::vary=a=1%2Cb%3D2,b=");
    assert_string_equal(key_of(&o, &r2), "view:/g::vary=a=1,b=2");
}

static void test_too_long(void **state)
{
    (void)state;
    test_headers none = {NULL, 0};
    static char path[NORI_MAX_KEY_LEN + 100];
    memset(path, 'p', sizeof path - 1);
    path[0] = '/';
    nori_http_cache *c;
    assert_nori(nori_http_cache_new(NULL, &c), NORI_OK);
    char key[NORI_MAX_KEY_LEN + 1];
    nori_http_request r = get(path, "", &none);
    assert_nori(nori_http_cache_key(c, &r, key, sizeof key), NORI_ETOOBIG);
    /* Exactly at the limit is fine: "view:" + path + ":" == 1024 bytes. */
    path[NORI_MAX_KEY_LEN - 6] = '\0';
    assert_nori(nori_http_cache_key(c, &r, key, sizeof key), NORI_OK);
    assert_int_equal(strlen(key), NORI_MAX_KEY_LEN);
    /* One more byte through escaping (':' -> "%3A") and it is refused. */
    path[1] = ':';
    assert_nori(nori_http_cache_key(c, &r, key, sizeof key), NORI_ETOOBIG);
    /* A buffer smaller than the key is refused, not truncated. */
    r = get("/dashboard", "", &none);
    assert_nori(nori_http_cache_key(c, &r, key, 8), NORI_ETOOBIG);
    nori_http_cache_free(c);
}

static void test_bad_options(void **state)
{
    (void)state;
    nori_http_cache *c = NULL;
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.ttl = -1;
    assert_nori(nori_http_cache_new(&o, &c), NORI_EINVAL);
    nori_http_cache_options_init(&o);
    o.prefix = "";
    assert_nori(nori_http_cache_new(&o, &c), NORI_EINVAL);
    const char *vary[] = {""};
    nori_http_cache_options_init(&o);
    o.vary_on = vary;
    o.n_vary_on = 1;
    assert_nori(nori_http_cache_new(&o, &c), NORI_EINVAL);
    assert_null(c);
}

static void test_form_value(void **state)
{
    (void)state;
    char v[16];
    const char *q = "page=2&user=a%40b.c&name=J+Doe&flag&empty=";
    assert_nori(nori_http_form_value(q, strlen(q), "page", v, sizeof v), NORI_OK);
    assert_string_equal(v, "2");
    assert_nori(nori_http_form_value(q, strlen(q), "user", v, sizeof v), NORI_OK);
    assert_string_equal(v, "a@b.c");
    assert_nori(nori_http_form_value(q, strlen(q), "name", v, sizeof v), NORI_OK);
    assert_string_equal(v, "J Doe");
    assert_nori(nori_http_form_value(q, strlen(q), "flag", v, sizeof v), NORI_OK);
    assert_string_equal(v, "");
    assert_nori(nori_http_form_value(q, strlen(q), "empty", v, sizeof v), NORI_OK);
    assert_nori(nori_http_form_value(q, strlen(q), "pag", v, sizeof v), NORI_MISS);
    assert_nori(nori_http_form_value(NULL, 0, "page", v, sizeof v), NORI_MISS);
    assert_nori(nori_http_form_value(q, strlen(q), "user", v, 4), NORI_ETOOBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nori_shape),   cmocka_unit_test(test_key_function),
        cmocka_unit_test(test_vary),         cmocka_unit_test(test_no_collisions),
        cmocka_unit_test(test_too_long),     cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_form_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
