/* Unit tests for affinity (cookies, session ids and keys) and session_cache (the bounded map). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "affinity.h"
#include "session_cache.h"
#include "unit_util.h"

static bool
request_cookie(const char *head, const char *name, char *out, size_t len)
{
    struct http_msg m;
    struct slice v;
    bool found;

    assert_int_equal(parse_request(&m, head), HTTP_HEAD_DONE);
    found = affinity_request_cookie(&m, name, &v);
    if (found)
        snprintf(out, len, "%.*s", (int)v.n, v.p);
    http_msg_release(&m);
    return found;
}

static void
test_request_cookie_found_among_others(void **state)
{
    char v[64];

    assert_true(request_cookie("GET / HTTP/1.1\r\nHost: a\r\nCookie: x=1; sid=abc; y=2\r\n\r\n",
                               "sid", v, sizeof(v)));
    assert_string_equal(v, "abc");
    /* a second Cookie field, quoted value, spaces around */
    assert_true(request_cookie("GET / HTTP/1.1\r\nHost: a\r\nCookie: x=1\r\n"
                               "Cookie:  sid=\"q v\" ;z=3\r\n\r\n", "sid", v, sizeof(v)));
    assert_string_equal(v, "q v");
    /* a name that only ends like it, or starts like it, is another cookie */
    assert_false(request_cookie("GET / HTTP/1.1\r\nHost: a\r\nCookie: xsid=1; sidx=2\r\n\r\n",
                                "sid", v, sizeof(v)));
    /* empty values and no cookies at all */
    assert_false(request_cookie("GET / HTTP/1.1\r\nHost: a\r\nCookie: sid=\r\n\r\n", "sid", v,
                                sizeof(v)));
    assert_false(request_cookie("GET / HTTP/1.1\r\nHost: a\r\n\r\n", "sid", v, sizeof(v)));
    /* the first one wins */
    assert_true(request_cookie("GET / HTTP/1.1\r\nHost: a\r\nCookie: sid=1; sid=2\r\n\r\n", "sid",
                               v, sizeof(v)));
    assert_string_equal(v, "1");
}

static bool
response_cookie(const char *head, const char *name, char *out, size_t len)
{
    struct http_msg m;
    struct slice v;
    bool found;

    assert_int_equal(parse_response(&m, head), HTTP_HEAD_DONE);
    found = affinity_response_cookie(&m, name, &v);
    if (found)
        snprintf(out, len, "%.*s", (int)v.n, v.p);
    http_msg_release(&m);
    return found;
}

static void
test_response_cookie_set_and_deleted(void **state)
{
    char v[64];

    assert_true(response_cookie("HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\n"
                                "Set-Cookie: SESSION=s1; Path=/; HttpOnly\r\n"
                                "Content-Length: 0\r\n\r\n", "SESSION", v, sizeof(v)));
    assert_string_equal(v, "s1");
    assert_true(response_cookie("HTTP/1.1 200 OK\r\nSet-Cookie: SESSION=s1\r\n"
                                "Set-Cookie: SESSION=s2; Secure\r\nContent-Length: 0\r\n\r\n",
                                "SESSION", v, sizeof(v)));
    assert_string_equal(v, "s2"); /* the last one wins */
    assert_false(response_cookie("HTTP/1.1 200 OK\r\nSet-Cookie: SESSION=gone; Max-Age=0\r\n"
                                 "Content-Length: 0\r\n\r\n", "SESSION", v, sizeof(v)));
    assert_false(response_cookie("HTTP/1.1 200 OK\r\nSet-Cookie: SESSION=; Path=/\r\n"
                                 "Content-Length: 0\r\n\r\n", "SESSION", v, sizeof(v)));
    assert_false(response_cookie("HTTP/1.1 200 OK\r\nSet-Cookie: SESSIONX=1\r\n"
                                 "Content-Length: 0\r\n\r\n", "SESSION", v, sizeof(v)));
}

static void
test_ids_keys_and_cookie_text(void **state)
{
    char a[AFFINITY_ID_LEN + 1], b[AFFINITY_ID_LEN + 1], hex[33], cookie[256];
    uint8_t k1[16], k2[16];
    struct affinity_conf conf = {.cookie = "trident_affinity", .same_site = SAME_SITE_LAX};

    assert_int_equal(affinity_new_id(a), 0);
    assert_int_equal(affinity_new_id(b), 0);
    assert_true(affinity_id_valid(a, strlen(a)));
    assert_string_not_equal(a, b);
    assert_false(affinity_id_valid("0123", 4));
    assert_false(affinity_id_valid("0123456789abcdef0123456789abcdeG", 32));
    /* the key is a digest: the same value gives the same key, and it is not the value */
    affinity_key("secret-session", 14, k1);
    affinity_key("secret-session", 14, k2);
    assert_memory_equal(k1, k2, 16);
    affinity_key_hex(k1, hex);
    assert_int_equal(strlen(hex), 32);
    assert_null(strstr(hex, "secret"));
    assert_string_equal(hex, "eab74c416d01ec36fb39f2e59501134a"); /* sha256sum, cut to 32 */
    assert_true(affinity_set_cookie(&conf, a, false, cookie, sizeof(cookie)) > 0);
    assert_non_null(strstr(cookie, "; Path=/; HttpOnly; SameSite=Lax"));
    assert_null(strstr(cookie, "Secure"));
    conf.cookie_max_age_s = 600;
    assert_true(affinity_set_cookie(&conf, a, true, cookie, sizeof(cookie)) > 0);
    assert_non_null(strstr(cookie, "; Secure; Max-Age=600"));
    conf.same_site = SAME_SITE_NONE; /* browsers drop SameSite=None without Secure */
    assert_true(affinity_set_cookie(&conf, a, false, cookie, sizeof(cookie)) > 0);
    assert_non_null(strstr(cookie, "SameSite=None; Secure"));
    assert_int_equal(affinity_set_cookie(&conf, a, false, cookie, 10), -1);
}

static void
key_of(int i, uint8_t key[16])
{
    char text[32];

    snprintf(text, sizeof(text), "session-%d", i);
    affinity_key(text, strlen(text), key);
}

static void
test_cache_stores_overwrites_and_stays_bounded(void **state)
{
    struct session_cache *sc = session_cache_new(64);
    struct session_entry *e;
    uint8_t key[16];
    int found = 0;

    key_of(1, key);
    assert_null(session_cache_get(sc, key));
    session_cache_put(sc, key, 7, 3, 100);
    e = session_cache_get(sc, key);
    assert_non_null(e);
    assert_int_equal(e->server, 7);
    assert_int_equal(e->epoch, 3);
    session_cache_put(sc, key, 9, 4, 200); /* overwrite, not a second entry */
    e = session_cache_get(sc, key);
    assert_int_equal(e->server, 9);
    assert_int_equal(e->checked_us, 200);
    session_cache_remove(sc, key);
    assert_null(session_cache_get(sc, key));
    /* far more sessions than room: the newest stay, memory does not grow */
    for (int i = 0; i < 10000; i++) {
        key_of(i, key);
        session_cache_put(sc, key, (uint32_t)i, 0, (uint64_t)i);
    }
    for (int i = 0; i < 10000; i++) {
        key_of(i, key);
        e = session_cache_get(sc, key);
        if (e != NULL) {
            assert_int_equal(e->server, i);
            found++;
        }
    }
    assert_true(found > 0 && found <= 64);
    key_of(9999, key);
    assert_non_null(session_cache_get(sc, key)); /* the last one in is there */
    session_cache_clear(sc);
    assert_null(session_cache_get(sc, key));
    session_cache_free(sc);
}

static void
test_cache_of_size_zero_holds_nothing(void **state)
{
    struct session_cache *sc = session_cache_new(0);
    uint8_t key[16];

    key_of(1, key);
    session_cache_put(sc, key, 1, 0, 0);
    assert_null(session_cache_get(sc, key));
    session_cache_free(sc);
    session_cache_free(NULL);
}

static void
test_recently_used_entry_survives(void **state)
{
    struct session_cache *sc = session_cache_new(8); /* one set of 8 */
    uint8_t keep[16], key[16];

    key_of(-1, keep);
    session_cache_put(sc, keep, 1, 0, 0);
    for (int i = 0; i < 100; i++) {
        key_of(i, key);
        session_cache_put(sc, key, 2, 0, 0);
        assert_non_null(session_cache_get(sc, keep)); /* used after every put: never the LRU */
    }
    session_cache_free(sc);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_cookie_found_among_others),
        cmocka_unit_test(test_response_cookie_set_and_deleted),
        cmocka_unit_test(test_ids_keys_and_cookie_text),
        cmocka_unit_test(test_cache_stores_overwrites_and_stays_bounded),
        cmocka_unit_test(test_cache_of_size_zero_holds_nothing),
        cmocka_unit_test(test_recently_used_entry_survives),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
