/*
 * straggler: attempts that lost to their hedge, judged by what their server does next. Not a
 * second response path: the response head is read for its status only, and the connection is
 * closed after it (never pooled: the body is not read).
 */
#include <stdlib.h>

#include "clock.h"
#include "passive.h"
#include "router.h"
#include "stats.h"
#include "straggler.h"
#include "upstream.h"

struct straggler {
    struct straggler_list *list;
    struct router *router;  /* a reference: s lives in it */
    struct server_rt *s;
    struct upstream *u;     /* owned */
    bool pooled;
    TAILQ_ENTRY(straggler) link;
};

void
straggler_list_init(struct straggler_list *l)
{
    TAILQ_INIT(&l->head);
    l->n = 0;
}

/* The verdict is in (or none will come): close and forget; the request no longer counts as
 * one the server is working on. */
static void
done(struct straggler *st)
{
    TAILQ_REMOVE(&st->list->head, st, link);
    st->list->n--;
    upstream_free(st->u);
    router_end(st->s);
    router_unref(st->router);
    free(st);
}

static void
failed(struct straggler *st, enum passive_event ev)
{
    if (st->s->stats != NULL)
        stat_add(&st->s->stats->failures, 1);
    passive_failure(st->router->health, st->s, ev);
    done(st);
}

/* Connected only now: the request was never sent on it, so there is nothing to judge. */
static void
on_connected(void *arg)
{
    done(arg);
}

static void
on_read(void *arg)
{
    struct straggler *st = arg;
    struct http_msg *m = &st->u->resp;

    for (;;) {
        enum http_step step = http_msg_feed(m, bufferevent_get_input(st->u->bev), NULL);

        if (step == HTTP_AGAIN)
            return;
        if (step != HTTP_HEAD_DONE) { /* an invalid response: a failure, but no outage */
            if (st->s->stats != NULL)
                stat_add(&st->s->stats->failures, 1);
            done(st);
            return;
        }
        if (m->parser.status_code >= 200 || m->parser.status_code == 101)
            break;
        http_msg_reset(m); /* 1xx: the final head is still to come */
    }
    passive_response(st->router->health, st->s, m->parser.status_code);
    done(st);
}

static void
on_drained(void *arg)
{
}

static void
on_event(void *arg, short what)
{
    struct straggler *st = arg;

    if (what & BEV_EVENT_TIMEOUT)
        failed(st, PASSIVE_TIMEOUT);
    else if (st->pooled && st->u->resp.head_bytes == 0)
        done(st); /* the keep-alive race: says nothing about the server */
    else
        failed(st, PASSIVE_CONNECT);
}

static const struct upstream_handler straggler_handler = {
    .on_connected = on_connected,
    .on_read = on_read,
    .on_drained = on_drained,
    .on_event = on_event,
};

void
straggler_keep(struct straggler_list *l, struct router *r, struct server_rt *s,
               struct upstream *u, bool pooled, int verdict_ms)
{
    struct straggler *st = l->n < STRAGGLER_MAX ? calloc(1, sizeof(*st)) : NULL;
    struct timeval verdict = clock_tv_ms(verdict_ms);

    if (st == NULL) {
        upstream_free(u);
        router_end(s);
        return;
    }
    *st = (struct straggler){.list = l, .router = router_ref(r), .s = s, .u = u, .pooled = pooled};
    TAILQ_INSERT_TAIL(&l->head, st, link);
    l->n++;
    upstream_set_handler(u, &straggler_handler, st);
    if (u->state == UPSTREAM_CONNECTING)
        return; /* its connect timeout judges it; connected, it is closed (nothing was sent) */
    /* silence from now on, reading or writing (a server that does not even take the request),
     * is judged at the verdict time; reading may have been paused by the client's backpressure */
    bufferevent_set_timeouts(u->bev, &verdict, &verdict);
    bufferevent_enable(u->bev, EV_READ | EV_WRITE);
}

void
straggler_free_all(struct straggler_list *l)
{
    struct straggler *st;

    /* done()'s TAILQ_REMOVE unlinks st through tqe_prev, an alias of the head's first pointer
     * that the analyzer does not follow: it then believes TAILQ_FIRST returns the freed st. */
    while ((st = TAILQ_FIRST(&l->head)) != NULL)
        done(st); /* NOLINT(clang-analyzer-unix.Malloc): a false positive, see above */
}
