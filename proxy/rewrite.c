/*
 * rewrite: building forwarded heads. A head is written into one contiguous reservation at the end
 * of the output evbuffer and committed once: one allocation at most, and the buffer's callbacks
 * (pace accounting on a client's output) run once per head, not once per piece.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "rewrite.h"

#define HEAD_ROOM_MAX (1u << 20) /* far above any head the limits admit */

struct out {
    char *p, *end;
    bool short_; /* the reservation was too small: the head is written again into a larger one */
};

static void
put(struct out *o, const char *s, size_t n)
{
    if ((size_t)(o->end - o->p) < n) {
        o->short_ = true;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}

static void
puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void
put_field(struct out *o, const char *name, size_t nlen, const char *value, size_t vlen)
{
    put(o, name, nlen);
    put(o, ": ", 2);
    put(o, value, vlen);
    put(o, "\r\n", 2);
}

/* Run `write` into a reservation of `room` bytes at the end of `buf` and commit what it wrote,
 * again with twice the room while it runs short. Returns 0, or -1 when out of memory. */
static int
emit(struct evbuffer *buf, size_t room, void (*write)(struct out *, const void *), const void *arg)
{
    for (; room <= HEAD_ROOM_MAX; room *= 2) {
        struct evbuffer_iovec v;
        struct out o;

        if (evbuffer_reserve_space(buf, (ev_ssize_t)room, &v, 1) != 1)
            return -1;
        o = (struct out){v.iov_base, (char *)v.iov_base + v.iov_len, false};
        write(&o, arg);
        if (!o.short_) {
            v.iov_len = (size_t)(o.p - (char *)v.iov_base);
            return evbuffer_commit_space(buf, &v, 1);
        }
    }
    return -1;
}

static void
put_msg_field(struct out *o, const struct http_msg *m, uint32_t i)
{
    const struct http_field *f = &m->fields[i];

    put_field(o, m->buf + f->name_off, f->name_len, m->buf + f->value_off, f->value_len);
}

struct name {
    const char *s; /* lower case */
    size_t n;
};
#define NAME(lit) {lit, sizeof(lit) - 1}

/* Fields trident always sets itself (the incoming ones are dropped), and credentials meant for
 * a proxy: trident is the origin's front door, not a proxy the client authenticates with. */
static const struct name own_fields[] = {
    NAME("x-forwarded-for"), NAME("x-real-ip"), NAME("x-request-id"), NAME("proxy-authorization"),
};

/* X-Forwarded-Proto and -Host: trident sets them, except that a trusted proxy's are kept (the
 * scheme and host the client used in front of it: a TLS-terminating balancer's "https"). */
static const struct name route_fields[] = {
    NAME("x-forwarded-proto"),
    NAME("x-forwarded-host"),
};

/* Fields that say who the client is or how it came, which frameworks believe (Django, Rails'
 * remote_ip, Spring, Symfony, PHP's client-IP helpers, CDN conventions): forwarded only from a
 * trusted proxy. */
static const struct name identity_fields[] = {
    NAME("forwarded"),           NAME("x-forwarded"),        NAME("forwarded-for"),
    NAME("x-forwarded-port"),    NAME("x-forwarded-prefix"), NAME("x-forwarded-server"),
    NAME("x-forwarded-scheme"),  NAME("x-forwarded-ssl"),    NAME("x-original-forwarded-for"),
    NAME("client-ip"),           NAME("x-client-ip"),        NAME("true-client-ip"),
    NAME("x-cluster-client-ip"), NAME("x-originating-ip"),   NAME("cf-connecting-ip"),
    NAME("fastly-client-ip"),
};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* `p` names `want`, in any case, with '_' read as '-'. */
static bool
name_matches(const char *p, size_t n, const struct name *want)
{
    if (n != want->n)
        return false;
    for (size_t k = 0; k < n; k++) {
        char c = (char)tolower((unsigned char)p[k]);
        if (c != want->s[k] && !(c == '_' && want->s[k] == '-'))
            return false;
    }
    return true;
}

static bool
name_in(const char *p, size_t n, const struct name *set, size_t count)
{
    for (size_t k = 0; k < count; k++)
        if (name_matches(p, n, &set[k]))
            return true;
    return false;
}

/* Fields trident replaces with its own values, or never forwards. A name with '_' for '-' is
 * the same field to a CGI, WSGI or PHP application (both become HTTP_X_FORWARDED_FOR), so such
 * aliases of the fields trident controls are dropped whoever sends them. */
static bool
request_field_dropped(const struct http_msg *m, uint32_t i, const struct req_info *info,
                      const struct rewrite_request_ctx *ctx)
{
    const struct http_field *f = &m->fields[i];
    const char *name = m->buf + f->name_off;
    size_t n = f->name_len;
    bool alias = memchr(name, '_', n) != NULL; /* from a trusted proxy too */

    return http_field_is(m, i, LIT("proxy")) || /* httpoxy: never reaches CGI's HTTP_PROXY */
           name_in(name, n, own_fields, COUNT(own_fields)) ||
           ((!ctx->trusted || alias) && (name_in(name, n, route_fields, COUNT(route_fields)) ||
                                         name_in(name, n, identity_fields, COUNT(identity_fields)))) ||
           (info->host_from_target && http_field_is(m, i, LIT("host"))) ||
           ((m->parser.http_minor == 0 || ctx->drop_expect) && http_field_is(m, i, LIT("expect")));
}

/* X-Forwarded-For: from a trusted proxy, the chain it sent, in order, then the peer's address;
 * from anyone else the peer's address alone (what a client writes there is its own claim). */
static void
put_forwarded_for(struct out *o, const struct http_msg *m, const struct rewrite_request_ctx *ctx)
{
    puts_(o, "X-Forwarded-For: ");
    for (int i = ctx->trusted ? http_find_field(m, LIT("x-forwarded-for"), 0) : -1; i >= 0;
         i = http_find_field(m, LIT("x-forwarded-for"), (uint32_t)i + 1)) {
        const struct http_field *f = &m->fields[i];
        put(o, m->buf + f->value_off, f->value_len);
        put(o, ", ", 2);
    }
    puts_(o, ctx->client_ip);
    put(o, "\r\n", 2);
}

static void
put_request_line(struct out *o, const struct http_msg *m, const struct req_info *info)
{
    puts_(o, llhttp_method_name((llhttp_method_t)m->parser.method));
    put(o, " ", 1);
    if (info->target.n == 0 || info->target.p[0] == '?')
        put(o, "/", 1); /* absolute-form with an empty path: origin-form needs one */
    put(o, info->target.p, info->target.n);
    put(o, " HTTP/1.1\r\n", 11);
}

struct request_args {
    const struct http_msg *m;
    const struct req_info *info;
    const struct rewrite_request_ctx *ctx;
};

static void
write_request(struct out *o, const void *arg)
{
    const struct request_args *a = arg;
    const struct http_msg *m = a->m;
    const struct rewrite_request_ctx *ctx = a->ctx;
    struct slice host = a->info->host;
    struct headers_hop hop;

    headers_hop_init(&hop, m);
    put_request_line(o, m, a->info);
    for (uint32_t i = 0; i < m->nfields; i++)
        if (!headers_hop_is(&hop, m, i) && !request_field_dropped(m, i, a->info, ctx))
            put_msg_field(o, m, i);
    if (host.n == 0) {
        host = (struct slice){ctx->default_host, strlen(ctx->default_host)};
        put_field(o, LIT("Host"), host.p, host.n);
    } else if (a->info->host_from_target) {
        put_field(o, LIT("Host"), host.p, host.n);
    }
    put_forwarded_for(o, m, ctx);
    if (!ctx->trusted || http_find_field(m, LIT("x-forwarded-proto"), 0) < 0)
        put_field(o, LIT("X-Forwarded-Proto"), ctx->proto, strlen(ctx->proto));
    if (!ctx->trusted || http_find_field(m, LIT("x-forwarded-host"), 0) < 0)
        put_field(o, LIT("X-Forwarded-Host"), host.p, host.n);
    put_field(o, LIT("X-Real-IP"), ctx->client, strlen(ctx->client));
    put_field(o, LIT("X-Request-Id"), ctx->request_id, strlen(ctx->request_id));
    if (ctx->chunked)
        puts_(o, "Transfer-Encoding: chunked\r\n");
    if (a->info->websocket)
        puts_(o, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
    else
        puts_(o, "Connection: keep-alive\r\n");
    put(o, "\r\n", 2);
}

int
rewrite_request(const struct http_msg *m, const struct req_info *info,
                const struct rewrite_request_ctx *ctx, struct evbuffer *out)
{
    struct request_args a = {m, info, ctx};

    return emit(out, m->len + m->nfields * 4 + 512, write_request, &a);
}

struct response_args {
    const struct http_msg *m;
    const struct rewrite_response_ctx *ctx;
};

static void
write_response(struct out *o, const void *arg)
{
    const struct response_args *a = arg;
    const struct http_msg *m = a->m;
    const struct rewrite_response_ctx *ctx = a->ctx;
    struct headers_hop hop;
    char line[32];
    int n;

    headers_hop_init(&hop, m);
    n = snprintf(line, sizeof(line), "HTTP/1.1 %03d ", m->parser.status_code);
    put(o, line, (size_t)n);
    put(o, http_msg_at(m, m->reason_off), m->reason_len); /* none kept: no buffer either */
    put(o, "\r\n", 2);
    for (uint32_t i = 0; i < m->nfields; i++) {
        /* hop-by-hop fields are dropped, except Upgrade when the response is an upgrade */
        if ((ctx->upgrade && http_field_is(m, i, LIT("upgrade"))) || !headers_hop_is(&hop, m, i))
            put_msg_field(o, m, i);
    }
    if (ctx->hsts != NULL && http_find_field(m, LIT("strict-transport-security"), 0) < 0)
        put_field(o, LIT("Strict-Transport-Security"), ctx->hsts, strlen(ctx->hsts));
    if (ctx->set_cookie != NULL)
        put_field(o, LIT("Set-Cookie"), ctx->set_cookie, strlen(ctx->set_cookie));
    if (ctx->chunked)
        puts_(o, "Transfer-Encoding: chunked\r\n");
    if (ctx->upgrade)
        puts_(o, "Connection: Upgrade\r\n");
    else if (ctx->close)
        puts_(o, "Connection: close\r\n");
    else if (ctx->http10)
        puts_(o, "Connection: keep-alive\r\n");
    put(o, "\r\n", 2);
}

int
rewrite_response(const struct http_msg *m, const struct rewrite_response_ctx *ctx,
                 struct evbuffer *out)
{
    struct response_args a = {m, ctx};

    return emit(out, m->len + m->nfields * 4 + 256, write_response, &a);
}
