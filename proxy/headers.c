/*
 * headers: what a request head means and whether it may be forwarded. The rules cited are from
 * RFC 9110 (semantics) and RFC 9112 (HTTP/1.1 messages); each refusal names its reason.
 */
#include <string.h>

#include "headers.h"
#include "reqid.h"

static struct slice
field_name(const struct http_msg *m, uint32_t i)
{
    return (struct slice){m->buf + m->fields[i].name_off, m->fields[i].name_len};
}

static struct slice
field_value(const struct http_msg *m, uint32_t i)
{
    return (struct slice){m->buf + m->fields[i].value_off, m->fields[i].value_len};
}

static bool
is_ows(char c)
{
    return c == ' ' || c == '\t';
}

bool
headers_next_token(const char *s, size_t n, size_t *pos, struct slice *tok)
{
    while (*pos < n) {
        size_t start = *pos, end = start;

        while (end < n && s[end] != ',')
            end++;
        *pos = end + 1;
        while (start < end && is_ows(s[start]))
            start++;
        while (end > start && is_ows(s[end - 1]))
            end--;
        if (end > start) {
            *tok = (struct slice){s + start, end - start};
            return true;
        }
    }
    return false;
}

bool
headers_list_has(const struct http_msg *m, const char *name, size_t name_len, const char *token,
                 size_t token_len)
{
    for (int i = http_find_field(m, name, name_len, 0); i >= 0;
         i = http_find_field(m, name, name_len, (uint32_t)i + 1)) {
        struct slice v = field_value(m, (uint32_t)i), tok;
        size_t pos = 0;

        while (headers_next_token(v.p, v.n, &pos, &tok))
            if (slice_eq_nocase(tok, token, token_len))
                return true;
    }
    return false;
}

/* The fields hop-by-hop by name (RFC 9110 section 7.6.1, and the proxy-connection of old). */
static bool
hop_by_name(struct slice name)
{
    switch (name.n) {
    case 2: return slice_eq_nocase(name, LIT("te"));
    case 7: return slice_eq_nocase(name, LIT("trailer")) || slice_eq_nocase(name, LIT("upgrade"));
    case 10:
        return slice_eq_nocase(name, LIT("connection")) || slice_eq_nocase(name, LIT("keep-alive"));
    case 16: return slice_eq_nocase(name, LIT("proxy-connection"));
    case 17: return slice_eq_nocase(name, LIT("transfer-encoding"));
    default: return false;
    }
}

void
headers_hop_init(struct headers_hop *h, const struct http_msg *m)
{
    h->n = 0;
    h->more = false;
    for (int i = http_find_field(m, LIT("connection"), 0); i >= 0 && !h->more;
         i = http_find_field(m, LIT("connection"), (uint32_t)i + 1)) {
        struct slice v = field_value(m, (uint32_t)i), tok;
        size_t pos = 0;

        while (headers_next_token(v.p, v.n, &pos, &tok)) {
            if (h->n == HEADERS_HOP_OPTIONS) {
                h->more = true;
                break;
            }
            h->options[h->n++] = tok;
        }
    }
}

bool
headers_hop_is(const struct headers_hop *h, const struct http_msg *m, uint32_t i)
{
    struct slice name = field_name(m, i);

    if (hop_by_name(name))
        return true;
    if ((h->n == 0 && !h->more) || slice_eq_nocase(name, LIT("content-length")) ||
        slice_eq_nocase(name, LIT("host")))
        return false;
    if (h->more)
        return headers_list_has(m, LIT("connection"), name.p, name.n);
    for (unsigned k = 0; k < h->n; k++)
        if (slice_eq_nocase(name, h->options[k].p, h->options[k].n))
            return true;
    return false;
}

bool
headers_te_is_chunked(const struct http_msg *m)
{
    unsigned codings = 0;
    bool chunked = false;

    for (int i = http_find_field(m, LIT("transfer-encoding"), 0); i >= 0;
         i = http_find_field(m, LIT("transfer-encoding"), (uint32_t)i + 1)) {
        struct slice v = field_value(m, (uint32_t)i), tok;
        size_t pos = 0;

        while (headers_next_token(v.p, v.n, &pos, &tok)) {
            codings++;
            chunked = slice_eq_nocase(tok, LIT("chunked"));
        }
    }
    return codings == 1 && chunked;
}

/* Field values may hold HTAB, SP, visible ASCII and obs-text; never CR, LF, NUL or other controls
 * (RFC 9110 section 5.5). llhttp checks this too; a second look costs little and guards against
 * a parser mode change. */
static bool
value_is_clean(struct slice v)
{
    for (size_t i = 0; i < v.n; i++) {
        unsigned char c = (unsigned char)v.p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* reg-name / IP-literal characters and a port (RFC 3986 section 3.2.2); no userinfo. */
static bool
host_is_valid(struct slice h)
{
    static const char extra[] = ".-_:[]~!$&'()*+,;=%";

    if (h.n == 0)
        return false;
    for (size_t i = 0; i < h.n; i++) {
        char c = h.p[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (c == '\0' || strchr(extra, c) == NULL)
            return false;
    }
    return true;
}

/* Absolute-form (RFC 9112 section 3.2.2): the authority replaces Host, the rest is the target. */
static int
split_absolute_form(struct slice t, struct req_info *info)
{
    size_t skip, end;

    if (t.n > 7 && slice_eq_nocase((struct slice){t.p, 7}, LIT("http://")))
        skip = 7;
    else if (t.n > 8 && slice_eq_nocase((struct slice){t.p, 8}, LIT("https://")))
        skip = 8;
    else
        return -1;
    for (end = skip; end < t.n; end++)
        if (t.p[end] == '/' || t.p[end] == '?' || t.p[end] == '#')
            break;
    info->host = (struct slice){t.p + skip, end - skip};
    info->host_from_target = true;
    info->target = (struct slice){t.p + end, t.n - end};
    return host_is_valid(info->host) ? 0 : -1;
}

static int
check_target(const struct http_msg *m, struct req_info *info)
{
    struct slice t = {m->buf + m->target_off, m->target_len};

    info->target = t;
    /* A fragment is never part of a request target (RFC 9112 section 3.2). Servers that cut it
     * off would see a path other than the one access rules and rate limits judged
     * ("/admin/x#/../../y" is "/y" here, "/admin/x" there): refused, as HAProxy does. */
    if (memchr(t.p, '#', t.n) != NULL)
        return -1;
    if (t.n > 0 && t.p[0] == '/')
        return 0;
    if (t.n == 1 && t.p[0] == '*' && m->parser.method == HTTP_OPTIONS)
        return 0;
    if (split_absolute_form(t, info) < 0)
        return -1;
    /* RFC 9112 section 3.2.4: OPTIONS for a whole server is forwarded as "*" */
    if (info->target.n == 0 && m->parser.method == HTTP_OPTIONS)
        info->target = (struct slice){"*", 1};
    return 0;
}

/* One pass over the fields: controls in values, Host count, Expect, TE on HTTP/1.0, request id. */
static int
scan_fields(const struct http_msg *m, struct req_info *info, int *hosts, enum reason *why)
{
    bool http10 = m->parser.http_minor == 0;
    int lengths = 0, codings = 0;

    for (uint32_t i = 0; i < m->nfields; i++) {
        struct slice v = field_value(m, i);

        if (!value_is_clean(v) || m->fields[i].name_len == 0) /* ": v" names nothing */
            return 400;
        if (http_field_is(m, i, LIT("host"))) {
            if ((*hosts)++ == 0)
                info->host = v;
        } else if (http_field_is(m, i, LIT("content-length"))) {
            lengths++;
        } else if (http_field_is(m, i, LIT("transfer-encoding"))) {
            if (http10)
                return 400; /* RFC 9112 section 6.1: framing of such a message is faulty */
            codings++;
        } else if (http_field_is(m, i, LIT("expect")) && !http10) {
            /* RFC 9110 section 10.1.1: 100-continue is the only expectation defined */
            if (!slice_eq_nocase(v, LIT("100-continue"))) {
                *why = REASON_EXPECTATION_FAILED;
                return 417;
            }
            info->expect_continue = true;
        } else if (http_field_is(m, i, LIT("x-request-id")) && info->request_id < 0 &&
                   reqid_valid(v.p, v.n)) {
            info->request_id = (int)i;
        }
    }
    /* RFC 9112 section 6.3: Content-Length with Transfer-Encoding, several Content-Length
     * fields, or a coding other than chunked make the body's length unreliable: the classic
     * request-smuggling shapes. llhttp refuses most of them; this decides without it. */
    if (lengths > 1 || (lengths > 0 && codings > 0) || (codings > 0 && !headers_te_is_chunked(m)))
        return 400;
    /* The body is framed by llhttp's reading of the fields: where it and this reading differ
     * ("chunked" followed by a tab, or continued on an empty folded line, is chunked here but
     * not to llhttp 8), the request would go upstream without its body and the body after it
     * as a second request. Refuse any disagreement. */
    if ((codings > 0) != ((m->parser.flags & F_CHUNKED) != 0))
        return 400;
    return 0;
}

bool
headers_response_is_clean(const struct http_msg *m)
{
    /* RFC 9112 section 4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ). llhttp 8 lets other
     * control bytes (NUL among them) through there, and they would reach the client as sent. */
    if (m->reason_len > 0 && !value_is_clean((struct slice){m->buf + m->reason_off, m->reason_len}))
        return false;
    for (uint32_t i = 0; i < m->nfields; i++)
        if (m->fields[i].name_len == 0 || !value_is_clean(field_value(m, i)))
            return false;
    return true;
}

int
headers_check_request(const struct http_msg *m, struct req_info *info, enum reason *why)
{
    int hosts = 0, status;

    memset(info, 0, sizeof(*info));
    info->request_id = -1;
    *why = REASON_BAD_REQUEST;
    if (m->parser.http_major != 1)
        return 400;
    if (m->parser.method == HTTP_CONNECT) {
        *why = REASON_METHOD_NOT_ALLOWED;
        return 405;
    }
    status = scan_fields(m, info, &hosts, why);
    if (status != 0)
        return status;
    /* RFC 9112 section 3.2: an HTTP/1.1 request carries exactly one Host; never two. */
    if (hosts > 1 || (hosts == 0 && m->parser.http_minor >= 1))
        return 400;
    if (hosts == 1 && !host_is_valid(info->host))
        return 400;
    if (check_target(m, info) < 0)
        return 400;
    /* Only WebSocket is tunnelled: h2c and other upgrades are forwarded as plain requests with
     * the Upgrade field removed, so nothing but RFC 6455 ever becomes an opaque tunnel. */
    info->websocket = m->parser.method == HTTP_GET && m->parser.http_minor >= 1 &&
                      headers_list_has(m, LIT("connection"), LIT("upgrade")) &&
                      headers_list_has(m, LIT("upgrade"), LIT("websocket"));
    *why = REASON_NONE;
    return 0;
}

size_t
headers_host_without_port(const char *host, size_t len)
{
    for (size_t i = len; i-- > 0 && host[i] != ']';)
        if (host[i] == ':')
            return i;
    return len;
}
