/*
 * reason: why trident itself decided how a request or connection ended. One enum with one string
 * table, read by the access log, the error log and (later) the metrics labels, so that all of them
 * name the same outcome the same way.
 */
#ifndef TRIDENT_REASON_H
#define TRIDENT_REASON_H

enum reason {
    REASON_NONE,                  /* the upstream's answer went through unchanged */
    REASON_BAD_REQUEST,           /* malformed request head or body framing (400) */
    REASON_HEAD_TOO_LARGE,        /* request head over max_header_bytes (431) */
    REASON_TOO_MANY_HEADERS,      /* over max_header_count (431) */
    REASON_BODY_TOO_LARGE,        /* request body over max_request_body (413) */
    REASON_METHOD_NOT_ALLOWED,    /* CONNECT, or a method an access rule does not allow (405) */
    REASON_EXPECTATION_FAILED,    /* an Expect other than 100-continue (417) */
    REASON_CLIENT_TIMEOUT,        /* head or body did not arrive in time (408) */
    REASON_CLIENT_ABORTED,        /* client closed or reset mid-request */
    REASON_CLIENT_SEND_TIMEOUT,   /* client stopped reading the response */
    REASON_NO_SERVER,             /* no server can take the request (503) */
    REASON_UPSTREAM_REFUSED,      /* connect refused or failed (502) */
    REASON_UPSTREAM_CONNECT_TIMEOUT, /* (504) */
    REASON_UPSTREAM_TIMEOUT,      /* no response in upstream_response_ms (504) */
    REASON_UPSTREAM_RESET,        /* connection reset or closed before a complete response */
    REASON_UPSTREAM_BAD_RESPONSE, /* unparseable or oversize response head (502) */
    REASON_UPSTREAM_SEND_TIMEOUT, /* server stopped reading the request */
    REASON_RESOURCE,              /* an allocation failed (503) */
    REASON_TLS_HANDSHAKE_TIMEOUT, /* the client did not finish its handshake in time */
    REASON_TLS_PROTOCOL,          /* a protocol version below the listener's minimum */
    REASON_TLS_NO_SHARED_CIPHER,  /* no cipher, group or signature algorithm in common */
    REASON_TLS_NOT_TLS,           /* not a TLS ClientHello (plain HTTP, garbage) */
    REASON_TLS_UNKNOWN_SNI,       /* strict SNI: no or an unknown server name */
    REASON_TLS_ERROR,             /* any other handshake failure */
    REASON_UPSTREAM_TLS,          /* TLS to the server failed: handshake or verification (502) */
    REASON_TUNNEL_IDLE,           /* a WebSocket tunnel saw no byte for tunnel_idle_ms */
    REASON_SERVER_DOWN,           /* the server went down: its tunnels are closed */
    REASON_RETRIED,               /* counter only: an attempt failed and another one started */
    REASON_HEDGED,                /* counter only: a second attempt raced a slow one */
    REASON_SHUTDOWN,              /* the drain timeout ended the request */
    REASON_ACCESS_DENIED,         /* an access rule refused the client's address (403) */
    REASON_PATH_REFUSED,          /* the path climbs above the root, or holds an encoded NUL or
                                     slash where not allowed (403) */
    REASON_URI_TOO_LONG,          /* a path over ACCESS_PATH_MAX (414) */
    REASON_RATE_LIMITED,          /* a rate limit refused the request (429) */
    REASON_PANIC,                 /* counter only: every server was out by passive checks alone;
                                     one was tried anyway (router_pick_panic) */
    REASON_PROXY_HEADER,          /* counter only: a connection without a valid PROXY header */
    REASON_IP_CONN_LIMIT,         /* counter only: a connection over max_connections_per_ip */
    REASON_IP_RATE_LIMIT,         /* counter only: a connection over new_connections_per_ip_s */
    REASON_COUNT
};

/* Stable snake_case name of a reason ("upstream_refused"); "none" for REASON_NONE. */
const char *reason_name(enum reason r);

#endif
