/* Unit tests for server_state: first verdict, rise/fall, ejection, admin states, slow start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "server_state.h"

static void
test_first_verdict_decides_at_once(void **state)
{
    struct server_state up, down;

    server_state_init(&up, true, 100);
    server_state_init(&down, true, 100);
    assert_int_equal(up.health, HEALTH_UNKNOWN);
    assert_false(server_state_usable(&up));
    assert_int_equal(server_state_check(&up, true, 3, 3, 200), SM_WENT_UP);
    assert_true(server_state_usable(&up));
    assert_int_equal(up.since_us, 0); /* up since start-up: no slow start */
    assert_int_equal(server_state_check(&down, false, 3, 3, 200), SM_WENT_DOWN);
}

/* A table of verdict sequences and the transitions they must produce with rise 2, fall 3. */
static void
test_rise_and_fall_counts(void **state)
{
    static const struct {
        const char *verdicts; /* after an initial "up" */
        const char *changes;  /* per verdict: '.' none, 'u' up, 'd' down */
    } cases[] = {
        {"xx+xxx", ".....d"},  /* a success resets the fall count */
        {"xxx", "..d"},
        {"xxx++", "..d.u"},
        {"xxx+x++", "..d...u"}, /* a failure resets the rise count */
        {"+++", "..."},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct server_state s;
        server_state_init(&s, true, 0);
        server_state_check(&s, true, 2, 3, 1);
        for (size_t j = 0; cases[i].verdicts[j]; j++) {
            enum sm_change c = server_state_check(&s, cases[i].verdicts[j] == '+', 2, 3, 10 + j);
            int got = c == SM_WENT_UP ? 'u' : c == SM_WENT_DOWN ? 'd' : '.';
            if (got != cases[i].changes[j])
                fail_msg("case %zu step %zu: got %c", i, j, got);
        }
    }
}

static void
test_eject_then_rise_brings_back(void **state)
{
    struct server_state s;

    server_state_init(&s, true, 0);
    server_state_check(&s, true, 2, 2, 1);
    assert_int_equal(server_state_eject(&s, 50), SM_WENT_DOWN);
    assert_int_equal(server_state_eject(&s, 60), SM_NONE);
    assert_int_equal(server_state_check(&s, true, 2, 2, 70), SM_NONE);
    assert_int_equal(server_state_check(&s, true, 2, 2, 80), SM_WENT_UP);
    assert_int_equal(s.since_us, 80);
}

static void
test_unchecked_server_starts_up_and_restores(void **state)
{
    struct server_state s;

    server_state_init(&s, false, 5);
    assert_true(server_state_usable(&s));
    server_state_eject(&s, 10);
    assert_false(server_state_usable(&s));
    assert_int_equal(server_state_restore(&s, 20), SM_WENT_UP);
    assert_true(server_state_usable(&s));
}

static void
test_admin_states_block_traffic_without_changing_health(void **state)
{
    struct server_state s;

    server_state_init(&s, false, 0);
    assert_true(server_state_set_admin(&s, ADMIN_DRAINING, 100));
    assert_false(server_state_usable(&s));
    assert_int_equal(s.health, HEALTH_UP);
    assert_true(server_state_set_admin(&s, ADMIN_MAINTENANCE, 200));
    assert_false(server_state_usable(&s));
    assert_false(server_state_set_admin(&s, ADMIN_MAINTENANCE, 300)); /* no change */
    assert_int_equal(s.since_us, 0);
    assert_true(server_state_set_admin(&s, ADMIN_READY, 400));
    assert_true(server_state_usable(&s));
    assert_int_equal(s.since_us, 400); /* back from maintenance: slow start from here */
}

static void
test_ready_while_down_waits_for_checks(void **state)
{
    struct server_state s;

    server_state_init(&s, true, 0);
    server_state_check(&s, false, 2, 2, 50);
    assert_true(server_state_set_admin(&s, ADMIN_MAINTENANCE, 100));
    assert_true(server_state_set_admin(&s, ADMIN_READY, 200));
    assert_false(server_state_usable(&s));
    assert_int_equal(s.since_us, 50); /* the ramp starts when checks bring it up */
}

static void
test_slow_start_ramps_weight_linearly(void **state)
{
    struct server_state s = {.health = HEALTH_UP, .since_us = 1000};

    assert_int_equal(server_state_weight(&s, 100, 0, 5000), 100);       /* off */
    assert_int_equal(server_state_weight(&s, 100, 10000, 1000), 1);     /* just came up */
    assert_int_equal(server_state_weight(&s, 100, 10000, 6000), 50);    /* half way */
    assert_int_equal(server_state_weight(&s, 100, 10000, 11000), 100);  /* done */
    assert_int_equal(server_state_weight(&s, 100, 10000, 1001), 1);     /* never below 1 */
    assert_int_equal(server_state_weight(&s, 0, 10000, 6000), 0);       /* weight 0 stays 0 */
    s.since_us = 0;
    assert_int_equal(server_state_weight(&s, 100, 10000, 6000), 100);   /* up since start-up */
}

static void
test_peer_report_suspends_until_the_next_check(void **state)
{
    struct server_state s;

    server_state_init(&s, true, 0);
    server_state_check(&s, true, 2, 3, 10);
    assert_true(server_state_suspect(&s));
    assert_false(server_state_suspect(&s)); /* already */
    assert_false(server_state_usable(&s));
    assert_true(server_state_unsettled(&s)); /* checked at the fast interval */
    /* this instance's check passes: the report is not confirmed */
    assert_int_equal(server_state_check(&s, true, 2, 3, 20), SM_CLEARED);
    assert_true(server_state_usable(&s));
    /* suspect again; the check fails: down at once, whatever `fall` says */
    assert_true(server_state_suspect(&s));
    assert_int_equal(server_state_check(&s, false, 2, 3, 30), SM_WENT_DOWN);
    assert_false(s.suspect);
    /* a server that is not up has nothing to suspend */
    assert_false(server_state_suspect(&s));
}

static void
test_fleet_quorum_overrides_own_checks(void **state)
{
    struct server_state s;

    server_state_init(&s, true, 0);
    server_state_check(&s, true, 2, 2, 10);
    assert_true(server_state_set_fleet_down(&s, true));
    assert_false(server_state_set_fleet_down(&s, true));
    assert_int_equal(server_state_check(&s, true, 2, 2, 20), SM_NONE);
    assert_false(server_state_usable(&s)); /* good checks here do not lift it */
    assert_int_equal(s.health, HEALTH_UP);
    assert_true(server_state_set_fleet_down(&s, false));
    assert_true(server_state_usable(&s));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_verdict_decides_at_once),
        cmocka_unit_test(test_rise_and_fall_counts),
        cmocka_unit_test(test_eject_then_rise_brings_back),
        cmocka_unit_test(test_unchecked_server_starts_up_and_restores),
        cmocka_unit_test(test_admin_states_block_traffic_without_changing_health),
        cmocka_unit_test(test_ready_while_down_waits_for_checks),
        cmocka_unit_test(test_peer_report_suspends_until_the_next_check),
        cmocka_unit_test(test_fleet_quorum_overrides_own_checks),
        cmocka_unit_test(test_slow_start_ramps_weight_linearly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
