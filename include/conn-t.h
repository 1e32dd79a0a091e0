/*
 * conn-t: the client connection's types. One struct conn per accepted socket, owned by its
 * worker's loop; its state machine is in conn.c (request side), conn_response.c (response side)
 * and tunnel.c (after a 101).
 */
#ifndef TRIDENT_CONN_T_H
#define TRIDENT_CONN_T_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "addr.h"
#include "pace.h"
#include "ratelimit.h"
#include "body.h"
#include "headers.h"
#include "http.h"
#include "reason.h"
#include "reqid.h"

struct listener_rt;
struct tls_server;
struct worker;
struct router;
struct server_rt;
struct upstream;
struct redis_op;

/* The client connection's state. Only conn_set_state() changes it, and each state names what is
 * true while it lasts. */
enum conn_state {
    CONN_PROXY_HEADER,        /* PROXY protocol listener: waiting for the balancer's header
                                 (no bufferevent yet); header deadline timer */
    CONN_HANDSHAKE,           /* TLS listener: handshake under way; handshake deadline timer */
    CONN_IDLE,                /* between requests, no byte of the next one yet; idle timer */
    CONN_READING_HEAD,        /* a request head is arriving; header deadline timer */
    CONN_BUFFERING_BODY,      /* head accepted; a small body is read whole before any server
                                 sees the request (replayable, never half-forwarded) */
    CONN_ROUTING,             /* request ready; waiting (redis.command_timeout_ms at most) for
                                 Redis to say which server the session belongs to */
    CONN_CONNECTING_UPSTREAM, /* request ready; getting a server connection */
    CONN_STREAMING,           /* exchange under way: body up (req_phase), response down;
                                 the timer is the hedge delay */
    CONN_TUNNEL,              /* after a 101: bytes copied both ways; tunnel idle timer */
    CONN_CLOSING,             /* no more reading; flushing what is queued, then closed */
    CONN_CLOSED,              /* finished; freed once the current callback has returned */
};

/* Progress of the request body from BUFFERING_BODY to the end of STREAMING. */
enum req_phase {
    REQ_BODY, /* body bytes still to read from the client */
    REQ_DONE, /* the client has sent the whole request */
};

#define CONN_MAX_ATTEMPTS 12 /* failover.retries is at most 10, plus the first and a hedge */

/* Progress of the response during STREAMING. */
enum resp_phase {
    RESP_HEAD, /* waiting for the final response head (1xx are relayed on the way) */
    RESP_BODY, /* head sent to the client, body flowing */
    RESP_DONE, /* the whole response is queued to the client */
};

/* A request's sticky session (affinity section), from routing to the response head. */
struct exchange_affinity {
    bool decided;            /* routing looked at the session (once per request) */
    bool keyed;              /* `key` names the request's session */
    bool issue;              /* issued cookies: a new id goes out with the response */
    uint8_t key[16];
    char id[33];             /* issue: the new session id */
    struct server_rt *server; /* the session's server for the first attempt, or NULL */
    struct server_rt *stored; /* the server the stored mapping already names */
    struct redis_op *op;     /* the lookup in flight (CONN_ROUTING) */
};

struct exchange_rate {
    struct rate_hit hits[RATELIMIT_MAX_HITS]; /* the limits that count this request */
    uint8_t nhits;
    bool shared;             /* some are counted across the fleet too */
    bool decided;            /* the fleet was asked (once per request) */
    int retry_after_s;       /* refused: when to come back */
    struct redis_op *op;     /* the fleet's count in flight (CONN_ROUTING) */
};

/* One server connection's part of an exchange, for the access log and the response-time
 * estimator: monotonic microseconds, 0 until reached. */
struct attempt_times {
    bool pooled;                 /* the connection came from the pool */
    uint64_t connect_start_us, connected_us, sent_us;
};

/* One request/response exchange: allocated for each request (struct conn's x). */
struct exchange {
    char id[REQID_MAX + 1];
    struct req_info info;
    int status;              /* sent to the client; 0 until a head was */
    bool keep_alive;         /* the client connection may carry another request afterwards */
    enum reason reason;
    struct body req_body;
    struct body resp_body;
    struct server_rt *server;    /* of the current attempt (router_begin'd) */
    struct server_rt *tried[CONN_MAX_ATTEMPTS];
    unsigned ntried;
    unsigned attempts;           /* connections used, hedge included */
    const char *failed_provider; /* the provider of the last failed attempt, avoided next */
    int fail_status;             /* what to answer if no attempt remains */
    enum reason fail_reason;
    bool body_buffered;          /* the whole body is in conn.body: the request is replayable */
    bool fresh_only;             /* the next connect must not come from the pool */
    bool hedged;                 /* a second attempt was started in parallel */
    bool hedge_considered;       /* the one speculative hedge a request may get was weighed */
    struct server_rt *hedge_server;
    uint64_t bytes_in, bytes_out;
    long long start_wall_ms;
    /* monotonic microseconds; 0: not reached */
    uint64_t start_us, first_attempt_us, header_us;
    struct attempt_times attempt; /* c->up's: the current attempt */
    struct attempt_times hedge;   /* c->hedge's, which becomes `attempt` if it is promoted */
    unsigned interim;        /* 1xx responses relayed */
    struct exchange_affinity aff;
    const char *rule;            /* the access rule that applied (config-owned), or NULL */
    struct pace pace;            /* the request body's pace (limits.client_body_min_rate) */
    struct exchange_rate rate;
    bool peer_trusted;           /* the connection's peer is one of the listener's
                                    trusted_proxies: its forwarding fields are believed */
    struct sockaddr_storage client; /* named by a trusted proxy's X-Forwarded-For; AF_UNSPEC:
                                       the connection's peer is the client */
    char client_text[ADDR_TEXT_MAX];
    int64_t max_request_body;    /* limits.max_request_body, or the access rule's */
    struct evbuffer *body;       /* the request body as sent (framed) when it is read whole first
                                    (CONN_BUFFERING_BODY); else NULL. Owned. */
};

struct conn {
    enum conn_state state;
    enum req_phase req_phase;
    enum resp_phase resp_phase;
    struct worker *w;
    struct listener_rt *listener;
    struct tls_server *tls; /* TLS listener: a reference to the context it was accepted with */
    const char *tls_version, *tls_cipher; /* after the handshake (static strings) */
    struct router *router;  /* routing snapshot this connection started with */
    const struct config *cfg;
    struct bufferevent *bev;
    evutil_socket_t fd;     /* the client socket (owned by bev once there is one) */
    struct event *pp_ev;    /* CONN_PROXY_HEADER: the socket's read event */
    struct event *timer;    /* idle / header deadline / tunnel idle, by state */
    struct event *free_ev;  /* deferred free after CLOSED */
    TAILQ_ENTRY(conn) link;
    char client_ip[46];
    char client[ADDR_TEXT_MAX];
    struct sockaddr_storage peer; /* the client's address, for access rules */
    bool ip_counted;              /* counted in the worker's limiter: released at close */
    struct http_msg req;         /* request parser and head */
    struct upstream *up;         /* the server connection of the current exchange */
    struct upstream *hedge;      /* a second attempt racing `up`, or NULL */
    struct evbuffer *up_head;    /* rewritten request head, kept until the response starts */
    unsigned requests;           /* exchanges begun on this connection */
    bool client_eof;             /* the client shut down its sending side */
    bool reads_too_slowly;       /* the client drains its responses slower than
                                    limits.client_read_min_rate: closed from the timer */
    struct pace read_pace;       /* how the client drains what trident queues for it */
    struct evbuffer_cb_entry *output_cb; /* client_output_cb on bev's output */
    struct exchange *x;          /* the exchange under way (owned): from the first byte of a request
                                    until the connection is idle again or freed; NULL between
                                    requests, so that an idle connection does not hold its ~1 KiB */
};

#endif
