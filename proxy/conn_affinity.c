/*
 * conn_affinity: sticky sessions in a request's life.
 *
 * A session that nobody knows yet (a new issued id, or a cookie Redis has no mapping for) goes
 * where the session key's weighted rendezvous hash says: every instance and worker computes the
 * same server without asking anyone, and a new session costs Redis nothing (clients that never
 * come back, such as scripts, leave no key behind). A known session's server comes from, in
 * order: this worker's memory (if checked with Redis less than affinity.cache_ms ago), Redis
 * (GETEX, which also slides the TTL; the request waits in CONN_ROUTING at most
 * redis.command_timeout_ms), or, without a timely answer, memory however old, else the hash. A
 * session whose server cannot serve (down, draining, maintenance, gone from the config) moves, to
 * the same provider first, by the same hash: instances that see the same fleet agree on the new
 * server. At the response head the mapping is stored (SET with the TTL) when it is not stored
 * yet or changed, so a returning session keeps its server even when the hash would now say
 * another (a server back from an outage does not take sessions away); a new session gets its
 * cookie.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>

#include "affinity.h"
#include "clock.h"
#include "conn_int.h"
#include "health.h"
#include "redis.h"
#include "router.h"
#include "session_cache.h"
#include "worker.h"

static void
count(struct conn *c, enum affinity_result r)
{
    atomic_fetch_add_explicit(&c->w->affinity[r], 1, memory_order_relaxed);
}

/* The worker's memory holds server indexes of the worker's current router only. */
static struct session_cache *
cache_of(struct conn *c)
{
    return c->router == c->w->router ? c->w->sessions : NULL;
}

static uint32_t
down_epoch(const struct conn *c, const struct server_rt *s)
{
    return c->router->table != NULL ? atomic_load(&c->router->table->servers[s->index].down_epoch)
                                    : 0;
}

static void
remember(struct conn *c, struct server_rt *s)
{
    session_cache_put(cache_of(c), c->x->aff.key, (uint32_t)s->index, down_epoch(c, s),
                      clock_mono_us());
}

/* The server a cache entry names, if it still serves and did not stop serving since. */
static struct server_rt *
entry_server(struct conn *c, const struct session_entry *e)
{
    struct server_rt *s = e != NULL ? router_at(c->router, e->server) : NULL;

    if (s == NULL || !router_server_usable(c->router, s) || down_epoch(c, s) != e->epoch)
        return NULL;
    return s;
}

/* The session's server `s` (may be NULL: unknown id) cannot serve: where the session goes. */
static void
move(struct conn *c, const struct server_rt *s)
{
    c->x->aff.server = router_choose_for_key(c->router, c->x->aff.key,
                                            s != NULL ? s->cluster->conf->provider : NULL);
    c->x->aff.stored = NULL;
    count(c, AFFINITY_MOVED);
}

/* No answer from Redis: memory however old, else the key's hash. */
static void
decide_locally(struct conn *c)
{
    struct session_entry *e = session_cache_get(cache_of(c), c->x->aff.key);
    struct server_rt *s = e != NULL ? router_at(c->router, e->server) : NULL;

    if (s != NULL && !router_server_usable(c->router, s)) {
        move(c, s);
        return;
    }
    c->x->aff.server = s != NULL ? s : router_choose_for_key(c->router, c->x->aff.key, NULL);
    c->x->aff.stored = s; /* memory came from Redis or went to it: no write while it is away */
    count(c, AFFINITY_LOCAL);
}

static void
lookup_cb(const redisReply *reply, void *arg)
{
    struct conn *c = arg;
    struct server_rt *s;

    c->x->aff.op = NULL;
    if (c->state != CONN_ROUTING)
        return;
    if (reply != NULL && reply->type == REDIS_REPLY_STRING) {
        s = router_find(c->router, reply->str, reply->len);
        if (s != NULL && router_server_usable(c->router, s)) {
            c->x->aff.server = c->x->aff.stored = s;
            remember(c, s);
            count(c, AFFINITY_REDIS);
        } else {
            move(c, s);
        }
    } else if (reply != NULL && reply->type == REDIS_REPLY_NIL) {
        /* not stored yet (a session's second request), expired, or Redis lost it: memory, else
         * the hash; written back after the response */
        c->x->aff.server = entry_server(c, session_cache_get(cache_of(c), c->x->aff.key));
        if (c->x->aff.server == NULL)
            c->x->aff.server = router_choose_for_key(c->router, c->x->aff.key, NULL);
        count(c, AFFINITY_NEW);
    } else {
        decide_locally(c);
    }
    conn_start_attempt(c);
}

/* A session cookie trident issued earlier, the application's, or none (then, with issued
 * cookies, a new session id). Returns whether c->x->aff.key is set from the request. */
static bool
find_session(struct conn *c, const struct affinity_conf *ac)
{
    struct exchange_affinity *x = &c->x->aff;
    struct slice v;

    if (affinity_request_cookie(&c->req, ac->cookie, &v) &&
        (ac->source == AFFINITY_APP || affinity_id_valid(v.p, v.n))) {
        affinity_key(v.p, v.n, x->key);
        x->keyed = true;
        return true;
    }
    if (ac->source == AFFINITY_ISSUED && affinity_new_id(x->id) == 0) {
        affinity_key(x->id, AFFINITY_ID_LEN, x->key);
        x->keyed = x->issue = true;
    }
    return false;
}

bool
conn_affinity_route(struct conn *c)
{
    const struct affinity_conf *ac = c->cfg->affinity;
    const struct redis_conf *rc = c->w->redis_cfg != NULL ? c->w->redis_cfg->redis : NULL;
    struct exchange_affinity *x = &c->x->aff;
    struct session_entry *e;
    char hex[33];

    if (ac == NULL || x->decided)
        return false;
    x->decided = true;
    if (!find_session(c, ac)) {
        if (x->issue) /* where the new id's hash points; stored if the session comes back */
            x->server = x->stored = router_choose_for_key(c->router, x->key, NULL);
        count(c, AFFINITY_NEW);
        return false;
    }
    e = session_cache_get(cache_of(c), x->key);
    if (e != NULL && clock_mono_us() - e->checked_us < (uint64_t)ac->cache_ms * 1000 &&
        (x->server = entry_server(c, e)) != NULL) {
        x->stored = x->server;
        count(c, AFFINITY_CACHE);
        return false;
    }
    affinity_key_hex(x->key, hex);
    if (rc != NULL)
        x->op = redis_command(c->w->redis, rc->command_timeout_ms, lookup_cb, c,
                              "GETEX %ssession:%s PX %lld", rc->prefix, hex,
                              (long long)ac->ttl_s * 1000);
    if (x->op != NULL)
        return true;
    decide_locally(c);
    return false;
}

static void
store(struct conn *c, struct server_rt *s)
{
    const struct redis_conf *rc = c->w->redis_cfg != NULL ? c->w->redis_cfg->redis : NULL;
    char hex[33];

    remember(c, s);
    c->x->aff.stored = s;
    if (rc == NULL)
        return;
    affinity_key_hex(c->x->aff.key, hex);
    redis_command(c->w->redis, 0, NULL, NULL, "SET %ssession:%s %s PX %lld", rc->prefix, hex,
                  s->conf->id, (long long)c->cfg->affinity->ttl_s * 1000);
}

void
conn_affinity_response(struct conn *c, struct rewrite_response_ctx *ctx, char *cookie,
                       size_t cookie_len)
{
    const struct affinity_conf *ac = c->cfg->affinity;
    struct exchange_affinity *x = &c->x->aff;
    struct server_rt *s = c->x->server;
    struct slice v;

    if (ac == NULL || s == NULL || (x->issue && ctx == NULL))
        return; /* (a new id that no cookie carries would map nothing) */
    if (ac->source == AFFINITY_APP && affinity_response_cookie(&c->up->resp, ac->cookie, &v)) {
        uint8_t key[16];
        affinity_key(v.p, v.n, key);
        if (!x->keyed || memcmp(key, x->key, sizeof(key)) != 0) {
            memcpy(x->key, key, sizeof(key)); /* the application started (or changed) a session */
            x->keyed = true;
            x->stored = NULL;
        }
    }
    if (x->issue && ctx != NULL &&
        affinity_set_cookie(ac, x->id, c->tls != NULL, cookie, cookie_len) > 0)
        ctx->set_cookie = cookie;
    /* A session moves when its server cannot serve, not because another one answered once (a
     * hedge won, or a retry after a reset) while the stored server still serves. */
    if (x->keyed && x->stored != s &&
        (x->stored == NULL || !router_server_usable(c->router, x->stored)))
        store(c, s);
}

void
conn_affinity_cancel(struct conn *c)
{
    redis_cancel(c->x->aff.op);
    c->x->aff.op = NULL;
}
