/*
 * strbuf: bounded line building for logs and messages. No allocation, no failure: what does not
 * fit is cut off and flagged, because a log line must never take the process down.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "strbuf.h"

void
strbuf_init(struct strbuf *sb, char *buf, size_t cap)
{
    sb->buf = buf;
    sb->cap = cap;
    sb->len = 0;
    sb->truncated = false;
    buf[0] = '\0';
}

void
strbuf_append(struct strbuf *sb, const char *s, size_t n)
{
    size_t room = sb->cap - 1 - sb->len;

    if (n > room) {
        n = room;
        sb->truncated = true;
    }
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
}

void
strbuf_puts(struct strbuf *sb, const char *s)
{
    strbuf_append(sb, s, strlen(s));
}

void
strbuf_putc(struct strbuf *sb, char c)
{
    strbuf_append(sb, &c, 1);
}

void
strbuf_vprintf(struct strbuf *sb, const char *fmt, va_list ap)
{
    size_t room = sb->cap - sb->len;
    int n = vsnprintf(sb->buf + sb->len, room, fmt, ap);

    if (n < 0)
        return;
    if ((size_t)n >= room) {
        sb->len = sb->cap - 1;
        sb->truncated = true;
    } else {
        sb->len += (size_t)n;
    }
}

void
strbuf_printf(struct strbuf *sb, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    strbuf_vprintf(sb, fmt, ap);
    va_end(ap);
}

void
strbuf_json_escape(struct strbuf *sb, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0; /* bytes that need no escaping, appended in one go */

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t elen = 2;

        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
            continue;
        strbuf_append(sb, s + run, i - run);
        run = i + 1;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            elen = 6;
        }
        strbuf_append(sb, esc, elen);
    }
    strbuf_append(sb, s + run, n - run);
}

void
strbuf_json_str(struct strbuf *sb, const char *key, const char *s, size_t n)
{
    if (sb->len > 0 && sb->buf[sb->len - 1] != '{')
        strbuf_putc(sb, ',');
    strbuf_putc(sb, '"');
    strbuf_puts(sb, key);
    strbuf_append(sb, "\":\"", 3);
    strbuf_json_escape(sb, s, n);
    strbuf_putc(sb, '"');
}

void
strbuf_iso8601_ms(struct strbuf *sb, long long now_ms)
{
    time_t secs = (time_t)(now_ms / 1000);
    struct tm tm;
    char tmp[32];

    if (gmtime_r(&secs, &tm) == NULL || strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        tmp[0] = '\0'; /* only for a time past year 2^31: no date rather than garbage */
    strbuf_printf(sb, "%s.%03dZ", tmp, (int)(now_ms % 1000));
}
