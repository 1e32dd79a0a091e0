/*
 * rewrite: building forwarded heads. The output is appended piece by piece to an evbuffer that was
 * expanded once for the whole head, so a head costs one allocation at most.
 */
#include <stdio.h>
#include <string.h>

#include "rewrite.h"

struct out {
    struct evbuffer *buf;
    int failed;
};

static void
put(struct out *o, const char *s, size_t n)
{
    if (n > 0 && evbuffer_add(o->buf, s, n) < 0)
        o->failed = 1;
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

static void
put_msg_field(struct out *o, const struct http_msg *m, uint32_t i)
{
    const struct http_field *f = &m->fields[i];

    put_field(o, m->buf + f->name_off, f->name_len, m->buf + f->value_off, f->value_len);
}

/* Fields trident replaces with its own values, or never forwards. */
static bool
request_field_replaced(const struct http_msg *m, uint32_t i, const struct req_info *info,
                       const struct rewrite_request_ctx *ctx)
{
    return http_field_is(m, i, LIT("proxy")) || /* httpoxy: never reaches CGI's HTTP_PROXY */
           http_field_is(m, i, LIT("x-forwarded-for")) ||
           http_field_is(m, i, LIT("x-forwarded-proto")) ||
           http_field_is(m, i, LIT("x-forwarded-host")) ||
           http_field_is(m, i, LIT("x-request-id")) ||
           (info->host_from_target && http_field_is(m, i, LIT("host"))) ||
           ((m->parser.http_minor == 0 || ctx->drop_expect) && http_field_is(m, i, LIT("expect")));
}

/* X-Forwarded-For: every value the client sent, in order, then the client's address. */
static void
put_forwarded_for(struct out *o, const struct http_msg *m, const char *client_ip)
{
    puts_(o, "X-Forwarded-For: ");
    for (int i = http_find_field(m, LIT("x-forwarded-for"), 0); i >= 0;
         i = http_find_field(m, LIT("x-forwarded-for"), (uint32_t)i + 1)) {
        const struct http_field *f = &m->fields[i];
        put(o, m->buf + f->value_off, f->value_len);
        put(o, ", ", 2);
    }
    puts_(o, client_ip);
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

int
rewrite_request(const struct http_msg *m, const struct req_info *info,
                const struct rewrite_request_ctx *ctx, struct evbuffer *out)
{
    struct out o = {out, 0};
    struct slice host = info->host;

    evbuffer_expand(out, m->len + m->nfields * 4 + 256);
    put_request_line(&o, m, info);
    for (uint32_t i = 0; i < m->nfields; i++)
        if (!headers_is_hop_by_hop(m, i) && !request_field_replaced(m, i, info, ctx))
            put_msg_field(&o, m, i);
    if (host.n == 0) {
        host = (struct slice){ctx->default_host, strlen(ctx->default_host)};
        put_field(&o, LIT("Host"), host.p, host.n);
    } else if (info->host_from_target) {
        put_field(&o, LIT("Host"), host.p, host.n);
    }
    put_forwarded_for(&o, m, ctx->client_ip);
    put_field(&o, LIT("X-Forwarded-Proto"), ctx->proto, strlen(ctx->proto));
    put_field(&o, LIT("X-Forwarded-Host"), host.p, host.n);
    put_field(&o, LIT("X-Request-Id"), ctx->request_id, strlen(ctx->request_id));
    if (ctx->chunked)
        puts_(&o, "Transfer-Encoding: chunked\r\n");
    if (info->websocket)
        puts_(&o, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
    else
        puts_(&o, "Connection: keep-alive\r\n");
    put(&o, "\r\n", 2);
    return o.failed ? -1 : 0;
}

int
rewrite_response(const struct http_msg *m, const struct rewrite_response_ctx *ctx,
                 struct evbuffer *out)
{
    struct out o = {out, 0};
    char line[32];
    int n;

    evbuffer_expand(out, m->len + m->nfields * 4 + 128);
    n = snprintf(line, sizeof(line), "HTTP/1.1 %03d ", m->parser.status_code);
    put(&o, line, (size_t)n);
    put(&o, http_msg_at(m, m->reason_off), m->reason_len); /* none kept: no buffer either */
    put(&o, "\r\n", 2);
    for (uint32_t i = 0; i < m->nfields; i++) {
        /* hop-by-hop fields are dropped, except Upgrade when the response is an upgrade */
        if ((ctx->upgrade && http_field_is(m, i, LIT("upgrade"))) || !headers_is_hop_by_hop(m, i))
            put_msg_field(&o, m, i);
    }
    if (ctx->hsts != NULL && http_find_field(m, LIT("strict-transport-security"), 0) < 0)
        put_field(&o, LIT("Strict-Transport-Security"), ctx->hsts, strlen(ctx->hsts));
    if (ctx->set_cookie != NULL)
        put_field(&o, LIT("Set-Cookie"), ctx->set_cookie, strlen(ctx->set_cookie));
    if (ctx->chunked)
        puts_(&o, "Transfer-Encoding: chunked\r\n");
    if (ctx->upgrade)
        puts_(&o, "Connection: Upgrade\r\n");
    else if (ctx->close)
        puts_(&o, "Connection: close\r\n");
    else if (ctx->http10)
        puts_(&o, "Connection: keep-alive\r\n");
    put(&o, "\r\n", 2);
    return o.failed ? -1 : 0;
}
