/*
 * http: llhttp glue. A struct http_msg parses one direction of one connection (requests from a
 * client, responses from a server), one message at a time: it copies the head (target, reason,
 * header names and values) into its own growable buffer as slices by offset, enforces the head's
 * size and field-count limits, pauses when the head is complete and again when the message is,
 * and hands decoded chunked-body bytes to a sink. Every lenient llhttp flag stays off and llhttp
 * is built in strict mode. It knows nothing about sockets beyond reading an evbuffer.
 */
#ifndef TRIDENT_HTTP_H
#define TRIDENT_HTTP_H

#include <event2/buffer.h>
#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_field {
    uint32_t name_off, name_len;
    uint32_t value_off, value_len;
};

enum http_step {
    HTTP_AGAIN,     /* every byte was consumed; the message needs more */
    HTTP_HEAD_DONE, /* the head is complete; parser paused before any body byte */
    HTTP_MSG_DONE,  /* the message is complete; parser paused before the next one */
    HTTP_ERROR,     /* see http_msg.error; the connection cannot continue */
};

enum http_error {
    HTTP_ERR_NONE,
    HTTP_ERR_SYNTAX,          /* llhttp refused the bytes (see llhttp_get_errno) */
    HTTP_ERR_HEAD_TOO_LARGE,  /* head (or trailer) over max_head bytes */
    HTTP_ERR_TOO_MANY_FIELDS, /* over max_fields header fields */
    HTTP_ERR_SINK,            /* the body sink refused the bytes */
    HTTP_ERR_NOMEM,
};

/* Receives decoded body bytes of a chunked message; returns 0, or -1 to stop with HTTP_ERR_SINK. */
typedef int (*http_body_sink)(void *arg, const char *at, size_t len);

/* Chunk extensions are dropped, but they are read: without a bound one endless extension would
 * hold a connection without ever reaching a body or head limit. */
#define HTTP_CHUNK_EXT_MAX 4096

struct http_msg {
    llhttp_t parser;
    /* the head of the current message, slices into buf by offset (buf may move as it grows) */
    char *buf;
    uint32_t len, cap;
    struct http_field *fields;
    uint32_t nfields, fields_cap;
    uint32_t target_off, target_len; /* request target (requests) */
    uint32_t reason_off, reason_len; /* reason phrase (responses) */
    uint32_t head_bytes;             /* head bytes consumed from the wire so far */
    uint32_t trailer_bytes;          /* trailer bytes of a chunked body, ignored but bounded */
    uint32_t ext_bytes;              /* chunk extension bytes of the current chunk, bounded */
    /* request heads: line endings and the request line, checked beside llhttp (which takes a
     * bare LF in a few places, and waits for more after an HTTP/0.9 request line) */
    bool prev_cr;                    /* the last head byte seen was CR */
    bool line_done;                  /* the request line is behind us */
    uint16_t line_len, line_spaces;  /* of the request line so far */
    uint32_t max_head;
    uint32_t max_fields;
    bool head_complete;
    bool in_value; /* the last span was a header value: the next name starts a new field */
    enum http_step stop;
    enum http_error error;
    http_body_sink sink;
    void *sink_arg;
};

/* Prepare m to parse `type` (HTTP_REQUEST or HTTP_RESPONSE) with the given head limits. Buffers
 * grow on demand up to the limits. Release with http_msg_release(). */
void http_msg_init(struct http_msg *m, llhttp_type_t type, uint32_t max_head, uint32_t max_fields);

/* Free the head buffers. m stays usable: they grow again on demand. */
void http_msg_release(struct http_msg *m);

/* Forget the current message and parse the next one from its first byte. */
void http_msg_reset(struct http_msg *m);

/* Parse bytes from `in`, draining what was consumed, until the head or the message completes, an
 * error occurs, or `in` is empty. Adds the bytes consumed to *consumed when it is not NULL. */
enum http_step http_msg_feed(struct http_msg *m, struct evbuffer *in, uint64_t *consumed);

/* Helpers over the current head. A head may be complete without a byte of it kept (a response
 * "HTTP/1.1 200" with no reason phrase and no field): then there is no buffer, and every slice
 * is empty. */
static inline const char *
http_msg_at(const struct http_msg *m, uint32_t off)
{
    return m->buf != NULL ? m->buf + off : "";
}

/* Case-insensitive comparison of field i's name with `name`. */
bool http_field_is(const struct http_msg *m, uint32_t i, const char *name, size_t len);

/* Index of the first field named `name` at or after `from`, or -1. */
int http_find_field(const struct http_msg *m, const char *name, size_t len, uint32_t from);

/* Short text for an HTTP_ERR_SYNTAX (llhttp's reason). */
const char *http_msg_error_text(const struct http_msg *m);

#endif
