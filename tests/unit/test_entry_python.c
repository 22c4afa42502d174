// SPDX-License-Identifier: MIT
/*
 * Interoperability with Nori's Python decorator, with a real Python: an
 * entry this library writes is decoded by Python the way Nori reads it
 * (json.loads + base64.b64decode of body_b64), and Python re-encodes the
 * body the way Nori writes it (json.dumps of body_b64/status_code/media_type),
 * which this library then decodes. python3 is installed by scripts/setup.sh;
 * without it the test fails rather than pass unchecked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"

#include "http/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Nori reads body_b64, status_code and media_type, and replays "headers" (a
 * dict of str to str, which Starlette takes as is); this library's own
 * members (stored_at, fresh_for, initial_age, ...) are extra keys it never
 * looks at. What Python writes back carries headers as Nori keeps them
 * (lower-case, content-length included), which this library reads. */
static const char python[] =
    "import base64, json, sys\n"
    "entry = json.loads(open(sys.argv[1], 'rb').read())\n"
    "body = base64.b64decode(entry['body_b64'], validate=True)\n"
    "assert bytes(range(256)) * 3 == body, 'body differs'\n"
    "assert entry['status_code'] == 200 and entry['media_type'] == 'application/pdf'\n"
    "h = entry['headers']\n"
    "assert isinstance(h, dict) and all(isinstance(k, str) and isinstance(v, str)\n"
    "                                   for k, v in h.items()), h\n"
    "assert h == {'x-total-count': '42', 'link': '<a>; rel=next, <b>; rel=prev',\n"
    "             'content-disposition': 'inline'}, h\n"
    "assert entry['initial_age'] == 2.5 and entry['fresh_for'] == 60, entry\n"
    "sys.stdout.write(json.dumps({'body_b64': base64.b64encode(body[::-1]).decode('ascii'),\n"
    "                             'status_code': 201, 'media_type': 'image/png',\n"
    "                             'headers': {'x-request-id': 'r1', 'content-length': '768',\n"
    "                                         'content-type': 'image/png'}}))\n";

static void test_python_roundtrip(void **state)
{
    (void)state;
    if (system("python3 -c 'import base64, json' >/dev/null 2>&1") != 0) {
        fail_msg("python3 is not installed (scripts/setup.sh installs it)");
    }
    char *dir = nori_test_mkdtemp();
    char script[512], entry[512], cmd[1200];
    snprintf(script, sizeof script, "%s/nori_entry.py", dir);
    snprintf(entry, sizeof entry, "%s/entry.json", dir);
    nori_test_write_file(script, python);

    unsigned char body[768];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (unsigned char)i;
    nori_http_response r;
    nori_http_response_init(&r);
    assert_nori(nori_http_response_set_body(&r, body, sizeof body), NORI_OK);
    assert_nori(nori_http_response_set_media_type(&r, "application/pdf"), NORI_OK);
    assert_nori(nori_http_response_add_header(&r, "X-Total-Count", "42"), NORI_OK);
    assert_nori(nori_http_response_add_header(&r, "Link", "<a>; rel=next"), NORI_OK);
    assert_nori(nori_http_response_add_header(&r, "Connection", "close"), NORI_OK);
    assert_nori(nori_http_response_add_header(&r, "Content-Disposition", "inline"), NORI_OK);
    assert_nori(nori_http_response_add_header(&r, "link", "<b>; rel=prev"), NORI_OK);
    nori__entry_meta meta = NORI__META(1700000000000, 60000);
    meta.age_ms = 2500;
    nori_buf enc;
    assert_nori(nori__entry_encode_json_meta(&r, &meta, &enc), NORI_OK);
    FILE *f = fopen(entry, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(enc.data, 1, enc.len, f), enc.len);
    fclose(f);
    nori_buf_free(&enc);

    snprintf(cmd, sizeof cmd, "python3 '%s' '%s'", script, entry);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    static char out[8192];
    size_t n = fread(out, 1, sizeof out - 1, p);
    int status = pclose(p);
    assert_int_equal(status, 0); /* Python's assertions held */
    nori_buf in = {malloc(n + 1), n};
    memcpy(in.data, out, n);
    assert_nori(nori__entry_decode(&in, false, &r), NORI_OK);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.media_type, "image/png");
    assert_int_equal(r.n_headers, 1); /* content-length is no entry's */
    assert_string_equal(nori_http_response_header(&r, "X-Request-Id"), "r1");
    assert_int_equal(r.body_len, sizeof body);
    for (size_t i = 0; i < sizeof body; i++)
        assert_int_equal((unsigned char)r.body[i], body[sizeof body - 1 - i]);
    nori_http_response_clear(&r);
    nori_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_python_roundtrip)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
