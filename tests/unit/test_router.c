/* Unit tests for router's session placement (router_choose_for_key): the same key gives the same
 * server, spread follows the configured weights, a down server moves only its own sessions, and
 * a move prefers the same provider. And router_find / router_at. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "affinity.h"
#include "config.h"
#include "health.h"
#include "router.h"

static const char *const conf_text =
    "{\"workers\": 1, \"listeners\": [{\"address\": \"127.0.0.1:1\"}], \"clusters\": ["
    " {\"name\": \"ntt\", \"provider\": \"ntt\", \"weight\": 2, \"servers\": ["
    "   {\"id\": \"ntt-1\", \"address\": \"127.0.0.2:1\"},"
    "   {\"id\": \"ntt-2\", \"address\": \"127.0.0.2:2\"}]},"
    " {\"name\": \"gmo\", \"provider\": \"gmo\", \"weight\": 1, \"servers\": ["
    "   {\"id\": \"gmo-1\", \"address\": \"127.0.0.3:1\"},"
    "   {\"id\": \"gmo-2\", \"address\": \"127.0.0.3:2\", \"weight\": 3}]}]}";

struct fixture {
    struct config *cfg;
    struct router *r;
    struct server_shared servers[4];
    struct health_table table;
};

static int
setup(void **state)
{
    static struct fixture f;
    struct config_error err;
    char why[256];

    memset(&f, 0, sizeof(f));
    f.cfg = config_parse(conf_text, &err);
    assert_non_null(f.cfg);
    f.r = router_new(f.cfg, NULL, NULL, 0, why, sizeof(why));
    assert_non_null(f.r);
    for (int i = 0; i < 4; i++)
        atomic_store(&f.servers[i].usable, true);
    f.table.n = 4;
    f.table.servers = f.servers;
    atomic_store(&f.table.generation, 1);
    f.r->table = &f.table; /* a stand-in for the health thread's table */
    *state = &f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    f->r->table = NULL;
    router_unref(f->r);
    config_unref(f->cfg);
    return 0;
}

static void
set_usable(struct fixture *f, int index, bool usable)
{
    atomic_store(&f->servers[index].usable, usable);
    atomic_fetch_add(&f->table.generation, 1);
}

static void
key_of(int i, uint8_t key[16])
{
    char text[32];

    snprintf(text, sizeof(text), "session-%d", i);
    affinity_key(text, strlen(text), key);
}

static void
test_find_and_at(void **state)
{
    struct fixture *f = *state;

    assert_string_equal(router_find(f->r, "gmo-2", 5)->conf->id, "gmo-2");
    assert_string_equal(router_find(f->r, "ntt-1xyz", 5)->conf->id, "ntt-1");
    assert_null(router_find(f->r, "ntt-", 4));
    assert_null(router_find(f->r, "nope", 4));
    assert_string_equal(router_at(f->r, 2)->conf->id, "gmo-1");
    assert_null(router_at(f->r, 4));
}

static void
test_same_key_same_server_and_weighted_spread(void **state)
{
    struct fixture *f = *state;
    int counts[4] = {0};
    uint8_t key[16];
    const int n = 20000;

    for (int i = 0; i < n; i++) {
        struct server_rt *s;
        key_of(i, key);
        s = router_choose_for_key(f->r, key, NULL);
        assert_ptr_equal(s, router_choose_for_key(f->r, key, NULL));
        counts[s->index]++;
    }
    /* shares: ntt 2/3 split evenly; gmo 1/3 split 1:3 */
    assert_in_range(counts[0], n / 3 - n / 20, n / 3 + n / 20);
    assert_in_range(counts[1], n / 3 - n / 20, n / 3 + n / 20);
    assert_in_range(counts[2], n / 12 - n / 40, n / 12 + n / 40);
    assert_in_range(counts[3], n / 4 - n / 20, n / 4 + n / 20);
}

static void
test_down_server_moves_only_its_sessions(void **state)
{
    struct fixture *f = *state;
    struct server_rt *before[2000];
    uint8_t key[16];

    for (int i = 0; i < 2000; i++) {
        key_of(i, key);
        before[i] = router_choose_for_key(f->r, key, NULL);
    }
    set_usable(f, 3, false); /* gmo-2 */
    for (int i = 0; i < 2000; i++) {
        struct server_rt *now;
        key_of(i, key);
        now = router_choose_for_key(f->r, key, NULL);
        if (before[i]->index != 3)
            assert_ptr_equal(now, before[i]);
        else
            assert_int_not_equal(now->index, 3);
    }
    set_usable(f, 3, true);
}

static void
test_move_prefers_the_same_provider(void **state)
{
    struct fixture *f = *state;
    uint8_t key[16];

    set_usable(f, 3, false);
    for (int i = 0; i < 200; i++) {
        key_of(i, key);
        assert_string_equal(router_choose_for_key(f->r, key, "gmo")->conf->id, "gmo-1");
    }
    set_usable(f, 2, false); /* the whole provider gone: anywhere else */
    for (int i = 0; i < 200; i++) {
        key_of(i, key);
        assert_string_equal(router_choose_for_key(f->r, key, "gmo")->cluster->conf->provider,
                            "ntt");
    }
    for (int i = 0; i < 4; i++)
        set_usable(f, i, false);
    assert_null(router_choose_for_key(f->r, key, NULL));
    for (int i = 0; i < 4; i++)
        set_usable(f, i, true);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_and_at),
        cmocka_unit_test(test_same_key_same_server_and_weighted_spread),
        cmocka_unit_test(test_down_server_moves_only_its_sessions),
        cmocka_unit_test(test_move_prefers_the_same_provider),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
