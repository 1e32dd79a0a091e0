/*
 * config_schema: the table of every configuration key, and the one walker that reads JSON with it.
 * Adding a key is adding a row: the walker refuses bad values with their JSON path, fills defaults,
 * and `trident --config-reference` prints the row for the README.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "config-t.h"
#include "config_schema.h"
#include "log.h"

#define FIELDS(a) (a), sizeof(a) / sizeof((a)[0])
#define MS_MAX    86400000 /* one day: longer than any sane timeout */

static int64_t
online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : (n > 256 ? 256 : n);
}

static const char *const balance_names[] = {"round_robin", "least_conn", NULL};

static const char *const tls_version_names[] = {"TLSv1.2", "TLSv1.3", NULL};

/* AEAD with forward secrecy only (ECDHE; AES-GCM or ChaCha20-Poly1305), ECDSA first. */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"    \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

static const struct cfg_field tls_cert_fields[] = {
    {.key = "cert", .type = CFG_PATH, .offset = offsetof(struct tls_cert_conf, cert), .min = 1,
     .flags = CFG_REQUIRED, .doc = "PEM certificate followed by its chain"},
    {.key = "key", .type = CFG_PATH, .offset = offsetof(struct tls_cert_conf, key), .min = 1,
     .flags = CFG_REQUIRED, .doc = "PEM private key (RSA or ECDSA)"},
    {.key = "ocsp", .type = CFG_PATH, .offset = offsetof(struct tls_cert_conf, ocsp), .min = 1,
     .doc = "DER OCSP response to staple (re-read on reload)"},
};
static const struct cfg_object tls_cert_schema = {sizeof(struct tls_cert_conf),
                                                  FIELDS(tls_cert_fields)};

#define TLS_LISTEN(k, type_, lo, hi, d, text)                                                      \
    {.key = #k, .type = (type_), .offset = offsetof(struct tls_listen_conf, k), .min = (lo),     \
     .max = (hi), .def = (d), .doc = (text)}
static const struct cfg_field tls_listen_fields[] = {
    {.key = "certificates", .type = CFG_ARRAY,
     .offset = offsetof(struct tls_listen_conf, certificates),
     .count_offset = offsetof(struct tls_listen_conf, ncertificates), .child = &tls_cert_schema,
     .min = 1, .max = 256, .flags = CFG_REQUIRED,
     .doc = "Certificates, chosen by SNI; an RSA and an ECDSA one may share names. The first is "
            "the default"},
    TLS_LISTEN(strict_sni, CFG_BOOL, 0, 1, 0,
               "Refuse handshakes without SNI or naming no certificate (else: the default)"),
    {.key = "min_version", .type = CFG_ENUM, .offset = offsetof(struct tls_listen_conf, min_version),
     .names = tls_version_names, .def = TLS_VERSION_1_2, .doc = "Oldest protocol accepted"},
    {.key = "ciphers", .type = CFG_STRING, .offset = offsetof(struct tls_listen_conf, ciphers),
     .min = 1, .def_str = TLS12_CIPHERS, .def_doc = "ECDHE with AES-GCM or CHACHA20-POLY1305",
     .doc = "TLS 1.2 cipher list (OpenSSL syntax), in server preference order"},
    {.key = "ciphersuites", .type = CFG_STRING,
     .offset = offsetof(struct tls_listen_conf, ciphersuites), .min = 1, .def_str = TLS13_SUITES,
     .def_doc = "the AES-GCM and CHACHA20 suites", .doc = "TLS 1.3 suites (OpenSSL syntax)"},
    {.key = "groups", .type = CFG_STRING, .offset = offsetof(struct tls_listen_conf, groups),
     .min = 1, .def_str = "X25519:P-256:P-384", .doc = "Key exchange groups"},
    TLS_LISTEN(session_tickets, CFG_BOOL, 0, 1, 1, "Stateless session resumption"),
    TLS_LISTEN(ticket_rotate_s, CFG_INT, 60, 604800, 3600,
               "Ticket key rotation period; tickets stay valid for two more periods"),
    TLS_LISTEN(session_cache, CFG_INT, 0, 10000000, 20480,
               "Sessions kept in the in-process cache; 0 disables it"),
    TLS_LISTEN(session_timeout_s, CFG_INT, 1, 86400, 3600, "Lifetime of a session or ticket"),
    TLS_LISTEN(handshake_timeout_ms, CFG_INT, 1, 600000, 10000,
               "From accept to a finished handshake"),
    TLS_LISTEN(hsts_max_age, CFG_INT, 0, 315360000, 0,
               "Add Strict-Transport-Security with this max-age; 0: no header"),
    TLS_LISTEN(hsts_subdomains, CFG_BOOL, 0, 1, 0, "Add includeSubDomains to HSTS"),
};
static const struct cfg_object tls_listen_schema = {sizeof(struct tls_listen_conf),
                                                    FIELDS(tls_listen_fields)};

static const struct cfg_field tls_upstream_fields[] = {
    {.key = "ca", .type = CFG_PATH, .offset = offsetof(struct tls_upstream_conf, ca), .min = 1,
     .def_doc = "the system's CA store", .doc = "PEM CA bundle that server certificates chain to"},
    {.key = "verify", .type = CFG_BOOL, .offset = offsetof(struct tls_upstream_conf, verify),
     .def = 1, .doc = "Verify the server's chain and name (servers[].tls_name or its host)"},
    {.key = "cert", .type = CFG_PATH, .offset = offsetof(struct tls_upstream_conf, cert), .min = 1,
     .doc = "Client certificate for mutual TLS (with key)"},
    {.key = "key", .type = CFG_PATH, .offset = offsetof(struct tls_upstream_conf, key), .min = 1,
     .doc = "Private key of the client certificate"},
    {.key = "min_version", .type = CFG_ENUM,
     .offset = offsetof(struct tls_upstream_conf, min_version), .names = tls_version_names,
     .def = TLS_VERSION_1_2, .doc = "Oldest protocol offered"},
    {.key = "ciphers", .type = CFG_STRING, .offset = offsetof(struct tls_upstream_conf, ciphers),
     .min = 1, .def_str = TLS12_CIPHERS, .def_doc = "ECDHE with AES-GCM or CHACHA20-POLY1305",
     .doc = "TLS 1.2 cipher list"},
    {.key = "ciphersuites", .type = CFG_STRING,
     .offset = offsetof(struct tls_upstream_conf, ciphersuites), .min = 1,
     .def_str = TLS13_SUITES, .def_doc = "the AES-GCM and CHACHA20 suites", .doc = "TLS 1.3 suites"},
    {.key = "session_reuse", .type = CFG_BOOL,
     .offset = offsetof(struct tls_upstream_conf, session_reuse), .def = 1,
     .doc = "Resume the last TLS session with each server"},
};
static const struct cfg_object tls_upstream_schema = {sizeof(struct tls_upstream_conf),
                                                      FIELDS(tls_upstream_fields)};

static const char *const check_type_names[] = {"http", "tcp", "tls", NULL};

#define HEALTH(k, type_, lo, hi, d, text)                                                          \
    {.key = #k, .type = (type_), .offset = offsetof(struct health_conf, k), .min = (lo),         \
     .max = (hi), .def = (d), .doc = (text)}
static const struct cfg_field health_fields[] = {
    {.key = "type", .type = CFG_ENUM, .offset = offsetof(struct health_conf, type),
     .names = check_type_names, .def = CHECK_HTTP, .doc = "What a check does"},
    HEALTH(interval_ms, CFG_INT, 10, 3600000, 1000, "Between checks of a steady server"),
    HEALTH(fast_interval_ms, CFG_INT, 10, 3600000, 200,
           "Between checks while a server changes state or is down"),
    HEALTH(timeout_ms, CFG_INT, 10, 600000, 500, "One check, from connect to verdict"),
    HEALTH(rise, CFG_INT, 1, 100, 2, "Consecutive successes that bring a server up"),
    HEALTH(fall, CFG_INT, 1, 100, 2, "Consecutive failures that take a server down"),
    HEALTH(jitter_pct, CFG_INT, 0, 50, 10, "Each interval varies by up to this share"),
    HEALTH(port, CFG_INT, 0, 65535, 0, "Port to check; 0: the server's"),
    {.key = "method", .type = CFG_NAME, .offset = offsetof(struct health_conf, method),
     .def_str = "GET", .doc = "http: request method"},
    {.key = "path", .type = CFG_STRING, .offset = offsetof(struct health_conf, path), .min = 1,
     .max = 1024, .def_str = "/", .doc = "http: request target"},
    {.key = "host", .type = CFG_STRING, .offset = offsetof(struct health_conf, host), .min = 1,
     .max = 255, .def_doc = "the server's TLS name or host", .doc = "http: Host header"},
    {.key = "expect_status", .type = CFG_STRING,
     .offset = offsetof(struct health_conf, expect_status), .min = 3, .max = 128,
     .def_str = "200-399", .doc = "http: accepted statuses, e.g. \"200,204,300-302\""},
    {.key = "expect_body", .type = CFG_STRING, .offset = offsetof(struct health_conf, expect_body),
     .min = 1, .max = 256, .doc = "http: a substring the first 16 KiB of the body must hold"},
};
static const struct cfg_object health_schema = {sizeof(struct health_conf), FIELDS(health_fields)};

#define PASSIVE(k, lo, hi, d, text)                                                                \
    {.key = #k, .type = CFG_INT, .offset = offsetof(struct passive_conf, k), .min = (lo),        \
     .max = (hi), .def = (d), .doc = (text)}
static const struct cfg_field passive_fields[] = {
    PASSIVE(connect_failures, 0, 1000, 1,
            "Consecutive refused or reset connections that take a server down; 0: off"),
    PASSIVE(timeouts, 0, 1000, 2,
            "Consecutive connect or response timeouts that take a server down; 0: off"),
    PASSIVE(http_5xx, 0, 1000, 0, "Consecutive 5xx responses that take a server down; 0: off"),
    PASSIVE(eject_ms, 100, 3600000, 10000,
            "Without active checks: how long a server taken down stays out"),
};
static const struct cfg_object passive_schema = {0, FIELDS(passive_fields)};

static const struct cfg_field server_fields[] = {
    {.key = "id", .type = CFG_NAME, .offset = offsetof(struct server_conf, id),
     .flags = CFG_REQUIRED, .doc = "Unique server id (across all clusters), used in logs and metrics"},
    {.key = "address", .type = CFG_ADDR, .offset = offsetof(struct server_conf, address),
     .addr_offset = offsetof(struct server_conf, addr), .flags = CFG_REQUIRED,
     .doc = "host:port or [ipv6]:port; names are resolved once at load"},
    {.key = "weight", .type = CFG_INT, .offset = offsetof(struct server_conf, weight), .min = 0,
     .max = 1000, .def = 1, .doc = "Share of the cluster's requests; 0 takes no new traffic"},
    {.key = "tls_name", .type = CFG_STRING, .offset = offsetof(struct server_conf, tls_name),
     .min = 1, .max = 253, .def_doc = "the address's host",
     .doc = "With cluster TLS: the name sent as SNI and checked in the certificate"},
    {.key = "health", .type = CFG_SECTION, .offset = offsetof(struct server_conf, health),
     .child = &health_schema, .doc = "Replaces the cluster's health section for this server"},
};
static const struct cfg_object server_schema = {sizeof(struct server_conf), FIELDS(server_fields)};

static const struct cfg_field cluster_fields[] = {
    {.key = "name", .type = CFG_NAME, .offset = offsetof(struct cluster_conf, name),
     .flags = CFG_REQUIRED, .doc = "Unique cluster name"},
    {.key = "provider", .type = CFG_NAME, .offset = offsetof(struct cluster_conf, provider),
     .flags = CFG_REQUIRED, .doc = "Hosting provider label (e.g. ntt, gmo, aws)"},
    {.key = "weight", .type = CFG_INT, .offset = offsetof(struct cluster_conf, weight), .min = 0,
     .max = 1000, .def = 1, .doc = "Share of all requests sent to this cluster; 0 takes none"},
    {.key = "balance", .type = CFG_ENUM, .offset = offsetof(struct cluster_conf, balance),
     .names = balance_names, .def = 0, .doc = "Server choice inside the cluster"},
    {.key = "servers", .type = CFG_ARRAY, .offset = offsetof(struct cluster_conf, servers),
     .count_offset = offsetof(struct cluster_conf, nservers), .child = &server_schema, .min = 1,
     .max = 1024, .flags = CFG_REQUIRED, .doc = "The cluster's servers"},
    {.key = "tls", .type = CFG_SECTION, .offset = offsetof(struct cluster_conf, tls),
     .child = &tls_upstream_schema, .doc = "Present: speak TLS to the cluster's servers"},
    {.key = "health", .type = CFG_SECTION, .offset = offsetof(struct cluster_conf, health),
     .child = &health_schema,
     .doc = "Present: active checks; absent: servers count as up (passive checks still apply)"},
    {.key = "passive", .type = CFG_OBJECT, .offset = offsetof(struct cluster_conf, passive),
     .child = &passive_schema, .doc = "Failures on real traffic"},
    {.key = "min_healthy", .type = CFG_INT, .offset = offsetof(struct cluster_conf, min_healthy),
     .min = 1, .max = 1024, .def = 1,
     .doc = "The cluster takes traffic while at least this many of its servers are up"},
    {.key = "slow_start_ms", .type = CFG_INT,
     .offset = offsetof(struct cluster_conf, slow_start_ms), .min = 0, .max = 3600000, .def = 0,
     .doc = "A server coming back up ramps its weight over this time; 0: off"},
    {.key = "connect_timeout_ms", .type = CFG_INT,
     .offset = offsetof(struct cluster_conf, connect_timeout_ms), .min = 0, .max = MS_MAX,
     .def = 0, .doc = "Overrides timeouts.upstream_connect_ms; 0: no override"},
    {.key = "close_tunnels_on_down", .type = CFG_BOOL,
     .offset = offsetof(struct cluster_conf, close_tunnels_on_down), .def = 1,
     .doc = "Close WebSocket tunnels to a server that goes down, so clients reconnect elsewhere"},
};
static const struct cfg_object cluster_schema = {sizeof(struct cluster_conf),
                                                 FIELDS(cluster_fields)};

static const struct cfg_field listener_fields[] = {
    {.key = "name", .type = CFG_NAME, .offset = offsetof(struct listener_conf, name),
     .doc = "What access rules call this listener (default: its address)"},
    {.key = "address", .type = CFG_ADDR, .offset = offsetof(struct listener_conf, address),
     .addr_offset = offsetof(struct listener_conf, addr), .flags = CFG_REQUIRED | CFG_PASSIVE,
     .doc = "host:port to bind; \"*:port\" for all IPv4, \"[::]:port\" for IPv6"},
    {.key = "backlog", .type = CFG_INT, .offset = offsetof(struct listener_conf, backlog),
     .min = 1, .max = 65535, .def = 511, .doc = "listen(2) backlog of each worker's socket"},
    {.key = "tls", .type = CFG_SECTION, .offset = offsetof(struct listener_conf, tls),
     .child = &tls_listen_schema, .doc = "Present: the listener terminates TLS"},
    {.key = "https_redirect_port", .type = CFG_INT,
     .offset = offsetof(struct listener_conf, https_redirect_port), .min = 0, .max = 65535,
     .def = 0, .doc = "Plain listener only: answer every request with a 308 to https on this port"},
    {.key = "proxy_protocol", .type = CFG_BOOL,
     .offset = offsetof(struct listener_conf, proxy_protocol), .def = 0,
     .doc = "Every connection starts with a PROXY protocol v1 or v2 header naming the client (a "
            "layer-4 balancer in front); connections without one are closed"},
    {.key = "trusted_proxies", .type = CFG_STRINGS,
     .offset = offsetof(struct listener_conf, trusted_proxies),
     .count_offset = offsetof(struct listener_conf, ntrusted_proxies), .min = 1, .max = 64,
     .count_max = 256,
     .doc = "CIDRs of proxies in front: from them, the client is the last X-Forwarded-For address "
            "that is not one of them (for access rules, rate limits, logs), and their "
            "X-Forwarded-For chain, X-Forwarded-Proto and -Host, X-Request-Id and Forwarded "
            "fields are kept; with "
            "proxy_protocol, the only peers allowed to send a PROXY header"},
};
static const struct cfg_object listener_schema = {sizeof(struct listener_conf),
                                                  FIELDS(listener_fields)};

#define TIMEOUT(k, d, text)                                                                        \
    {.key = #k, .type = CFG_INT, .offset = offsetof(struct timeouts_conf, k), .min = 1,           \
     .max = MS_MAX, .def = (d), .doc = (text)}
static const struct cfg_field timeout_fields[] = {
    TIMEOUT(client_header_ms, 10000, "Whole request head, from its first byte (then 408)"),
    TIMEOUT(client_body_ms, 30000, "Between two reads of a request body (then 408)"),
    TIMEOUT(client_idle_ms, 60000, "Keep-alive wait for a client's next request"),
    TIMEOUT(client_send_ms, 30000, "A client that stops reading its response"),
    TIMEOUT(upstream_connect_ms, 500, "TCP connect to a server (then 504)"),
    TIMEOUT(upstream_send_ms, 30000, "A server that stops reading its request"),
    TIMEOUT(upstream_response_ms, 60000,
            "Request sent to response head, and between response reads (then 504)"),
    TIMEOUT(upstream_idle_ms, 10000, "Idle pooled keep-alive connection to a server"),
    TIMEOUT(tunnel_idle_ms, 300000, "WebSocket tunnel with no byte in either direction"),
    TIMEOUT(shutdown_drain_ms, 10000, "On SIGTERM, time in-flight requests get to finish"),
};
static const struct cfg_object timeouts_schema = {0, FIELDS(timeout_fields)};

#define LIMIT(k, type_, lo, hi, d, text)                                                           \
    {.key = #k, .type = (type_), .offset = offsetof(struct limits_conf, k), .min = (lo),         \
     .max = (hi), .def = (d), .doc = (text)}
static const struct cfg_field limit_fields[] = {
    LIMIT(max_header_bytes, CFG_INT, 1024, 1048576, 16384,
          "Request line and headers on the wire (then 431)"),
    LIMIT(max_header_count, CFG_INT, 1, 1000, 100, "Request header fields (then 431)"),
    LIMIT(max_response_header_bytes, CFG_INT, 1024, 1048576, 65536,
          "Response head from a server (then 502)"),
    LIMIT(max_response_header_count, CFG_INT, 1, 1000, 200, "Response header fields (then 502)"),
    LIMIT(max_request_body, CFG_INT64, 0, INT64_C(1) << 50, 104857600,
          "Request body bytes, Content-Length or chunked (then 413)"),
    LIMIT(max_connections, CFG_INT, 1, 1000000, 10000,
          "Client connections for the process, shared evenly by the workers"),
    LIMIT(client_body_min_rate, CFG_INT, 0, 1 << 30, 500,
          "Request bodies: the client may keep trident waiting timeouts.client_body_ms plus 1 s "
          "per this many bytes (then 408); 0: only the per-read timeout"),
    LIMIT(client_read_min_rate, CFG_INT, 0, 1 << 30, 256,
          "Responses: a client may leave bytes waiting timeouts.client_send_ms plus 1 s per this "
          "many bytes it takes, then the connection closes; 0: only the per-write timeout"),
    LIMIT(max_connections_per_ip, CFG_INT, 0, 1000000, 0,
          "Open connections per client address (IPv6: per /64); more are closed at once; 0: no cap"),
    LIMIT(new_connections_per_ip_s, CFG_INT, 0, 1000000, 0,
          "New connections per second per client address (token bucket); 0: no limit"),
    LIMIT(new_connections_per_ip_burst, CFG_INT, 0, 1000000, 0,
          "The bucket's size: connections at once after a quiet time; 0: the per-second rate"),
    LIMIT(upstream_keepalive, CFG_INT, 0, 10000, 32,
          "Idle keep-alive connections kept per server per worker; 0 disables reuse"),
    LIMIT(buffer_bytes, CFG_INT, 4096, 16777216, 65536,
          "Per direction: reading pauses when this much waits to be written"),
};
static const struct cfg_object limits_schema = {0, FIELDS(limit_fields)};

static const struct cfg_field log_fields[] = {
    {.key = "access", .type = CFG_STRING, .offset = offsetof(struct log_conf, access), .min = 1,
     .max = 4096, .def_str = "stdout",
     .doc = "Access log: \"stdout\", \"off\", or a file path (reopened on SIGUSR1)"},
    {.key = "error_level", .type = CFG_ENUM, .offset = offsetof(struct log_conf, error_level),
     .names = log_level_names, .def = LOG_INFO, .doc = "Error log (stderr) verbosity"},
};
static const struct cfg_object log_schema = {0, FIELDS(log_fields)};

#define FAILOVER(k, type_, lo, hi, d, text)                                                        \
    {.key = #k, .type = (type_), .offset = offsetof(struct failover_conf, k), .min = (lo),       \
     .max = (hi), .def = (d), .doc = (text)}
static const struct cfg_field failover_fields[] = {
    FAILOVER(retries, CFG_INT, 0, 10, 2, "Further attempts after a failed one"),
    FAILOVER(retry_budget_ms, CFG_INT, 0, MS_MAX, 3000,
             "No new attempt starts this long after a request's first one"),
    FAILOVER(retry_body_bytes, CFG_INT, 0, 16777216, 65536,
             "Request bodies up to this size are read whole before sending: replayable, and "
             "never half-forwarded"),
    FAILOVER(hedge, CFG_BOOL, 0, 1, 1,
             "Send a slow idempotent request to a second provider; the first answer wins"),
    FAILOVER(hedge_delay_ms, CFG_INT, 0, MS_MAX, 0,
             "Wait before hedging; 0: from the cluster's recent response times"),
    FAILOVER(hedge_budget_pct, CFG_INT, 0, 100, 5, "At most this share of requests is hedged"),
    FAILOVER(breaker_share_pct, CFG_INT, 1, 100, 50,
             "This share of one provider's servers failing within the window takes the whole "
             "provider out"),
    FAILOVER(breaker_window_ms, CFG_INT, 10, 3600000, 3000, "The breaker's window"),
    FAILOVER(startup_wait_ms, CFG_INT, 0, 600000, 3000,
             "At start, wait at most this long for the first round of checks"),
    FAILOVER(retry_after_s, CFG_INT, 0, 86400, 5,
             "Retry-After of the 503 sent when no server can take a request"),
    {.key = "maintenance_page", .type = CFG_PATH,
     .offset = offsetof(struct failover_conf, maintenance_page), .min = 1,
     .doc = "HTML file sent (with 503) when no server can take a request; absent: JSON"},
    FAILOVER(journal_size, CFG_INT, 1, 100000, 256,
             "State transitions kept for the admin endpoint"),
};
static const struct cfg_object failover_schema = {0, FIELDS(failover_fields)};

static const struct cfg_field admin_token_fields[] = {
    {.key = "name", .type = CFG_NAME, .offset = offsetof(struct admin_token, name),
     .flags = CFG_REQUIRED, .doc = "Who holds the token (written to the audit log)"},
    {.key = "sha256", .type = CFG_STRING, .offset = offsetof(struct admin_token, sha256),
     .min = 64, .max = 64, .flags = CFG_REQUIRED,
     .doc = "SHA-256 of the token, 64 hex digits (e.g. `printf %s TOKEN | sha256sum`)"},
};
static const struct cfg_object admin_token_schema = {sizeof(struct admin_token),
                                                     FIELDS(admin_token_fields)};

static const struct cfg_field admin_fields[] = {
    {.key = "address", .type = CFG_ADDR, .offset = offsetof(struct admin_conf, address),
     .addr_offset = offsetof(struct admin_conf, addr), .def_str = "127.0.0.1:9901",
     .flags = CFG_PASSIVE, .doc = "host:port of the admin endpoint (loopback by default)"},
    {.key = "tokens", .type = CFG_ARRAY, .offset = offsetof(struct admin_conf, tokens),
     .count_offset = offsetof(struct admin_conf, ntokens), .child = &admin_token_schema,
     .min = 0, .max = 64, .doc = "Bearer tokens for mutating calls; none: mutating calls refused"},
    {.key = "allow", .type = CFG_STRINGS, .offset = offsetof(struct admin_conf, allow),
     .count_offset = offsetof(struct admin_conf, nallow), .min = 1, .max = 64, .count_max = 256,
     .doc = "CIDR allowlist for the whole endpoint (e.g. \"10.0.0.0/8\"); empty: no limit"},
    {.key = "audit_log", .type = CFG_STRING, .offset = offsetof(struct admin_conf, audit_log),
     .min = 1, .max = 4096, .def_str = "stderr",
     .doc = "Where mutating calls are recorded: \"stderr\" or a file path"},
};
static const struct cfg_object admin_schema = {sizeof(struct admin_conf), FIELDS(admin_fields)};

#define REDIS(k, lo, hi, d, text)                                                                  \
    {.key = #k, .type = CFG_INT, .offset = offsetof(struct redis_conf, k), .min = (lo),          \
     .max = (hi), .def = (d), .doc = (text)}
static const struct cfg_field redis_fields[] = {
    {.key = "address", .type = CFG_ADDR, .offset = offsetof(struct redis_conf, address),
     .addr_offset = offsetof(struct redis_conf, addr),
     .doc = "host:port of a standalone Redis (or use sentinels)"},
    {.key = "sentinels", .type = CFG_STRINGS, .offset = offsetof(struct redis_conf, sentinels),
     .count_offset = offsetof(struct redis_conf, nsentinels), .min = 1, .max = 300,
     .count_max = 16, .doc = "host:port of each Redis Sentinel; the master is found through them"},
    {.key = "master_name", .type = CFG_NAME, .offset = offsetof(struct redis_conf, master_name),
     .doc = "With sentinels: the name of the monitored master"},
    {.key = "username", .type = CFG_STRING, .offset = offsetof(struct redis_conf, username),
     .min = 1, .max = 256, .doc = "ACL user name (Redis 6 and later)"},
    {.key = "password", .type = CFG_STRING, .offset = offsetof(struct redis_conf, password),
     .min = 1, .max = 512, .doc = "AUTH password (use ${VAR}: never logged)"},
    REDIS(database, 0, 1000, 0, "Database number (SELECT)"),
    {.key = "prefix", .type = CFG_STRING, .offset = offsetof(struct redis_conf, prefix), .min = 1,
     .max = 64, .def_str = "trident:", .doc = "Prefix of every key and channel (the namespace)"},
    REDIS(connect_timeout_ms, 1, 60000, 500, "Connect, AUTH and SELECT"),
    REDIS(command_timeout_ms, 1, 10000, 5,
          "How long a request waits for Redis before going on with local state"),
    REDIS(io_timeout_ms, 10, 600000, 1000,
          "A connection whose oldest command has waited this long is dropped and reconnected"),
    REDIS(backoff_min_ms, 1, 600000, 100, "First reconnect delay; it doubles after each failure"),
    REDIS(backoff_max_ms, 1, 600000, 5000, "Longest reconnect delay (each gets up to 50% jitter)"),
    REDIS(max_pending, 1, 1000000, 10000,
          "Commands in flight per connection; beyond it requests use local state"),
};
static const struct cfg_object redis_schema = {sizeof(struct redis_conf), FIELDS(redis_fields)};

static const char *const affinity_source_names[] = {"issued", "app", NULL};
static const char *const same_site_names[] = {"Lax", "Strict", "None", NULL};

#define AFFINITY(k, lo, hi, d, text)                                                               \
    {.key = #k, .type = CFG_INT, .offset = offsetof(struct affinity_conf, k), .min = (lo),       \
     .max = (hi), .def = (d), .doc = (text)}
static const struct cfg_field affinity_fields[] = {
    {.key = "source", .type = CFG_ENUM, .offset = offsetof(struct affinity_conf, source),
     .names = affinity_source_names, .def = AFFINITY_ISSUED,
     .doc = "issued: trident sets its own cookie; app: the application's session cookie, learnt "
            "from its Set-Cookie"},
    {.key = "cookie", .type = CFG_NAME, .offset = offsetof(struct affinity_conf, cookie),
     .def_str = "trident_affinity", .doc = "Name of the cookie that identifies a session"},
    AFFINITY(ttl_s, 1, 2592000, 1800,
             "A session's server is remembered this long after its last request"),
    {.key = "same_site", .type = CFG_ENUM, .offset = offsetof(struct affinity_conf, same_site),
     .names = same_site_names, .def = SAME_SITE_LAX, .doc = "issued: the cookie's SameSite"},
    AFFINITY(cookie_max_age_s, 0, 31536000, 0, "issued: the cookie's Max-Age; 0: until the "
             "browser closes"),
    AFFINITY(cache_entries, 0, 10000000, 100000, "Sessions each worker keeps in memory; 0: none"),
    AFFINITY(cache_ms, 0, 3600000, 2000,
             "A session's server is taken from memory this long before Redis is asked again"),
};
static const struct cfg_object affinity_schema = {sizeof(struct affinity_conf),
                                                  FIELDS(affinity_fields)};

#define FLEET(k, type_, lo, hi, d, text)                                                           \
    {.key = #k, .type = (type_), .offset = offsetof(struct fleet_conf, k), .min = (lo),          \
     .max = (hi), .def = (d), .doc = (text)}
static const struct cfg_field fleet_fields[] = {
    FLEET(share_health, CFG_BOOL, 0, 1, 1,
          "Publish health transitions; a peer's down stops traffic here until a check confirms"),
    FLEET(quorum, CFG_INT, 1, 64, 2,
          "This many instances reporting a server down take it down here too, checks or not"),
    FLEET(vote_ttl_ms, CFG_INT, 100, 3600000, 30000,
          "A peer's down report counts this long unless renewed"),
    FLEET(share_admin, CFG_BOOL, 0, 1, 1,
          "Drain and maintenance apply on every instance, also on those started later"),
    FLEET(share_tickets, CFG_BOOL, 0, 1, 1,
          "One set of TLS ticket keys for the fleet: sessions resume on any instance"),
};
static const struct cfg_object fleet_schema = {0, FIELDS(fleet_fields)};

/* The three keys of a struct route_match embedded at `member` of type T. */
/* NOLINTBEGIN(bugprone-macro-parentheses): `member` is offsetof's member designator, which
 * cannot be parenthesised */
#define ROUTE_MATCH(T, member)                                                                     \
    {.key = "listeners", .type = CFG_STRINGS, .offset = offsetof(T, member.listeners),             \
     .count_offset = offsetof(T, member.nlisteners), .min = 1, .max = 300, .count_max = 64,        \
     .doc = "Applies on these listeners (names or addresses); empty: all"},                        \
    {.key = "hosts", .type = CFG_STRINGS, .offset = offsetof(T, member.hosts),                     \
     .count_offset = offsetof(T, member.nhosts), .min = 1, .max = 253, .count_max = 256,           \
     .doc = "Applies to these Host names (no port; \"*.example.com\" for subdomains); empty: all"}, \
    {.key = "path_prefix", .type = CFG_STRING, .offset = offsetof(T, member.path_prefix),          \
     .min = 1, .max = 1024, .def_str = "/",                                                        \
     .doc = "Applies to normalised paths starting with this (\"/admin/\")"}
/* NOLINTEND(bugprone-macro-parentheses) */

static const struct cfg_field access_rule_fields[] = {
    {.key = "name", .type = CFG_NAME, .offset = offsetof(struct access_rule_conf, name),
     .flags = CFG_REQUIRED, .doc = "Names the rule in the access log when it refuses a request"},
    ROUTE_MATCH(struct access_rule_conf, where),
    {.key = "allow", .type = CFG_STRINGS, .offset = offsetof(struct access_rule_conf, allow),
     .count_offset = offsetof(struct access_rule_conf, nallow), .min = 1, .max = 64,
     .count_max = 1024, .doc = "Client CIDRs admitted; empty: every client not denied (else 403)"},
    {.key = "deny", .type = CFG_STRINGS, .offset = offsetof(struct access_rule_conf, deny),
     .count_offset = offsetof(struct access_rule_conf, ndeny), .min = 1, .max = 64,
     .count_max = 1024, .doc = "Client CIDRs refused with 403 (before allow)"},
    {.key = "methods", .type = CFG_STRINGS, .offset = offsetof(struct access_rule_conf, methods),
     .count_offset = offsetof(struct access_rule_conf, nmethods), .min = 1, .max = 32,
     .count_max = 32, .doc = "Methods allowed (else 405); empty: any"},
    {.key = "max_request_body", .type = CFG_INT64,
     .offset = offsetof(struct access_rule_conf, max_request_body), .min = -1,
     .max = INT64_C(1) << 50, .def = -1,
     .doc = "Bytes (else 413); -1: limits.max_request_body"},
    {.key = "allow_encoded_slash", .type = CFG_INT,
     .offset = offsetof(struct access_rule_conf, allow_encoded_slash), .min = -1, .max = 1,
     .def = -1, .doc = "1: allow %2F and %5C in paths here, 0: refuse, -1: access.allow_encoded_slash"},
};
static const struct cfg_object access_rule_schema = {sizeof(struct access_rule_conf),
                                                     FIELDS(access_rule_fields)};

static const struct cfg_field access_fields[] = {
    {.key = "allow_encoded_slash", .type = CFG_BOOL,
     .offset = offsetof(struct access_conf, allow_encoded_slash), .def = 0,
     .doc = "Allow %2F and %5C (encoded slashes) in paths; else 403"},
    {.key = "rules", .type = CFG_ARRAY, .offset = offsetof(struct access_conf, rules),
     .count_offset = offsetof(struct access_conf, nrules), .child = &access_rule_schema,
     .min = 0, .max = 1024, .doc = "Access rules; the first whose conditions hold applies"},
};
static const struct cfg_object access_schema = {0, FIELDS(access_fields)};

static const struct cfg_field rate_limit_fields[] = {
    {.key = "name", .type = CFG_NAME, .offset = offsetof(struct rate_limit_conf, name),
     .flags = CFG_REQUIRED, .doc = "Names the limit in the access log and in Redis keys"},
    ROUTE_MATCH(struct rate_limit_conf, where),
    {.key = "key", .type = CFG_STRING, .offset = offsetof(struct rate_limit_conf, key), .min = 1,
     .max = 100, .def_str = "client_ip",
     .doc = "What is counted: \"client_ip\" (IPv6: per /64) or \"header:NAME\" (e.g. an API key)"},
    {.key = "requests", .type = CFG_INT, .offset = offsetof(struct rate_limit_conf, requests),
     .min = 1, .max = 1000000000, .flags = CFG_REQUIRED, .doc = "Requests allowed per per_s"},
    {.key = "per_s", .type = CFG_INT, .offset = offsetof(struct rate_limit_conf, per_s), .min = 1,
     .max = 86400, .def = 1, .doc = "The period, in seconds"},
    {.key = "burst", .type = CFG_INT, .offset = offsetof(struct rate_limit_conf, burst), .min = 0,
     .max = 1000000000, .def = 0, .doc = "Requests at once after a quiet time; 0: requests"},
    {.key = "shared", .type = CFG_BOOL, .offset = offsetof(struct rate_limit_conf, shared),
     .def = 1, .doc = "Count across instances through Redis (when configured)"},
};
static const struct cfg_object rate_limit_schema = {sizeof(struct rate_limit_conf),
                                                    FIELDS(rate_limit_fields)};

static const struct cfg_field process_fields[] = {
    {.key = "user", .type = CFG_STRING, .offset = offsetof(struct process_conf, user), .min = 1,
     .max = 32, .doc = "Started as root: become this user once the sockets are bound"},
    {.key = "group", .type = CFG_STRING, .offset = offsetof(struct process_conf, group), .min = 1,
     .max = 32, .def_doc = "the user's group", .doc = "With user: the group to become"},
    {.key = "allow_root", .type = CFG_BOOL, .offset = offsetof(struct process_conf, allow_root),
     .def = 0, .doc = "Run as root without user (refused otherwise)"},
    {.key = "core_dumps", .type = CFG_BOOL, .offset = offsetof(struct process_conf, core_dumps),
     .def = 0, .doc = "Allow core files (they would hold private keys); off: none"},
};
static const struct cfg_object process_schema = {0, FIELDS(process_fields)};

static const struct cfg_field root_fields[] = {
    {.key = "instance_id", .type = CFG_NAME, .offset = offsetof(struct config, instance_id),
     .def_doc = "the host name", .doc = "Names this instance in /status and metrics"},
    {.key = "workers", .type = CFG_INT, .offset = offsetof(struct config, workers), .min = 1,
     .max = 256, .def_fn = online_cpus, .def_doc = "online CPUs",
     .doc = "Worker threads, each with its own event loop and listening sockets"},
    {.key = "listeners", .type = CFG_ARRAY, .offset = offsetof(struct config, listeners),
     .count_offset = offsetof(struct config, nlisteners), .child = &listener_schema, .min = 1,
     .max = 64, .flags = CFG_REQUIRED, .doc = "Client-facing sockets"},
    {.key = "timeouts", .type = CFG_OBJECT, .offset = offsetof(struct config, timeouts),
     .child = &timeouts_schema, .doc = "Timeouts, in milliseconds"},
    {.key = "limits", .type = CFG_OBJECT, .offset = offsetof(struct config, limits),
     .child = &limits_schema, .doc = "Sizes and counts"},
    {.key = "log", .type = CFG_OBJECT, .offset = offsetof(struct config, log),
     .child = &log_schema, .doc = "Logging"},
    {.key = "clusters", .type = CFG_ARRAY, .offset = offsetof(struct config, clusters),
     .count_offset = offsetof(struct config, nclusters), .child = &cluster_schema, .min = 1,
     .max = 64, .flags = CFG_REQUIRED,
     .doc = "Upstream clusters, one per hosting provider, all active at once"},
    {.key = "failover", .type = CFG_OBJECT, .offset = offsetof(struct config, failover),
     .child = &failover_schema, .doc = "Retries, hedging, the provider breaker, start-up"},
    {.key = "admin", .type = CFG_SECTION, .offset = offsetof(struct config, admin),
     .child = &admin_schema, .doc = "Present: the admin HTTP endpoint (status, metrics, drain, "
                                    "reload)"},
    {.key = "redis", .type = CFG_SECTION, .offset = offsetof(struct config, redis),
     .child = &redis_schema,
     .doc = "Present: instances share sessions, health, admin states and ticket keys through "
            "Redis"},
    {.key = "affinity", .type = CFG_SECTION, .offset = offsetof(struct config, affinity),
     .child = &affinity_schema, .doc = "Present: sticky sessions (shared through Redis if set)"},
    {.key = "fleet", .type = CFG_OBJECT, .offset = offsetof(struct config, fleet),
     .child = &fleet_schema, .doc = "What instances share through Redis"},
    {.key = "rate_limits", .type = CFG_ARRAY, .offset = offsetof(struct config, rate_limits),
     .count_offset = offsetof(struct config, nrate_limits), .child = &rate_limit_schema,
     .min = 0, .max = 64,
     .doc = "Request rates per client address or header value (429 with Retry-After)"},
    {.key = "process", .type = CFG_OBJECT, .offset = offsetof(struct config, process),
     .child = &process_schema, .doc = "The process's rights: user to become, core dumps"},
    {.key = "access", .type = CFG_OBJECT, .offset = offsetof(struct config, access),
     .child = &access_schema,
     .doc = "Edge checks before routing: path normalisation, client CIDRs, methods, body sizes"},
};
const struct cfg_object cfg_root = {sizeof(struct config), FIELDS(root_fields)};

/* ---- the walker ---------------------------------------------------------------------------- */

struct path {
    char buf[256];
    size_t len;
};

static size_t
path_push_key(struct path *p, const char *key)
{
    size_t old = p->len;
    int n = snprintf(p->buf + p->len, sizeof(p->buf) - p->len, "%s%s", p->len ? "." : "", key);

    if (n > 0)
        p->len = p->len + (size_t)n < sizeof(p->buf) ? p->len + (size_t)n : sizeof(p->buf) - 1;
    return old;
}

static size_t
path_push_index(struct path *p, size_t i)
{
    size_t old = p->len;
    int n = snprintf(p->buf + p->len, sizeof(p->buf) - p->len, "[%zu]", i);

    if (n > 0)
        p->len = p->len + (size_t)n < sizeof(p->buf) ? p->len + (size_t)n : sizeof(p->buf) - 1;
    return old;
}

static void
path_pop(struct path *p, size_t old)
{
    p->len = old;
    p->buf[old] = '\0';
}

static int __attribute__((format(printf, 4, 5)))
fail(char *err, size_t errlen, const struct path *p, const char *fmt, ...)
{
    char reason[384];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s: %s", p->len ? p->buf : "(root)", reason);
    return -1;
}

static const char *
json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "something else";
}

static bool
is_name(const char *s)
{
    size_t n = strlen(s);

    if (n < 1 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return false;
    }
    return true;
}

static int walk_object(const struct cfg_object *obj, json_t *json, char *base, struct path *p,
                       char *err, size_t errlen);

static int
walk_integer(const struct cfg_field *f, json_t *v, char *base, const struct path *p, char *err,
             size_t errlen)
{
    json_int_t n;

    if (!json_is_integer(v))
        return fail(err, errlen, p, "expected an integer, got %s", json_type_name(v));
    n = json_integer_value(v);
    if (n < f->min || n > f->max)
        return fail(err, errlen, p, "%lld is out of range %lld..%lld", (long long)n,
                    (long long)f->min, (long long)f->max);
    if (f->type == CFG_INT)
        *(int *)(void *)(base + f->offset) = (int)n;
    else
        *(int64_t *)(void *)(base + f->offset) = (int64_t)n;
    return 0;
}

static int
walk_enum(const struct cfg_field *f, const char *s, char *base, const struct path *p, char *err,
          size_t errlen)
{
    char list[256] = "";

    for (int i = 0; f->names[i] != NULL; i++) {
        if (strcmp(s, f->names[i]) == 0) {
            *(int *)(void *)(base + f->offset) = i;
            return 0;
        }
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s\"%s\"", i ? ", " : "",
                 f->names[i]);
    }
    return fail(err, errlen, p, "expected one of %s", list);
}

static int
walk_string(const struct cfg_field *f, json_t *v, char *base, const struct path *p, char *err,
            size_t errlen)
{
    const char *s;
    size_t len;
    int64_t maxlen = f->max ? f->max : 4096;
    char why[160];

    if (!json_is_string(v))
        return fail(err, errlen, p, "expected a string, got %s", json_type_name(v));
    s = json_string_value(v);
    len = json_string_length(v);
    if (strlen(s) != len)
        return fail(err, errlen, p, "NUL byte inside the string");
    if (f->type == CFG_ENUM)
        return walk_enum(f, s, base, p, err, errlen);
    if (f->type == CFG_NAME && !is_name(s))
        return fail(err, errlen, p, "expected 1 to 64 characters of A-Z a-z 0-9 . _ -");
    if ((int64_t)len < f->min || (int64_t)len > maxlen)
        return fail(err, errlen, p, "length %zu is out of range %lld..%lld", len,
                    (long long)f->min, (long long)maxlen);
    if (f->type == CFG_PATH && access(s, R_OK) < 0)
        return fail(err, errlen, p, "cannot read '%s': %s", s, strerror(errno));
    if (f->type == CFG_ADDR &&
        addr_parse(s, (f->flags & CFG_PASSIVE) != 0,
                   (struct addr *)(void *)(base + f->addr_offset), why, sizeof(why)) < 0)
        return fail(err, errlen, p, "%s", why);
    *(char **)(void *)(base + f->offset) = strdup(s);
    return 0;
}

static int
walk_array(const struct cfg_field *f, json_t *v, char *base, struct path *p, char *err,
           size_t errlen)
{
    size_t n, i;
    char *items;

    if (!json_is_array(v))
        return fail(err, errlen, p, "expected an array, got %s", json_type_name(v));
    n = json_array_size(v);
    if ((int64_t)n < f->min || (int64_t)n > f->max)
        return fail(err, errlen, p, "expected %lld to %lld items, got %zu", (long long)f->min,
                    (long long)f->max, n);
    items = calloc(n ? n : 1, f->child->size);
    if (items == NULL)
        return fail(err, errlen, p, "out of memory");
    *(void **)(void *)(base + f->offset) = items;
    *(size_t *)(void *)(base + f->count_offset) = n;
    for (i = 0; i < n; i++) {
        size_t old = path_push_index(p, i);
        int rc = walk_object(f->child, json_array_get(v, i), items + i * f->child->size, p, err,
                             errlen);
        path_pop(p, old);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int
walk_strings(const struct cfg_field *f, json_t *v, char *base, struct path *p, char *err,
             size_t errlen)
{
    size_t n;
    char **items;

    if (!json_is_array(v))
        return fail(err, errlen, p, "expected an array of strings, got %s", json_type_name(v));
    n = json_array_size(v);
    if ((int64_t)n > f->count_max)
        return fail(err, errlen, p, "expected at most %lld items, got %zu",
                    (long long)f->count_max, n);
    items = calloc(n ? n : 1, sizeof(*items));
    if (items == NULL)
        return fail(err, errlen, p, "out of memory");
    *(char ***)(void *)(base + f->offset) = items;
    *(size_t *)(void *)(base + f->count_offset) = n;
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(v, i);
        size_t old = path_push_index(p, i);
        size_t len = json_is_string(item) ? json_string_length(item) : 0;

        if (!json_is_string(item) || (int64_t)len < f->min || (int64_t)len > f->max ||
            strlen(json_string_value(item)) != len) {
            fail(err, errlen, p, "expected a string of %lld to %lld characters",
                 (long long)f->min, (long long)f->max);
            path_pop(p, old);
            return -1;
        }
        path_pop(p, old);
        items[i] = strdup(json_string_value(item));
    }
    return 0;
}

static int
walk_section(const struct cfg_field *f, json_t *v, char *base, struct path *p, char *err,
             size_t errlen)
{
    char *item = calloc(1, f->child->size);

    if (item == NULL)
        return fail(err, errlen, p, "out of memory");
    *(void **)(void *)(base + f->offset) = item;
    return walk_object(f->child, v, item, p, err, errlen);
}

static int
walk_bool(const struct cfg_field *f, json_t *v, char *base, const struct path *p, char *err,
          size_t errlen)
{
    if (!json_is_boolean(v))
        return fail(err, errlen, p, "expected true or false, got %s", json_type_name(v));
    *(bool *)(void *)(base + f->offset) = json_is_true(v);
    return 0;
}

/* The value of a key that is absent: its default, or an error when it is required. */
static int
walk_default(const struct cfg_field *f, char *base, struct path *p, char *err, size_t errlen)
{
    json_t *empty;
    int rc;

    if (f->flags & CFG_REQUIRED)
        return fail(err, errlen, p, "required key is missing");
    switch (f->type) {
    case CFG_INT:
    case CFG_ENUM:
        *(int *)(void *)(base + f->offset) = (int)(f->def_fn ? f->def_fn() : f->def);
        return 0;
    case CFG_INT64:
        *(int64_t *)(void *)(base + f->offset) = f->def_fn ? f->def_fn() : f->def;
        return 0;
    case CFG_BOOL: *(bool *)(void *)(base + f->offset) = f->def != 0; return 0;
    case CFG_STRING:
    case CFG_NAME:
    case CFG_PATH:
    case CFG_ADDR:
        if (f->def_str != NULL)
            *(char **)(void *)(base + f->offset) = strdup(f->def_str);
        return 0;
    case CFG_OBJECT:
        empty = json_object(); /* an absent section is an empty one: every key defaults */
        rc = walk_object(f->child, empty, base + f->offset, p, err, errlen);
        json_decref(empty);
        return rc;
    case CFG_ARRAY:
    case CFG_STRINGS:
    case CFG_SECTION: return 0;
    }
    return 0;
}

static int
walk_field(const struct cfg_field *f, json_t *v, char *base, struct path *p, char *err,
           size_t errlen)
{
    if (v == NULL)
        return walk_default(f, base, p, err, errlen);
    switch (f->type) {
    case CFG_INT:
    case CFG_INT64: return walk_integer(f, v, base, p, err, errlen);
    case CFG_STRING:
    case CFG_NAME:
    case CFG_ENUM:
    case CFG_PATH:
    case CFG_ADDR: return walk_string(f, v, base, p, err, errlen);
    case CFG_OBJECT: return walk_object(f->child, v, base + f->offset, p, err, errlen);
    case CFG_ARRAY: return walk_array(f, v, base, p, err, errlen);
    case CFG_BOOL: return walk_bool(f, v, base, p, err, errlen);
    case CFG_SECTION: return walk_section(f, v, base, p, err, errlen);
    case CFG_STRINGS: return walk_strings(f, v, base, p, err, errlen);
    }
    return 0;
}

static const struct cfg_field *
find_field(const struct cfg_object *obj, const char *key)
{
    for (size_t i = 0; i < obj->nfields; i++)
        if (strcmp(obj->fields[i].key, key) == 0)
            return &obj->fields[i];
    return NULL;
}

static int
walk_object(const struct cfg_object *obj, json_t *json, char *base, struct path *p, char *err,
            size_t errlen)
{
    const char *key;
    json_t *v;

    if (!json_is_object(json))
        return fail(err, errlen, p, "expected an object, got %s", json_type_name(json));
    json_object_foreach(json, key, v)
    {
        if (find_field(obj, key) == NULL) {
            size_t old = path_push_key(p, key);
            fail(err, errlen, p, "unknown key");
            path_pop(p, old);
            return -1;
        }
    }
    for (size_t i = 0; i < obj->nfields; i++) {
        const struct cfg_field *f = &obj->fields[i];
        size_t old = path_push_key(p, f->key);
        int rc = walk_field(f, json_object_get(json, f->key), base, p, err, errlen);

        path_pop(p, old);
        if (rc < 0)
            return -1;
    }
    return 0;
}

int
cfg_walk(const struct cfg_object *obj, json_t *json, void *target, char *err, size_t errlen)
{
    struct path p = {.len = 0};

    p.buf[0] = '\0';
    return walk_object(obj, json, target, &p, err, errlen);
}

void
cfg_free(const struct cfg_object *obj, void *target)
{
    char *base = target;

    for (size_t i = 0; i < obj->nfields; i++) {
        const struct cfg_field *f = &obj->fields[i];
        char *items;
        size_t n;

        switch (f->type) {
        case CFG_STRING:
        case CFG_NAME:
        case CFG_PATH:
        case CFG_ADDR:
            free(*(char **)(void *)(base + f->offset));
            *(char **)(void *)(base + f->offset) = NULL;
            break;
        case CFG_OBJECT: cfg_free(f->child, base + f->offset); break;
        case CFG_STRINGS:
            n = *(size_t *)(void *)(base + f->count_offset);
            for (size_t j = 0; j < n; j++)
                free((*(char ***)(void *)(base + f->offset))[j]);
            free(*(char ***)(void *)(base + f->offset));
            *(char ***)(void *)(base + f->offset) = NULL;
            *(size_t *)(void *)(base + f->count_offset) = 0;
            break;
        case CFG_SECTION:
            items = *(char **)(void *)(base + f->offset);
            if (items != NULL)
                cfg_free(f->child, items);
            free(items);
            *(char **)(void *)(base + f->offset) = NULL;
            break;
        case CFG_ARRAY:
            items = *(char **)(void *)(base + f->offset);
            n = *(size_t *)(void *)(base + f->count_offset);
            for (size_t j = 0; items != NULL && j < n; j++)
                cfg_free(f->child, items + j * f->child->size);
            free(items);
            *(char **)(void *)(base + f->offset) = NULL;
            *(size_t *)(void *)(base + f->count_offset) = 0;
            break;
        default: break;
        }
    }
}

/* ---- the reference --------------------------------------------------------------------------- */

static void
print_type_and_range(const struct cfg_field *f, FILE *out)
{
    switch (f->type) {
    case CFG_INT:
    case CFG_INT64: fprintf(out, "integer %lld..%lld", (long long)f->min, (long long)f->max); break;
    case CFG_STRING: fprintf(out, "string"); break;
    case CFG_PATH: fprintf(out, "file path"); break;
    case CFG_BOOL: fprintf(out, "boolean"); break;
    case CFG_SECTION: fprintf(out, "object, optional"); break;
    case CFG_STRINGS: fprintf(out, "array of up to %lld strings", (long long)f->count_max); break;
    case CFG_NAME: fprintf(out, "name ([A-Za-z0-9._-], 1..64)"); break;
    case CFG_ADDR: fprintf(out, "host:port"); break;
    case CFG_OBJECT: fprintf(out, "object"); break;
    case CFG_ARRAY:
        fprintf(out, "array of %lld..%lld objects", (long long)f->min, (long long)f->max);
        break;
    case CFG_ENUM:
        for (int i = 0; f->names[i] != NULL; i++)
            fprintf(out, "%s`%s`", i ? ", " : "", f->names[i]);
        break;
    }
}

static void
print_default(const struct cfg_field *f, FILE *out)
{
    if (f->flags & CFG_REQUIRED)
        fprintf(out, "required");
    else if (f->def_doc != NULL)
        fprintf(out, "%s", f->def_doc);
    else if (f->type == CFG_INT || f->type == CFG_INT64)
        fprintf(out, "`%lld`", (long long)f->def);
    else if (f->type == CFG_ENUM)
        fprintf(out, "`%s`", f->names[f->def]);
    else if (f->type == CFG_BOOL)
        fprintf(out, "`%s`", f->def ? "true" : "false");
    else if (f->def_str != NULL)
        fprintf(out, "`\"%s\"`", f->def_str);
    else
        fprintf(out, "-");
}

static void
print_rows(const struct cfg_object *obj, const char *prefix, FILE *out)
{
    for (size_t i = 0; i < obj->nfields; i++) {
        const struct cfg_field *f = &obj->fields[i];
        char path[256];

        snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", f->key);
        fprintf(out, "| `%s` | ", path);
        print_type_and_range(f, out);
        fprintf(out, " | ");
        print_default(f, out);
        fprintf(out, " | %s |\n", f->doc);
        if (f->type == CFG_ARRAY) {
            strncat(path, "[]", sizeof(path) - strlen(path) - 1);
            print_rows(f->child, path, out);
        } else if (f->type == CFG_OBJECT || f->type == CFG_SECTION) {
            print_rows(f->child, path, out);
        }
    }
}

void
cfg_print_reference(const struct cfg_object *obj, FILE *out)
{
    fprintf(out, "| key | type | default | meaning |\n|---|---|---|---|\n");
    print_rows(obj, "", out);
}
