/*
 * config-t: the types of a loaded configuration, shared by proxy/ and health/. A config is built
 * once by config_load() and never changes afterwards: threads share it through config_ref() and a
 * reload builds a new one. Functions live in config.h; the schema that fills these structs lives in
 * config_schema.c.
 */
#ifndef TRIDENT_CONFIG_T_H
#define TRIDENT_CONFIG_T_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

enum balance_kind {
    BALANCE_ROUND_ROBIN, /* smooth weighted round-robin */
    BALANCE_LEAST_CONN,  /* fewest active requests per unit of weight */
};

struct server_conf {
    char *id;          /* unique across all clusters: logs, metrics and admin use it */
    char *address;     /* as written in the file */
    struct addr addr;  /* resolved when the config loaded */
    int weight;        /* 0 takes no new traffic */
};

struct cluster_conf {
    char *name;
    char *provider; /* hosting provider label, e.g. "ntt", "gmo", "aws" */
    int weight;     /* share of requests among clusters */
    int balance;    /* enum balance_kind, inside the cluster */
    struct server_conf *servers;
    size_t nservers;
};

struct listener_conf {
    char *address;
    struct addr addr;
    int backlog;
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
