/*
 * proxyproto: the PROXY protocol header (HAProxy's v1 text and v2 binary formats) that a
 * layer-4 balancer sends before a connection's first byte to name the client it relays. Pure:
 * bytes in, an address out.
 */
#ifndef TRIDENT_PROXYPROTO_H
#define TRIDENT_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PROXYPROTO_V1_MAX 107  /* the longest v1 line, CRLF included */
#define PROXYPROTO_V2_MAX 1040 /* 16-byte header + addresses + TLVs this reader accepts */

enum {
    PROXYPROTO_MORE = 0,     /* a valid start: wait for more bytes */
    PROXYPROTO_INVALID = -1, /* not a PROXY header, or a broken one: close the connection */
};

/* Parse the header at the start of buf. Returns its length (> 0) when complete, with the client
 * in *src, or *src->ss_family AF_UNSPEC when the header names none (v1 UNKNOWN, v2 LOCAL: the
 * balancer's own connection, such as a health check); else PROXYPROTO_MORE or
 * PROXYPROTO_INVALID. */
int proxyproto_parse(const uint8_t *buf, size_t len, struct sockaddr_storage *src);

#endif
