/* Unit tests for reqid: generated ids are hex, unique, and incoming ids are filtered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "reqid.h"

static void
test_generated_ids_are_32_hex_and_distinct(void **state)
{
    struct reqid_gen g;
    char prev[REQID_GEN_LEN + 1] = "", id[REQID_GEN_LEN + 1];

    assert_int_equal(reqid_gen_init(&g), 0);
    for (int i = 0; i < 1000; i++) {
        reqid_next(&g, id);
        assert_int_equal(strlen(id), REQID_GEN_LEN);
        assert_int_equal(strspn(id, "0123456789abcdef"), REQID_GEN_LEN);
        assert_string_not_equal(id, prev);
        assert_true(reqid_valid(id, strlen(id)));
        memcpy(prev, id, sizeof(id));
    }
}

static void
test_two_generators_differ(void **state)
{
    struct reqid_gen a, b;
    char ia[REQID_GEN_LEN + 1], ib[REQID_GEN_LEN + 1];

    reqid_gen_init(&a);
    reqid_gen_init(&b);
    reqid_next(&a, ia);
    reqid_next(&b, ib);
    assert_string_not_equal(ia, ib);
}

static void
test_incoming_ids_filtered(void **state)
{
    static const struct {
        const char *id;
        int valid;
    } cases[] = {
        {"0f8fad5b-d9cb-469f-a165-70867728950e", 1},
        {"abc123", 1},
        {"dGVzdA==", 1},
        {"a/b+c:d.e_f", 1},
        {"", 0},
        {"has space", 0},
        {"quote\"", 0},
        {"new\nline", 0},
        {"brace{", 0},
    };
    char longid[REQID_MAX + 2];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(reqid_valid(cases[i].id, strlen(cases[i].id)), cases[i].valid);
    memset(longid, 'a', sizeof(longid));
    assert_true(reqid_valid(longid, REQID_MAX));
    assert_false(reqid_valid(longid, REQID_MAX + 1));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generated_ids_are_32_hex_and_distinct),
        cmocka_unit_test(test_two_generators_differ),
        cmocka_unit_test(test_incoming_ids_filtered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
