/*
 * headers: reading the meaning of a parsed request head: token lists (Connection, Upgrade,
 * Expect), Host and the request target, hop-by-hop fields, X-Request-Id. The checks here decide
 * whether a request may go upstream at all (RFC 9110, RFC 9112). Pure functions over an http_msg:
 * no sockets, no config beyond what is passed in. Rewriting lives in rewrite.h.
 */
#ifndef TRIDENT_HEADERS_H
#define TRIDENT_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

#include "http.h"
#include "reason.h"

struct slice {
    const char *p;
    size_t n;
};

/* What a request head says about how to forward it. Slices point into the http_msg's buffer. */
struct req_info {
    struct slice target;     /* origin-form target ("/path?q"), also from an absolute-form one */
    struct slice host;       /* Host value, or the authority of an absolute-form target */
    bool host_from_target;   /* absolute-form: Host is replaced by the target's authority */
    bool websocket;          /* a WebSocket upgrade that may be tunnelled after a 101 */
    bool expect_continue;    /* Expect: 100-continue from an HTTP/1.1 client */
    int request_id;          /* index of a valid X-Request-Id field, or -1 */
};

/* Check a complete request head and fill *info. Returns 0 when the request may be forwarded, or
 * the status to answer with (400, 405, 417) and the reason in *why. */
int headers_check_request(const struct http_msg *m, struct req_info *info, enum reason *why);

/* Iterate a comma-separated token list (RFC 9110 section 5.6.1): returns true and sets *tok to
 * the next non-empty element with surrounding whitespace removed, advancing *pos. */
bool headers_next_token(const char *s, size_t n, size_t *pos, struct slice *tok);

/* The length of a Host value without its port (a ':' outside an IPv6 literal's brackets). */
size_t headers_host_without_port(const char *host, size_t len);

/* Whether any field named `name` holds `token` in its comma-separated list (case-insensitive). */
bool headers_list_has(const struct http_msg *m, const char *name, size_t name_len,
                      const char *token, size_t token_len);

/* Whether the Transfer-Encoding fields, taken together, name exactly one coding: "chunked".
 * trident forwards no other coding: re-framing the body would silently drop it. */
bool headers_te_is_chunked(const struct http_msg *m);

/* Whether a response head is fit to relay: every field has a name, and neither a value nor the
 * reason phrase holds a control character. */
bool headers_response_is_clean(const struct http_msg *m);

/* The fields of a head that must not be forwarded: hop-by-hop fields (RFC 9110 section 7.6.1) and
 * those named by a Connection option. Content-Length and Host are never dropped through
 * Connection, so a client cannot change how a message is framed or routed by listing them. The
 * Connection options are read once per head (headers_hop_init), not once per field. */
#define HEADERS_HOP_OPTIONS 8
struct headers_hop {
    struct slice options[HEADERS_HOP_OPTIONS]; /* into the message's buffer */
    unsigned n;
    bool more; /* more options than options[] holds: the message is searched for each field */
};

void headers_hop_init(struct headers_hop *h, const struct http_msg *m);

/* Whether field i of m (the message h was made from) must not be forwarded. */
bool headers_hop_is(const struct headers_hop *h, const struct http_msg *m, uint32_t i);

static inline bool
slice_eq_nocase(struct slice s, const char *lit, size_t n)
{
    if (s.n != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char a = s.p[i], b = lit[i];
        if (a >= 'A' && a <= 'Z')
            a = (char)(a + 32);
        if (b >= 'A' && b <= 'Z')
            b = (char)(b + 32);
        if (a != b)
            return false;
    }
    return true;
}

#define LIT(s) (s), (sizeof(s) - 1)

#endif
