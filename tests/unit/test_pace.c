/* pace: only time spent waiting counts; the allowance grows with the bytes received. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pace.h"

static void
test_waiting_time_and_allowance(void **state)
{
    struct pace p = {0};

    (void)state;
    pace_wait(&p, 1000000);
    pace_wait(&p, 1500000); /* already waiting: the first start holds */
    pace_stop(&p, 2000000);
    assert_int_equal(p.waited_us, 1000000);
    pace_stop(&p, 9000000); /* not waiting: nothing added */
    assert_int_equal(p.waited_us, 1000000);
    /* grace 1 s, 100 B/s: 1 s of waiting is allowed with nothing received */
    assert_false(pace_too_slow(&p, 1000, 100));
    pace_wait(&p, 10000000);
    pace_stop(&p, 10500000);
    assert_true(pace_too_slow(&p, 1000, 100)); /* 1.5 s for 0 bytes */
    p.bytes = 100;                               /* ... for 100 bytes: 2 s allowed */
    assert_false(pace_too_slow(&p, 1000, 100));
    assert_false(pace_too_slow(&p, 1000, 0)); /* off */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_waiting_time_and_allowance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
