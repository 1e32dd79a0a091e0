/*
 * errpage: the responses trident writes itself (400, 405, 408, 413, 417, 431, 502, 503, 504).
 * A small JSON body naming the status and the request id, no-store, and Connection: close after a
 * client error (trident never trusts the rest of such a connection's bytes).
 */
#ifndef TRIDENT_ERRPAGE_H
#define TRIDENT_ERRPAGE_H

#include <event2/buffer.h>

/* The standard reason phrase of a status trident produces ("Bad Gateway"). */
const char *errpage_reason(int status);

/* Append a complete error response to `out`. `head_only` leaves the body out (HEAD requests).
 * Returns the number of bytes appended. */
size_t errpage_write(struct evbuffer *out, int status, const char *request_id, int head_only);

/* The same with a Retry-After (seconds, 0: none), when `html` is not NULL that HTML page as the
 * body instead of the JSON one (a maintenance page), and without Connection: close when
 * `keep_alive` (a gateway error after a complete, valid request leaves the connection usable). */
size_t errpage_write_full(struct evbuffer *out, int status, const char *request_id, int head_only,
                          int keep_alive, int retry_after, const char *html, size_t html_len);

/* Append a 308 to https://host[port]target (host without its port, port ":8443" or ""), with an
 * empty body. `close` adds Connection: close. Returns the number of bytes appended. */
size_t errpage_redirect(struct evbuffer *out, int hostlen, const char *host, const char *port,
                        int targetlen, const char *target, const char *request_id, int close);

#endif
