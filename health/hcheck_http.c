/*
 * hcheck_http: the http check kind. One request with Connection: close; the status must fall in
 * expect_status; with expect_body, the first 16 KiB of the decoded body must hold the text.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdbool.h>
#include <string.h>

#include "hcheck.h"
#include "http.h"

static bool
status_expected(const struct health_conf *hc, int status)
{
    for (int i = 0; i < hc->nstatus_ranges; i++)
        if (status >= hc->status_ranges[i][0] && status <= hc->status_ranges[i][1])
            return true;
    return false;
}

static void
connected(struct hcheck *c)
{
    const struct hcheck_target *t = hcheck_target(c);

    evbuffer_add_printf(bufferevent_get_output(hcheck_bev(c)),
                        "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: trident-health-check\r\n"
                        "Accept: */*\r\nConnection: close\r\n\r\n",
                        t->hc->method, t->hc->path, t->host);
}

static int
collect_body(void *arg, const char *at, size_t len)
{
    struct hcheck *c = arg;
    size_t have, cap;
    char *body = hcheck_body(c, &have, &cap);

    if (body == NULL)
        return -1;
    if (len > cap - have)
        len = cap - have;
    memcpy(body + have, at, len);
    hcheck_body_set_len(c, have + len);
    return 0;
}

static void
judge_body(struct hcheck *c)
{
    size_t len, cap;
    char *body = hcheck_body(c, &len, &cap);
    int status = hcheck_http_msg(c)->parser.status_code;

    if (body == NULL) {
        hcheck_finish(c, CHECK_L7_INVALID, status);
        return;
    }
    body[len] = '\0';
    hcheck_finish(c, memmem(body, len, hcheck_target(c)->hc->expect_body,
                            strlen(hcheck_target(c)->hc->expect_body)) != NULL
                         ? CHECK_OK
                         : CHECK_L7_BODY,
                  status);
}

/* Returns true when the verdict is given. */
static bool
on_head(struct hcheck *c, struct http_msg *m)
{
    const struct health_conf *hc = hcheck_target(c)->hc;
    int status = m->parser.status_code;

    if (status >= 100 && status < 200) {
        http_msg_reset(m); /* an interim response: the real one follows */
        return false;
    }
    if (!status_expected(hc, status)) {
        hcheck_finish(c, CHECK_L7_STATUS, status);
        return true;
    }
    if (hc->expect_body == NULL) {
        hcheck_finish(c, CHECK_OK, status);
        return true;
    }
    m->sink = collect_body;
    m->sink_arg = c;
    return false;
}

static void
readable(struct hcheck *c)
{
    struct http_msg *m = hcheck_http_msg(c);
    struct evbuffer *in = bufferevent_get_input(hcheck_bev(c));
    size_t have, cap;

    for (;;) {
        enum http_step st = http_msg_feed(m, in, NULL);

        if (st == HTTP_AGAIN)
            break;
        if (st == HTTP_ERROR || m->parser.http_major != 1) {
            hcheck_finish(c, CHECK_L7_INVALID, 0);
            return;
        }
        if (st == HTTP_MSG_DONE) {
            judge_body(c);
            return;
        }
        if (on_head(c, m))
            return;
    }
    if (m->head_complete && hcheck_body(c, &have, &cap) != NULL && have >= cap)
        judge_body(c); /* enough of the body seen */
}

static void
eof(struct hcheck *c)
{
    struct http_msg *m = hcheck_http_msg(c);

    if (!m->head_complete) {
        hcheck_finish(c, CHECK_L7_INVALID, 0);
        return;
    }
    llhttp_finish(&m->parser); /* ends a body delimited by the close */
    judge_body(c);
}

const struct hcheck_ops hcheck_http_ops = {
    .connected = connected,
    .readable = readable,
    .eof = eof,
};
