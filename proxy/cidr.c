/*
 * cidr: network parsing and matching.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"

int
cidr_parse(const char *text, struct cidr *out)
{
    char buf[64];
    const char *slash = strchr(text, '/');
    size_t alen = slash ? (size_t)(slash - text) : strlen(text);
    int max, bits;

    if (alen == 0 || alen >= sizeof(buf))
        return -1;
    memcpy(buf, text, alen);
    buf[alen] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return -1;
    }
    out->prefix = max;
    if (slash != NULL) {
        char *end;
        long p = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || p < 0 || p > max)
            return -1;
        out->prefix = (int)p;
    }
    /* clear host bits, so "10.1.2.3/8" means 10.0.0.0/8 */
    for (bits = 0; bits < max; bits++)
        if (bits >= out->prefix)
            out->addr[bits / 8] &= (uint8_t) ~(0x80 >> (bits % 8));
    return 0;
}

static bool
prefix_equal(const uint8_t *a, const uint8_t *b, int prefix)
{
    int bytes = prefix / 8, rest = prefix % 8;

    if (memcmp(a, b, (size_t)bytes) != 0)
        return false;
    return rest == 0 || ((a[bytes] ^ b[bytes]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

bool
cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (sa->sa_family == AF_INET && c->family == AF_INET)
        return prefix_equal(c->addr,
                            (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr,
                            c->prefix);
    if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
        if (c->family == AF_INET6)
            return prefix_equal(c->addr, a, c->prefix);
        if (memcmp(a, mapped, sizeof(mapped)) == 0)
            return prefix_equal(c->addr, a + 12, c->prefix);
    }
    return false;
}

bool
cidr_match_any(const struct cidr *list, size_t n, const struct sockaddr *sa)
{
    for (size_t i = 0; i < n; i++)
        if (cidr_match(&list[i], sa))
            return true;
    return false;
}
