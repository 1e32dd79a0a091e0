/* Unit tests for body: length, chunked and until-close bodies, framing changes, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "body.h"
#include "unit_util.h"

static void
test_length_body_stops_at_length_and_leaves_next_message(void **state)
{
    struct body b;
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    char *s;

    body_init(&b, BODY_LENGTH, 5, false, 100, NULL);
    evbuffer_add(in, "abc", 3);
    assert_int_equal(body_pump(&b, in, out), BODY_AGAIN);
    evbuffer_add(in, "deGET /", 7);
    assert_int_equal(body_pump(&b, in, out), BODY_DONE);
    s = drain_str(out);
    assert_string_equal(s, "abcde");
    assert_int_equal(evbuffer_get_length(in), 5);
    assert_int_equal(b.moved, 5);
    free(s);
    evbuffer_free(in);
    evbuffer_free(out);
}

static void
test_until_eof_body_is_chunked_for_http11(void **state)
{
    struct body b;
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    char *s;

    body_init(&b, BODY_UNTIL_EOF, 0, true, UINT64_MAX, NULL);
    evbuffer_add(in, "hello", 5);
    assert_int_equal(body_pump(&b, in, out), BODY_AGAIN);
    evbuffer_add(in, "!", 1);
    assert_int_equal(body_pump(&b, in, out), BODY_AGAIN);
    body_finish_eof(&b, out);
    s = drain_str(out);
    assert_string_equal(s, "5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n");
    free(s);
    evbuffer_free(in);
    evbuffer_free(out);
}

/* Feed a chunked message's body through body_pump; returns the decoded/re-framed output. */
static char *
pump_chunked(const char *msg, bool out_chunked, uint64_t limit, enum body_step *last)
{
    struct http_msg m;
    struct body b;
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    char *s;

    http_msg_init(&m, HTTP_REQUEST, 16384, 100);
    evbuffer_add(in, msg, strlen(msg));
    assert_int_equal(http_msg_feed(&m, in, NULL), HTTP_HEAD_DONE);
    body_init(&b, BODY_CHUNKED, 0, out_chunked, limit, &m);
    *last = body_pump(&b, in, out);
    s = drain_str(out);
    evbuffer_free(in);
    evbuffer_free(out);
    http_msg_release(&m);
    return s;
}

static const char chunked_msg[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  "4;name=val\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n";

static void
test_chunked_reframed_without_extensions_or_trailers(void **state)
{
    enum body_step st;
    char *s = pump_chunked(chunked_msg, true, 100, &st);

    assert_int_equal(st, BODY_DONE);
    assert_string_equal(s, "4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n");
    free(s);
}

static void
test_chunked_decoded_for_http10(void **state)
{
    enum body_step st;
    char *s = pump_chunked(chunked_msg, false, 100, &st);

    assert_int_equal(st, BODY_DONE);
    assert_string_equal(s, "Wikipedia");
    free(s);
}

static void
test_chunked_over_limit_refused(void **state)
{
    enum body_step st;
    char *s = pump_chunked(chunked_msg, true, 8, &st);

    assert_int_equal(st, BODY_ERR_LIMIT);
    free(s);
}

static void
test_chunked_bad_size_refused(void **state)
{
    enum body_step st;
    char *s = pump_chunked("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "4\r\nWikiXX\r\n0\r\n\r\n",
                           true, 100, &st);

    assert_int_equal(st, BODY_ERR_SYNTAX);
    free(s);
}

static void
test_length_over_limit_refused(void **state)
{
    struct body b;
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();

    body_init(&b, BODY_UNTIL_EOF, 0, false, 4, NULL);
    evbuffer_add(in, "12345", 5);
    assert_int_equal(body_pump(&b, in, out), BODY_ERR_LIMIT);
    evbuffer_free(in);
    evbuffer_free(out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_length_body_stops_at_length_and_leaves_next_message),
        cmocka_unit_test(test_until_eof_body_is_chunked_for_http11),
        cmocka_unit_test(test_chunked_reframed_without_extensions_or_trailers),
        cmocka_unit_test(test_chunked_decoded_for_http10),
        cmocka_unit_test(test_chunked_over_limit_refused),
        cmocka_unit_test(test_chunked_bad_size_refused),
        cmocka_unit_test(test_length_over_limit_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
