/* Unit tests for headers: request checks (RFC 9110/9112), token lists, hop-by-hop fields. A head
 * the parser refuses counts as a 400, since that is what trident answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "headers.h"
#include "unit_util.h"

struct check_case {
    const char *name;
    const char *text;
    int status; /* 0: forwardable */
};

static const struct check_case cases[] = {
    {"plain GET", "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n", 0},
    {"host with port", "GET / HTTP/1.1\r\nHost: a.example:8080\r\n\r\n", 0},
    {"ipv6 host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 0},
    {"HTTP/1.1 without Host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400},
    {"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
    {"empty Host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 400},
    {"Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400},
    {"Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
    {"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", 0},
    {"HTTP/1.0 with two Hosts", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400},
    {"CONNECT", "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", 405},
    {"Expect 100-continue", "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                            "Content-Length: 1\r\n\r\n", 0},
    {"unknown expectation", "PUT / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n", 417},
    {"TE on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    {"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
     400},
    {"TE chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n", 400},
    {"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n", 400},
    {"two CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
     400},
    {"TE chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 0},
    {"absolute-form", "GET http://b.example/p?q HTTP/1.1\r\nHost: a\r\n\r\n", 0},
    {"absolute-form ftp", "GET ftp://b.example/p HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"asterisk for OPTIONS", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 0},
    {"asterisk for GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"fragment in the path", "GET /a#/../b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"fragment after a query", "GET /a?q#f HTTP/1.1\r\nHost: a\r\n\r\n", 400},
};

static void
test_request_checks_table(void **state)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct http_msg m;
        struct req_info info;
        enum reason why;
        int status;

        if (parse_request(&m, cases[i].text) != HTTP_HEAD_DONE)
            status = 400;
        else
            status = headers_check_request(&m, &info, &why);
        if (status != cases[i].status)
            fail_msg("%s: status %d, expected %d", cases[i].name, status, cases[i].status);

        http_msg_release(&m);
    }
}

static void
test_absolute_form_replaces_host_and_target(void **state)
{
    struct http_msg m;
    struct req_info info;
    enum reason why;

    parse_request(&m, "GET HTTP://b.example:81/p?q HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(headers_check_request(&m, &info, &why), 0);
    assert_true(info.host_from_target);
    assert_int_equal(info.host.n, strlen("b.example:81"));
    assert_memory_equal(info.host.p, "b.example:81", info.host.n);
    assert_int_equal(info.target.n, 4);
    assert_memory_equal(info.target.p, "/p?q", 4);
    http_msg_release(&m);
}

static void
test_websocket_only_for_get_with_both_tokens(void **state)
{
    static const struct {
        const char *text;
        bool ws;
    } ws_cases[] = {
        {"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
         "Upgrade: WebSocket\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", false},
        {"POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
         "Content-Length: 0\r\n\r\n", false},
    };

    for (size_t i = 0; i < sizeof(ws_cases) / sizeof(ws_cases[0]); i++) {
        struct http_msg m;
        struct req_info info;
        enum reason why;

        assert_int_equal(parse_request(&m, ws_cases[i].text), HTTP_HEAD_DONE);
        assert_int_equal(headers_check_request(&m, &info, &why), 0);
        if (info.websocket != ws_cases[i].ws)
            fail_msg("case %zu: websocket=%d", i, info.websocket);
        http_msg_release(&m);
    }
}

static void
test_request_id_kept_only_when_valid(void **state)
{
    struct http_msg m;
    struct req_info info;
    enum reason why;

    parse_request(&m, "GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: bad id\r\n"
                      "X-Request-Id: good-id\r\n\r\n");
    assert_int_equal(headers_check_request(&m, &info, &why), 0);
    assert_int_equal(info.request_id, 2);
    http_msg_release(&m);
}

/* RFC 9112 section 5.2 lets a server replace obs-fold with SP instead of refusing it; llhttp
 * does, so a folded value is forwarded as one line and can never smuggle a line break. */
static void
test_obs_fold_becomes_one_line(void **state)
{
    struct http_msg m;
    struct req_info info;
    enum reason why;

    assert_int_equal(parse_request(&m, "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"),
                     HTTP_HEAD_DONE);
    assert_int_equal(headers_check_request(&m, &info, &why), 0);
    assert_int_equal(m.fields[1].value_len, 3);
    assert_memory_equal(http_msg_at(&m, m.fields[1].value_off), "a b", 3);
    http_msg_release(&m);
}

static void
test_next_token_trims_and_skips_empty(void **state)
{
    const char *s = " a ,, b\t,c , ";
    struct slice tok;
    size_t pos = 0;
    const char *want[] = {"a", "b", "c"};

    for (int i = 0; i < 3; i++) {
        assert_true(headers_next_token(s, strlen(s), &pos, &tok));
        assert_int_equal(tok.n, 1);
        assert_memory_equal(tok.p, want[i], 1);
    }
    assert_false(headers_next_token(s, strlen(s), &pos, &tok));
}

static void
test_hop_by_hop_includes_connection_options_but_never_framing(void **state)
{
    struct http_msg m;
    struct headers_hop h;

    parse_request(&m, "POST / HTTP/1.1\r\nHost: a\r\nConnection: x-secret, content-length, host\r\n"
                      "X-Secret: 1\r\nKeep-Alive: t=1\r\nContent-Length: 1\r\nX-Other: 2\r\n\r\n");
    headers_hop_init(&h, &m);
    assert_false(headers_hop_is(&h, &m, 0)); /* Host */
    assert_true(headers_hop_is(&h, &m, 1));  /* Connection */
    assert_true(headers_hop_is(&h, &m, 2));  /* X-Secret, listed */
    assert_true(headers_hop_is(&h, &m, 3));  /* Keep-Alive */
    assert_false(headers_hop_is(&h, &m, 4)); /* Content-Length, listed but kept */
    assert_false(headers_hop_is(&h, &m, 5)); /* X-Other */
    http_msg_release(&m);
}

/* More Connection options than a headers_hop keeps: the rest are still found, in any field. */
static void
test_hop_by_hop_with_many_connection_options(void **state)
{
    struct http_msg m;
    struct headers_hop h;

    parse_request(&m, "GET / HTTP/1.1\r\nHost: a\r\nConnection: o1, o2, o3, o4, o5\r\n"
                      "Connection: o6, o7, o8, X-Late\r\nX-Late: 1\r\nO3: 2\r\nX-Kept: 3\r\n\r\n");
    headers_hop_init(&h, &m);
    assert_true(h.more);
    assert_true(headers_hop_is(&h, &m, 3));  /* X-Late, the ninth option */
    assert_true(headers_hop_is(&h, &m, 4));  /* O3 */
    assert_false(headers_hop_is(&h, &m, 5)); /* X-Kept */
    assert_false(headers_hop_is(&h, &m, 0)); /* Host */
    http_msg_release(&m);
}

/* Found by fuzz_response: llhttp passes control bytes in a reason phrase (a NUL, 0x01), which
 * were relayed to clients as sent; such a response is as unfit to relay as a control byte in a
 * field value. */
static void
test_response_with_control_byte_in_reason_is_unclean(void **state)
{
    static const struct {
        const char *text;
        size_t len;
        bool clean;
    } reasons[] = {
        {LIT("HTTP/1.1 200 OK\r\nA: b\r\n\r\n"), true},
        {LIT("HTTP/1.1 200 Fine\tand \x80obs-text\r\n\r\n"), true},
        {LIT("HTTP/1.1 204\r\n\r\n"), true},
        {LIT("HTTP/1.1 103 Early Hint\x01\x00\x00(s\r\nLink: </s.css>\r\n\r\n"), false},
        {LIT("HTTP/1.1 200 O\x7fK\r\n\r\n"), false},
        {LIT("HTTP/1.1 200 O\x1bK\r\n\r\n"), false},
    };

    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        struct http_msg m;
        http_msg_init(&m, HTTP_RESPONSE, 16384, 100);
        if (feed_text(&m, reasons[i].text, reasons[i].len, 0) != HTTP_HEAD_DONE)
            assert_false(reasons[i].clean); /* the parser refusing it is as good */
        else
            assert_int_equal(headers_response_is_clean(&m), reasons[i].clean);
        http_msg_release(&m);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_checks_table),
        cmocka_unit_test(test_absolute_form_replaces_host_and_target),
        cmocka_unit_test(test_websocket_only_for_get_with_both_tokens),
        cmocka_unit_test(test_request_id_kept_only_when_valid),
        cmocka_unit_test(test_obs_fold_becomes_one_line),
        cmocka_unit_test(test_next_token_trims_and_skips_empty),
        cmocka_unit_test(test_hop_by_hop_includes_connection_options_but_never_framing),
        cmocka_unit_test(test_hop_by_hop_with_many_connection_options),
        cmocka_unit_test(test_response_with_control_byte_in_reason_is_unclean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
