/*
 * redis: the connection state machine (BACKOFF -> [RESOLVING ->] CONNECTING -> READY -> BACKOFF)
 * and the time budgets hiredis 0.14 lacks.
 *
 * hiredis rules this file relies on: a failed connect calls onConnect(REDIS_ERR) and frees the
 * context itself; a lost connection calls every pending reply callback with NULL, then
 * onDisconnect, then frees the context; redisAsyncFree() from a reply callback is deferred until
 * the callback returns, but from onConnect it would free under hiredis's feet, so onConnect only
 * sends commands. `r->ac` is cleared before any free we start, so callbacks that arrive during
 * the teardown see a connection that is gone.
 */
#include <errno.h>
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "clock.h"
#include "log.h"
#include "redis.h"

#define PING_IDLE_US 1000000 /* an idle connection is pinged this often (liveness) */

struct redis_op {
    struct redis *r;
    redis_reply_fn *fn; /* NULL: fire and forget, or cancelled */
    void *arg;
    struct event *budget; /* NULL: no budget */
    uint64_t sent_us;
    bool answered;        /* fn has run (budget passed): the late reply is dropped */
    TAILQ_ENTRY(redis_op) link;
};

struct redis {
    struct event_base *base;
    const struct redis_conf *conf;
    struct redis_stats *st;
    enum redis_state state;
    redisAsyncContext *ac;        /* NULL while in BACKOFF */
    /* cppcheck-suppress unusedStructMember ; sys/queue.h's TAILQ macros use the head's fields */
    TAILQ_HEAD(, redis_op) ops;   /* in flight, oldest first */
    unsigned nops;
    struct event *retry_ev;       /* BACKOFF: the next attempt */
    struct event *deadline_ev;    /* RESOLVING / CONNECTING: connect_timeout_ms */
    struct event *watch_ev;       /* READY: overdue replies, idle pings */
    unsigned failures;            /* attempts failed in a row: the backoff exponent */
    size_t sentinel;              /* RESOLVING: the sentinel being asked */
    char master_host[64];
    int master_port;
    int handshake_left;           /* CONNECTING: AUTH / SELECT / ROLE replies still due */
    uint64_t last_io_us;          /* READY: when the last reply arrived or command went out */
    void (*ready_fn)(void *arg);
    void *ready_arg;
    char *channel;                /* subscriber: the channel, re-subscribed on every ready */
    bool subscribed;              /* subscriber: the first SUBSCRIBE of this connection confirmed */
    uint64_t probe_sent_us;       /* subscriber: a SUBSCRIBE (first, or a liveness probe) awaits
                                     its confirmation since then; 0: none */
    void (*message_fn)(const char *payload, size_t len, void *arg);
    void *message_arg;
};

static void connect_next(struct redis *r);
static void message_cb(redisAsyncContext *ac, void *reply, void *priv);
static void subscribe(struct redis *r);

const char *
redis_state_name(enum redis_state s)
{
    switch (s) {
    case REDIS_BACKOFF: return "reconnecting";
    case REDIS_RESOLVING: return "resolving";
    case REDIS_CONNECTING: return "connecting";
    case REDIS_READY: return "connected";
    case REDIS_STOPPED: return "stopped";
    }
    return "?";
}

void
redis_stats_init(struct redis_stats *st, const char *name)
{
    memset(st, 0, sizeof(*st));
    snprintf(st->name, sizeof(st->name), "%s", name);
    pthread_mutex_init(&st->lock, NULL);
}

void
redis_stats_destroy(struct redis_stats *st)
{
    pthread_mutex_destroy(&st->lock);
}

void
redis_stats_server(struct redis_stats *st, char *buf, size_t len)
{
    pthread_mutex_lock(&st->lock);
    snprintf(buf, len, "%s", st->server);
    pthread_mutex_unlock(&st->lock);
}

static void
set_server(struct redis *r, const char *host, int port)
{
    pthread_mutex_lock(&r->st->lock);
    snprintf(r->st->server, sizeof(r->st->server), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host,
             port);
    pthread_mutex_unlock(&r->st->lock);
}

static void
set_state(struct redis *r, enum redis_state s)
{
    r->state = s;
    atomic_store(&r->st->state, (uint8_t)s);
}

/* ---- ops ---------------------------------------------------------------------------------------- */

static void
op_free(struct redis_op *op)
{
    if (op->budget != NULL)
        event_free(op->budget);
    free(op);
}

/* hiredis's reply callback for our ops: the reply, or NULL when the connection went. */
static void
/* cppcheck-suppress constParameter ; hiredis's redisCallbackFn gives a non-const context */
op_reply_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis_op *op = priv;
    struct redis *r = op->r;
    const redisReply *rep = reply;

    TAILQ_REMOVE(&r->ops, op, link);
    r->nops--;
    r->last_io_us = clock_mono_us();
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
        atomic_fetch_add(&r->st->errors, 1);
    if (!op->answered && op->fn != NULL)
        op->fn(rep, op->arg);
    op_free(op);
    /* A demoted master answers writes with READONLY: find the new one. */
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "READONLY", 8) == 0 &&
        r->ac == ac) {
        log_warn("redis %s: the server is a replica now; looking for the master", r->st->name);
        redis_reset(r);
    }
}

static void
budget_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_op *op = arg;

    atomic_fetch_add(&op->r->st->timeouts, 1);
    op->answered = true;
    if (op->fn != NULL)
        op->fn(NULL, op->arg);
}

/* An op for a command about to be sent, or NULL (counted as refused). */
static struct redis_op *
op_begin(struct redis *r, int budget_ms, redis_reply_fn *fn, void *arg)
{
    struct redis_op *op;

    if (r->state != REDIS_READY || r->ac == NULL || r->nops >= (unsigned)r->conf->max_pending ||
        (op = calloc(1, sizeof(*op))) == NULL) {
        atomic_fetch_add(&r->st->refused, 1);
        return NULL;
    }
    op->r = r;
    op->fn = fn;
    op->arg = arg;
    if (budget_ms > 0) {
        struct timeval tv = clock_tv_ms(budget_ms);
        op->budget = evtimer_new(r->base, budget_cb, op);
        if (op->budget == NULL || evtimer_add(op->budget, &tv) < 0) {
            op_free(op);
            atomic_fetch_add(&r->st->refused, 1);
            return NULL;
        }
    }
    return op;
}

/* hiredis took the command (rc REDIS_OK) or not. */
static struct redis_op *
op_sent(struct redis *r, struct redis_op *op, int rc)
{
    if (rc != REDIS_OK) {
        op_free(op);
        atomic_fetch_add(&r->st->refused, 1);
        return NULL;
    }
    op->sent_us = r->last_io_us = clock_mono_us();
    TAILQ_INSERT_TAIL(&r->ops, op, link);
    r->nops++;
    atomic_fetch_add(&r->st->commands, 1);
    return op;
}

static struct redis_op *
send_va(struct redis *r, int budget_ms, redis_reply_fn *fn, void *arg, const char *fmt,
        va_list ap)
{
    struct redis_op *op = op_begin(r, budget_ms, fn, arg);

    return op != NULL ? op_sent(r, op, redisvAsyncCommand(r->ac, op_reply_cb, op, fmt, ap)) : NULL;
}

struct redis_op *
redis_command_argv(struct redis *r, int budget_ms, redis_reply_fn *fn, void *arg, int argc,
                   const char **argv, const size_t *argvlen)
{
    struct redis_op *op = r != NULL ? op_begin(r, budget_ms, fn, arg) : NULL;

    return op != NULL ? op_sent(r, op, redisAsyncCommandArgv(r->ac, op_reply_cb, op, argc, argv,
                                                             argvlen))
                      : NULL;
}

struct redis_op *
redis_command(struct redis *r, int budget_ms, redis_reply_fn *fn, void *arg, const char *fmt, ...)
{
    struct redis_op *op;
    va_list ap;

    if (r == NULL)
        return NULL;
    va_start(ap, fmt);
    op = send_va(r, budget_ms, fn, arg, fmt, ap);
    va_end(ap);
    return op;
}

void
redis_cancel(struct redis_op *op)
{
    if (op == NULL)
        return;
    op->fn = NULL;
    if (op->budget != NULL)
        event_del(op->budget);
}

bool
redis_ready(const struct redis *r)
{
    return r != NULL && r->state == REDIS_READY;
}

/* ---- the connection's life -------------------------------------------------------------------- */

/* Forget the current context (freeing it unless hiredis is about to) and schedule the next
 * attempt. `lost`: a ready connection went away. */
static void
drop(struct redis *r, bool hiredis_frees, const char *why)
{
    redisAsyncContext *ac = r->ac;
    bool was_ready = r->state == REDIS_READY;
    int delay, max = r->conf->backoff_max_ms;
    struct timeval tv;

    r->ac = NULL;
    r->subscribed = false;
    r->probe_sent_us = 0;
    evtimer_del(r->deadline_ev);
    evtimer_del(r->watch_ev);
    if (r->state == REDIS_STOPPED) {
        if (ac != NULL && !hiredis_frees)
            redisAsyncFree(ac);
        return;
    }
    set_state(r, REDIS_BACKOFF);
    if (ac != NULL && !hiredis_frees)
        redisAsyncFree(ac); /* pending ops get NULL now */
    if (was_ready) {
        atomic_fetch_add(&r->st->disconnects, 1);
        log_warn("redis %s: connection to %s lost (%s); going on without Redis", r->st->name,
                 r->st->server, why);
        r->failures = 0;
    } else if (r->failures++ == 0) {
        log_warn("redis %s: cannot connect to %s (%s); retrying with backoff", r->st->name,
                 r->st->server, why);
    } else {
        log_debug("redis %s: cannot connect to %s (%s)", r->st->name, r->st->server, why);
    }
    /* capped exponential backoff, the second half of it random (spreads a fleet's reconnects) */
    delay = r->conf->backoff_min_ms;
    for (unsigned i = 0; i < r->failures && delay < max; i++)
        delay *= 2;
    delay = delay > max ? max : delay;
    delay = delay / 2 + (int)((unsigned)random() % (unsigned)(delay / 2 + 1));
    tv = clock_tv_ms(delay);
    evtimer_add(r->retry_ev, &tv);
}

static void
became_ready(struct redis *r)
{
    struct timeval tv;
    int period;

    evtimer_del(r->deadline_ev);
    set_state(r, REDIS_READY);
    atomic_fetch_add(&r->st->connects, 1);
    r->last_io_us = clock_mono_us();
    if (r->failures > 0 || atomic_load(&r->st->connects) > 1)
        log_info("redis %s: connected to %s", r->st->name, r->st->server);
    else
        log_debug("redis %s: connected to %s", r->st->name, r->st->server);
    r->failures = 0;
    period = r->conf->io_timeout_ms / 2;
    tv = clock_tv_ms(period > 1000 ? 1000 : period < 5 ? 5 : period);
    evtimer_add(r->watch_ev, &tv); /* persistent: every period while ready */
    if (r->channel != NULL)
        subscribe(r);
    else if (r->ready_fn != NULL)
        r->ready_fn(r->ready_arg);
}

/* Subscriber: (re)send SUBSCRIBE; message_cb clears probe_sent_us when Redis confirms it. It is
 * also the idle subscriber's liveness probe: hiredis 0.14 cannot PING in subscribed mode (it files
 * the reply's callback where no reply ever takes it: one allocation lost per ping), while Redis
 * confirms every SUBSCRIBE, even of a channel already held, and hiredis routes the confirmation
 * to the channel's callback like the first one. */
static void
subscribe(struct redis *r)
{
    if (redisAsyncCommand(r->ac, message_cb, r, "SUBSCRIBE %s", r->channel) == REDIS_OK)
        r->probe_sent_us = r->last_io_us = clock_mono_us();
}

/* READY: a reply overdue by io_timeout_ms drops the connection; an idle one is probed: a PING,
 * or for a subscriber, which may hear nothing for long, its SUBSCRIBE again. */
static void
watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis *r = arg;
    uint64_t now = clock_mono_us(), limit = (uint64_t)r->conf->io_timeout_ms * 1000;
    struct redis_op *oldest = TAILQ_FIRST(&r->ops);

    if (r->state != REDIS_READY)
        return;
    if ((oldest != NULL && now - oldest->sent_us > limit) ||
        (r->probe_sent_us != 0 && now - r->probe_sent_us > limit)) {
        drop(r, false, "no reply in time");
        return;
    }
    if (oldest == NULL && r->probe_sent_us == 0 && now - r->last_io_us > PING_IDLE_US) {
        if (r->channel != NULL)
            subscribe(r);
        else
            redis_command(r, 0, NULL, NULL, "PING");
    }
}

/* AUTH / SELECT / ROLE replies during CONNECTING. */
static void
/* cppcheck-suppress constParameter ; hiredis's redisCallbackFn gives a non-const context */
handshake_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis *r = priv;
    const redisReply *rep = reply;

    if (r->ac != ac || r->state != REDIS_CONNECTING)
        return;
    if (rep == NULL)
        return; /* the connection is going; onDisconnect handles it */
    if (rep->type == REDIS_REPLY_ERROR) {
        char why[160];
        /* the text of an AUTH error never holds the password */
        snprintf(why, sizeof(why), "%.120s", rep->str);
        drop(r, false, why);
        return;
    }
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 &&
        rep->element[0]->type == REDIS_REPLY_STRING && strcmp(rep->element[0]->str, "master") != 0) {
        drop(r, false, "the sentinels' master is not a master (yet)");
        return;
    }
    if (--r->handshake_left == 0)
        became_ready(r);
}

static void
on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct redis *r = ac->data;
    const struct redis_conf *cf = r->conf;

    if (r->ac != ac)
        return;
    if (status != REDIS_OK && r->state == REDIS_RESOLVING) {
        log_warn("redis %s: cannot reach sentinel %s (%s)", r->st->name,
                 cf->sentinels[r->sentinel], ac->errstr[0] ? ac->errstr : "connect failed");
        r->ac = NULL; /* hiredis frees it */
        r->sentinel++;
        connect_next(r);
        return;
    }
    if (status != REDIS_OK) {
        drop(r, true, ac->errstr[0] ? ac->errstr : "connect failed");
        return;
    }
    if (r->state == REDIS_RESOLVING)
        return; /* the question is queued already; sentinel_cb takes the answer */
    r->handshake_left = 0;
    if (cf->password != NULL && cf->username != NULL)
        r->handshake_left += redisAsyncCommand(ac, handshake_cb, r, "AUTH %s %s", cf->username,
                                               cf->password) == REDIS_OK;
    else if (cf->password != NULL)
        r->handshake_left += redisAsyncCommand(ac, handshake_cb, r, "AUTH %s", cf->password) ==
                             REDIS_OK;
    if (cf->database != 0)
        r->handshake_left += redisAsyncCommand(ac, handshake_cb, r, "SELECT %d", cf->database) ==
                             REDIS_OK;
    if (cf->nsentinels > 0)
        r->handshake_left += redisAsyncCommand(ac, handshake_cb, r, "ROLE") == REDIS_OK;
    /* PING proves the server answers before anything counts on it */
    r->handshake_left += redisAsyncCommand(ac, handshake_cb, r, "PING") == REDIS_OK;
}

static void
on_disconnect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct redis *r = ac->data;

    if (r->ac != ac)
        return; /* a teardown we started */
    drop(r, true, ac->errstr[0] ? ac->errstr : "closed by the server");
}

/* A port as a sentinel writes it (decimal, 1..65535), or -1. */
static int
sentinel_port(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);

    return end != s && *end == '\0' && v >= 1 && v <= 65535 ? (int)v : -1;
}

/* The sentinel's answer: ["host", "port"], or nil when it knows no such master. */
static void
sentinel_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis *r = priv;
    const redisReply *rep = reply;
    redisAsyncContext *old = r->ac;
    int port = -1;

    if (old != ac || r->state != REDIS_RESOLVING || rep == NULL)
        return;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_STRING ||
        (port = sentinel_port(rep->element[1]->str)) < 0) {
        log_warn("redis %s: sentinel %s does not know master %s", r->st->name,
                 r->conf->sentinels[r->sentinel], r->conf->master_name);
        r->ac = NULL;
        redisAsyncFree(old); /* deferred by hiredis until this callback returns */
        r->sentinel++;
        connect_next(r);
        return;
    }
    snprintf(r->master_host, sizeof(r->master_host), "%s", rep->element[0]->str);
    r->master_port = port;
    r->ac = NULL;
    redisAsyncFree(old);
    r->sentinel = r->conf->nsentinels; /* resolved: the master is next */
    connect_next(r);
}

static int
open_context(struct redis *r, const char *host, int port)
{
    redisAsyncContext *ac = redisAsyncConnect(host, port);

    set_server(r, host, port);
    if (ac == NULL || ac->err) {
        if (ac != NULL)
            redisAsyncFree(ac);
        return -1;
    }
    ac->data = r;
    r->ac = ac;
    if (redisLibeventAttach(ac, r->base) != REDIS_OK) {
        r->ac = NULL;
        redisAsyncFree(ac);
        return -1;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    return 0;
}

/* The next step of an attempt: a sentinel to ask, or the server itself. */
static void
connect_next(struct redis *r)
{
    const struct redis_conf *cf = r->conf;
    char host[64];
    int port;

    if (cf->nsentinels > 0 && r->sentinel < cf->nsentinels) {
        const struct addr *a = &cf->sentinel_addrs[r->sentinel];
        set_state(r, REDIS_RESOLVING);
        addr_host_string((const struct sockaddr *)&a->ss, host, sizeof(host));
        port = (int)addr_port((const struct sockaddr *)&a->ss);
        if (open_context(r, host, port) < 0 ||
            redisAsyncCommand(r->ac, sentinel_cb, r, "SENTINEL get-master-addr-by-name %s",
                              cf->master_name) != REDIS_OK) {
            drop(r, false, "cannot reach a sentinel");
            return;
        }
        return;
    }
    if (cf->nsentinels > 0 && r->master_port == 0) {
        drop(r, false, "no sentinel knows the master");
        return;
    }
    set_state(r, REDIS_CONNECTING);
    if (cf->nsentinels > 0) {
        snprintf(host, sizeof(host), "%s", r->master_host);
        port = r->master_port;
    } else {
        addr_host_string((const struct sockaddr *)&cf->addr.ss, host, sizeof(host));
        port = (int)addr_port((const struct sockaddr *)&cf->addr.ss);
    }
    if (open_context(r, host, port) < 0)
        drop(r, false, "cannot create a socket");
}

/* RESOLVING or CONNECTING took connect_timeout_ms. */
static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis *r = arg;

    if (r->state == REDIS_RESOLVING && r->sentinel + 1 < r->conf->nsentinels) {
        redisAsyncContext *ac = r->ac;
        struct timeval tv = clock_tv_ms(r->conf->connect_timeout_ms);
        r->ac = NULL;
        if (ac != NULL)
            redisAsyncFree(ac);
        r->sentinel++;
        evtimer_add(r->deadline_ev, &tv);
        connect_next(r);
        return;
    }
    drop(r, false, "timed out");
}

/* BACKOFF over: a new attempt, from the first sentinel. */
static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis *r = arg;
    struct timeval tv = clock_tv_ms(r->conf->connect_timeout_ms);

    r->sentinel = 0;
    r->master_port = 0;
    evtimer_add(r->deadline_ev, &tv);
    connect_next(r);
}

struct redis *
redis_new(struct event_base *base, const struct redis_conf *conf, struct redis_stats *stats)
{
    struct redis *r = calloc(1, sizeof(*r));
    struct timeval now = {0, 0};

    if (r == NULL)
        return NULL;
    r->base = base;
    r->conf = conf;
    r->st = stats;
    TAILQ_INIT(&r->ops);
    r->retry_ev = evtimer_new(base, retry_cb, r);
    r->deadline_ev = evtimer_new(base, deadline_cb, r);
    r->watch_ev = event_new(base, -1, EV_PERSIST, watch_cb, r);
    if (r->retry_ev == NULL || r->deadline_ev == NULL || r->watch_ev == NULL) {
        redis_free(r);
        return NULL;
    }
    set_state(r, REDIS_BACKOFF);
    evtimer_add(r->retry_ev, &now); /* connect from the loop, not from the constructor */
    return r;
}

void
redis_free(struct redis *r)
{
    if (r == NULL)
        return;
    set_state(r, REDIS_STOPPED);
    drop(r, false, "stopped");
    if (r->retry_ev != NULL)
        event_free(r->retry_ev);
    if (r->deadline_ev != NULL)
        event_free(r->deadline_ev);
    if (r->watch_ev != NULL)
        event_free(r->watch_ev);
    free(r->channel);
    free(r);
}

void
redis_reset(struct redis *r)
{
    if (r != NULL && r->ac != NULL)
        drop(r, false, "reset");
}

void
redis_on_ready(struct redis *r, void (*fn)(void *arg), void *arg)
{
    r->ready_fn = fn;
    r->ready_arg = arg;
}

/* Subscriber: ["message", channel, payload] for each message; ["subscribe", channel, n] for
 * each SUBSCRIBE sent: the first of a connection, then the liveness probes. */
static void
/* cppcheck-suppress constParameter ; hiredis's redisCallbackFn gives a non-const context */
message_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis *r = priv;
    const redisReply *rep = reply;

    if (rep == NULL || r->ac != ac || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(rep->element[0]->str, "subscribe") == 0) {
        r->last_io_us = clock_mono_us();
        r->probe_sent_us = 0;
        if (!r->subscribed) { /* from now on nothing is missed */
            r->subscribed = true;
            if (r->ready_fn != NULL)
                r->ready_fn(r->ready_arg);
        }
        return;
    }
    if (strcmp(rep->element[0]->str, "message") != 0 || rep->element[2]->type != REDIS_REPLY_STRING)
        return;
    r->last_io_us = clock_mono_us();
    r->message_fn(rep->element[2]->str, rep->element[2]->len, r->message_arg);
}

int
redis_subscribe(struct redis *r, const char *channel,
                void (*fn)(const char *payload, size_t len, void *arg), void *arg)
{
    free(r->channel);
    r->channel = strdup(channel);
    r->message_fn = fn;
    r->message_arg = arg;
    return r->channel != NULL ? 0 : -1;
}
