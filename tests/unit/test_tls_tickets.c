/* tls_tickets: rotation keeps the current key and two older ones; keys learnt from the fleet stop
 * decrypting at their end of life. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "clock.h"
#include "tls_tickets.h"

static struct tls_ticket_key
key_named(uint8_t tag)
{
    struct tls_ticket_key k;

    memset(&k, tag, sizeof(k));
    return k;
}

static void
test_rotation_keeps_three_keys(void **state)
{
    struct tls_tickets *t = tls_tickets_new();
    struct tls_ticket_key fleet[1] = {key_named(1)}, out;
    long long never = clock_wall_ms() + 3600000;

    (void)state;
    assert_non_null(t);
    tls_tickets_replace(t, fleet, &never, 1); /* a known name to follow */
    assert_int_equal(tls_tickets_find(t, fleet[0].name, &out), 1);
    assert_memory_equal(&out, &fleet[0], sizeof(out));
    assert_int_equal(tls_tickets_rotate(t), 0);
    assert_int_equal(tls_tickets_find(t, fleet[0].name, &out), 2); /* older: still decrypts */
    assert_int_equal(tls_tickets_rotate(t), 0);
    assert_int_equal(tls_tickets_find(t, fleet[0].name, &out), 2);
    assert_int_equal(tls_tickets_rotate(t), 0);
    assert_int_equal(tls_tickets_find(t, fleet[0].name, &out), 0); /* rotated out */
    tls_tickets_free(t);
}

static void
test_fleet_keys_past_their_end_of_life_are_refused(void **state)
{
    struct tls_tickets *t = tls_tickets_new();
    struct tls_ticket_key keys[3] = {key_named(1), key_named(2), key_named(3)}, out;
    long long now = clock_wall_ms();
    long long expires[3] = {now + 60000, now + 30000, now - 1};
    uint8_t unknown[16];

    (void)state;
    assert_non_null(t);
    tls_tickets_replace(t, keys, expires, 3);
    assert_int_equal(tls_tickets_find(t, keys[0].name, &out), 1);
    assert_int_equal(tls_tickets_find(t, keys[1].name, &out), 2);
    assert_int_equal(tls_tickets_find(t, keys[2].name, &out), 0);
    memset(unknown, 9, sizeof(unknown));
    assert_int_equal(tls_tickets_find(t, unknown, &out), 0);
    /* a local rotation keeps the learnt keys' ends of life */
    assert_int_equal(tls_tickets_rotate(t), 0);
    assert_int_equal(tls_tickets_find(t, keys[0].name, &out), 2);
    assert_int_equal(tls_tickets_find(t, keys[1].name, &out), 2);
    tls_tickets_free(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotation_keeps_three_keys),
        cmocka_unit_test(test_fleet_keys_past_their_end_of_life_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
