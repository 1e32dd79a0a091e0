/*
 * http: feeding evbuffers to llhttp and capturing heads. The head is copied span by span into one
 * buffer per message and addressed by offsets, so it survives the buffer growing and the input
 * being drained. Bodies are not copied here: chunked bodies go to a sink, the others are moved by
 * body.c without the parser.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"

#define HEAD_INITIAL   512
#define FIELDS_INITIAL 16

static struct http_msg *
msg_of(llhttp_t *p)
{
    return p->data;
}

static int
head_append(struct http_msg *m, const char *at, size_t len)
{
    if (len == 0) /* llhttp may end a span before its first byte; m->buf may still be NULL */
        return 0;
    if ((uint64_t)m->len + len > m->cap) {
        uint64_t need = (uint64_t)m->len + len, cap = m->cap ? m->cap : HEAD_INITIAL;
        char *nb;

        while (cap < need)
            cap *= 2;
        nb = realloc(m->buf, cap);
        if (nb == NULL) {
            m->error = HTTP_ERR_NOMEM;
            return -1;
        }
        m->buf = nb;
        m->cap = (uint32_t)cap;
    }
    memcpy(m->buf + m->len, at, len);
    m->len += (uint32_t)len;
    return 0;
}

static int
new_field(struct http_msg *m)
{
    if (m->nfields == m->max_fields) {
        m->error = HTTP_ERR_TOO_MANY_FIELDS;
        return -1;
    }
    if (m->nfields == m->fields_cap) {
        uint32_t cap = m->fields_cap ? m->fields_cap * 2 : FIELDS_INITIAL;
        struct http_field *nf = realloc(m->fields, cap * sizeof(*nf));

        if (nf == NULL) {
            m->error = HTTP_ERR_NOMEM;
            return -1;
        }
        m->fields = nf;
        m->fields_cap = cap;
    }
    m->fields[m->nfields++] = (struct http_field){m->len, 0, m->len, 0};
    return 0;
}

/* Trailer fields of a chunked body are dropped (as nginx does) but still bounded. */
static int
count_trailer(struct http_msg *m, size_t len)
{
    m->trailer_bytes += (uint32_t)len;
    if (m->trailer_bytes > m->max_head) {
        m->error = HTTP_ERR_HEAD_TOO_LARGE;
        return -1;
    }
    return 0;
}

static int
on_url(llhttp_t *p, const char *at, size_t len)
{
    struct http_msg *m = msg_of(p);

    if (m->target_len == 0)
        m->target_off = m->len;
    m->target_len += (uint32_t)len;
    return head_append(m, at, len);
}

static int
on_status(llhttp_t *p, const char *at, size_t len)
{
    struct http_msg *m = msg_of(p);

    if (m->reason_len == 0)
        m->reason_off = m->len;
    m->reason_len += (uint32_t)len;
    return head_append(m, at, len);
}

static int
on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct http_msg *m = msg_of(p);

    if (m->head_complete)
        return count_trailer(m, len);
    if ((m->in_value || m->nfields == 0) && new_field(m) < 0)
        return -1;
    m->in_value = false;
    m->fields[m->nfields - 1].name_len += (uint32_t)len;
    return head_append(m, at, len);
}

static int
on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct http_msg *m = msg_of(p);
    struct http_field *f;

    if (m->head_complete)
        return count_trailer(m, len);
    f = &m->fields[m->nfields - 1];
    if (!m->in_value) {
        f->value_off = m->len;
        f->value_len = 0;
        m->in_value = true;
    }
    f->value_len += (uint32_t)len;
    return head_append(m, at, len);
}

static int
on_headers_complete(llhttp_t *p)
{
    struct http_msg *m = msg_of(p);

    m->head_complete = true;
    m->stop = HTTP_HEAD_DONE;
    return HPE_PAUSED;
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
    struct http_msg *m = msg_of(p);

    if (m->sink != NULL && m->sink(m->sink_arg, at, len) < 0) {
        m->error = HTTP_ERR_SINK;
        return -1;
    }
    return 0;
}

static int
on_chunk_extension(llhttp_t *p, const char *at, size_t len)
{
    struct http_msg *m = msg_of(p);

    (void)at;
    if (len > HTTP_CHUNK_EXT_MAX - m->ext_bytes) {
        m->error = HTTP_ERR_SYNTAX;
        return -1;
    }
    m->ext_bytes += (uint32_t)len;
    return 0;
}

static int
on_chunk_complete(llhttp_t *p)
{
    msg_of(p)->ext_bytes = 0;
    return 0;
}

static int
on_message_complete(llhttp_t *p)
{
    msg_of(p)->stop = HTTP_MSG_DONE;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_url = on_url,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_chunk_extension_name = on_chunk_extension,
    .on_chunk_extension_value = on_chunk_extension,
    .on_chunk_complete = on_chunk_complete,
    .on_message_complete = on_message_complete,
};

void
http_msg_init(struct http_msg *m, llhttp_type_t type, uint32_t max_head, uint32_t max_fields)
{
    memset(m, 0, sizeof(*m));
    llhttp_init(&m->parser, type, &settings);
    m->parser.data = m;
    m->max_head = max_head;
    m->max_fields = max_fields;
}

void
http_msg_release(struct http_msg *m)
{
    free(m->buf);
    free(m->fields);
    m->buf = NULL;
    m->fields = NULL;
    m->cap = m->fields_cap = 0;
    m->len = m->nfields = 0;
}

void
http_msg_reset(struct http_msg *m)
{
    llhttp_reset(&m->parser);
    m->len = m->nfields = 0;
    m->target_len = m->reason_len = 0;
    m->head_bytes = m->trailer_bytes = m->ext_bytes = 0;
    m->prev_cr = m->line_done = false;
    m->line_len = m->line_spaces = 0;
    m->head_complete = m->in_value = false;
    m->stop = HTTP_AGAIN;
    m->error = HTTP_ERR_NONE;
    m->sink = NULL;
    m->sink_arg = NULL;
}

/* Request head bytes llhttp has taken: every LF must end a CRLF (RFC 9112 section 2.2 lets a
 * server accept a bare LF, but a proxy that does sees lines where the server behind it may
 * not), and the request line must be "method SP target SP version" (an HTTP/0.9 line is refused
 * at once instead of waiting for a version that will not come). Returns false to refuse. */
static bool
head_bytes_ok(struct http_msg *m, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '\n') {
            if (!m->prev_cr)
                return false;
            if (!m->line_done && m->line_len > 0) { /* empty lines before it are ignored */
                if (m->line_spaces < 2)
                    return false;
                m->line_done = true;
            }
            m->line_len = 0;
        } else if (!m->line_done && ch != '\r') {
            m->line_len++;
            m->line_spaces += ch == ' ';
        }
        m->prev_cr = ch == '\r';
    }
    return true;
}

/* Run llhttp over one contiguous span; returns the bytes it consumed. */
static size_t
execute_span(struct http_msg *m, const char *base, size_t len, enum llhttp_errno *e)
{
    enum llhttp_errno prev = llhttp_get_errno(&m->parser);

    if (prev == HPE_PAUSED)
        llhttp_resume(&m->parser);
    else if (prev == HPE_PAUSED_UPGRADE)
        llhttp_resume_after_upgrade(&m->parser);
    m->stop = HTTP_AGAIN;
    *e = llhttp_execute(&m->parser, base, len);
    if (*e == HPE_OK)
        return len;
    return (size_t)(llhttp_get_error_pos(&m->parser) - base);
}

enum http_step
http_msg_feed(struct http_msg *m, struct evbuffer *in, uint64_t *consumed)
{
    while (evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        enum llhttp_errno e;
        bool in_head = !m->head_complete;
        size_t len, used;

        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        len = v.iov_len;
        if (in_head) {
            /* Feed no more than the head may still take: a head that has not ended when the
             * limit is reached is too large, however the bytes were split into reads. */
            uint32_t room = m->max_head - m->head_bytes;
            if (room == 0) {
                m->error = HTTP_ERR_HEAD_TOO_LARGE;
                return HTTP_ERROR;
            }
            if (len > room)
                len = room;
        }
        used = execute_span(m, v.iov_base, len, &e);
        if (in_head && m->parser.type == HTTP_REQUEST && !head_bytes_ok(m, v.iov_base, used)) {
            evbuffer_drain(in, used);
            m->error = HTTP_ERR_SYNTAX;
            return HTTP_ERROR;
        }
        evbuffer_drain(in, used);
        if (consumed != NULL)
            *consumed += used;
        if (in_head)
            m->head_bytes += (uint32_t)used;
        if (e == HPE_OK)
            continue;
        if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE)
            return m->stop;
        if (m->error == HTTP_ERR_NONE)
            m->error = HTTP_ERR_SYNTAX;
        return HTTP_ERROR;
    }
    return HTTP_AGAIN;
}

bool
http_field_is(const struct http_msg *m, uint32_t i, const char *name, size_t len)
{
    const struct http_field *f = &m->fields[i];

    return f->name_len == len && strncasecmp(m->buf + f->name_off, name, len) == 0;
}

int
http_find_field(const struct http_msg *m, const char *name, size_t len, uint32_t from)
{
    for (uint32_t i = from; i < m->nfields; i++)
        if (http_field_is(m, i, name, len))
            return (int)i;
    return -1;
}

const char *
http_msg_error_text(const struct http_msg *m)
{
    switch (m->error) {
    case HTTP_ERR_NONE: return "none";
    case HTTP_ERR_SYNTAX: return llhttp_get_error_reason(&m->parser);
    case HTTP_ERR_HEAD_TOO_LARGE: return "head too large";
    case HTTP_ERR_TOO_MANY_FIELDS: return "too many header fields";
    case HTTP_ERR_SINK: return "body refused";
    case HTTP_ERR_NOMEM: return "out of memory";
    }
    return "unknown";
}
