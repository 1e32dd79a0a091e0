/*
 * access_log: JSON access lines, batched per worker and flushed once per loop iteration.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access_log.h"
#include "strbuf.h"

#define LINE_MAX_BYTES 4096   /* never more than PIPE_BUF: one line is one atomic write */
#define BATCH_BYTES    32768  /* flush early when a batch grows this large */
/* Longer targets are cut in the log (not in the request). Escaped, a target at most doubles (llhttp
 * admits no control bytes in it), so a line always fits LINE_MAX_BYTES. */
#define TARGET_MAX 1024

struct access_log {
    int fd;
    struct event *flush_ev;
    char *buf;
    size_t len;
};

int
access_log_open_fd(const char *spec)
{
    int fd;

    if (strcmp(spec, "off") == 0)
        return -1;
    if (strcmp(spec, "stdout") == 0)
        return STDOUT_FILENO;
    fd = open(spec, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -2;
    return fd; /* the caller's */
}

int
access_log_reopen_fd(int fd, const char *spec)
{
    int nfd;

    if (fd < 0 || strcmp(spec, "stdout") == 0)
        return 0;
    nfd = open(spec, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (nfd < 0)
        return -1;
    /* dup2 swaps the file behind fd atomically: a worker's write goes to the old file or the
     * new one, never to a closed descriptor. */
    if (dup3(nfd, fd, O_CLOEXEC) < 0) {
        close(nfd);
        return -1;
    }
    close(nfd);
    return 0;
}

/* Write whole lines, at most PIPE_BUF bytes per write(2) so lines from several workers sharing
 * a pipe (stdout) never interleave. */
static void
flush_batch(struct access_log *l)
{
    size_t off = 0;

    while (off < l->len) {
        size_t n = l->len - off;
        ssize_t w;

        if (n > PIPE_BUF) {
            n = PIPE_BUF;
            while (n > 0 && l->buf[off + n - 1] != '\n')
                n--;
        }
        w = write(l->fd, l->buf + off, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* a full disk drops log lines, never requests */
        off += (size_t)w;
    }
    l->len = 0;
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
    flush_batch(arg);
}

struct access_log *
access_log_new(struct event_base *base, int fd)
{
    struct access_log *l = calloc(1, sizeof(*l));

    if (l == NULL)
        return NULL;
    l->fd = fd;
    l->buf = malloc(BATCH_BYTES + LINE_MAX_BYTES);
    l->flush_ev = event_new(base, -1, 0, flush_cb, l);
    if (l->buf == NULL || l->flush_ev == NULL) {
        access_log_free(l);
        return NULL;
    }
    return l;
}

void
access_log_free(struct access_log *l)
{
    if (l == NULL)
        return;
    if (l->buf != NULL && l->len > 0)
        flush_batch(l);
    if (l->flush_ev != NULL)
        event_free(l->flush_ev);
    free(l->buf);
    free(l);
}

static void
put_us(struct strbuf *sb, const char *key, int64_t us)
{
    if (us >= 0)
        strbuf_printf(sb, ",\"%s\":%lld.%03lld", key, (long long)(us / 1000),
                      (long long)(us % 1000));
}

static void
format_entry(struct strbuf *sb, const struct access_entry *e)
{
    size_t tlen = e->target_len > TARGET_MAX ? TARGET_MAX : e->target_len;

    strbuf_puts(sb, "{\"time\":\"");
    strbuf_iso8601_ms(sb, e->time_ms);
    strbuf_putc(sb, '"');
    strbuf_json_str(sb, "request_id", e->request_id, strlen(e->request_id));
    strbuf_json_str(sb, "client", e->client, strlen(e->client));
    if (e->method != NULL) {
        strbuf_json_str(sb, "method", e->method, strlen(e->method));
        strbuf_json_str(sb, "path", e->target, tlen);
        strbuf_printf(sb, ",\"protocol\":\"HTTP/1.%d\"", e->http_minor);
    }
    strbuf_printf(sb, ",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu", e->status,
                  (unsigned long long)e->bytes_in, (unsigned long long)e->bytes_out);
    if (e->server != NULL) {
        strbuf_json_str(sb, "server", e->server, strlen(e->server));
        strbuf_json_str(sb, "cluster", e->cluster, strlen(e->cluster));
        strbuf_json_str(sb, "provider", e->provider, strlen(e->provider));
    }
    put_us(sb, "duration_ms", e->total_us);
    put_us(sb, "connect_ms", e->connect_us);
    put_us(sb, "upstream_ms", e->upstream_us);
    strbuf_printf(sb, ",\"attempts\":%u", e->attempts);
    if (e->hedged)
        strbuf_puts(sb, ",\"hedged\":true");
    if (e->tls_version != NULL) {
        strbuf_json_str(sb, "tls_version", e->tls_version, strlen(e->tls_version));
        strbuf_json_str(sb, "tls_cipher", e->tls_cipher, strlen(e->tls_cipher));
    }
    if (e->reason != REASON_NONE)
        strbuf_json_str(sb, "reason", reason_name(e->reason), strlen(reason_name(e->reason)));
    if (e->rule != NULL)
        strbuf_json_str(sb, "rule", e->rule, strlen(e->rule));
}

void
access_log_write(struct access_log *l, const struct access_entry *e)
{
    struct strbuf sb;
    bool was_empty;

    if (l == NULL || l->fd < 0)
        return;
    was_empty = l->len == 0;
    strbuf_init(&sb, l->buf + l->len, LINE_MAX_BYTES - 2);
    format_entry(&sb, e);
    strbuf_putc(&sb, '}');
    l->buf[l->len + sb.len] = '\n';
    l->len += sb.len + 1;
    if (l->len >= BATCH_BYTES)
        flush_batch(l);
    else if (was_empty)
        event_active(l->flush_ev, EV_TIMEOUT, 1);
}
