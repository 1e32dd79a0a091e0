/* limiter: per-address connection caps, new-connection rates, request rates, the bounded table. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "limiter.h"

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

static enum limiter_verdict
acq(struct limiter *t, const struct sockaddr *sa, const struct limiter_rules *r, uint64_t now)
{
    uint8_t key[16];

    limiter_key_addr(sa, key);
    return limiter_acquire(t, key, r, now);
}

static void
rel(struct limiter *t, const struct sockaddr *sa, uint64_t now)
{
    uint8_t key[16];

    limiter_key_addr(sa, key);
    limiter_release(t, key, now);
}

static void
test_connection_cap(void **state)
{
    struct limiter *t = limiter_new(1000);
    struct limiter_rules r = {.max_conns = 3};
    struct sockaddr_storage a = addr("192.0.2.1"), b = addr("192.0.2.2");

    (void)state;
    for (int i = 0; i < 3; i++)
        assert_int_equal(acq(t, SA(a), &r, 0), LIMITER_OK);
    assert_int_equal(acq(t, SA(a), &r, 0), LIMITER_CONNS);
    assert_int_equal(acq(t, SA(b), &r, 0), LIMITER_OK); /* others unaffected */
    rel(t, SA(a), 0);
    assert_int_equal(acq(t, SA(a), &r, 0), LIMITER_OK);
    for (int i = 0; i < 3; i++)
        rel(t, SA(a), 0);
    rel(t, SA(b), 0);
    assert_int_equal(limiter_size(t), 0); /* nothing kept for idle addresses */
    limiter_free(t);
}

static void
test_ipv6_counts_by_64_and_mapped_v4_as_v4(void **state)
{
    struct limiter *t = limiter_new(1000);
    struct limiter_rules r = {.max_conns = 1};
    struct sockaddr_storage a1 = addr("2001:db8:1:2::1"), a2 = addr("2001:db8:1:2::ffff"),
                            other = addr("2001:db8:1:3::1"), v4 = addr("198.51.100.7"),
                            mapped = addr("::ffff:198.51.100.7");

    (void)state;
    assert_int_equal(acq(t, SA(a1), &r, 0), LIMITER_OK);
    assert_int_equal(acq(t, SA(a2), &r, 0), LIMITER_CONNS);
    assert_int_equal(acq(t, SA(other), &r, 0), LIMITER_OK);
    assert_int_equal(acq(t, SA(v4), &r, 0), LIMITER_OK);
    assert_int_equal(acq(t, SA(mapped), &r, 0), LIMITER_CONNS);
    limiter_free(t);
}

static void
test_rate_and_burst(void **state)
{
    struct limiter *t = limiter_new(1000);
    struct limiter_rules r = {.rate = 10, .burst = 5}; /* 10/s, 5 at once */
    struct sockaddr_storage a = addr("192.0.2.9");
    uint64_t now = 1000000;

    (void)state;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(acq(t, SA(a), &r, now), LIMITER_OK);
        rel(t, SA(a), now);
    }
    assert_int_equal(acq(t, SA(a), &r, now), LIMITER_RATE);
    assert_int_equal(limiter_size(t), 1); /* the empty bucket is remembered */
    now += 100000; /* one token back */
    assert_int_equal(acq(t, SA(a), &r, now), LIMITER_OK);
    assert_int_equal(acq(t, SA(a), &r, now), LIMITER_RATE);
    rel(t, SA(a), now + 1000000); /* refilled by then: forgotten */
    assert_int_equal(limiter_size(t), 0);
    limiter_free(t);
}

static void
test_full_table_fails_open_and_sweeps(void **state)
{
    struct limiter *t = limiter_new((size_t)64 * 4); /* about 5 per shard */
    struct limiter_rules r = {.max_conns = 1, .rate = 1, .burst = 1};
    struct sockaddr_storage ss[2000];
    int untracked = 0, ok = 0;
    char ip[32];

    (void)state;
    for (int i = 0; i < 2000; i++) {
        snprintf(ip, sizeof(ip), "10.%d.%d.1", i / 250, i % 250);
        ss[i] = addr(ip);
        enum limiter_verdict v = acq(t, SA(ss[i]), &r, 0);
        untracked += v == LIMITER_UNTRACKED;
        ok += v == LIMITER_OK;
    }
    assert_true(untracked > 0);
    assert_true(limiter_size(t) <= 64 * 5 + 64);
    /* close everything; a second later every bucket is full: the table makes room again */
    for (int i = 0; i < 2000; i++)
        rel(t, SA(ss[i]), 0);
    for (int i = 0; i < 2000; i += 7)
        assert_int_not_equal(acq(t, SA(ss[i]), &r, 2000000), LIMITER_RATE);
    assert_true(ok > 0);
    limiter_free(t);
}

static void
test_deletions_keep_every_entry_findable(void **state)
{
    struct limiter *t = limiter_new((size_t)64 * 50);
    struct limiter_rules r = {.max_conns = 2};
    struct sockaddr_storage ss[1500];
    char ip[32];

    (void)state;
    for (int i = 0; i < 1500; i++) {
        snprintf(ip, sizeof(ip), "172.16.%d.%d", i / 200, i % 200);
        ss[i] = addr(ip);
        assert_int_equal(acq(t, SA(ss[i]), &r, 0), LIMITER_OK);
    }
    for (int i = 0; i < 1500; i += 3) /* delete a third, in table order or not */
        rel(t, SA(ss[i]), 0);
    for (int i = 0; i < 1500; i++) {
        /* the survivors still hold their one connection: a second is fine, a third is not */
        if (i % 3 == 0)
            continue;
        assert_int_equal(acq(t, SA(ss[i]), &r, 0), LIMITER_OK);
        assert_int_equal(acq(t, SA(ss[i]), &r, 0), LIMITER_CONNS);
    }
    assert_int_equal(limiter_size(t), 1000);
    limiter_free(t);
}

static void
test_request_rate_and_retry_time(void **state)
{
    struct limiter *t = limiter_new(1000);
    struct limiter_rules r = {.rate = 2, .burst = 3}; /* 2 a second, 3 at once */
    uint8_t key[16] = {1, 2, 3}, other[16] = {4, 5, 6};
    uint64_t now = 5000000, retry, wait;

    (void)state;
    for (int i = 0; i < 3; i++)
        assert_int_equal(limiter_take(t, key, &r, now, &retry), LIMITER_OK);
    assert_int_equal(limiter_take(t, key, &r, now, &retry), LIMITER_RATE);
    assert_true(retry > 490000 && retry <= 500001); /* the next token in half a second */
    wait = retry;
    assert_int_equal(limiter_take(t, other, &r, now, &retry), LIMITER_OK);
    assert_int_equal(limiter_take(t, key, &r, now + wait / 2, &retry), LIMITER_RATE);
    assert_int_equal(limiter_take(t, key, &r, now + wait, &retry), LIMITER_OK);
    limiter_free(t);
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
        cmocka_unit_test(test_request_rate_and_retry_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
