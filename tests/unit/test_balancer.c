/* Unit tests for balancer_swrr and balancer_leastconn: sequences, weights, skipped peers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "balancer.h"

static void
init_peers(struct balancer_peer *p, const int *weights, size_t n)
{
    memset(p, 0, n * sizeof(*p));
    for (size_t i = 0; i < n; i++) {
        p[i].weight = weights[i];
        p[i].usable = true;
    }
}

static void
test_swrr_weights_5_1_1_yield_smooth_sequence(void **state)
{
    static const int weights[] = {5, 1, 1};
    static const int expected[] = {0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0};
    struct balancer_peer p[3];

    init_peers(p, weights, 3);
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
        assert_int_equal(balancer_swrr.pick(p, 3), expected[i]);
}

static void
test_swrr_weights_2_1_1_yield_a_b_c_a(void **state)
{
    static const int weights[] = {2, 1, 1};
    static const int expected[] = {0, 1, 2, 0, 0, 1, 2, 0};
    struct balancer_peer p[3];

    init_peers(p, weights, 3);
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
        assert_int_equal(balancer_swrr.pick(p, 3), expected[i]);
}

/* Over many picks each peer's share equals its share of the weights, for several tables. */
static void
test_swrr_shares_match_weights(void **state)
{
    static const int tables[][4] = {{1, 1, 1, 1}, {3, 2, 1, 1}, {10, 1, 0, 5}, {7, 7, 1, 3}};

    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
        struct balancer_peer p[4];
        int counts[4] = {0}, total = 0;

        init_peers(p, tables[t], 4);
        for (int i = 0; i < 4; i++)
            total += tables[t][i];
        for (int i = 0; i < total * 10; i++)
            counts[balancer_swrr.pick(p, 4)]++;
        for (int i = 0; i < 4; i++)
            assert_int_equal(counts[i], tables[t][i] * 10);
    }
}

static void
test_swrr_skips_unusable_and_zero_weight(void **state)
{
    static const int weights[] = {1, 0, 1};
    struct balancer_peer p[3];

    init_peers(p, weights, 3);
    p[2].usable = false;
    for (int i = 0; i < 5; i++)
        assert_int_equal(balancer_swrr.pick(p, 3), 0);
    p[0].usable = false;
    assert_int_equal(balancer_swrr.pick(p, 3), -1);
}

static void
test_leastconn_picks_fewest_active_per_weight(void **state)
{
    static const int weights[] = {1, 2, 1};
    struct balancer_peer p[3];

    init_peers(p, weights, 3);
    p[0].active = 3;
    p[1].active = 4; /* 2 per unit of weight */
    p[2].active = 3;
    assert_int_equal(balancer_leastconn.pick(p, 3), 1);
    p[1].active = 8; /* 4 per unit: now 0 and 2 tie at 3 */
    /* cppcheck-suppress duplicateAssignExpression ; two picks: the tie-break moves between them */
    int a = balancer_leastconn.pick(p, 3), b = balancer_leastconn.pick(p, 3);
    assert_true((a == 0 && b == 2) || (a == 2 && b == 0));
}

static void
test_leastconn_ties_rotate(void **state)
{
    static const int weights[] = {1, 1, 1};
    struct balancer_peer p[3];
    int seen[3] = {0};

    init_peers(p, weights, 3);
    for (int i = 0; i < 30; i++)
        seen[balancer_leastconn.pick(p, 3)]++;
    assert_int_equal(seen[0], 10);
    assert_int_equal(seen[1], 10);
    assert_int_equal(seen[2], 10);
}

static void
test_leastconn_none_usable_returns_minus_one(void **state)
{
    static const int weights[] = {1, 1};
    struct balancer_peer p[2];

    init_peers(p, weights, 2);
    p[0].usable = p[1].usable = false;
    assert_int_equal(balancer_leastconn.pick(p, 2), -1);
}

static void
test_balancer_for_maps_config_names(void **state)
{
    assert_ptr_equal(balancer_for(BALANCE_ROUND_ROBIN), &balancer_swrr);
    assert_ptr_equal(balancer_for(BALANCE_LEAST_CONN), &balancer_leastconn);
    assert_string_equal(balancer_swrr.name, "round_robin");
    assert_string_equal(balancer_leastconn.name, "least_conn");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_swrr_weights_5_1_1_yield_smooth_sequence),
        cmocka_unit_test(test_swrr_weights_2_1_1_yield_a_b_c_a),
        cmocka_unit_test(test_swrr_shares_match_weights),
        cmocka_unit_test(test_swrr_skips_unusable_and_zero_weight),
        cmocka_unit_test(test_leastconn_picks_fewest_active_per_weight),
        cmocka_unit_test(test_leastconn_ties_rotate),
        cmocka_unit_test(test_leastconn_none_usable_returns_minus_one),
        cmocka_unit_test(test_balancer_for_maps_config_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
