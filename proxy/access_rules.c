/*
 * access_rules: path normalisation (RFC 3986 sections 2.3, 6.2.2 and 5.2.4) and the first-match
 * access rules. See access_rules.h.
 */
#include <string.h>
#include <strings.h>

#include "access_rules.h"
#include "cidr.h"
#include "headers.h"
#include "hex.h"

static bool
unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

static int
refuse(const char **detail, const char *why, int status)
{
    *detail = why;
    return status;
}

/* Percent-decoding of unreserved characters; every other escape kept, in upper case. */
static int
decode(const char *in, size_t len, char *out, size_t *outlen, bool *encoded_slash,
       const char **detail)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (o + 3 >= ACCESS_PATH_MAX)
            return refuse(detail, "path too long", 414);
        if (c == '\\') {
            c = 0x5c; /* some servers take a backslash for a slash: treat it as an encoded one */
        } else if (c == '%') {
            int hi = i + 2 < len ? hex_value(in[i + 1]) : -1;
            int lo = i + 2 < len ? hex_value(in[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return refuse(detail, "bad percent-encoding", 400);
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
            if (c == 0)
                return refuse(detail, "encoded NUL", 403);
            if (unreserved(c)) {
                out[o++] = (char)c;
                continue;
            }
        } else {
            out[o++] = (char)c;
            continue;
        }
        if (c == '/' || c == 0x5c)
            *encoded_slash = true;
        out[o++] = '%';
        out[o++] = hex[c >> 4];
        out[o++] = hex[c & 15];
    }
    *outlen = o;
    return 0;
}

/* Merge empty segments and resolve "." and ".." in a decoded path (which starts with '/'). */
static int
resolve(const char *in, size_t len, char *out, const char **detail)
{
    size_t o = 0, i = 0;
    bool trailing = false;

    while (i < len) {
        size_t start, n;
        while (i < len && in[i] == '/')
            i++;
        start = i;
        while (i < len && in[i] != '/')
            i++;
        n = i - start;
        trailing = i == len && (n == 0 || (n == 1 && in[start] == '.') ||
                                (n == 2 && in[start] == '.' && in[start + 1] == '.'));
        if (n == 0 || (n == 1 && in[start] == '.'))
            continue;
        if (n == 2 && in[start] == '.' && in[start + 1] == '.') {
            if (o == 0)
                return refuse(detail, "path climbs above the root", 403);
            while (o > 0 && out[--o] != '/')
                ;
            continue;
        }
        out[o++] = '/';
        memcpy(out + o, in + start, n);
        o += n;
    }
    if (o == 0 || trailing)
        out[o++] = '/';
    out[o] = '\0';
    return 0;
}

int
access_normalize_path(const char *target, size_t len, char *out, bool *encoded_slash,
                      const char **detail)
{
    char decoded[ACCESS_PATH_MAX];
    size_t n = 0;
    const char *q = memchr(target, '?', len);
    int status;

    *encoded_slash = false;
    *detail = NULL;
    if (q != NULL)
        len = (size_t)(q - target);
    if (len == 0 || target[0] != '/') { /* "*" (OPTIONS): the rules see the root */
        memcpy(out, "/", 2);
        return 0;
    }
    status = decode(target, len, decoded, &n, encoded_slash, detail);
    return status != 0 ? status : resolve(decoded, n, out, detail);
}

/* ---- rules -------------------------------------------------------------------------------- */

static bool
listener_matches(const struct route_match *r, const struct listener_conf *l)
{
    if (r->nlisteners == 0)
        return true;
    for (size_t i = 0; i < r->nlisteners; i++)
        if ((l->name != NULL && strcmp(r->listeners[i], l->name) == 0) ||
            strcmp(r->listeners[i], l->address) == 0)
            return true;
    return false;
}

/* Host without its port and a trailing dot. */
static size_t
host_name_len(const char *h, size_t n)
{
    n = headers_host_without_port(h, n);
    if (n > 0 && h[n - 1] == '.')
        n--;
    return n;
}

static bool
host_matches(const struct route_match *r, const char *host, size_t len)
{
    if (r->nhosts == 0)
        return true;
    if (host == NULL)
        return false; /* names no host: matches no rule's (each is 1..253 characters) */
    len = host_name_len(host, len);
    for (size_t i = 0; i < r->nhosts; i++) {
        const char *want = r->hosts[i];
        size_t wn = strlen(want);
        if (want[0] == '*' && want[1] == '.') { /* "*.x": any name ending in ".x" */
            if (len > wn - 1 && strncasecmp(host + len - (wn - 1), want + 1, wn - 1) == 0)
                return true;
        } else if (len == wn && strncasecmp(host, want, wn) == 0) {
            return true;
        }
    }
    return false;
}

bool
access_route_matches(const struct route_match *m, const struct access_request *r,
                     const char *path)
{
    return listener_matches(m, r->listener) && host_matches(m, r->host, r->host_len) &&
           strncmp(path, m->path_prefix, strlen(m->path_prefix)) == 0;
}

static const struct access_rule_conf *
find_rule(const struct access_conf *a, const struct access_request *r, const char *path)
{
    for (size_t i = 0; i < a->nrules; i++)
        if (access_route_matches(&a->rules[i].where, r, path))
            return &a->rules[i];
    return NULL;
}

static bool
method_allowed(const struct access_rule_conf *rule, const char *method)
{
    if (rule->nmethods == 0)
        return true;
    for (size_t i = 0; i < rule->nmethods; i++)
        if (strcmp(rule->methods[i], method) == 0)
            return true;
    return false;
}

static int
verdict(struct access_verdict *v, int status, enum reason why, const char *detail)
{
    v->status = status;
    v->why = why;
    v->detail = detail;
    return status;
}

int
access_check(const struct access_conf *a, const struct access_request *r,
             int64_t default_max_body, struct access_verdict *v)
{
    char path[ACCESS_PATH_MAX];
    const char *detail;
    bool encoded_slash;
    int status = access_normalize_path(r->target, r->target_len, path, &encoded_slash, &detail);

    if (status != 0) {
        *v = (struct access_verdict){.max_request_body = default_max_body};
        return verdict(v, status,
                       status == 403   ? REASON_PATH_REFUSED
                       : status == 414 ? REASON_URI_TOO_LONG
                                       : REASON_BAD_REQUEST,
                       detail);
    }
    return access_check_path(a, r, path, encoded_slash, default_max_body, v);
}

int
access_check_path(const struct access_conf *a, const struct access_request *r, const char *path,
                  bool encoded_slash, int64_t default_max_body, struct access_verdict *v)
{
    const struct access_rule_conf *rule;
    bool slash_ok;

    *v = (struct access_verdict){.max_request_body = default_max_body};
    rule = find_rule(a, r, path);
    slash_ok = rule != NULL && rule->allow_encoded_slash >= 0 ? rule->allow_encoded_slash == 1
                                                              : a->allow_encoded_slash;
    v->rule = rule != NULL ? rule->name : NULL;
    if (encoded_slash && !slash_ok)
        return verdict(v, 403, REASON_PATH_REFUSED, "encoded slash or backslash");
    if (rule == NULL)
        return 0;
    if (rule->ndeny > 0 && cidr_match_any(rule->deny_nets, rule->ndeny, r->client))
        return verdict(v, 403, REASON_ACCESS_DENIED, "client address denied");
    if (rule->nallow > 0 && !cidr_match_any(rule->allow_nets, rule->nallow, r->client))
        return verdict(v, 403, REASON_ACCESS_DENIED, "client address not allowed");
    if (!method_allowed(rule, r->method))
        return verdict(v, 405, REASON_METHOD_NOT_ALLOWED, "method not allowed");
    if (rule->max_request_body >= 0)
        v->max_request_body = rule->max_request_body;
    return 0;
}
