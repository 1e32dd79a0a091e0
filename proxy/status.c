/*
 * status: the /status document and the /healthz verdict, built with jansson from what the admin
 * environment points at: the config, the health table and journal, the counters, the workers'
 * outcome counts. Read-only; runs on the main thread.
 */
#include <jansson.h>
#include <stdlib.h>

#include "admin.h"
#include "affinity.h"
#include "clock.h"
#include "fleet.h"
#include "health.h"
#include "redis.h"
#include "reason.h"
#include "stats.h"
#include "strbuf.h"
#include "worker.h"

#define JOURNAL_SHOWN 50

static const struct server_shared *
shared(const struct admin_env *env, size_t index)
{
    return &health_table(env->health)->servers[index];
}

static int
cluster_up_count(const struct admin_env *env, const struct cluster_conf *c, size_t first)
{
    int up = 0;

    for (size_t j = 0; j < c->nservers; j++)
        up += atomic_load(&shared(env, first + j)->usable) && c->servers[j].weight > 0;
    return up;
}

int
status_serving(const struct admin_env *env)
{
    size_t first = 0;

    for (size_t i = 0; i < env->cfg->nclusters; i++) {
        const struct cluster_conf *c = &env->cfg->clusters[i];
        int up = cluster_up_count(env, c, first);

        if (c->weight > 0 && up > 0 && up >= c->min_healthy)
            return 1;
        first += c->nservers;
    }
    return 0;
}

static json_t *
responses_json(const struct server_stats *st)
{
    static const char *const classes[] = {"failed", "1xx", "2xx", "3xx", "4xx", "5xx"};
    json_t *o = json_object();

    for (int k = 1; k < 6; k++)
        json_object_set_new(o, classes[k], json_integer((json_int_t)stat_get(&st->responses[k])));
    return o;
}

static json_t *
server_json(const struct admin_env *env, const struct cluster_conf *c, size_t si, size_t index)
{
    const struct server_conf *s = &c->servers[si];
    const struct server_shared *sh = shared(env, index);
    struct server_stats st = {0};
    uint64_t since = atomic_load(&sh->up_since_us);
    bool usable = atomic_load(&sh->usable);
    json_t *o = json_object(), *check = json_object();

    stats_server_sum(env->stats, s->id, &st);
    json_object_set_new(o, "id", json_string(s->id));
    json_object_set_new(o, "address", json_string(s->address));
    json_object_set_new(o, "health", json_string(health_state_name(atomic_load(&sh->health))));
    json_object_set_new(o, "admin", json_string(admin_state_name(atomic_load(&sh->admin))));
    json_object_set_new(o, "usable", json_boolean(usable));
    json_object_set_new(o, "reason", json_string(check_reason_name(atomic_load(&sh->last_reason))));
    json_object_set_new(check, "status", json_integer(atomic_load(&sh->last_status)));
    json_object_set_new(check, "latency_ms",
                        json_real((double)atomic_load(&sh->last_check_us) / 1000.0));
    json_object_set_new(o, "last_check", c->health != NULL || s->health != NULL ? check
                                                                               : json_null());
    if (c->health == NULL && s->health == NULL)
        json_decref(check);
    json_object_set_new(o, "weight", json_integer(s->weight));
    json_object_set_new(o, "effective_weight",
                        json_integer(usable ? health_slow_start_weight(s->weight, since,
                                                                       c->slow_start_ms,
                                                                       clock_mono_us())
                                            : 0));
    json_object_set_new(o, "active_requests", json_integer((json_int_t)stat_get(&st.active)));
    json_object_set_new(o, "requests", json_integer((json_int_t)stat_get(&st.requests)));
    json_object_set_new(o, "connections", json_integer((json_int_t)stat_get(&st.connections)));
    json_object_set_new(o, "responses", responses_json(&st));
    json_object_set_new(o, "failures", json_integer((json_int_t)stat_get(&st.failures)));
    json_object_set_new(o, "retries", json_integer((json_int_t)stat_get(&st.retries)));
    json_object_set_new(o, "hedges", json_integer((json_int_t)stat_get(&st.hedges)));
    json_object_set_new(o, "hedges_lost", json_integer((json_int_t)stat_get(&st.hedges_lost)));
    json_object_set_new(o, "bytes_in", json_integer((json_int_t)stat_get(&st.bytes_in)));
    json_object_set_new(o, "bytes_out", json_integer((json_int_t)stat_get(&st.bytes_out)));
    json_object_set_new(o, "transitions", json_integer((json_int_t)atomic_load(&sh->transitions)));
    return o;
}

static json_t *
clusters_json(const struct admin_env *env)
{
    json_t *arr = json_array();
    size_t first = 0;

    for (size_t i = 0; i < env->cfg->nclusters; i++) {
        const struct cluster_conf *c = &env->cfg->clusters[i];
        json_t *o = json_object(), *servers = json_array();
        int up = cluster_up_count(env, c, first);

        json_object_set_new(o, "name", json_string(c->name));
        json_object_set_new(o, "provider", json_string(c->provider));
        json_object_set_new(o, "weight", json_integer(c->weight));
        json_object_set_new(o, "min_healthy", json_integer(c->min_healthy));
        json_object_set_new(o, "servers_usable", json_integer(up));
        json_object_set_new(o, "usable", json_boolean(up > 0 && up >= c->min_healthy));
        for (size_t j = 0; j < c->nservers; j++)
            json_array_append_new(servers, server_json(env, c, j, first + j));
        json_object_set_new(o, "servers", servers);
        json_array_append_new(arr, o);
        first += c->nservers;
    }
    return arr;
}

static json_t *
listeners_json(const struct admin_env *env)
{
    json_t *arr = json_array();

    for (size_t i = 0; i < env->cfg->nlisteners; i++) {
        const struct listener_conf *l = &env->cfg->listeners[i];
        struct listener_stats st = {0};
        json_t *o = json_object();

        stats_listener_sum(env->stats, l->address, &st);
        json_object_set_new(o, "address", json_string(l->address));
        json_object_set_new(o, "tls", json_boolean(l->tls != NULL));
        json_object_set_new(o, "connections_active", json_integer((json_int_t)stat_get(&st.active)));
        json_object_set_new(o, "connections_total",
                            json_integer((json_int_t)stat_get(&st.accepted)));
        json_object_set_new(o, "requests", json_integer((json_int_t)stat_get(&st.requests)));
        if (l->tls != NULL)
            json_object_set_new(o, "tls_handshakes",
                                json_integer((json_int_t)stat_get(&st.handshakes)));
        json_array_append_new(arr, o);
    }
    return arr;
}

static json_t *
outcomes_json(const struct admin_env *env)
{
    json_t *o = json_object();

    for (int r = 1; r < REASON_COUNT; r++) {
        uint64_t n = 0;
        for (int w = 0; w < env->nworkers; w++)
            n += atomic_load_explicit(&env->workers[w]->reasons[r], memory_order_relaxed);
        json_object_set_new(o, reason_name((enum reason)r), json_integer((json_int_t)n));
    }
    return o;
}

static json_t *
journal_json(const struct admin_env *env)
{
    struct journal_entry entries[JOURNAL_SHOWN];
    size_t n = health_journal(env->health, entries, JOURNAL_SHOWN);
    json_t *arr = json_array();

    for (size_t i = 0; i < n; i++) {
        char when[40];
        struct strbuf sb;
        json_t *o = json_object();

        strbuf_init(&sb, when, sizeof(when));
        strbuf_iso8601_ms(&sb, entries[i].time_ms);
        json_object_set_new(o, "time", json_string(when));
        json_object_set_new(o, "server", json_string(entries[i].server));
        json_object_set_new(o, "from", json_string(health_state_name(entries[i].from)));
        json_object_set_new(o, "to", json_string(health_state_name(entries[i].to)));
        json_object_set_new(o, "admin", json_string(admin_state_name(entries[i].admin)));
        json_object_set_new(o, "reason", json_string(check_reason_name(entries[i].reason)));
        if (entries[i].status != 0)
            json_object_set_new(o, "status", json_integer(entries[i].status));
        json_array_append_new(arr, o);
    }
    return arr;
}

const char *
status_redis_state(const struct admin_env *env)
{
    size_t ready = 0;

    if (env->redis == NULL)
        return "disabled";
    for (size_t i = 0; i < env->nredis; i++)
        ready += atomic_load(&env->redis[i].state) == REDIS_READY;
    return ready == env->nredis ? "connected" : ready > 0 ? "degraded" : "reconnecting";
}

static json_t *
redis_json(const struct admin_env *env)
{
    json_t *o = json_object(), *conns = json_array();

    json_object_set_new(o, "state", json_string(status_redis_state(env)));
    for (size_t i = 0; i < env->nredis; i++) {
        struct redis_stats *rs = &env->redis[i];
        char server[ADDR_TEXT_MAX];

        redis_stats_server(rs, server, sizeof(server));
        json_array_append_new(
            conns,
            json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "name", rs->name, "state",
                      redis_state_name((enum redis_state)atomic_load(&rs->state)), "server",
                      server, "commands", (json_int_t)atomic_load(&rs->commands), "timeouts",
                      (json_int_t)atomic_load(&rs->timeouts), "errors",
                      (json_int_t)atomic_load(&rs->errors), "refused",
                      (json_int_t)atomic_load(&rs->refused), "connects",
                      (json_int_t)atomic_load(&rs->connects), "disconnects",
                      (json_int_t)atomic_load(&rs->disconnects)));
    }
    if (env->redis != NULL)
        json_object_set_new(o, "connections", conns);
    else
        json_decref(conns);
    return o;
}

static json_t *
affinity_json(const struct admin_env *env)
{
    json_t *o = json_object();

    for (int r = 0; r < AFFINITY_RESULT_COUNT; r++) {
        uint64_t n = 0;
        for (int w = 0; w < env->nworkers; w++)
            n += atomic_load_explicit(&env->workers[w]->affinity[r], memory_order_relaxed);
        json_object_set_new(o, affinity_result_name((enum affinity_result)r),
                            json_integer((json_int_t)n));
    }
    return o;
}

char *
status_json(const struct admin_env *env)
{
    json_t *root = json_object();
    char *text;

    json_object_set_new(root, "instance", json_string(env->cfg->instance_id));
    json_object_set_new(root, "version", json_string(TRIDENT_VERSION));
    json_object_set_new(root, "uptime_s",
                        json_real((double)(clock_mono_us() - env->started_us) / 1e6));
    json_object_set_new(root, "config_generation", json_integer(env->generation));
    json_object_set_new(root, "serving", json_boolean(status_serving(env)));
    json_object_set_new(root, "workers", json_integer(env->nworkers));
    json_object_set_new(root, "listeners", listeners_json(env));
    json_object_set_new(root, "clusters", clusters_json(env));
    json_object_set_new(root, "outcomes", outcomes_json(env));
    json_object_set_new(root, "journal", journal_json(env));
    json_object_set_new(root, "redis", redis_json(env));
    if (env->fleet != NULL)
        json_object_set_new(root, "fleet", fleet_status(env->fleet));
    if (env->cfg->affinity != NULL)
        json_object_set_new(root, "affinity", affinity_json(env));
    if (env->cfg->nrate_limits > 0) {
        uint64_t n = 0;
        for (int w = 0; w < env->nworkers; w++)
            n += atomic_load_explicit(&env->workers[w]->rate_local, memory_order_relaxed);
        /* refusals are in outcomes ("rate_limited"); this counts the shared limits that Redis
         * could not decide in time, left to this instance's buckets */
        json_object_set_new(root, "rate_limits",
                            json_pack("{s:I}", "decided_locally", (json_int_t)n));
    }
    text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(root);
    return text;
}
