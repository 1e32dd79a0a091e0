/*
 * body: moving one message body from an input evbuffer to an output evbuffer. The input framing is
 * a length, chunked, or "until the connection closes"; the output may add chunked framing (a body
 * of unknown length to an HTTP/1.1 client) or drop it (a chunked body to an HTTP/1.0 client).
 * Length and until-close bodies move as evbuffer chains without copying or parsing; chunked bodies
 * are decoded by llhttp and re-encoded, which also normalises chunk extensions away. Pure
 * evbuffer work: no sockets, no timers.
 */
#ifndef TRIDENT_BODY_H
#define TRIDENT_BODY_H

#include <event2/buffer.h>
#include <stdbool.h>
#include <stdint.h>

#include "http.h"

enum body_kind {
    BODY_NONE,       /* no body */
    BODY_LENGTH,     /* Content-Length bytes */
    BODY_CHUNKED,    /* Transfer-Encoding: chunked, decoded by the message's parser */
    BODY_UNTIL_EOF,  /* a response without length: it ends when the server closes */
};

enum body_step {
    BODY_AGAIN,      /* all available input moved; more is expected */
    BODY_DONE,       /* the body is complete (for chunked: the parser paused after it) */
    BODY_ERR_SYNTAX, /* bad chunked framing */
    BODY_ERR_LIMIT,  /* more body than the limit allows */
};

struct body {
    enum body_kind kind;
    bool out_chunked;     /* add chunked framing on output */
    uint64_t remaining;   /* BODY_LENGTH: bytes still to come */
    uint64_t moved;       /* decoded body bytes moved so far */
    uint64_t limit;       /* most body bytes accepted */
    struct http_msg *msg; /* BODY_CHUNKED: the parser of this message */
    struct evbuffer *out; /* BODY_CHUNKED: output while a pump runs */
    uint64_t wire_in;     /* bytes consumed from input, framing included */
};

/* How a response's body is framed (RFC 9112 section 6.3), for a request that was HEAD or not.
 * Only "chunked" is accepted as a transfer coding (another one would be lost when trident
 * re-frames the body), and only when llhttp, which frames the body, reads it as chunked too.
 * Returns -1 for a response to refuse (502): also one whose head holds an empty field name or
 * a control character (headers_response_is_clean). */
int body_response_kind(const struct http_msg *resp, bool head_request, enum body_kind *kind);

/* Prepare b. For BODY_LENGTH `length` is the Content-Length; `msg` is needed for BODY_CHUNKED. */
void body_init(struct body *b, enum body_kind kind, uint64_t length, bool out_chunked,
               uint64_t limit, struct http_msg *msg);

/* Move what `in` holds of the body to `out`. */
enum body_step body_pump(struct body *b, struct evbuffer *in, struct evbuffer *out);

/* The connection closed: end a BODY_UNTIL_EOF body (writes the last chunk when out_chunked). */
void body_finish_eof(struct body *b, struct evbuffer *out);

#endif
