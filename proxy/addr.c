/*
 * addr: parsing and resolving host:port at config load, formatting for logs.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

/* Split "host:port" / "[v6]:port" into host and port strings (in caller buffers). */
static int
split_host_port(const char *text, char *host, size_t hostlen, long *port, char *err, size_t errlen)
{
    const char *colon, *hstart = text, *hend;
    char *end;

    if (text[0] == '[') {
        hend = strchr(text, ']');
        if (hend == NULL || hend[1] != ':') {
            snprintf(err, errlen, "expected [ipv6]:port");
            return -1;
        }
        hstart = text + 1;
        colon = hend + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL || memchr(text, ':', (size_t)(colon - text)) != NULL) {
            snprintf(err, errlen, "expected host:port (IPv6 addresses in brackets)");
            return -1;
        }
        hend = colon;
    }
    if (hend == hstart || (size_t)(hend - hstart) >= hostlen) {
        snprintf(err, errlen, "expected host:port");
        return -1;
    }
    memcpy(host, hstart, (size_t)(hend - hstart));
    host[hend - hstart] = '\0';
    *port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || colon[1] == '+' || colon[1] == '-') {
        snprintf(err, errlen, "expected host:port with a numeric port");
        return -1;
    }
    if (*port < 1 || *port > 65535) {
        snprintf(err, errlen, "port %ld out of range 1..65535", *port);
        return -1;
    }
    return 0;
}

int
addr_parse(const char *text, int passive, struct addr *out, char *err, size_t errlen)
{
    char host[256], portstr[8];
    struct addrinfo hints, *res = NULL;
    long port;
    int rc;

    if (split_host_port(text, host, sizeof(host), &port, err, errlen) < 0)
        return -1;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (strcmp(host, "*") == 0) {
        if (!passive) {
            snprintf(err, errlen, "wildcard host '*' is only valid for listeners");
            return -1;
        }
        hints.ai_flags |= AI_PASSIVE;
        hints.ai_family = AF_INET;
    }
    snprintf(portstr, sizeof(portstr), "%ld", port);
    rc = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, portstr, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(err, errlen, "cannot resolve '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    memset(out, 0, sizeof(*out));
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

char *
addr_host_string(const struct sockaddr *sa, char *buf, size_t buflen)
{
    const void *src = NULL;

    if (sa->sa_family == AF_INET)
        src = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6)
        src = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    if (src == NULL || inet_ntop(sa->sa_family, src, buf, (socklen_t)buflen) == NULL)
        snprintf(buf, buflen, "unknown");
    return buf;
}

unsigned
addr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
    return 0;
}

char *
addr_format(const struct addr *a, char *buf, size_t buflen)
{
    char host[INET6_ADDRSTRLEN];
    const struct sockaddr *sa = (const struct sockaddr *)&a->ss;

    addr_host_string(sa, host, sizeof(host));
    if (sa->sa_family == AF_INET6)
        snprintf(buf, buflen, "[%s]:%u", host, addr_port(sa));
    else
        snprintf(buf, buflen, "%s:%u", host, addr_port(sa));
    return buf;
}

int
addr_equal(const struct addr *a, const struct addr *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}
