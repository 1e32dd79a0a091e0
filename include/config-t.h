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

struct server_conf {
    char *id;          /* unique across all clusters: logs, metrics and admin use it */
    char *address;     /* as written in the file */
    struct addr addr;  /* resolved when the config loaded */
    int weight;        /* 0 takes no new traffic */
    char *tls_name;    /* TLS: name sent as SNI and verified; NULL: the address's host */
};

struct cluster_conf {
    char *name;
    char *provider; /* hosting provider label, e.g. "ntt", "gmo", "aws" */
    int weight;     /* share of requests among clusters */
    int balance;    /* enum balance_kind, inside the cluster */
    struct server_conf *servers;
    size_t nservers;
    struct tls_upstream_conf *tls; /* NULL: plain HTTP to the servers */
};

struct listener_conf {
    char *address;
    struct addr addr;
    int backlog;
    struct tls_listen_conf *tls; /* NULL: plain HTTP */
    int https_redirect_port;     /* plain listener answering every request with a 308 to https
                                    on this port; 0: off */
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
    int upstream_keepalive;        /* idle pooled connections per server per worker */
    int buffer_bytes;              /* per direction, before reading pauses */
};

struct log_conf {
    char *access;    /* "stdout", "off" or a file path */
    int error_level; /* enum log_level */
};

struct config {
    atomic_int refs;
    int workers;
    struct listener_conf *listeners;
    size_t nlisteners;
    struct timeouts_conf timeouts;
    struct limits_conf limits;
    struct log_conf log;
    struct cluster_conf *clusters;
    size_t nclusters;
    size_t nservers; /* all servers of all clusters */
};

#endif
