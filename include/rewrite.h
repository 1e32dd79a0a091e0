/*
 * rewrite: serialising the heads trident sends. The request head to a server: HTTP/1.1, Host kept,
 * hop-by-hop fields, httpoxy's Proxy and Proxy-Authorization removed, X-Forwarded-*, X-Real-IP
 * and X-Request-Id set; the fields that name the client or how it came (Forwarded, ...) kept only
 * from a trusted proxy, and their '_' aliases never. The response
 * head to a client: hop-by-hop fields removed and the framing and connection fields trident chose.
 * Pure functions from a parsed http_msg to an evbuffer.
 */
#ifndef TRIDENT_REWRITE_H
#define TRIDENT_REWRITE_H

#include <event2/buffer.h>
#include <stdbool.h>

#include "headers.h"
#include "http.h"

struct rewrite_request_ctx {
    const char *client_ip;    /* the connection's peer: appended to X-Forwarded-For */
    const char *client;       /* X-Real-IP: the client (named by a trusted proxy, else the peer) */
    bool trusted;             /* the peer is a trusted proxy: its X-Forwarded-For chain,
                                 X-Forwarded-Proto and -Host and identity fields (Forwarded,
                                 ...) are kept */
    const char *proto;        /* X-Forwarded-Proto: "http" or "https" */
    const char *request_id;   /* X-Request-Id: a trusted proxy's (valid) one or a generated one */
    bool chunked;             /* the body goes up chunked */
    const char *default_host; /* Host for an HTTP/1.0 request that has none */
    bool drop_expect;         /* trident itself answered Expect: 100-continue */
};

/* Append the request head for the server to `out`. Returns 0, or -1 when out of memory. */
int rewrite_request(const struct http_msg *m, const struct req_info *info,
                    const struct rewrite_request_ctx *ctx, struct evbuffer *out);

struct rewrite_response_ctx {
    bool close;       /* the client connection closes after this response */
    bool http10;      /* the client speaks HTTP/1.0: keep-alive must be explicit */
    bool chunked;     /* trident sends the body chunked */
    bool upgrade;     /* a 101 to a WebSocket upgrade: keep Upgrade */
    const char *hsts; /* Strict-Transport-Security value to add when the server sent none */
    const char *set_cookie; /* a Set-Cookie value to add (a new sticky session), or NULL */
};

/* Append the response head (final or 1xx) for the client to `out`. Returns 0 or -1. */
int rewrite_response(const struct http_msg *m, const struct rewrite_response_ctx *ctx,
                     struct evbuffer *out);

#endif
