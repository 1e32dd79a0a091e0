/* proxyproto: PROXY protocol v1 and v2 headers, complete, partial and broken. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxyproto.h"

static int
parse(const char *s, size_t len, struct sockaddr_storage *src)
{
    return proxyproto_parse((const uint8_t *)s, len, src);
}

static void
test_v1(void **state)
{
    struct sockaddr_storage src;
    const char *h4 = "PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\nGET / HTTP/1.1\r\n";
    const char *h6 = "PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n";
    char ip[64];

    (void)state;
    assert_int_equal(parse(h4, strlen(h4), &src), 45);
    assert_int_equal(src.ss_family, AF_INET);
    inet_ntop(AF_INET, &((struct sockaddr_in *)&src)->sin_addr, ip, sizeof(ip));
    assert_string_equal(ip, "192.0.2.7");
    assert_int_equal(ntohs(((struct sockaddr_in *)&src)->sin_port), 51234);
    assert_int_equal(parse(h6, strlen(h6), &src), (int)strlen(h6));
    assert_int_equal(src.ss_family, AF_INET6);
    assert_int_equal(parse("PROXY UNKNOWN\r\n", 15, &src), 15);
    assert_int_equal(src.ss_family, AF_UNSPEC);
    /* partial: wait */
    for (size_t n = 0; n < 45; n++)
        assert_int_equal(parse(h4, n, &src), PROXYPROTO_MORE);
}

static void
test_v1_broken(void **state)
{
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 51234\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 51234 443 extra\r\n",
        "PROXY TCP4 192.0.2.777 198.51.100.1 1 2\r\n",
        "PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 01 2\r\n",
        "PROXY TCP5 192.0.2.7 198.51.100.1 1 2\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n",
    };
    struct sockaddr_storage src;
    char longline[200];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(parse(bad[i], strlen(bad[i]), &src), PROXYPROTO_INVALID);
    memset(longline, 'x', sizeof(longline));
    /* NOLINTNEXTLINE(bugprone-not-null-terminated-result): parse() takes a length, no NUL */
    memcpy(longline, "PROXY TCP4 ", 11);
    assert_int_equal(parse(longline, sizeof(longline), &src), PROXYPROTO_INVALID);
}

static size_t
v2(uint8_t *b, uint8_t ver_cmd, uint8_t fam, const uint8_t *addr, size_t alen, size_t tlvs)
{
    static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                    0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

    memcpy(b, sig, 12);
    b[12] = ver_cmd;
    b[13] = fam;
    b[14] = (uint8_t)((alen + tlvs) >> 8);
    b[15] = (uint8_t)(alen + tlvs);
    memcpy(b + 16, addr, alen);
    memset(b + 16 + alen, 0, tlvs);
    return 16 + alen + tlvs;
}

static void
test_v2(void **state)
{
    uint8_t b[2048], a4[12] = {192, 0, 2, 9, 198, 51, 100, 1, 0x1f, 0x90, 0x01, 0xbb};
    uint8_t a6[36] = {0x20, 0x01, 0x0d, 0xb8, [15] = 9, [16] = 0x20, [17] = 0x01, [32] = 0x00,
                      [33] = 80, [34] = 1, [35] = 187};
    struct sockaddr_storage src;
    size_t n;

    (void)state;
    n = v2(b, 0x21, 0x11, a4, sizeof(a4), 5); /* with a TLV area, skipped */
    assert_int_equal(proxyproto_parse(b, n, &src), (int)n);
    assert_int_equal(src.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&src)->sin_port), 8080);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(proxyproto_parse(b, k, &src), PROXYPROTO_MORE);
    n = v2(b, 0x21, 0x21, a6, sizeof(a6), 0);
    assert_int_equal(proxyproto_parse(b, n, &src), (int)n);
    assert_int_equal(src.ss_family, AF_INET6);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&src)->sin6_port), 80);
    n = v2(b, 0x20, 0x00, a4, 0, 0); /* LOCAL */
    assert_int_equal(proxyproto_parse(b, n, &src), 16);
    assert_int_equal(src.ss_family, AF_UNSPEC);
    /* broken: version 3, command 2, too short for its family, UDP, too long */
    n = v2(b, 0x31, 0x11, a4, sizeof(a4), 0);
    assert_int_equal(proxyproto_parse(b, n, &src), PROXYPROTO_INVALID);
    n = v2(b, 0x22, 0x11, a4, sizeof(a4), 0);
    assert_int_equal(proxyproto_parse(b, n, &src), PROXYPROTO_INVALID);
    n = v2(b, 0x21, 0x11, a4, 4, 0);
    assert_int_equal(proxyproto_parse(b, n, &src), PROXYPROTO_INVALID);
    n = v2(b, 0x21, 0x12, a4, sizeof(a4), 0);
    assert_int_equal(proxyproto_parse(b, n, &src), PROXYPROTO_INVALID);
    (void)v2(b, 0x21, 0x11, a4, sizeof(a4), 1500);
    assert_int_equal(proxyproto_parse(b, 20, &src), PROXYPROTO_INVALID);
}

/* Found by fuzz_proxyproto: a v1 line with a NUL or a bare LF before its CRLF was refused when
 * a read ended before the CRLF and accepted when it did not. Now refused however it is cut. */
static void
test_v1_verdict_does_not_depend_on_the_read(void **state)
{
    static const struct {
        const char *text;
        size_t len;
    } bad[] = {
#define TEXT(s) {(s), sizeof(s) - 1}
        TEXT("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\0\0\0\x06HTXY TCP4\n\r\n"),
        TEXT("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\nx\r\n"),
        TEXT("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\rx\r\n"),
        TEXT("PROXY UNKNOWN\0\r\n"),
#undef TEXT
    };
    struct sockaddr_storage src;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int verdict = PROXYPROTO_MORE;
        for (size_t n = 1; n <= bad[i].len; n++) {
            int rc = proxyproto_parse((const uint8_t *)bad[i].text, n, &src);
            if (verdict != PROXYPROTO_MORE)
                assert_int_equal(rc, verdict);
            verdict = rc;
        }
        assert_int_equal(verdict, PROXYPROTO_INVALID);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1),
        cmocka_unit_test(test_v1_broken),
        cmocka_unit_test(test_v2),
        cmocka_unit_test(test_v1_verdict_does_not_depend_on_the_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
