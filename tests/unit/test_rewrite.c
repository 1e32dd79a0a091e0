/* Unit tests for rewrite: the request head sent upstream and the response head sent to clients. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rewrite.h"
#include "unit_util.h"

/* Rewrite `text` and return the head as a NUL-terminated string (caller frees). */
static char *
rewrite_req(const char *text, const struct rewrite_request_ctx *ctx)
{
    struct http_msg m;
    struct req_info info;
    enum reason why;
    struct evbuffer *out = evbuffer_new();
    char *s;

    assert_int_equal(parse_request(&m, text), HTTP_HEAD_DONE);
    assert_int_equal(headers_check_request(&m, &info, &why), 0);
    assert_int_equal(rewrite_request(&m, &info, ctx, out), 0);
    s = drain_str(out);
    evbuffer_free(out);
    http_msg_release(&m);
    return s;
}

static const struct rewrite_request_ctx base_ctx = {
    .client_ip = "192.0.2.7",
    .client = "192.0.2.7",
    .proto = "http",
    .request_id = "rid-1",
    .default_host = "127.0.0.2:8081",
};

/* What a client sends about itself and its route, and what the server gets instead. */
#define IDENTITY_FIELDS                                                                            \
    "X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\nX-Forwarded-Proto: https\r\n"     \
    "X-Forwarded-Host: spoof\r\nX-Real-IP: 10.9.9.9\r\nX-Request-Id: client-chosen\r\n"          \
    "Forwarded: for=10.0.0.3;proto=https\r\nX-Forwarded-Port: 443\r\n"                            \
    "X-Forwarded-Prefix: /admin\r\nX-Forwarded-Ssl: on\r\nX-Forwarded-Scheme: https\r\n"         \
    "X-Forwarded-Server: spoof\r\nX-Client-IP: 10.0.0.4\r\nTrue-Client-IP: 10.0.0.5\r\n"         \
    "X-Cluster-Client-IP: 10.0.0.6\r\nClient-IP: 10.0.0.9\r\nCF-Connecting-IP: 10.0.0.10\r\n"     \
    "Proxy-Authorization: Basic c2VjcmV0\r\n"                                                    \
    "X_Forwarded_For: 10.0.0.7\r\nx_real_ip: 10.0.0.8\r\nX_Request_Id: also-chosen\r\n"          \
    "PROXY_AUTHORIZATION: Basic c2VjcmV0\r\nX_Forwarded_Proto: https\r\n"                        \
    "X_Forwarded_Port: 443\r\nClient_IP: 10.0.0.11\r\nX_Api_Key: k\r\n"

static void
test_request_hop_by_hop_stripped_and_forwarding_fields_set(void **state)
{
    char *s = rewrite_req("GET /p?q=1 HTTP/1.1\r\nHost: app.example\r\n"
                          "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
                          "TE: trailers\r\nTrailer: X\r\nProxy-Connection: keep-alive\r\n"
                          "Upgrade: h2c\r\nProxy: http://evil\r\n" IDENTITY_FIELDS
                          "Accept: */*\r\n\r\n",
                          &base_ctx);

    /* from an untrusted peer: none of its claims, and no credentials meant for a proxy; a name
     * with '_' that is not one of those (X_Api_Key) is the application's business */
    assert_string_equal(s, "GET /p?q=1 HTTP/1.1\r\n"
                           "Host: app.example\r\n"
                           "X_Api_Key: k\r\n"
                           "Accept: */*\r\n"
                           "X-Forwarded-For: 192.0.2.7\r\n"
                           "X-Forwarded-Proto: http\r\n"
                           "X-Forwarded-Host: app.example\r\n"
                           "X-Real-IP: 192.0.2.7\r\n"
                           "X-Request-Id: rid-1\r\n"
                           "Connection: keep-alive\r\n\r\n");
    free(s);
}

static void
test_request_from_a_trusted_proxy_keeps_its_forwarding_fields(void **state)
{
    struct rewrite_request_ctx ctx = base_ctx;
    char *s;

    ctx.trusted = true;
    ctx.client = "10.0.0.2"; /* what the proxy's X-Forwarded-For named */
    s = rewrite_req("GET / HTTP/1.1\r\nHost: app.example\r\n" IDENTITY_FIELDS "\r\n", &ctx);
    /* the proxy's chain, then the proxy itself; its scheme, host and identity fields as it sent
     * them; still no '_' alias, no proxy credentials, and trident's own X-Real-IP and id (the
     * caller passes a trusted proxy's valid X-Request-Id as request_id) */
    assert_string_equal(s, "GET / HTTP/1.1\r\n"
                           "Host: app.example\r\n"
                           "X-Forwarded-Proto: https\r\n"
                           "X-Forwarded-Host: spoof\r\n"
                           "Forwarded: for=10.0.0.3;proto=https\r\n"
                           "X-Forwarded-Port: 443\r\n"
                           "X-Forwarded-Prefix: /admin\r\n"
                           "X-Forwarded-Ssl: on\r\n"
                           "X-Forwarded-Scheme: https\r\n"
                           "X-Forwarded-Server: spoof\r\n"
                           "X-Client-IP: 10.0.0.4\r\n"
                           "True-Client-IP: 10.0.0.5\r\n"
                           "X-Cluster-Client-IP: 10.0.0.6\r\n"
                           "Client-IP: 10.0.0.9\r\n"
                           "CF-Connecting-IP: 10.0.0.10\r\n"
                           "X_Api_Key: k\r\n"
                           "X-Forwarded-For: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\n"
                           "X-Real-IP: 10.0.0.2\r\n"
                           "X-Request-Id: rid-1\r\n"
                           "Connection: keep-alive\r\n\r\n");
    free(s);
}

static void
test_request_websocket_keeps_upgrade(void **state)
{
    char *s = rewrite_req("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                          "Upgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n",
                          &base_ctx);

    assert_non_null(strstr(s, "\r\nSec-WebSocket-Key: k\r\n"));
    assert_non_null(strstr(s, "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"));
    assert_null(strstr(s, "keep-alive"));
    free(s);
}

static void
test_request_http10_gets_host_and_http11(void **state)
{
    char *s = rewrite_req("GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", &base_ctx);

    assert_true(strncmp(s, "GET / HTTP/1.1\r\nHost: 127.0.0.2:8081\r\n", 38) == 0);
    assert_null(strstr(s, "Expect"));
    assert_non_null(strstr(s, "X-Forwarded-Host: 127.0.0.2:8081\r\n"));
    free(s);
}

static void
test_request_chunked_body_declared(void **state)
{
    struct rewrite_request_ctx ctx = base_ctx;
    char *s;

    ctx.chunked = true;
    s = rewrite_req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", &ctx);
    /* exactly once: the client's field is replaced by trident's own */
    assert_non_null(strstr(s, "\r\nTransfer-Encoding: chunked\r\n"));
    assert_null(strstr(strstr(s, "Transfer-Encoding") + 1, "Transfer-Encoding"));
    free(s);
}

static void
test_request_absolute_form_to_origin_form(void **state)
{
    char *s = rewrite_req("GET http://b.example?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", &base_ctx);

    assert_true(strncmp(s, "GET /?x=1 HTTP/1.1\r\nHost: b.example\r\n", 37) == 0);
    assert_null(strstr(s, "Host: a\r\n"));
    free(s);
}

static char *
rewrite_resp(const char *text, const struct rewrite_response_ctx *ctx)
{
    struct http_msg m;
    struct evbuffer *out = evbuffer_new();
    char *s;

    assert_int_equal(parse_response(&m, text), HTTP_HEAD_DONE);
    assert_int_equal(rewrite_response(&m, ctx, out), 0);
    s = drain_str(out);
    evbuffer_free(out);
    http_msg_release(&m);
    return s;
}

static void
test_response_framing_and_connection_fields(void **state)
{
    struct rewrite_response_ctx ctx = {.chunked = true, .close = true};
    char *s = rewrite_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: x-a\r\n"
                           "X-A: 1\r\nKeep-Alive: timeout=5\r\nSet-Cookie: a=1\r\n\r\n",
                           &ctx);

    assert_string_equal(s, "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nTransfer-Encoding: chunked\r\n"
                           "Connection: close\r\n\r\n");
    free(s);
}

static void
test_response_keep_alive_explicit_for_http10(void **state)
{
    struct rewrite_response_ctx ctx = {.http10 = true};
    char *s = rewrite_resp("HTTP/1.1 204 No Content\r\n\r\n", &ctx);

    assert_string_equal(s, "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n");
    free(s);
}

static void
test_response_101_keeps_upgrade(void **state)
{
    struct rewrite_response_ctx ctx = {.upgrade = true};
    char *s = rewrite_resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n",
                           &ctx);

    assert_string_equal(s, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           "Sec-WebSocket-Accept: x\r\nConnection: Upgrade\r\n\r\n");
    free(s);
}

/* Found by fuzz_response: a head with neither a reason phrase nor a field keeps no byte, so the
 * parser has no head buffer at all; the status line is still written (under UBSan: no
 * arithmetic on a NULL buffer). */
static void
test_response_without_reason_or_fields(void **state)
{
    struct rewrite_response_ctx ctx = {0};
    char *s = rewrite_resp("HTTP/1.1 200\r\n\r\n", &ctx);

    assert_string_equal(s, "HTTP/1.1 200 \r\n\r\n");
    free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_hop_by_hop_stripped_and_forwarding_fields_set),
        cmocka_unit_test(test_request_from_a_trusted_proxy_keeps_its_forwarding_fields),
        cmocka_unit_test(test_request_websocket_keeps_upgrade),
        cmocka_unit_test(test_request_http10_gets_host_and_http11),
        cmocka_unit_test(test_request_chunked_body_declared),
        cmocka_unit_test(test_request_absolute_form_to_origin_form),
        cmocka_unit_test(test_response_framing_and_connection_fields),
        cmocka_unit_test(test_response_keep_alive_explicit_for_http10),
        cmocka_unit_test(test_response_101_keeps_upgrade),
        cmocka_unit_test(test_response_without_reason_or_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
