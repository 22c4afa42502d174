#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"

static void test_set_get(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(10, &b), NORI_OK);
    assert_nori(nori_backend_set(b, "k", "v", 1, 0), NORI_OK);
    nori_buf out;
    assert_nori(nori_backend_get(b, "k", &out), NORI_OK);
    assert_string_equal(out.data, "v");
    nori_buf_free(&out);
    nori_backend_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_get),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
