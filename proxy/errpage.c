/*
 * errpage: trident's own error responses.
 */
#include <stdio.h>
#include <string.h>

#include "errpage.h"

const char *
errpage_reason(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    }
    return "Error";
}

size_t
errpage_write_full(struct evbuffer *out, int status, const char *request_id, int head_only,
                   int keep_alive, int retry_after, const char *html, size_t html_len)
{
    char json[256], head[640], retry[40] = "";
    const char *reason = errpage_reason(status);
    const char *body = html;
    size_t blen = html_len;
    int hlen;

    if (html == NULL) {
        /* request_id is generated (hex) or passed reqid_valid(): no JSON escaping needed. */
        blen = (size_t)snprintf(json, sizeof(json),
                                "{\"status\":%d,\"error\":\"%s\",\"request_id\":\"%s\"}\n",
                                status, reason, request_id);
        body = json;
    }
    if (retry_after > 0)
        snprintf(retry, sizeof(retry), "Retry-After: %d\r\n", retry_after);
    hlen = snprintf(head, sizeof(head),
                    "HTTP/1.1 %d %s\r\n"
                    "Content-Type: %s\r\n"
                    "Content-Length: %zu\r\n"
                    "Cache-Control: no-store\r\n"
                    "X-Request-Id: %s\r\n"
                    "%s%s%s\r\n",
                    status, reason, html != NULL ? "text/html; charset=utf-8" : "application/json",
                    blen, request_id, retry,
                    status == 405 ? "Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n" : "",
                    keep_alive ? "" : "Connection: close\r\n");
    evbuffer_add(out, head, (size_t)hlen);
    if (!head_only)
        evbuffer_add(out, body, blen);
    return (size_t)hlen + (head_only ? 0 : blen);
}

size_t
errpage_write(struct evbuffer *out, int status, const char *request_id, int head_only)
{
    return errpage_write_full(out, status, request_id, head_only, 0, 0, NULL, 0);
}

size_t
errpage_redirect(struct evbuffer *out, int hostlen, const char *host, const char *port,
                 int targetlen, const char *target, const char *request_id, int close)
{
    /* host and target passed the request checks (no CR, LF, space or control byte) */
    const char *slash = targetlen == 0 || target[0] == '?' ? "/" : "";
    size_t before = evbuffer_get_length(out);

    evbuffer_add_printf(out,
                        "HTTP/1.1 308 Permanent Redirect\r\n"
                        "Location: https://%.*s%s%s%.*s\r\n"
                        "Content-Length: 0\r\n"
                        "X-Request-Id: %s\r\n"
                        "%s\r\n",
                        hostlen, host, port, slash, targetlen, target, request_id,
                        close ? "Connection: close\r\n" : "");
    return evbuffer_get_length(out) - before;
}
