/*
 * fleet: the main thread's two Redis connections (commands, and a subscriber on
 * <prefix>events) and what travels over them.
 *
 * Health. Transitions this instance observed itself (health_set_observer) are published as
 * "down"/"up" with their reason, and "down" is renewed every vote_ttl_ms/3 while it holds. A
 * peer's new "down" is a vote: the health thread suspects the server and checks it at once
 * (FLEET_SUSPECT: one instance with a broken link cannot take a healthy server from the fleet);
 * `quorum` live votes take it out whatever the checks here say, until fewer hold. A peer's "up"
 * withdraws its vote; votes also expire. "Up" never comes from a peer: checks here bring a
 * server back.
 *
 * Admin states live in the hash <prefix>admin (absent: ready) and are published as "admin". At
 * every (re)connect, changes made here while Redis was away are pushed first, then the hash is
 * applied: an instance started later, or cut off a while, catches up.
 *
 * Ticket keys: <prefix>tickets holds "created_ms:hex,..." newest first. At connect, on a peer's
 * "tickets" and every quarter period, the set is read; keys older than three periods are
 * dropped; if the newest is older than one period, a new key is made and written with a
 * compare-and-set (one instance wins, the others read the winner's set). Every instance installs
 * the same set, so a session resumes anywhere. Keys are never logged.
 *
 * A "hello" every second names the instance (the peers in /status) and, heard back, proves the
 * subscriber still receives: one that hears nothing for 3 s is reconnected. The peers are the
 * other instances heard from; this one is always counted and listed, Redis or not.
 */
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "fleet.h"
#include "health.h"
#include "hex.h"
#include "log.h"
#include "redis.h"
#include "tls_tickets.h"

#define NAME_MAX_LEN 65
#define MAX_VOTES 4096
#define MAX_PEERS 256
#define MAX_NEWS 256
#define MAX_PENDING 1024
#define PEER_FORGET_US 10000000 /* a peer silent this long is no longer listed */
#define SUB_SILENCE_US 3000000  /* own heartbeat unheard this long: the subscriber is dead */
#define TICKET_KEYS_TEXT ((size_t)TLS_TICKET_KEYS * (21 + 1 + 160 + 1))
#define HELLO_US 1000000        /* heartbeat period */
#define ADMIN_RESYNC_US 10000000 /* the admin hash is read again this often (anti-entropy) */
/* A field of the admin hash that is no server id (ids are [A-Za-z0-9._-]): its absence means
 * the hash was lost (Redis restarted empty), not that every server is ready. */
#define ADMIN_MARK "@fleet"

struct vote {
    char server[NAME_MAX_LEN], instance[NAME_MAX_LEN];
    uint64_t expires_us;
};

struct peer {
    char instance[NAME_MAX_LEN];
    uint64_t seen_us;
};

struct news { /* health thread -> main thread */
    char server[NAME_MAX_LEN];
    bool down;
    char reason[64];
};

struct pending_admin {
    char server[NAME_MAX_LEN];
    enum admin_state state;
};

struct fleet {
    struct event_base *base;
    struct config *redis_cfg; /* whose redis section the connections use (a reference) */
    struct config *cfg;       /* current (a reference) */
    struct health *health;    /* current (a reference) */
    struct tls_tickets *tickets;
    struct redis *cmd, *sub;
    struct redis_stats *cmd_stats;
    char channel[128], admin_key[128], tickets_key[128];
    struct event *tick_ev, *news_ev;
    pthread_mutex_t lock; /* news */
    struct news news[MAX_NEWS];
    size_t nnews;
    struct vote *votes;
    size_t nvotes;
    struct peer peers[MAX_PEERS]; /* the other instances heard from (never this one) */
    size_t npeers;
    char (*own_down)[NAME_MAX_LEN]; /* servers this instance sees down (renewed) */
    size_t nown_down;
    char (*quorum_out)[NAME_MAX_LEN]; /* servers out here by a quorum of votes */
    size_t nquorum_out;
    struct pending_admin pending[MAX_PENDING];
    size_t npending;
    bool synced;                /* admin states and keys read once */
    uint64_t heard_self_us;     /* our own hello came back (subscriber alive) */
    uint64_t renewed_us, tickets_checked_us, hello_us, admin_read_us;
    int tick_ms;                /* min(1 s, vote_ttl_ms / 4): votes renew and expire on time */
};

static const char *
instance_id(const struct fleet *f)
{
    return f->cfg->instance_id;
}

/* Index of server `id` in the current config, or -1. */
static long
server_index(const struct fleet *f, const char *id)
{
    long k = 0;

    for (size_t i = 0; i < f->cfg->nclusters; i++)
        for (size_t j = 0; j < f->cfg->clusters[i].nservers; j++, k++)
            if (strcmp(f->cfg->clusters[i].servers[j].id, id) == 0)
                return k;
    return -1;
}

/* A tiny set of names (own_down, quorum_out). */
static bool
set_has(char (*set)[NAME_MAX_LEN], size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(set[i], name) == 0)
            return true;
    return false;
}

static void
set_del(char (*set)[NAME_MAX_LEN], size_t *n, const char *name)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(set[i], name) == 0) {
            memmove(set[i], set[*n - 1], NAME_MAX_LEN);
            (*n)--;
            return;
        }
}

static void
set_add(char (*set)[NAME_MAX_LEN], size_t *n, size_t cap, const char *name)
{
    if (!set_has(set, *n, name) && *n < cap)
        snprintf(set[(*n)++], NAME_MAX_LEN, "%s", name);
}

/* ---- publishing ---------------------------------------------------------------------------- */

static void
publish(struct fleet *f, const char *type, const char *server, const char *key, const char *val)
{
    json_t *m = json_pack("{s:i, s:s, s:s}", "v", 1, "instance", instance_id(f), "type", type);
    char *text;

    if (server != NULL)
        json_object_set_new(m, "server", json_string(server));
    if (key != NULL)
        json_object_set_new(m, key, json_string(val));
    text = json_dumps(m, JSON_COMPACT);
    if (text != NULL)
        redis_command(f->cmd, 0, NULL, NULL, "PUBLISH %s %s", f->channel, text);
    free(text);
    json_decref(m);
}

/* Health thread: a first-hand transition. Queued for the main thread. */
static void
observer(void *arg, const char *server_id, enum health_state to, enum check_reason why)
{
    struct fleet *f = arg;

    if (to == HEALTH_UNKNOWN)
        return;
    pthread_mutex_lock(&f->lock);
    if (f->nnews < MAX_NEWS) {
        struct news *n = &f->news[f->nnews++];
        snprintf(n->server, sizeof(n->server), "%s", server_id);
        n->down = to == HEALTH_DOWN;
        snprintf(n->reason, sizeof(n->reason), "%s", check_reason_name(why));
    }
    pthread_mutex_unlock(&f->lock);
    event_active(f->news_ev, EV_READ, 0);
}

static void
news_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fleet *f = arg;
    struct news batch[MAX_NEWS];
    size_t n;

    pthread_mutex_lock(&f->lock);
    n = f->nnews;
    memcpy(batch, f->news, n * sizeof(*batch));
    f->nnews = 0;
    pthread_mutex_unlock(&f->lock);
    for (size_t i = 0; i < n; i++) {
        if (batch[i].down)
            set_add(f->own_down, &f->nown_down, MAX_VOTES, batch[i].server);
        else
            set_del(f->own_down, &f->nown_down, batch[i].server);
        if (f->cfg->fleet.share_health)
            publish(f, batch[i].down ? "down" : "up", batch[i].server, "reason", batch[i].reason);
    }
}

/* ---- votes ------------------------------------------------------------------------------------ */

static size_t
votes_for(const struct fleet *f, const char *server)
{
    size_t n = 0;

    for (size_t i = 0; i < f->nvotes; i++)
        n += strcmp(f->votes[i].server, server) == 0;
    return n;
}

/* Whether a quorum holds for server now; tell the health thread when that changed. */
static void
evaluate(struct fleet *f, const char *server)
{
    long idx = server_index(f, server);
    bool out = set_has(f->quorum_out, f->nquorum_out, server);
    bool quorum = votes_for(f, server) >= (size_t)f->cfg->fleet.quorum;

    if (idx < 0 || quorum == out || f->health == NULL)
        return;
    if (quorum)
        set_add(f->quorum_out, &f->nquorum_out, MAX_VOTES, server);
    else
        set_del(f->quorum_out, &f->nquorum_out, server);
    health_fleet(f->health, (size_t)idx, quorum ? FLEET_QUORUM_DOWN : FLEET_QUORUM_CLEAR, NULL);
}

/* Returns whether the vote is new (not a renewal). */
static bool
vote(struct fleet *f, const char *server, const char *instance)
{
    uint64_t expires = clock_mono_us() + (uint64_t)f->cfg->fleet.vote_ttl_ms * 1000;

    for (size_t i = 0; i < f->nvotes; i++)
        if (strcmp(f->votes[i].server, server) == 0 &&
            strcmp(f->votes[i].instance, instance) == 0) {
            f->votes[i].expires_us = expires;
            return false;
        }
    if (f->nvotes == MAX_VOTES)
        return false;
    snprintf(f->votes[f->nvotes].server, NAME_MAX_LEN, "%s", server);
    snprintf(f->votes[f->nvotes].instance, NAME_MAX_LEN, "%s", instance);
    f->votes[f->nvotes++].expires_us = expires;
    return true;
}

static void
unvote(struct fleet *f, const char *server, const char *instance)
{
    for (size_t i = 0; i < f->nvotes; i++)
        if (strcmp(f->votes[i].server, server) == 0 &&
            strcmp(f->votes[i].instance, instance) == 0) {
            f->votes[i] = f->votes[--f->nvotes];
            break;
        }
    evaluate(f, server);
}

static void
expire_votes(struct fleet *f, uint64_t now)
{
    for (size_t i = 0; i < f->nvotes;) {
        if (f->votes[i].expires_us > now) {
            i++;
            continue;
        }
        char server[NAME_MAX_LEN];
        snprintf(server, sizeof(server), "%s", f->votes[i].server);
        f->votes[i] = f->votes[--f->nvotes];
        evaluate(f, server);
    }
}

static void
peer_seen(struct fleet *f, const char *instance, uint64_t now)
{
    for (size_t i = 0; i < f->npeers; i++)
        if (strcmp(f->peers[i].instance, instance) == 0) {
            f->peers[i].seen_us = now;
            return;
        }
    if (f->npeers < MAX_PEERS) {
        snprintf(f->peers[f->npeers].instance, NAME_MAX_LEN, "%s", instance);
        f->peers[f->npeers++].seen_us = now;
        log_info("fleet: instance %s is up", instance);
    }
}

/* ---- ticket keys ----------------------------------------------------------------------------- */

static bool
sharing_tickets(const struct fleet *f)
{
    return f->tickets != NULL && f->cfg->fleet.share_tickets &&
           config_ticket_rotate_s(f->cfg) > 0;
}

struct stored_key {
    long long created_ms;
    struct tls_ticket_key key;
};

/* Parse "ms:hex,ms:hex,..." keeping keys younger than `oldest_ms`; returns how many. */
static int
parse_keys(const char *text, size_t len, long long oldest_ms, struct stored_key *out)
{
    int n = 0;
    size_t i = 0;

    while (i < len && n < TLS_TICKET_KEYS) {
        struct stored_key k;
        uint8_t *raw = (uint8_t *)&k.key;
        char *end;

        k.created_ms = strtoll(text + i, &end, 10);
        i = (size_t)(end - text);
        if (i >= len || text[i] != ':' || i + 1 + 2 * sizeof(k.key) > len)
            break;
        i++;
        for (size_t b = 0; b < sizeof(k.key); b++, i += 2) {
            int hi = hex_value(text[i]), lo = hex_value(text[i + 1]);
            if (hi < 0 || lo < 0)
                return n;
            raw[b] = (uint8_t)(hi << 4 | lo);
        }
        if (k.created_ms >= oldest_ms)
            out[n++] = k;
        OPENSSL_cleanse(&k, sizeof(k));
        if (i < len && text[i] == ',')
            i++;
    }
    return n;
}

static void
format_keys(const struct stored_key *keys, int n, char *buf, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (int k = 0; k < n && o + 200 < len; k++) {
        const uint8_t *raw = (const uint8_t *)&keys[k].key;
        o += (size_t)snprintf(buf + o, len - o, "%s%lld:", k ? "," : "", keys[k].created_ms);
        for (size_t b = 0; b < sizeof(keys[k].key); b++) {
            buf[o++] = hex[raw[b] >> 4];
            buf[o++] = hex[raw[b] & 15];
        }
    }
    buf[o] = '\0';
}

/* A key lives three periods from its creation, whoever made it. */
static void
install(struct fleet *f, const struct stored_key *keys, int n, long long period_ms)
{
    struct tls_ticket_key k[TLS_TICKET_KEYS];
    long long expires_ms[TLS_TICKET_KEYS];

    for (int i = 0; i < n; i++) {
        k[i] = keys[i].key;
        expires_ms[i] = keys[i].created_ms + 3 * period_ms;
    }
    if (n > 0)
        tls_tickets_replace(f->tickets, k, expires_ms, n);
    OPENSSL_cleanse(k, sizeof(k));
}

static void tickets_sync(struct fleet *f);

static void
tickets_cas_cb(const redisReply *reply, void *arg)
{
    struct fleet *f = arg;

    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
        publish(f, "tickets", NULL, NULL, NULL);
        tickets_sync(f); /* read back and install what won */
        return;
    }
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER)
        tickets_sync(f); /* another instance rotated first: take its set */
}

/* The set as read: install it, or rotate first when its newest key is due. */
static void
tickets_read_cb(const redisReply *reply, void *arg)
{
    static const char cas[] =
        "local cur = redis.call('GET', KEYS[1]) "
        "if (cur == false and ARGV[1] == '') or cur == ARGV[1] then "
        "redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0";
    struct fleet *f = arg;
    long long period_ms = (long long)config_ticket_rotate_s(f->cfg) * 1000, now = clock_wall_ms();
    struct stored_key keys[TLS_TICKET_KEYS + 1];
    char old[TICKET_KEYS_TEXT + 1] = "", next[TICKET_KEYS_TEXT + 1];
    int n = 0;

    if (reply == NULL || (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_NIL))
        return; /* Redis away: the local rotation goes on */
    f->tickets_checked_us = clock_mono_us();
    if (reply->type == REDIS_REPLY_STRING && reply->len <= TICKET_KEYS_TEXT) {
        memcpy(old, reply->str, reply->len);
        old[reply->len] = '\0';
        n = parse_keys(reply->str, reply->len, now - 3 * period_ms, keys + 1);
    }
    if (n > 0 && keys[1].created_ms > now - period_ms) {
        install(f, keys + 1, n, period_ms);
        OPENSSL_cleanse(keys, sizeof(keys));
        return;
    }
    keys[0].created_ms = now;
    if (RAND_bytes((unsigned char *)&keys[0].key, sizeof(keys[0].key)) == 1) {
        format_keys(keys, n + 1 > TLS_TICKET_KEYS ? TLS_TICKET_KEYS : n + 1, next, sizeof(next));
        redis_command(f->cmd, 0, tickets_cas_cb, f, "EVAL %s 1 %s %s %s", cas, f->tickets_key,
                      reply->type == REDIS_REPLY_STRING ? old : "", next);
    }
    OPENSSL_cleanse(keys, sizeof(keys));
    OPENSSL_cleanse(next, sizeof(next));
    OPENSSL_cleanse(old, sizeof(old));
}

static void
tickets_sync(struct fleet *f)
{
    if (sharing_tickets(f))
        redis_command(f->cmd, 0, tickets_read_cb, f, "GET %s", f->tickets_key);
}

bool
fleet_owns_tickets(const struct fleet *f)
{
    return f != NULL && sharing_tickets(f) && redis_ready(f->cmd) && f->tickets_checked_us != 0;
}

/* ---- admin states ------------------------------------------------------------------------------ */

static int
admin_from_name(const char *s, enum admin_state *out)
{
    if (strcmp(s, "draining") == 0)
        *out = ADMIN_DRAINING;
    else if (strcmp(s, "maintenance") == 0)
        *out = ADMIN_MAINTENANCE;
    else if (strcmp(s, "ready") == 0)
        *out = ADMIN_READY;
    else
        return -1;
    return 0;
}

static void
send_admin(struct fleet *f, const char *server, enum admin_state state)
{
    if (state == ADMIN_READY) {
        redis_command(f->cmd, 0, NULL, NULL, "HSET %s %s 1", f->admin_key, ADMIN_MARK);
        redis_command(f->cmd, 0, NULL, NULL, "HDEL %s %s", f->admin_key, server);
    } else {
        redis_command(f->cmd, 0, NULL, NULL, "HSET %s %s 1 %s %s", f->admin_key, ADMIN_MARK,
                      server, admin_state_name(state));
    }
    publish(f, "admin", server, "state", admin_state_name(state));
}

/* The hash was lost (Redis restarted without its data): write back what holds here, so that
 * the fleet converges on the operators' last word instead of forgetting it. */
static void
admin_restore(struct fleet *f)
{
    const struct health_table *t = health_table(f->health);
    size_t k = 0, n = 0;

    for (size_t i = 0; i < f->cfg->nclusters; i++)
        for (size_t j = 0; j < f->cfg->clusters[i].nservers; j++, k++) {
            enum admin_state st = (enum admin_state)atomic_load(&t->servers[k].admin);
            if (st != ADMIN_READY) {
                send_admin(f, f->cfg->clusters[i].servers[j].id, st);
                n++;
            }
        }
    if (n > 0)
        log_warn("fleet: the shared admin states were lost (Redis restarted empty?); wrote "
                 "back this instance's %zu", n);
}

void
fleet_admin_changed(struct fleet *f, const char *server_id, enum admin_state state)
{
    if (f == NULL || !f->cfg->fleet.share_admin)
        return;
    if (redis_ready(f->cmd)) {
        send_admin(f, server_id, state);
        return;
    }
    for (size_t i = 0; i < f->npending; i++)
        if (strcmp(f->pending[i].server, server_id) == 0) {
            f->pending[i].state = state;
            return;
        }
    if (f->npending < MAX_PENDING) {
        snprintf(f->pending[f->npending].server, NAME_MAX_LEN, "%s", server_id);
        f->pending[f->npending++].state = state;
    }
}

/* Make every server's admin state what the hash says (absent: ready). */
static void
admin_read_cb(const redisReply *reply, void *arg)
{
    struct fleet *f = arg;
    const struct health_table *t = health_table(f->health);
    long k = 0;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || f->health == NULL)
        return;
    f->synced = true;
    if (reply->elements == 0) {
        admin_restore(f);
        return;
    }
    for (size_t i = 0; i < f->cfg->nclusters; i++)
        for (size_t j = 0; j < f->cfg->clusters[i].nservers; j++, k++) {
            const char *id = f->cfg->clusters[i].servers[j].id;
            enum admin_state want = ADMIN_READY;
            for (size_t e = 0; e + 1 < reply->elements; e += 2)
                if (reply->element[e]->type == REDIS_REPLY_STRING &&
                    reply->element[e + 1]->type == REDIS_REPLY_STRING &&
                    strcmp(reply->element[e]->str, id) == 0)
                    admin_from_name(reply->element[e + 1]->str, &want);
            if (atomic_load(&t->servers[k].admin) != (uint8_t)want) {
                log_info("fleet: server %s is %s in the fleet", id, admin_state_name(want));
                health_set_admin(f->health, (size_t)k, want);
            }
        }
}

static void
admin_sync(struct fleet *f)
{
    if (!f->cfg->fleet.share_admin) {
        f->synced = true;
        return;
    }
    for (size_t i = 0; i < f->npending; i++)
        send_admin(f, f->pending[i].server, f->pending[i].state);
    f->npending = 0;
    f->admin_read_us = clock_mono_us();
    redis_command(f->cmd, 0, admin_read_cb, f, "HGETALL %s", f->admin_key);
}

/* ---- messages ---------------------------------------------------------------------------------- */

static void
take_down(struct fleet *f, const char *from, const char *server)
{
    long idx = server_index(f, server);

    if (idx < 0 || !f->cfg->fleet.share_health)
        return;
    if (vote(f, server, from) && votes_for(f, server) < (size_t)f->cfg->fleet.quorum)
        health_fleet(f->health, (size_t)idx, FLEET_SUSPECT, from);
    evaluate(f, server);
}

static void
message_cb(const char *payload, size_t len, void *arg)
{
    struct fleet *f = arg;
    json_t *m = json_loadb(payload, len, 0, NULL);
    const char *from = NULL, *type = NULL, *server = NULL, *state = NULL;
    uint64_t now = clock_mono_us();
    enum admin_state st;
    long idx;

    if (f->health == NULL || m == NULL || json_unpack(m, "{s:s, s:s, s?s, s?s}", "instance", &from, "type", &type,
                                 "server", &server, "state", &state) < 0)
        goto done;
    if (strcmp(from, instance_id(f)) == 0) {
        f->heard_self_us = now;
        goto done;
    }
    peer_seen(f, from, now);
    if (strcmp(type, "down") == 0 && server != NULL)
        take_down(f, from, server);
    else if (strcmp(type, "up") == 0 && server != NULL)
        unvote(f, server, from);
    else if (strcmp(type, "admin") == 0 && server != NULL && state != NULL &&
             f->cfg->fleet.share_admin && admin_from_name(state, &st) == 0 &&
             (idx = server_index(f, server)) >= 0) {
        log_info("fleet: instance %s set server %s to %s", from, server, state);
        health_set_admin(f->health, (size_t)idx, st);
    } else if (strcmp(type, "tickets") == 0)
        tickets_sync(f);
done:
    json_decref(m);
}

/* ---- life -------------------------------------------------------------------------------------- */

static void
renew_own_downs(struct fleet *f)
{
    for (size_t i = 0; f->cfg->fleet.share_health && i < f->nown_down; i++)
        publish(f, "down", f->own_down[i], "reason", "still down");
}

/* The subscriber is (back) in: what was published while it was away is only in the hash. */
static void
sub_ready(void *arg)
{
    struct fleet *f = arg;

    if (redis_ready(f->cmd) && f->synced)
        admin_sync(f);
}

static void
cmd_ready(void *arg)
{
    struct fleet *f = arg;

    admin_sync(f);
    tickets_sync(f);
    renew_own_downs(f);
    f->heard_self_us = clock_mono_us();
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fleet *f = arg;
    uint64_t now = clock_mono_us();
    uint64_t renew_us = (uint64_t)f->cfg->fleet.vote_ttl_ms * 1000 / 3;
    uint64_t tickets_us = (uint64_t)config_ticket_rotate_s(f->cfg) * 1000000 / 4;

    expire_votes(f, now);
    for (size_t i = 0; i < f->npeers;) {
        if (now - f->peers[i].seen_us > PEER_FORGET_US)
            f->peers[i] = f->peers[--f->npeers];
        else
            i++;
    }
    if (!redis_ready(f->cmd))
        return;
    if (now - f->hello_us >= HELLO_US) {
        publish(f, "hello", NULL, NULL, NULL);
        f->hello_us = now;
    }
    if (f->synced && now - f->admin_read_us >= ADMIN_RESYNC_US)
        admin_sync(f); /* a message lost anyway (subscriber gap) is caught up here */
    if (redis_ready(f->sub) && now - f->heard_self_us > SUB_SILENCE_US) {
        log_warn("fleet: the subscriber hears nothing; reconnecting it");
        redis_reset(f->sub);
        f->heard_self_us = now;
    }
    if (now - f->renewed_us >= renew_us) {
        renew_own_downs(f);
        f->renewed_us = now;
    }
    if (tickets_us > 60000000)
        tickets_us = 60000000;
    if (sharing_tickets(f) && now - f->tickets_checked_us >= tickets_us)
        tickets_sync(f);
}

/* Votes renew every vote_ttl_ms / 3 and expire after vote_ttl_ms: tick often enough for both. */
static int
tick_period_ms(const struct config *cfg)
{
    return cfg->fleet.vote_ttl_ms / 4 < 1000 ? cfg->fleet.vote_ttl_ms / 4 : 1000;
}

struct fleet *
fleet_new(struct event_base *base, struct config *cfg, struct redis_stats *cmd,
          struct redis_stats *sub, struct tls_tickets *tickets)
{
    struct fleet *f = calloc(1, sizeof(*f));
    const char *prefix = cfg->redis->prefix;
    struct timeval tick;

    if (f == NULL)
        return NULL;
    pthread_mutex_init(&f->lock, NULL);
    f->base = base;
    f->redis_cfg = config_ref(cfg);
    f->cfg = config_ref(cfg);
    f->tickets = tickets;
    f->cmd_stats = cmd;
    snprintf(f->channel, sizeof(f->channel), "%sevents", prefix);
    snprintf(f->admin_key, sizeof(f->admin_key), "%sadmin", prefix);
    snprintf(f->tickets_key, sizeof(f->tickets_key), "%stickets", prefix);
    f->votes = calloc(MAX_VOTES, sizeof(*f->votes));
    f->own_down = calloc(MAX_VOTES, sizeof(*f->own_down));
    f->quorum_out = calloc(MAX_VOTES, sizeof(*f->quorum_out));
    f->tick_ms = tick_period_ms(cfg);
    tick = clock_tv_ms(f->tick_ms);
    f->tick_ev = event_new(base, -1, EV_PERSIST, tick_cb, f);
    f->news_ev = event_new(base, -1, 0, news_cb, f);
    f->cmd = redis_new(base, cfg->redis, cmd);
    f->sub = redis_new(base, cfg->redis, sub);
    if (f->votes == NULL || f->own_down == NULL || f->quorum_out == NULL || f->tick_ev == NULL ||
        f->news_ev == NULL || f->cmd == NULL || f->sub == NULL ||
        redis_subscribe(f->sub, f->channel, message_cb, f) < 0 ||
        event_add(f->tick_ev, &tick) < 0) {
        fleet_free(f);
        return NULL;
    }
    redis_on_ready(f->cmd, cmd_ready, f);
    redis_on_ready(f->sub, sub_ready, f);
    return f;
}

void
fleet_free(struct fleet *f)
{
    if (f == NULL)
        return;
    redis_free(f->cmd);
    redis_free(f->sub);
    if (f->tick_ev != NULL)
        event_free(f->tick_ev);
    if (f->news_ev != NULL)
        event_free(f->news_ev);
    health_unref(f->health);
    config_unref(f->cfg);
    config_unref(f->redis_cfg);
    free(f->votes);
    free(f->own_down);
    free(f->quorum_out);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

void
fleet_observe(struct fleet *f, struct health *h)
{
    if (f != NULL)
        health_set_observer(h, observer, f);
}

void
fleet_attach(struct fleet *f, struct config *cfg, struct health *h)
{
    if (f == NULL)
        return;
    config_unref(f->cfg);
    f->cfg = config_ref(cfg);
    health_unref(f->health);
    f->health = health_ref(h);
    if (tick_period_ms(cfg) != f->tick_ms) {
        struct timeval tick = clock_tv_ms(f->tick_ms = tick_period_ms(cfg));
        event_add(f->tick_ev, &tick); /* re-arms the persistent timer with the new period */
    }
    /* the new health thread starts from carried-over state: re-assert what the fleet holds */
    f->nquorum_out = 0;
    for (size_t i = 0; i < f->nvotes; i++)
        evaluate(f, f->votes[i].server);
    if (redis_ready(f->cmd))
        admin_sync(f);
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

void
fleet_wait_sync(struct fleet *f, int ms)
{
    uint64_t deadline = clock_mono_us() + (uint64_t)ms * 1000;
    struct event *wake = evtimer_new(f->base, wake_cb, NULL);
    struct timeval tv = {0, 20000};

    while (wake != NULL && !f->synced && clock_mono_us() < deadline) {
        evtimer_add(wake, &tv); /* the loop returns at least this often */
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    if (wake != NULL)
        event_free(wake);
    if (!f->synced)
        log_warn("fleet: no answer from Redis within %d ms; starting with local state", ms);
}

size_t
fleet_instance_count(const struct fleet *f)
{
    return f != NULL ? f->npeers + 1 : 0;
}

json_t *
fleet_status(const struct fleet *f)
{
    json_t *o = json_object(), *peers = json_array(), *reports = json_array();
    uint64_t now = clock_mono_us();

    json_array_append_new(peers, json_pack("{s:s, s:I, s:b}", "instance", instance_id(f),
                                           "seen_ms_ago", (json_int_t)0, "self", 1));
    for (size_t i = 0; i < f->npeers; i++)
        json_array_append_new(peers, json_pack("{s:s, s:I}", "instance", f->peers[i].instance,
                                               "seen_ms_ago",
                                               (json_int_t)((now - f->peers[i].seen_us) / 1000)));
    for (size_t i = 0; i < f->nvotes; i++)
        json_array_append_new(reports, json_pack("{s:s, s:s}", "server", f->votes[i].server,
                                                 "instance", f->votes[i].instance));
    json_object_set_new(o, "instance", json_string(instance_id(f)));
    json_object_set_new(o, "peers", peers);
    json_object_set_new(o, "down_reports", reports);
    return o;
}
