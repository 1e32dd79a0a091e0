/*
 * proxyproto: see proxyproto.h and HAProxy's "The PROXY protocol" (versions 1 and 2).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"

static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* A decimal port 0..65535 without sign or leading zeros. */
static int
parse_port(const char *s, uint16_t *out)
{
    unsigned long v = 0;

    if (*s == '\0' || (s[0] == '0' && s[1] != '\0'))
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || (v = v * 10 + (unsigned long)(*s - '0')) > 65535)
            return -1;
    }
    *out = (uint16_t)v;
    return 0;
}

/* "PROXY TCP4 src dst sport dport\r\n" */
static int
parse_v1(const uint8_t *buf, size_t len, struct sockaddr_storage *src)
{
    char line[PROXYPROTO_V1_MAX + 1], *f[6], *save = NULL;
    const uint8_t *crlf = NULL;
    size_t n = len;
    int nf = 0;
    uint16_t sport, dport;

    if (n > PROXYPROTO_V1_MAX) /* (not ?:, which cppcheck 2.10 misreads as n == 0) */
        n = PROXYPROTO_V1_MAX;
    /* The line holds no CR, LF or NUL but its CRLF end: else the verdict would depend on how
     * much of it one read returned (a bare LF refused, the same bytes with the CRLF accepted). */
    for (size_t i = 0; i < n && crlf == NULL; i++) {
        if (buf[i] == '\r' && i + 1 < n && buf[i + 1] == '\n')
            crlf = buf + i;
        else if (buf[i] == '\n' || buf[i] == '\0' || (buf[i] == '\r' && i + 1 < n))
            return PROXYPROTO_INVALID;
    }
    if (crlf == NULL)
        return len >= PROXYPROTO_V1_MAX ? PROXYPROTO_INVALID : PROXYPROTO_MORE;
    memcpy(line, buf, (size_t)(crlf - buf));
    line[crlf - buf] = '\0';
    for (char *t = strtok_r(line, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save))
        if (nf++ < 6)
            f[nf - 1] = t;
    memset(src, 0, sizeof(*src));
    if (nf >= 2 && strcmp(f[1], "UNKNOWN") == 0)
        return (int)(crlf - buf) + 2; /* AF_UNSPEC: the socket's address stands */
    if (nf != 6 || parse_port(f[4], &sport) < 0 ||
        parse_port(f[5], &dport) < 0)
        return PROXYPROTO_INVALID;
    if (strcmp(f[1], "TCP4") == 0) {
        struct sockaddr_in *a = (struct sockaddr_in *)src;
        struct in_addr dst;
        if (inet_pton(AF_INET, f[2], &a->sin_addr) != 1 || inet_pton(AF_INET, f[3], &dst) != 1)
            return PROXYPROTO_INVALID;
        a->sin_family = AF_INET;
        a->sin_port = htons(sport);
    } else if (strcmp(f[1], "TCP6") == 0) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)src;
        struct in6_addr dst;
        if (inet_pton(AF_INET6, f[2], &a->sin6_addr) != 1 || inet_pton(AF_INET6, f[3], &dst) != 1)
            return PROXYPROTO_INVALID;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(sport);
    } else {
        return PROXYPROTO_INVALID;
    }
    return (int)(crlf - buf) + 2;
}

static int
parse_v2(const uint8_t *buf, size_t len, struct sockaddr_storage *src)
{
    size_t total;
    uint8_t ver_cmd, fam;

    if (len < 16)
        return PROXYPROTO_MORE;
    ver_cmd = buf[12];
    fam = buf[13];
    total = 16 + ((size_t)buf[14] << 8 | buf[15]);
    if ((ver_cmd & 0xf0) != 0x20 || (ver_cmd & 0x0f) > 1 || total > PROXYPROTO_V2_MAX)
        return PROXYPROTO_INVALID;
    if (len < total)
        return PROXYPROTO_MORE;
    memset(src, 0, sizeof(*src));
    if ((ver_cmd & 0x0f) == 0) /* LOCAL: the balancer speaks for itself */
        return (int)total;
    if (fam == 0x11) { /* TCP over IPv4 */
        struct sockaddr_in *a = (struct sockaddr_in *)src;
        if (total < 16 + 12)
            return PROXYPROTO_INVALID;
        a->sin_family = AF_INET;
        memcpy(&a->sin_addr, buf + 16, 4);
        memcpy(&a->sin_port, buf + 24, 2);
    } else if (fam == 0x21) { /* TCP over IPv6 */
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)src;
        if (total < 16 + 36)
            return PROXYPROTO_INVALID;
        a->sin6_family = AF_INET6;
        memcpy(&a->sin6_addr, buf + 16, 16);
        memcpy(&a->sin6_port, buf + 48, 2);
    } else if (fam != 0x00) { /* UDP, UNIX: not for an HTTP listener */
        return PROXYPROTO_INVALID;
    }
    return (int)total;
}

int
proxyproto_parse(const uint8_t *buf, size_t len, struct sockaddr_storage *src)
{
    size_t n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);

    if (memcmp(buf, v2_sig, n) == 0)
        return len < sizeof(v2_sig) ? PROXYPROTO_MORE : parse_v2(buf, len, src);
    n = len < 6 ? len : 6;
    if (memcmp(buf, "PROXY ", n) == 0)
        return len < 6 ? PROXYPROTO_MORE : parse_v1(buf, len, src);
    return PROXYPROTO_INVALID;
}
