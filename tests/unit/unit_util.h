/* Helpers shared by the unit tests: parse a literal message into an http_msg. */
#ifndef TRIDENT_UNIT_UTIL_H
#define TRIDENT_UNIT_UTIL_H

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

/* Feed `text` to m in pieces of `split` bytes (0: all at once); returns the last step. */
static inline enum http_step
feed_text(struct http_msg *m, const char *text, size_t len, size_t split)
{
    struct evbuffer *in = evbuffer_new();
    enum http_step st = HTTP_AGAIN;
    size_t off = 0;

    if (split == 0)
        split = len;
    while (off < len && st == HTTP_AGAIN) {
        size_t n = len - off < split ? len - off : split;
        evbuffer_add(in, text + off, n);
        off += n;
        st = http_msg_feed(m, in, NULL);
    }
    evbuffer_free(in);
    return st;
}

static inline enum http_step
parse_request(struct http_msg *m, const char *text)
{
    http_msg_init(m, HTTP_REQUEST, 16384, 100);
    return feed_text(m, text, strlen(text), 0);
}

static inline enum http_step
parse_response(struct http_msg *m, const char *text)
{
    http_msg_init(m, HTTP_RESPONSE, 16384, 100);
    return feed_text(m, text, strlen(text), 0);
}

/* Move everything in b into a new NUL-terminated string (caller frees). */
static inline char *
drain_str(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);

    evbuffer_remove(b, s, n);
    s[n] = '\0';
    return s;
}

#endif
