/*
 * reason: the string table behind enum reason. Names are part of the log format: keep them stable.
 */
#include "reason.h"

static const char *const names[REASON_COUNT] = {
    [REASON_NONE] = "none",
    [REASON_BAD_REQUEST] = "bad_request",
    [REASON_HEAD_TOO_LARGE] = "head_too_large",
    [REASON_TOO_MANY_HEADERS] = "too_many_headers",
    [REASON_BODY_TOO_LARGE] = "body_too_large",
    [REASON_METHOD_NOT_ALLOWED] = "method_not_allowed",
    [REASON_EXPECTATION_FAILED] = "expectation_failed",
    [REASON_CLIENT_TIMEOUT] = "client_timeout",
    [REASON_CLIENT_ABORTED] = "client_aborted",
    [REASON_CLIENT_SEND_TIMEOUT] = "client_send_timeout",
    [REASON_NO_SERVER] = "no_server",
    [REASON_UPSTREAM_REFUSED] = "upstream_refused",
    [REASON_UPSTREAM_CONNECT_TIMEOUT] = "upstream_connect_timeout",
    [REASON_UPSTREAM_TIMEOUT] = "upstream_timeout",
    [REASON_UPSTREAM_RESET] = "upstream_reset",
    [REASON_UPSTREAM_BAD_RESPONSE] = "upstream_bad_response",
    [REASON_UPSTREAM_SEND_TIMEOUT] = "upstream_send_timeout",
    [REASON_RESOURCE] = "resource",
    [REASON_TLS_HANDSHAKE_TIMEOUT] = "tls_handshake_timeout",
    [REASON_TLS_PROTOCOL] = "tls_protocol",
    [REASON_TLS_NO_SHARED_CIPHER] = "tls_no_shared_cipher",
    [REASON_TLS_NOT_TLS] = "tls_not_tls",
    [REASON_TLS_UNKNOWN_SNI] = "tls_unknown_sni",
    [REASON_TLS_ERROR] = "tls_error",
    [REASON_UPSTREAM_TLS] = "upstream_tls",
    [REASON_TUNNEL_IDLE] = "tunnel_idle",
    [REASON_SERVER_DOWN] = "server_down",
    [REASON_RETRIED] = "retried",
    [REASON_HEDGED] = "hedged",
    [REASON_SHUTDOWN] = "shutdown",
    [REASON_ACCESS_DENIED] = "access_denied",
    [REASON_PATH_REFUSED] = "path_refused",
    [REASON_URI_TOO_LONG] = "uri_too_long",
    [REASON_RATE_LIMITED] = "rate_limited",
    [REASON_PANIC] = "panic",
    [REASON_PROXY_HEADER] = "proxy_header",
    [REASON_IP_CONN_LIMIT] = "ip_conn_limit",
    [REASON_IP_RATE_LIMIT] = "ip_rate_limit",
};

const char *
reason_name(enum reason r)
{
    return (unsigned)r < REASON_COUNT ? names[r] : "unknown";
}
