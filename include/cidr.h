/*
 * cidr: IPv4 and IPv6 networks ("10.0.0.0/8", "::1/128", or a bare address), parsed once and
 * matched against client addresses. Pure functions over plain values; used by the admin
 * endpoint's allowlist (and by access rules).
 */
#ifndef TRIDENT_CIDR_H
#define TRIDENT_CIDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct cidr {
    int family;        /* AF_INET or AF_INET6 */
    uint8_t addr[16];  /* network address, host bits cleared */
    int prefix;        /* 0..32 or 0..128 */
};

/* Parse text into *out. Returns 0, or -1 for anything that is not an address with an optional
 * in-range prefix. */
int cidr_parse(const char *text, struct cidr *out);

/* Whether address sa falls in c. An IPv4-mapped IPv6 address matches IPv4 networks. */
bool cidr_match(const struct cidr *c, const struct sockaddr *sa);

/* Whether sa falls in any of n networks. */
bool cidr_match_any(const struct cidr *list, size_t n, const struct sockaddr *sa);

#endif
