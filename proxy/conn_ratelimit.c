/*
 * conn_ratelimit: rate limits in a request's life. At the head, every limit that applies counts
 * the request in this process's buckets (limiter_take): a request over one is answered 429 at
 * once, before its body is read (an instance's own traffic is part of the fleet's, so what the
 * instance refuses the fleet would refuse too). Limits marked shared are then counted across the
 * fleet in Redis: one script call for all of them, answered within redis.command_timeout_ms
 * while the request waits in CONN_ROUTING. Without a timely answer the local verdict stands:
 * Redis never fails or stalls a request.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>

#include "access_rules.h"
#include "affinity.h"
#include "clock.h"
#include "conn_int.h"
#include "limiter.h"
#include "log.h"
#include "ratelimit.h"
#include "redis.h"
#include "worker.h"

static int
retry_after_s(uint64_t us)
{
    uint64_t s = (us + 999999) / 1000000;

    return s < 1 ? 1 : s > 86400 ? 86400 : (int)s;
}

static void
refuse(struct conn *c, const struct rate_limit_conf *l, uint64_t retry_us)
{
    c->x->rule = l->name;
    c->x->rate.retry_after_s = retry_after_s(retry_us);
    log_debug("client %s: request %s over rate limit %s", c->client, c->x->id, l->name);
}

int
conn_ratelimit_head(struct conn *c, const struct access_request *r, const char *path)
{
    struct exchange_rate *x = &c->x->rate;
    uint64_t now = clock_mono_us();

    x->nhits = (uint8_t)ratelimit_match(c->cfg->rate_limits, c->cfg->nrate_limits, r, path,
                                        &c->req, x->hits);
    for (size_t i = 0; i < x->nhits; i++) {
        const struct rate_limit_conf *l = x->hits[i].limit;
        struct limiter_rules rules = {
            .rate = (double)l->requests / l->per_s,
            .burst = l->burst > 0 ? l->burst : l->requests,
        };
        uint64_t retry_us;
        if (c->w->rates != NULL &&
            limiter_take(c->w->rates, x->hits[i].key, &rules, now, &retry_us) == LIMITER_RATE) {
            refuse(c, l, retry_us);
            return 429;
        }
        x->shared |= l->shared;
    }
    return 0;
}

static void
verdict_cb(const redisReply *reply, void *arg)
{
    struct conn *c = arg;
    struct exchange_rate *x = &c->x->rate;

    x->op = NULL;
    if (c->state != CONN_ROUTING)
        return;
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0) {
        for (size_t i = 0; i < x->nhits; i++)
            if (x->hits[i].limit->shared) { /* the script says when, not which: name the first */
                refuse(c, x->hits[i].limit, (uint64_t)reply->integer);
                break;
            }
        conn_answer(c, 429, REASON_RATE_LIMITED, x->retry_after_s, NULL, 0);
        return;
    }
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        atomic_fetch_add_explicit(&c->w->rate_local, 1, memory_order_relaxed);
    conn_start_attempt(c);
}

bool
conn_ratelimit_route(struct conn *c)
{
    struct exchange_rate *x = &c->x->rate;
    const struct redis_conf *rc = c->w->redis_cfg != NULL ? c->w->redis_cfg->redis : NULL;
    const char *argv[2 + 3 * RATELIMIT_MAX_HITS];
    size_t lens[2 + 3 * RATELIMIT_MAX_HITS];
    char keys[RATELIMIT_MAX_HITS][200], nums[RATELIMIT_MAX_HITS][2][24], hex[33], nkeys[12];
    int argc = 3, n = 0;

    if (!x->shared || x->decided || rc == NULL)
        return false;
    x->decided = true;
    for (size_t i = 0; i < x->nhits; i++) {
        const struct rate_limit_conf *l = x->hits[i].limit;
        if (!l->shared)
            continue;
        affinity_key_hex(x->hits[i].key, hex);
        snprintf(keys[n], sizeof(keys[n]), "%srl:%s:%s", rc->prefix, l->name, hex);
        snprintf(nums[n][0], sizeof(nums[n][0]), "%llu", (unsigned long long)l->interval_us);
        snprintf(nums[n][1], sizeof(nums[n][1]), "%llu", (unsigned long long)l->tolerance_us);
        n++;
    }
    snprintf(nkeys, sizeof(nkeys), "%d", n);
    argv[0] = "EVAL";
    argv[1] = ratelimit_script;
    argv[2] = nkeys;
    for (int i = 0; i < n; i++)
        argv[argc++] = keys[i];
    for (int i = 0; i < n; i++) {
        argv[argc++] = nums[i][0];
        argv[argc++] = nums[i][1];
    }
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    x->op = redis_command_argv(c->w->redis, rc->command_timeout_ms, verdict_cb, c, argc, argv,
                               lens);
    if (x->op == NULL)
        atomic_fetch_add_explicit(&c->w->rate_local, 1, memory_order_relaxed);
    return x->op != NULL;
}

void
conn_ratelimit_cancel(struct conn *c)
{
    redis_cancel(c->x->rate.op);
    c->x->rate.op = NULL;
}
