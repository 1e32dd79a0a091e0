/* Unit tests for http: head capture across splits, pauses, limits, strictness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "http.h"
#include "unit_util.h"

static const char req[] = "POST /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nX-Long: "
                          "0123456789abcdef\r\nContent-Length: 3\r\n\r\nxyz";

static void
check_head(const struct http_msg *m)
{
    assert_true(m->head_complete);
    assert_int_equal(m->nfields, 3);
    assert_int_equal(m->target_len, strlen("/a/b?c=d"));
    assert_memory_equal(http_msg_at(m, m->target_off), "/a/b?c=d", m->target_len);
    assert_true(http_field_is(m, 1, "x-long", 6));
    assert_int_equal(m->fields[1].value_len, 16);
    assert_memory_equal(http_msg_at(m, m->fields[1].value_off), "0123456789abcdef", 16);
    assert_int_equal(http_find_field(m, "content-length", 14, 0), 2);
    assert_int_equal(m->parser.method, HTTP_POST);
}

/* Splitting the bytes anywhere gives the same head: spans join across reads. */
static void
test_head_is_identical_for_every_split(void **state)
{
    for (size_t split = 1; split <= sizeof(req); split++) {
        struct http_msg m;
        http_msg_init(&m, HTTP_REQUEST, 16384, 100);
        assert_int_equal(feed_text(&m, req, sizeof(req) - 1, split), HTTP_HEAD_DONE);
        check_head(&m);
        http_msg_release(&m);
    }
}

/* The parser pauses exactly at the end of the head: the body stays in the buffer. */
static void
test_pause_leaves_body_unread(void **state)
{
    struct http_msg m;
    struct evbuffer *in = evbuffer_new();
    uint64_t used = 0;

    http_msg_init(&m, HTTP_REQUEST, 16384, 100);
    evbuffer_add(in, req, sizeof(req) - 1);
    assert_int_equal(http_msg_feed(&m, in, &used), HTTP_HEAD_DONE);
    assert_int_equal(evbuffer_get_length(in), 3);
    assert_int_equal(used, sizeof(req) - 1 - 3);
    assert_int_equal(m.head_bytes, used);
    evbuffer_free(in);
    http_msg_release(&m);
}

static void
test_head_over_limit_is_refused(void **state)
{
    struct http_msg m;
    char big[2048];

    snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\nX: %0900d\r\n\r\n", 0);
    http_msg_init(&m, HTTP_REQUEST, 512, 100);
    for (size_t split = 1; split < 64; split += 31) {
        http_msg_reset(&m);
        assert_int_equal(feed_text(&m, big, strlen(big), split), HTTP_ERROR);
        assert_int_equal(m.error, HTTP_ERR_HEAD_TOO_LARGE);
    }
    http_msg_release(&m);
}

static void
test_head_at_exact_limit_is_accepted(void **state)
{
    struct http_msg m;
    const char *text = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";

    http_msg_init(&m, HTTP_REQUEST, (uint32_t)strlen(text), 100);
    assert_int_equal(feed_text(&m, text, strlen(text), 1), HTTP_HEAD_DONE);
    http_msg_release(&m);
}

static void
test_too_many_fields_is_refused(void **state)
{
    struct http_msg m;

    http_msg_init(&m, HTTP_REQUEST, 16384, 2);
    assert_int_equal(feed_text(&m, "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 34, 0),
                     HTTP_ERROR);
    assert_int_equal(m.error, HTTP_ERR_TOO_MANY_FIELDS);
    http_msg_release(&m);
}

/* Strict parsing: each of these is refused by the parser itself. */
static void
test_malformed_heads_are_syntax_errors(void **state)
{
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n",
        "GET / HTTP/1.1\r\nHo st: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n",
        "GET / HTTP/1.1\nHost: a\n\n",
        "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
         "Transfer-Encoding: chunked\r\n\r\n"),
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct http_msg m;
        enum http_step st = parse_request(&m, bad[i]);
        if (st != HTTP_ERROR)
            fail_msg("case %zu was accepted", i);
        http_msg_release(&m);
    }
}

/* A NUL byte inside a header value. */
static void
test_nul_in_header_is_refused(void **state)
{
    static const char text[] = "GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n";
    struct http_msg m;

    http_msg_init(&m, HTTP_REQUEST, 16384, 100);
    assert_int_equal(feed_text(&m, text, sizeof(text) - 1, 0), HTTP_ERROR);
    http_msg_release(&m);
}

static int
collect(void *arg, const char *at, size_t len)
{
    evbuffer_add(arg, at, len);
    return 0;
}

static void
test_chunked_body_goes_to_sink_then_pauses(void **state)
{
    static const char text[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer-X: y\r\n\r\nGET /next";
    struct http_msg m;
    struct evbuffer *in = evbuffer_new(), *body = evbuffer_new();

    http_msg_init(&m, HTTP_REQUEST, 16384, 100);
    evbuffer_add(in, text, sizeof(text) - 1);
    assert_int_equal(http_msg_feed(&m, in, NULL), HTTP_HEAD_DONE);
    m.sink = collect;
    m.sink_arg = body;
    assert_int_equal(http_msg_feed(&m, in, NULL), HTTP_MSG_DONE);
    assert_int_equal(evbuffer_get_length(body), 5);
    assert_memory_equal(evbuffer_pullup(body, -1), "abcde", 5);
    assert_int_equal(m.nfields, 2); /* the trailer field is not added to the head */
    assert_int_equal(evbuffer_get_length(in), 9);
    evbuffer_free(in);
    evbuffer_free(body);
    http_msg_release(&m);
}

static void
test_bad_chunk_size_is_refused(void **state)
{
    static const char text[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "zz\r\nabc\r\n0\r\n\r\n";
    struct http_msg m;
    struct evbuffer *in = evbuffer_new();

    http_msg_init(&m, HTTP_REQUEST, 16384, 100);
    evbuffer_add(in, text, sizeof(text) - 1);
    assert_int_equal(http_msg_feed(&m, in, NULL), HTTP_HEAD_DONE);
    assert_int_equal(http_msg_feed(&m, in, NULL), HTTP_ERROR);
    assert_int_equal(m.error, HTTP_ERR_SYNTAX);
    evbuffer_free(in);
    http_msg_release(&m);
}

static void
test_response_reason_captured(void **state)
{
    struct http_msg m;

    assert_int_equal(parse_response(&m, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
                     HTTP_HEAD_DONE);
    assert_int_equal(m.parser.status_code, 404);
    assert_int_equal(m.reason_len, 9);
    assert_memory_equal(http_msg_at(&m, m.reason_off), "Not Found", 9);
    http_msg_release(&m);
}

/* Found by fuzz_request and fuzz_admin: llhttp can end a span before its first byte (the target
 * of "CONNECT " cut short by a CR or an LF) while the head buffer does not exist yet; appending
 * nothing must not touch it (under UBSan: no arithmetic on a NULL buffer), and an empty slice of
 * a head without a buffer is "" rather than NULL + 0. */
static void
test_empty_span_before_any_head_byte(void **state)
{
    static const struct {
        const char *text;
        enum http_step step;
    } inputs[] = {
        {"CONNECT \r\r\r\r\r", HTTP_ERROR},
        {"GET \r\n", HTTP_ERROR},
        {"\n\n\nCONNECT \n\n", HTTP_ERROR}, /* bare LFs, HTTP/0.9 */
    };

    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        for (size_t split = 0; split <= 2; split++) {
            struct http_msg m;
            http_msg_init(&m, HTTP_REQUEST, 16384, 100);
            assert_int_equal(feed_text(&m, inputs[i].text, strlen(inputs[i].text), split),
                             inputs[i].step);
            assert_int_equal(m.len, 0);
            assert_int_equal(m.target_len, 0);
            assert_non_null(http_msg_at(&m, m.target_off)); /* an empty slice, not NULL + 0 */
            http_msg_release(&m);
        }
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_is_identical_for_every_split),
        cmocka_unit_test(test_pause_leaves_body_unread),
        cmocka_unit_test(test_head_over_limit_is_refused),
        cmocka_unit_test(test_head_at_exact_limit_is_accepted),
        cmocka_unit_test(test_too_many_fields_is_refused),
        cmocka_unit_test(test_malformed_heads_are_syntax_errors),
        cmocka_unit_test(test_nul_in_header_is_refused),
        cmocka_unit_test(test_chunked_body_goes_to_sink_then_pauses),
        cmocka_unit_test(test_bad_chunk_size_is_refused),
        cmocka_unit_test(test_response_reason_captured),
        cmocka_unit_test(test_empty_span_before_any_head_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
