/* iplimit: per-address connection caps, new-connection rates, the bounded table. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "iplimit.h"

static struct sockaddr_storage
addr(const char *ip)
{
    struct sockaddr_storage ss = {0};

    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        inet_pton(AF_INET6, ip, &a->sin6_addr);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        inet_pton(AF_INET, ip, &a->sin_addr);
    }
    return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static void
test_connection_cap(void **state)
{
    struct iplimit *t = iplimit_new(1000);
    struct iplimit_rules r = {.max_conns = 3};
    struct sockaddr_storage a = addr("192.0.2.1"), b = addr("192.0.2.2");

    (void)state;
    for (int i = 0; i < 3; i++)
        assert_int_equal(iplimit_acquire(t, SA(a), &r, 0), IPLIMIT_OK);
    assert_int_equal(iplimit_acquire(t, SA(a), &r, 0), IPLIMIT_CONNS);
    assert_int_equal(iplimit_acquire(t, SA(b), &r, 0), IPLIMIT_OK); /* others unaffected */
    iplimit_release(t, SA(a), 0);
    assert_int_equal(iplimit_acquire(t, SA(a), &r, 0), IPLIMIT_OK);
    for (int i = 0; i < 3; i++)
        iplimit_release(t, SA(a), 0);
    iplimit_release(t, SA(b), 0);
    assert_int_equal(iplimit_size(t), 0); /* nothing kept for idle addresses */
    iplimit_free(t);
}

static void
test_ipv6_counts_by_64_and_mapped_v4_as_v4(void **state)
{
    struct iplimit *t = iplimit_new(1000);
    struct iplimit_rules r = {.max_conns = 1};
    struct sockaddr_storage a1 = addr("2001:db8:1:2::1"), a2 = addr("2001:db8:1:2::ffff"),
                            other = addr("2001:db8:1:3::1"), v4 = addr("198.51.100.7"),
                            mapped = addr("::ffff:198.51.100.7");

    (void)state;
    assert_int_equal(iplimit_acquire(t, SA(a1), &r, 0), IPLIMIT_OK);
    assert_int_equal(iplimit_acquire(t, SA(a2), &r, 0), IPLIMIT_CONNS);
    assert_int_equal(iplimit_acquire(t, SA(other), &r, 0), IPLIMIT_OK);
    assert_int_equal(iplimit_acquire(t, SA(v4), &r, 0), IPLIMIT_OK);
    assert_int_equal(iplimit_acquire(t, SA(mapped), &r, 0), IPLIMIT_CONNS);
    iplimit_free(t);
}

static void
test_rate_and_burst(void **state)
{
    struct iplimit *t = iplimit_new(1000);
    struct iplimit_rules r = {.rate = 10, .burst = 5}; /* 10/s, 5 at once */
    struct sockaddr_storage a = addr("192.0.2.9");
    uint64_t now = 1000000;

    (void)state;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(iplimit_acquire(t, SA(a), &r, now), IPLIMIT_OK);
        iplimit_release(t, SA(a), now);
    }
    assert_int_equal(iplimit_acquire(t, SA(a), &r, now), IPLIMIT_RATE);
    assert_int_equal(iplimit_size(t), 1); /* the empty bucket is remembered */
    now += 100000; /* one token back */
    assert_int_equal(iplimit_acquire(t, SA(a), &r, now), IPLIMIT_OK);
    assert_int_equal(iplimit_acquire(t, SA(a), &r, now), IPLIMIT_RATE);
    iplimit_release(t, SA(a), now + 1000000); /* refilled by then: forgotten */
    assert_int_equal(iplimit_size(t), 0);
    iplimit_free(t);
}

static void
test_full_table_fails_open_and_sweeps(void **state)
{
    struct iplimit *t = iplimit_new(64 * 4); /* about 5 per shard */
    struct iplimit_rules r = {.max_conns = 1, .rate = 1, .burst = 1};
    struct sockaddr_storage ss[2000];
    int untracked = 0, ok = 0;
    char ip[32];

    (void)state;
    for (int i = 0; i < 2000; i++) {
        snprintf(ip, sizeof(ip), "10.%d.%d.1", i / 250, i % 250);
        ss[i] = addr(ip);
        enum iplimit_verdict v = iplimit_acquire(t, SA(ss[i]), &r, 0);
        untracked += v == IPLIMIT_UNTRACKED;
        ok += v == IPLIMIT_OK;
    }
    assert_true(untracked > 0);
    assert_true(iplimit_size(t) <= 64 * 5 + 64);
    /* close everything; a second later every bucket is full: the table makes room again */
    for (int i = 0; i < 2000; i++)
        iplimit_release(t, SA(ss[i]), 0);
    for (int i = 0; i < 2000; i += 7)
        assert_int_not_equal(iplimit_acquire(t, SA(ss[i]), &r, 2000000), IPLIMIT_RATE);
    assert_true(ok > 0);
    iplimit_free(t);
}

static void
test_deletions_keep_every_entry_findable(void **state)
{
    struct iplimit *t = iplimit_new(64 * 50);
    struct iplimit_rules r = {.max_conns = 2};
    struct sockaddr_storage ss[1500];
    char ip[32];

    (void)state;
    for (int i = 0; i < 1500; i++) {
        snprintf(ip, sizeof(ip), "172.16.%d.%d", i / 200, i % 200);
        ss[i] = addr(ip);
        assert_int_equal(iplimit_acquire(t, SA(ss[i]), &r, 0), IPLIMIT_OK);
    }
    for (int i = 0; i < 1500; i += 3) /* delete a third, in table order or not */
        iplimit_release(t, SA(ss[i]), 0);
    for (int i = 0; i < 1500; i++) {
        /* the survivors still hold their one connection: a second is fine, a third is not */
        if (i % 3 == 0)
            continue;
        assert_int_equal(iplimit_acquire(t, SA(ss[i]), &r, 0), IPLIMIT_OK);
        assert_int_equal(iplimit_acquire(t, SA(ss[i]), &r, 0), IPLIMIT_CONNS);
    }
    assert_int_equal(iplimit_size(t), 1000);
    iplimit_free(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connection_cap),
        cmocka_unit_test(test_ipv6_counts_by_64_and_mapped_v4_as_v4),
        cmocka_unit_test(test_rate_and_burst),
        cmocka_unit_test(test_full_table_fails_open_and_sweeps),
        cmocka_unit_test(test_deletions_keep_every_entry_findable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
