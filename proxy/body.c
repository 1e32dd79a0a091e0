/*
 * body: the framing arithmetic of message bodies, on evbuffers only.
 */
#include <stdio.h>

#include "body.h"
#include "headers.h"

void
body_init(struct body *b, enum body_kind kind, uint64_t length, bool out_chunked, uint64_t limit,
          struct http_msg *msg)
{
    *b = (struct body){
        .kind = kind,
        .out_chunked = out_chunked,
        .remaining = kind == BODY_LENGTH ? length : 0,
        .limit = limit,
        .msg = msg,
    };
}

static void
put_chunk_size(struct evbuffer *out, size_t n)
{
    char line[24];
    int len = snprintf(line, sizeof(line), "%zx\r\n", n);

    evbuffer_add(out, line, (size_t)len);
}

/* Receives decoded bytes from the chunked parser (http_msg sink). */
static int
chunk_sink(void *arg, const char *at, size_t len)
{
    struct body *b = arg;

    if (b->moved + len > b->limit)
        return -1;
    b->moved += len;
    if (b->out_chunked)
        put_chunk_size(b->out, len);
    evbuffer_add(b->out, at, len);
    if (b->out_chunked)
        evbuffer_add(b->out, "\r\n", 2);
    return 0;
}

static enum body_step
pump_chunked(struct body *b, struct evbuffer *in, struct evbuffer *out)
{
    enum http_step st;

    b->msg->sink = chunk_sink;
    b->msg->sink_arg = b;
    b->out = out;
    st = http_msg_feed(b->msg, in, &b->wire_in);
    b->out = NULL;
    switch (st) {
    case HTTP_AGAIN: return BODY_AGAIN;
    case HTTP_MSG_DONE:
        if (b->out_chunked)
            evbuffer_add(out, "0\r\n\r\n", 5); /* trailers are not forwarded */
        return BODY_DONE;
    case HTTP_HEAD_DONE: /* cannot happen: the head was complete before the body */
    case HTTP_ERROR: break;
    }
    return b->msg->error == HTTP_ERR_SINK ? BODY_ERR_LIMIT : BODY_ERR_SYNTAX;
}

/* Length and until-close bodies: move whole chains, framing them when needed. */
static enum body_step
pump_raw(struct body *b, struct evbuffer *in, struct evbuffer *out)
{
    size_t avail = evbuffer_get_length(in);
    uint64_t want = avail;
    int moved;

    if (b->kind == BODY_LENGTH && want > b->remaining)
        want = b->remaining;
    if (want == 0)
        return b->kind == BODY_LENGTH && b->remaining == 0 ? BODY_DONE : BODY_AGAIN;
    if (b->moved + want > b->limit)
        return BODY_ERR_LIMIT;
    if (b->out_chunked)
        put_chunk_size(out, (size_t)want);
    moved = evbuffer_remove_buffer(in, out, (size_t)want);
    if (moved < 0)
        return BODY_ERR_SYNTAX;
    if (b->out_chunked)
        evbuffer_add(out, "\r\n", 2);
    b->moved += (uint64_t)moved;
    b->wire_in += (uint64_t)moved;
    if (b->kind == BODY_LENGTH) {
        b->remaining -= (uint64_t)moved;
        if (b->remaining == 0)
            return BODY_DONE;
    }
    return BODY_AGAIN;
}

enum body_step
body_pump(struct body *b, struct evbuffer *in, struct evbuffer *out)
{
    switch (b->kind) {
    case BODY_NONE: return BODY_DONE;
    case BODY_CHUNKED: return pump_chunked(b, in, out);
    case BODY_LENGTH:
    case BODY_UNTIL_EOF: return pump_raw(b, in, out);
    }
    return BODY_ERR_SYNTAX;
}

void
body_finish_eof(struct body *b, struct evbuffer *out)
{
    if (b->kind == BODY_UNTIL_EOF && b->out_chunked)
        evbuffer_add(out, "0\r\n\r\n", 5);
}

int
body_response_kind(const struct http_msg *resp, bool head_request, enum body_kind *kind)
{
    const llhttp_t *p = &resp->parser;
    int status = p->status_code;

    if (!headers_response_is_clean(resp))
        return -1;
    if (head_request || status == 204 || status == 304) {
        *kind = BODY_NONE;
        return 0;
    }
    if (p->flags & F_TRANSFER_ENCODING) {
        if ((p->flags & F_CONTENT_LENGTH) || !headers_te_is_chunked(resp) ||
            !(p->flags & F_CHUNKED))
            return -1;
        *kind = BODY_CHUNKED;
    } else if (p->flags & F_CONTENT_LENGTH) {
        *kind = p->content_length > 0 ? BODY_LENGTH : BODY_NONE;
    } else {
        *kind = BODY_UNTIL_EOF;
    }
    return 0;
}
