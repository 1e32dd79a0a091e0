/*
 * config-t: the types of a loaded configuration, shared by proxy/ and health/. A config is built
 * once by config_load() and never changes afterwards: threads share it through config_ref() and a
 * reload builds a new one. Functions live in config.h; the schema that fills these structs lives in
 * config_schema.c.
 */
#ifndef TRIDENT_CONFIG_T_H
#define TRIDENT_CONFIG_T_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "cidr.h"

enum balance_kind {
    BALANCE_ROUND_ROBIN, /* smooth weighted round-robin */
    BALANCE_LEAST_CONN,  /* fewest active requests per unit of weight */
};

enum tls_version {
    TLS_VERSION_1_2,
    TLS_VERSION_1_3,
};

/* One certificate of a TLS listener. */
struct tls_cert_conf {
    char *cert; /* PEM: the certificate, then its chain */
    char *key;  /* PEM private key */
    char *ocsp; /* DER OCSP response to staple, or NULL */
};

/* The TLS side of a listener (present: the listener speaks TLS). */
struct tls_listen_conf {
    struct tls_cert_conf *certificates; /* the first one answers clients without a known SNI */
    size_t ncertificates;
    bool strict_sni;           /* refuse handshakes without SNI or with an unknown name */
    int min_version;           /* enum tls_version */
    char *ciphers;             /* TLS 1.2 cipher list */
    char *ciphersuites;        /* TLS 1.3 suites */
    char *groups;              /* key exchange groups */
    bool session_tickets;
    int ticket_rotate_s;       /* a new ticket key this often; the two before it still decrypt */
    int session_cache;         /* in-process session cache entries; 0 disables it */
    int session_timeout_s;     /* lifetime of a cached session or ticket */
    int handshake_timeout_ms;  /* from accept to a finished handshake */
    int hsts_max_age;          /* Strict-Transport-Security max-age; 0: no header */
    bool hsts_subdomains;
};

/* TLS from trident to a cluster's servers (present: the cluster speaks TLS). */
struct tls_upstream_conf {
    char *ca;            /* CA bundle; NULL: the system's */
    bool verify;         /* certificate chain and name */
    char *cert, *key;    /* client certificate for mutual TLS, or NULL */
    int min_version;     /* enum tls_version */
    char *ciphers;
    char *ciphersuites;
    bool session_reuse;  /* resume the last session with each server */
};

enum check_type {
    CHECK_HTTP, /* a request; the status (and optionally the body) decides */
    CHECK_TCP,  /* a connect */
    CHECK_TLS,  /* a connect and a TLS handshake (with the cluster's TLS settings) */
};

/* Active health checks of a cluster's servers (a server may replace them with its own). */
struct health_conf {
    int type;             /* enum check_type */
    int interval_ms;      /* between checks of a steady server */
    int fast_interval_ms; /* while a server is changing state, and while it is down */
    int timeout_ms;       /* one check, connect to verdict */
    int rise;             /* consecutive successes that bring a down server up */
    int fall;             /* consecutive failures that take an up server down */
    int jitter_pct;       /* each interval varies by up to this share, so checks spread out */
    int port;             /* 0: the server's own port */
    char *method;         /* http: request method */
    char *path;           /* http: request target */
    char *host;           /* http: Host; NULL: the server's TLS name or address host */
    char *expect_status;  /* http: "200-399" or a list such as "200,204,300-302" */
    char *expect_body;    /* http: a substring the body must hold; NULL: none */
    uint16_t status_ranges[16][2]; /* expect_status, parsed when the config loads */
    int nstatus_ranges;
};

/* Failures seen on real traffic that take a server out before the next active check. */
struct passive_conf {
    int connect_failures; /* consecutive refused or reset connections; 0: off */
    int timeouts;         /* consecutive connect or response timeouts; 0: off */
    int http_5xx;         /* consecutive 5xx responses; 0: off */
    int eject_ms;         /* clusters without active checks: how long a server stays out */
};

struct server_conf {
    char *id;          /* unique across all clusters: logs, metrics and admin use it */
    char *address;     /* as written in the file */
    struct addr addr;  /* resolved when the config loaded */
    int weight;        /* 0 takes no new traffic */
    char *tls_name;    /* TLS: name sent as SNI and verified; NULL: the address's host */
    struct health_conf *health; /* NULL: the cluster's checks */
};

struct cluster_conf {
    char *name;
    char *provider; /* hosting provider label, e.g. "ntt", "gmo", "aws" */
    int weight;     /* share of requests among clusters */
    int balance;    /* enum balance_kind, inside the cluster */
    struct server_conf *servers;
    size_t nservers;
    struct tls_upstream_conf *tls; /* NULL: plain HTTP to the servers */
    struct health_conf *health;    /* NULL: no active checks (passive ones still apply) */
    struct passive_conf passive;
    int min_healthy;        /* the cluster takes traffic while this many servers are up */
    int slow_start_ms;      /* a server coming back ramps its weight over this time; 0: off */
    int connect_timeout_ms; /* 0: timeouts.upstream_connect_ms */
    bool close_tunnels_on_down; /* WebSocket tunnels to a server that goes down are closed */
};

/* What trident does when servers fail: retries, hedging, the provider breaker, start-up. */
struct failover_conf {
    int retries;           /* further attempts after a failed one */
    int retry_budget_ms;   /* no new attempt this long after the request's first one */
    int retry_body_bytes;  /* request bodies up to this size are read whole before sending,
                              which makes them replayable (and never half-forwarded) */
    bool hedge;            /* idempotent requests may be sent to a second provider */
    int hedge_delay_ms;    /* 0: derived from the cluster's recent response times */
    int hedge_budget_pct;  /* at most this share of requests is hedged */
    int breaker_share_pct; /* this share of a provider's servers failing within the window
                              takes the whole provider out */
    int breaker_window_ms;
    int startup_wait_ms;   /* at start, wait this long at most for the first round of checks */
    int retry_after_s;     /* Retry-After of the 503 when no server can take a request */
    char *maintenance_page; /* HTML answered (503) when no server can take a request; NULL: JSON */
    int journal_size;      /* state transitions kept for the admin endpoint */
};

struct listener_conf {
    char *name;                  /* what access rules call it; NULL: its address */
    char *address;
    struct addr addr;
    int backlog;
    struct tls_listen_conf *tls; /* NULL: plain HTTP */
    int https_redirect_port;     /* plain listener answering every request with a 308 to https
                                    on this port; 0: off */
    bool proxy_protocol;         /* every connection starts with a PROXY v1/v2 header */
    char **trusted_proxies;      /* peers whose X-Forwarded-For names the client */
    size_t ntrusted_proxies;
    struct cidr *trusted_nets;   /* parsed when the config loads */
};

struct timeouts_conf {
    int client_header_ms;     /* whole request head, from its first byte */
    int client_body_ms;       /* between two reads of a request body */
    int client_idle_ms;       /* keep-alive wait for the next request */
    int client_send_ms;       /* a client that does not read its response */
    int upstream_connect_ms;  /* TCP connect to a server */
    int upstream_send_ms;     /* a server that does not read its request */
    int upstream_response_ms; /* request sent to response head, and between body reads */
    int upstream_idle_ms;     /* pooled keep-alive connection lifetime without use */
    int tunnel_idle_ms;       /* WebSocket tunnel with no byte either way */
    int shutdown_drain_ms;    /* SIGTERM: time in-flight requests get to finish */
};

struct limits_conf {
    int max_header_bytes;          /* request head on the wire */
    int max_header_count;          /* request header fields */
    int max_response_header_bytes; /* response head from a server */
    int max_response_header_count;
    int64_t max_request_body;      /* bytes, Content-Length or chunked */
    int max_connections;           /* client connections, whole process */
    int client_body_min_rate;
    int client_read_min_rate;      /* bytes/s a client must take its responses at */      /* bytes/s a request body must keep up after client_body_ms */
    int max_connections_per_ip;    /* open connections per client address (IPv6: /64); 0: no cap */
    int new_connections_per_ip_s;  /* new connections per second per address; 0: no limit */
    int new_connections_per_ip_burst; /* that bucket's size; 0: the per-second rate */
    int upstream_keepalive;        /* idle pooled connections per server per worker */
    int buffer_bytes;              /* per direction, before reading pauses */
};

struct log_conf {
    char *access;    /* "stdout", "off" or a file path */
    int error_level; /* enum log_level */
};

/* A bearer token of the admin endpoint: only its SHA-256 is kept in the file. */
struct admin_token {
    char *name;   /* written to the audit log */
    char *sha256; /* 64 hex digits */
    uint8_t digest[32]; /* parsed when the config loads */
};

struct admin_conf {
    char *address;               /* default loopback */
    struct addr addr;
    struct admin_token *tokens;  /* mutating calls need one of these */
    size_t ntokens;
    char **allow;                /* CIDR allowlist for the whole endpoint; none: everyone */
    size_t nallow;
    struct cidr *allow_nets;     /* `allow`, parsed when the config loads */
    char *audit_log;             /* "stderr" or a file path */
};

/* Where a rule applies: every condition given must hold. */
struct route_match {
    char **listeners;           /* listener names or addresses; none: every listener */
    size_t nlisteners;
    char **hosts;               /* Host without port, case-insensitive, "*.x" for subdomains */
    size_t nhosts;
    char *path_prefix;          /* of the normalised path */
};

/* One access rule: where it applies and what a request must satisfy there. */
struct access_rule_conf {
    char *name;                 /* in the access log when the rule refuses a request */
    struct route_match where;
    char **allow, **deny;       /* client CIDRs: deny wins; a non-empty allow admits only them */
    size_t nallow, ndeny;
    struct cidr *allow_nets, *deny_nets; /* parsed when the config loads */
    char **methods;             /* allowed methods; none: any */
    size_t nmethods;
    int64_t max_request_body;   /* -1: limits.max_request_body */
    int allow_encoded_slash;    /* -1: access.allow_encoded_slash */
};

enum rate_key_kind {
    RATE_KEY_CLIENT_IP, /* the client's address (IPv6: its /64) */
    RATE_KEY_HEADER,    /* a request header's value (an API key); absent: the limit skips it */
};

/* A rate limit: requests per key where it applies, counted across instances through Redis when
 * shared (and each instance alone while Redis is away). */
struct rate_limit_conf {
    char *name;
    struct route_match where;
    char *key;                  /* "client_ip" or "header:Name" */
    int requests;               /* this many requests ... */
    int per_s;                  /* ... per this many seconds */
    int burst;                  /* requests at once after a quiet time; 0: `requests` */
    bool shared;
    int key_kind;               /* enum rate_key_kind, from key */
    char *header;               /* RATE_KEY_HEADER: the name, lower case (points into key) */
    size_t header_len;
    uint64_t interval_us;       /* per_s / requests */
    uint64_t tolerance_us;      /* interval_us * (burst - 1): GCRA's burst allowance */
};

/* Edge checks of every request head, before routing. */
struct access_conf {
    bool allow_encoded_slash;   /* %2F and %5C in paths (else 403) */
    struct access_rule_conf *rules; /* the first rule whose conditions hold applies */
    size_t nrules;
};

/* The process's rights. */
struct process_conf {
    char *user;        /* become this user once bound; NULL: stay who started trident */
    char *group;       /* NULL: the user's primary group */
    bool allow_root;   /* run as root without process.user */
    bool core_dumps;   /* allow core files (they would hold private and ticket keys) */
    unsigned uid, gid; /* user and group, looked up when the config loads */
};

/* Redis, which the instances of a fleet share state through (a standalone server, or a master
 * found through Sentinel). Changing it needs a restart. */
struct redis_conf {
    char *address;            /* host:port of a standalone server; NULL with sentinels */
    struct addr addr;
    char **sentinels;         /* host:port of each sentinel; none: `address` */
    size_t nsentinels;
    struct addr *sentinel_addrs; /* `sentinels`, resolved when the config loads */
    char *master_name;        /* Sentinel: the monitored master's name */
    char *username;           /* ACL user (Redis 6+); NULL: the default user */
    char *password;           /* NULL: no AUTH; never logged */
    int database;             /* SELECT this database (0: the default) */
    char *prefix;             /* every key and channel starts with it */
    int connect_timeout_ms;   /* TCP connect and the AUTH/SELECT handshake */
    int command_timeout_ms;   /* a request waits at most this long for Redis, then goes on */
    int io_timeout_ms;        /* a connection whose oldest command waits this long is dropped */
    int backoff_min_ms;       /* reconnect delays double from this... */
    int backoff_max_ms;       /* ...up to this, with jitter */
    int max_pending;          /* commands in flight per connection; more: answered locally */
};

enum affinity_source {
    AFFINITY_ISSUED, /* trident issues its own cookie */
    AFFINITY_APP,    /* the application's session cookie, learnt from its Set-Cookie */
};

enum same_site {
    SAME_SITE_LAX,
    SAME_SITE_STRICT,
    SAME_SITE_NONE,
};

/* Sticky sessions over all clusters: a session keeps going to one server while it can serve. */
struct affinity_conf {
    int source;            /* enum affinity_source */
    char *cookie;          /* the cookie's name */
    int ttl_s;             /* the session -> server mapping lives this long after its last use */
    int same_site;         /* enum same_site, for an issued cookie */
    int cookie_max_age_s;  /* an issued cookie's Max-Age; 0: a browser-session cookie */
    int cache_entries;     /* mappings cached by each worker */
    int cache_ms;          /* a cached mapping is trusted this long before Redis is asked again */
};

/* The fleet: instances that share health, admin states and ticket keys through Redis. */
struct fleet_conf {
    bool share_health;     /* publish and follow health transitions */
    int quorum;            /* instances reporting a server down that take it down here as well */
    int vote_ttl_ms;       /* a peer's down report counts this long unless renewed */
    bool share_admin;      /* drain/maintenance apply on every instance */
    bool share_tickets;    /* one set of TLS ticket keys for the whole fleet */
};

struct config {
    atomic_int refs;
    char *instance_id;      /* names this instance in /status, metrics and (later) Redis */
    int workers;
    struct listener_conf *listeners;
    size_t nlisteners;
    struct timeouts_conf timeouts;
    struct limits_conf limits;
    struct log_conf log;
    struct cluster_conf *clusters;
    size_t nclusters;
    size_t nservers; /* all servers of all clusters */
    struct failover_conf failover;
    struct admin_conf *admin; /* NULL: no admin endpoint */
    struct redis_conf *redis; /* NULL: no Redis: every instance on its own */
    struct affinity_conf *affinity; /* NULL: no sticky sessions */
    struct access_conf access;
    struct rate_limit_conf *rate_limits; /* every one that applies counts a request */
    size_t nrate_limits;
    struct process_conf process;
    struct fleet_conf fleet;  /* with redis */
    char *path;               /* the file it was loaded from (for reloads); NULL from text */
};

#endif
