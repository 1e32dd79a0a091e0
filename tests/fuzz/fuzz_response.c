/*
 * fuzz_response: the server side of an exchange without the socket. The input (after two bytes
 * that seed the split points and the client's flavour) is what a server sends in answer to a GET:
 * it is fed in pieces to the response parser, 1xx heads are relayed as conn_response.c does, and
 * the final head is framed as conn_response.c frames it (refused when unclean or ambiguous),
 * rewritten for the client with rewrite_response(), and its body moved with body_pump() (and
 * body_finish_eof() when the server's bytes run out).
 *
 * Invariants: every head written for the client has CR and LF only as line ends, parses again
 * with the same status, carries the framing trident chose, and a re-chunked body decodes to as
 * many bytes as were moved.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "body.h"
#include "fuzz_util.h"
#include "headers.h"
#include "http.h"
#include "rewrite.h"

#define MAX_HEAD    4096
#define MAX_FIELDS  32
#define MAX_INTERIM 8 /* conn_response.c's bound on 1xx responses */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The head written for the client parses again and says what trident decided. */
static void
check_head(const struct http_msg *m, const struct rewrite_response_ctx *ctx, struct evbuffer *out)
{
    size_t len = evbuffer_get_length(out);
    const char *h = (const char *)evbuffer_pullup(out, -1);
    struct evbuffer *again = evbuffer_new();
    struct http_msg r;

    fuzz_check_lines(h, len);
    http_msg_init(&r, HTTP_RESPONSE, (uint32_t)len, MAX_FIELDS + 8);
    evbuffer_add(again, h, len);
    FUZZ_ASSERT(http_msg_feed(&r, again, NULL) == HTTP_HEAD_DONE);
    FUZZ_ASSERT(evbuffer_get_length(again) == 0);
    FUZZ_ASSERT(r.parser.status_code == m->parser.status_code && r.parser.http_minor == 1);
    FUZZ_ASSERT(headers_response_is_clean(&r));
    FUZZ_ASSERT(((r.parser.flags & F_CHUNKED) != 0) == ctx->chunked);
    if (ctx->chunked)
        FUZZ_ASSERT(!(r.parser.flags & F_CONTENT_LENGTH) && headers_te_is_chunked(&r));
    if (ctx->close)
        FUZZ_ASSERT(!llhttp_should_keep_alive(&r.parser));
    http_msg_release(&r);
    evbuffer_free(again);
}

static void
final_head(struct fuzz_feed *f, struct http_msg *m, bool http10)
{
    struct rewrite_response_ctx ctx = {
        .http10 = http10,
        .hsts = fuzz_rng_next(&f->rng) & 1 ? "max-age=31536000" : NULL,
        .set_cookie = fuzz_rng_next(&f->rng) & 1 ? "trident=abc; Path=/; HttpOnly" : NULL,
    };
    enum body_kind kind;
    struct evbuffer *out;
    enum body_step st;
    struct body b;

    if (body_response_kind(m, false, &kind) < 0)
        return; /* 502 */
    ctx.chunked = !http10 && (kind == BODY_CHUNKED || kind == BODY_UNTIL_EOF);
    ctx.close = http10 && (kind == BODY_CHUNKED || kind == BODY_UNTIL_EOF);
    out = evbuffer_new();
    FUZZ_ASSERT(rewrite_response(m, &ctx, out) == 0);
    check_head(m, &ctx, out);
    evbuffer_drain(out, (size_t)-1);
    body_init(&b, kind, m->parser.content_length, ctx.chunked, UINT64_MAX, m);
    while ((st = body_pump(&b, f->in, out)) == BODY_AGAIN && fuzz_more(f))
        ;
    if (st == BODY_AGAIN && kind == BODY_UNTIL_EOF)
        body_finish_eof(&b, out); /* the server closed: the body ends here */
    if (ctx.chunked && st != BODY_ERR_SYNTAX)
        fuzz_check_rechunked(out, b.moved, st == BODY_DONE || kind == BODY_UNTIL_EOF);
    else if (kind == BODY_LENGTH)
        FUZZ_ASSERT(b.moved + b.remaining == m->parser.content_length);
    evbuffer_free(out);
}

/* A 101 to a WebSocket upgrade: the head goes out with Upgrade kept, then the tunnel. */
static void
switching_protocols(const struct http_msg *m)
{
    struct rewrite_response_ctx ctx = {.upgrade = true};
    struct evbuffer *out = evbuffer_new();

    FUZZ_ASSERT(rewrite_response(m, &ctx, out) == 0);
    fuzz_check_lines((const char *)evbuffer_pullup(out, -1), evbuffer_get_length(out));
    evbuffer_free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_feed f = {.data = data, .size = size, .off = 2};
    struct http_msg m;
    bool http10;

    if (size < 2)
        return 0;
    fuzz_rng_init(&f.rng, (uint32_t)data[0] | (uint32_t)data[1] << 8);
    http10 = (data[0] & 0x80) != 0; /* the client that asked spoke HTTP/1.0 */
    f.in = evbuffer_new();
    http_msg_init(&m, HTTP_RESPONSE, MAX_HEAD, MAX_FIELDS);
    for (int interim = 0; interim <= MAX_INTERIM; interim++) {
        enum http_step st;
        int status;

        while ((st = http_msg_feed(&m, f.in, NULL)) == HTTP_AGAIN && fuzz_more(&f))
            ;
        if (st != HTTP_HEAD_DONE || m.parser.http_major != 1)
            break; /* 502, or the server is still silent */
        status = m.parser.status_code;
        if (status >= 100 && status < 200 && !headers_response_is_clean(&m))
            break; /* relay_interim() and on_switching_protocols(): 502 */
        if (status == 101) {
            switching_protocols(&m);
            break;
        }
        if (status < 100 || status >= 200) { /* read_heads(): anything but 1xx is final */
            final_head(&f, &m, http10);
            break;
        }
        if (!http10) { /* relay_interim() */
            struct rewrite_response_ctx ctx = {0};
            struct evbuffer *out = evbuffer_new();
            FUZZ_ASSERT(rewrite_response(&m, &ctx, out) == 0);
            fuzz_check_lines((const char *)evbuffer_pullup(out, -1), evbuffer_get_length(out));
            evbuffer_free(out);
        }
        http_msg_reset(&m);
    }
    http_msg_release(&m);
    evbuffer_free(f.in);
    return 0;
}
