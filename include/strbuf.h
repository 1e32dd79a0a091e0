/*
 * strbuf: a fixed-capacity character buffer for building one line of text (a log line, an error
 * message, a JSON fragment) without allocating. Appends past the capacity are cut off and
 * remembered in `truncated`; the buffer stays NUL-terminated. It is not a growable string type:
 * callers size it for the longest line they accept.
 */
#ifndef TRIDENT_STRBUF_H
#define TRIDENT_STRBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct strbuf {
    char *buf;      /* caller's storage, cap bytes */
    size_t cap;     /* capacity including the terminating NUL */
    size_t len;     /* bytes written, excluding the NUL */
    bool truncated; /* an append did not fit */
};

/* Point sb at caller storage `buf` of `cap` bytes (cap >= 1) and empty it. */
void strbuf_init(struct strbuf *sb, char *buf, size_t cap);

void strbuf_append(struct strbuf *sb, const char *s, size_t n);
void strbuf_puts(struct strbuf *sb, const char *s);
void strbuf_putc(struct strbuf *sb, char c);
void strbuf_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_vprintf(struct strbuf *sb, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Append `s` (n bytes) escaped for use inside a JSON string (RFC 8259 section 7): quotes,
 * backslashes and control characters are escaped; bytes >= 0x80 pass through unchanged. */
void strbuf_json_escape(struct strbuf *sb, const char *s, size_t n);

/* Append `"key":"value"` with the value escaped; a leading comma unless the buffer ends in '{'. */
void strbuf_json_str(struct strbuf *sb, const char *key, const char *s, size_t n);

/* Append an ISO 8601 UTC timestamp with milliseconds for the wall-clock time `now_ms`. */
void strbuf_iso8601_ms(struct strbuf *sb, long long now_ms);

#endif
