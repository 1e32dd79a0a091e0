/*
 * metrics: the Prometheus text exposition (version 0.0.4) of trident's counters, gauges and
 * histograms. Conventional names (trident_*_total for counters, _seconds for durations) with
 * labels cluster, provider, server, class, listener and reason. Label values are escaped as the
 * format requires, although ids and names never need it.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "affinity.h"
#include "clock.h"
#include "fleet.h"
#include "health.h"
#include "redis.h"
#include "reason.h"
#include "stats.h"
#include "worker.h"

static void
family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* `"value"` with backslash, quote and newline escaped. */
static void
label_value(struct evbuffer *out, const char *v)
{
    evbuffer_add(out, "\"", 1);
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            evbuffer_add_printf(out, "\\%c", *v);
        else if (*v == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, v, 1);
    }
    evbuffer_add(out, "\"", 1);
}

static void
server_labels(struct evbuffer *out, const struct cluster_conf *c, const struct server_conf *s)
{
    evbuffer_add(out, "cluster=", 8);
    label_value(out, c->name);
    evbuffer_add(out, ",provider=", 10);
    label_value(out, c->provider);
    evbuffer_add(out, ",server=", 8);
    label_value(out, s->id);
}

/* Iterate every server with its summed counters and shared state. */
typedef void (*server_fn)(struct evbuffer *out, const struct cluster_conf *c,
                          const struct server_conf *s, const struct server_stats *st,
                          const struct server_shared *sh, const void *arg);

static void
each_server(const struct admin_env *env, struct evbuffer *out, server_fn fn, const void *arg)
{
    size_t index = 0;

    for (size_t i = 0; i < env->cfg->nclusters; i++) {
        const struct cluster_conf *c = &env->cfg->clusters[i];
        for (size_t j = 0; j < c->nservers; j++, index++) {
            struct server_stats st = {0};
            stats_server_sum(env->stats, c->servers[j].id, &st);
            fn(out, c, &c->servers[j], &st, &health_table(env->health)->servers[index], arg);
        }
    }
}

struct field {
    const char *name;
    size_t off; /* of a stat_t inside struct server_stats */
};

static uint64_t
field_value(const void *stats, size_t off)
{
    return stat_get((const stat_t *)(const void *)((const char *)stats + off));
}

/* One counter field of struct server_stats. */
static void
counter_line(struct evbuffer *out, const struct cluster_conf *c, const struct server_conf *s,
             const struct server_stats *st, const struct server_shared *sh, const void *arg)
{
    const struct field *f = arg;

    evbuffer_add_printf(out, "%s{", f->name);
    server_labels(out, c, s);
    evbuffer_add_printf(out, "} %llu\n", (unsigned long long)field_value(st, f->off));
}

static void
responses_lines(struct evbuffer *out, const struct cluster_conf *c, const struct server_conf *s,
                const struct server_stats *st, const struct server_shared *sh, const void *arg)
{
    for (int k = 1; k <= 5; k++) {
        evbuffer_add(out, "trident_upstream_responses_total{", 33);
        server_labels(out, c, s);
        evbuffer_add_printf(out, ",class=\"%dxx\"} %llu\n", k,
                            (unsigned long long)stat_get(&st->responses[k]));
    }
}

static void
up_line(struct evbuffer *out, const struct cluster_conf *c, const struct server_conf *s,
        const struct server_stats *st, const struct server_shared *sh, const void *arg)
{
    evbuffer_add(out, "trident_server_up{", 18);
    server_labels(out, c, s);
    evbuffer_add_printf(out, "} %d\n", atomic_load(&sh->usable) ? 1 : 0);
}

static void
state_line(struct evbuffer *out, const struct cluster_conf *c, const struct server_conf *s,
           const struct server_stats *st, const struct server_shared *sh, const void *arg)
{
    evbuffer_add(out, "trident_server_state{", 21);
    server_labels(out, c, s);
    evbuffer_add_printf(out, ",health=\"%s\",admin=\"%s\"} 1\n",
                        health_state_name(atomic_load(&sh->health)),
                        admin_state_name(atomic_load(&sh->admin)));
}

static void
transitions_line(struct evbuffer *out, const struct cluster_conf *c, const struct server_conf *s,
                 const struct server_stats *st, const struct server_shared *sh, const void *arg)
{
    evbuffer_add(out, "trident_server_transitions_total{", 33);
    server_labels(out, c, s);
    evbuffer_add_printf(out, "} %llu\n", (unsigned long long)atomic_load(&sh->transitions));
}

static void
histogram(struct evbuffer *out, const char *name, const stat_t *buckets, const stat_t *sum,
          void (*labels)(struct evbuffer *, const void *), const void *arg)
{
    uint64_t cum = 0;

    for (int b = 0; b < STATS_BUCKETS; b++) {
        cum += stat_get(&buckets[b]);
        evbuffer_add_printf(out, "%s_bucket{", name);
        labels(out, arg);
        if (b < STATS_BUCKETS - 1)
            evbuffer_add_printf(out, ",le=\"%g\"} %llu\n", (double)stats_bucket_us[b] / 1e6,
                                (unsigned long long)cum);
        else
            evbuffer_add_printf(out, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    evbuffer_add_printf(out, "%s_sum{", name);
    labels(out, arg);
    evbuffer_add_printf(out, "} %.6f\n", (double)stat_get(sum) / 1e6);
    evbuffer_add_printf(out, "%s_count{", name);
    labels(out, arg);
    evbuffer_add_printf(out, "} %llu\n", (unsigned long long)cum);
}

struct server_ref {
    const struct cluster_conf *c;
    const struct server_conf *s;
};

static void
server_ref_labels(struct evbuffer *out, const void *arg)
{
    const struct server_ref *r = arg;

    server_labels(out, r->c, r->s);
}

static void
latency_lines(struct evbuffer *out, const struct cluster_conf *c, const struct server_conf *s,
              const struct server_stats *st, const struct server_shared *sh, const void *arg)
{
    struct server_ref r = {c, s};

    histogram(out, "trident_upstream_response_seconds", st->latency, &st->latency_sum_us,
              server_ref_labels, &r);
}

static void
listener_labels(struct evbuffer *out, const void *arg)
{
    evbuffer_add(out, "listener=", 9);
    label_value(out, arg);
}

static void
server_metrics(const struct admin_env *env, struct evbuffer *out)
{
    static const struct {
        const char *name, *help;
        size_t off;
        const char *type;
    } counters[] = {
        {"trident_upstream_requests_total", "Attempts sent to a server",
         offsetof(struct server_stats, requests), "counter"},
        {"trident_upstream_failures_total", "Attempts that failed (connect, reset, timeout)",
         offsetof(struct server_stats, failures), "counter"},
        {"trident_upstream_retries_total", "Attempts that retried another one",
         offsetof(struct server_stats, retries), "counter"},
        {"trident_upstream_hedges_total", "Hedged attempts", offsetof(struct server_stats, hedges),
         "counter"},
        {"trident_upstream_hedges_lost_total",
         "Requests a hedge to another server answered first (this one was slow)",
         offsetof(struct server_stats, hedges_lost), "counter"},
        {"trident_upstream_connections_total", "Connections opened to a server",
         offsetof(struct server_stats, connections), "counter"},
        {"trident_upstream_active_requests", "Requests in flight to a server",
         offsetof(struct server_stats, active), "gauge"},
        {"trident_upstream_received_bytes_total", "Bytes from clients of requests a server answered",
         offsetof(struct server_stats, bytes_in), "counter"},
        {"trident_upstream_sent_bytes_total", "Bytes to clients of responses a server gave",
         offsetof(struct server_stats, bytes_out), "counter"},
    };

    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        struct field f = {counters[i].name, counters[i].off};
        family(out, counters[i].name, counters[i].type, counters[i].help);
        each_server(env, out, counter_line, &f);
    }
    family(out, "trident_upstream_responses_total", "counter", "Responses by status class");
    each_server(env, out, responses_lines, NULL);
    family(out, "trident_upstream_response_seconds", "histogram",
           "Request sent to response head");
    each_server(env, out, latency_lines, NULL);
    family(out, "trident_server_up", "gauge", "1 while the server takes new requests");
    each_server(env, out, up_line, NULL);
    family(out, "trident_server_state", "gauge", "The server's health and admin state");
    each_server(env, out, state_line, NULL);
    family(out, "trident_server_transitions_total", "counter", "Health state changes");
    each_server(env, out, transitions_line, NULL);
}

static void
listener_metrics(const struct admin_env *env, struct evbuffer *out)
{
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } counters[] = {
        {"trident_connections_total", "counter", "Client connections accepted",
         offsetof(struct listener_stats, accepted)},
        {"trident_connections_active", "gauge", "Client connections open",
         offsetof(struct listener_stats, active)},
        {"trident_requests_total", "counter", "Requests answered (by a server or by trident)",
         offsetof(struct listener_stats, requests)},
        {"trident_tls_handshakes_total", "counter", "TLS handshakes finished",
         offsetof(struct listener_stats, handshakes)},
    };

    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        family(out, counters[i].name, counters[i].type, counters[i].help);
        for (size_t l = 0; l < env->cfg->nlisteners; l++) {
            struct listener_stats st = {0};
            stats_listener_sum(env->stats, env->cfg->listeners[l].address, &st);
            evbuffer_add_printf(out, "%s{", counters[i].name);
            listener_labels(out, env->cfg->listeners[l].address);
            evbuffer_add_printf(out, "} %llu\n",
                                (unsigned long long)field_value(&st, counters[i].off));
        }
    }
    family(out, "trident_request_duration_seconds", "histogram",
           "Whole requests, first byte to last byte queued");
    for (size_t l = 0; l < env->cfg->nlisteners; l++) {
        struct listener_stats st = {0};
        stats_listener_sum(env->stats, env->cfg->listeners[l].address, &st);
        histogram(out, "trident_request_duration_seconds", st.duration, &st.duration_sum_us,
                  listener_labels, env->cfg->listeners[l].address);
    }
}

static void
redis_metrics(const struct admin_env *env, struct evbuffer *out)
{
    static const struct {
        const char *result;
        size_t off;
    } results[] = {
        {"sent", offsetof(struct redis_stats, commands)},
        {"timeout", offsetof(struct redis_stats, timeouts)},
        {"error", offsetof(struct redis_stats, errors)},
        {"refused", offsetof(struct redis_stats, refused)},
    };

    if (env->cfg->affinity != NULL) {
        family(out, "trident_affinity_total", "counter",
               "Sticky-session requests, by where their server came from");
        for (int r = 0; r < AFFINITY_RESULT_COUNT; r++) {
            uint64_t n = 0;
            for (int w = 0; w < env->nworkers; w++)
                n += atomic_load_explicit(&env->workers[w]->affinity[r], memory_order_relaxed);
            evbuffer_add_printf(out, "trident_affinity_total{result=\"%s\"} %llu\n",
                                affinity_result_name((enum affinity_result)r),
                                (unsigned long long)n);
        }
    }
    if (env->cfg->nrate_limits > 0) {
        uint64_t n = 0;
        for (int w = 0; w < env->nworkers; w++)
            n += atomic_load_explicit(&env->workers[w]->rate_local, memory_order_relaxed);
        family(out, "trident_rate_limit_local_total", "counter",
               "Shared rate-limit checks decided by this instance alone (Redis away or late)");
        evbuffer_add_printf(out, "trident_rate_limit_local_total %llu\n", (unsigned long long)n);
    }
    if (env->redis == NULL)
        return;
    family(out, "trident_redis_up", "gauge", "1 while the Redis connection is ready");
    for (size_t i = 0; i < env->nredis; i++) {
        evbuffer_add_printf(out, "trident_redis_up{connection=");
        label_value(out, env->redis[i].name);
        evbuffer_add_printf(out, "} %d\n", atomic_load(&env->redis[i].state) == REDIS_READY);
    }
    family(out, "trident_redis_commands_total", "counter",
           "Redis commands sent, and those answered too late (timeout), with an error or "
           "never sent (refused)");
    for (size_t i = 0; i < env->nredis; i++)
        for (size_t k = 0; k < sizeof(results) / sizeof(results[0]); k++) {
            evbuffer_add_printf(out, "trident_redis_commands_total{connection=");
            label_value(out, env->redis[i].name);
            evbuffer_add_printf(out, ",result=\"%s\"} %llu\n", results[k].result,
                                (unsigned long long)atomic_load(
                                    (_Atomic uint64_t *)((char *)&env->redis[i] + results[k].off)));
        }
    family(out, "trident_redis_reconnects_total", "counter", "Redis connections made ready");
    for (size_t i = 0; i < env->nredis; i++) {
        evbuffer_add_printf(out, "trident_redis_reconnects_total{connection=");
        label_value(out, env->redis[i].name);
        evbuffer_add_printf(out, "} %llu\n",
                            (unsigned long long)atomic_load(&env->redis[i].connects));
    }
    if (env->fleet != NULL) {
        family(out, "trident_fleet_instances", "gauge",
               "Instances heard from in the last 10 s, this one included");
        evbuffer_add_printf(out, "trident_fleet_instances %zu\n", fleet_instance_count(env->fleet));
    }
}

void
metrics_write(const struct admin_env *env, struct evbuffer *out)
{
    family(out, "trident_info", "gauge", "Version and instance");
    evbuffer_add(out, "trident_info{version=", 21);
    label_value(out, TRIDENT_VERSION);
    evbuffer_add(out, ",instance=", 10);
    label_value(out, env->cfg->instance_id);
    evbuffer_add(out, "} 1\n", 4);
    family(out, "trident_uptime_seconds", "gauge", "Seconds since start");
    evbuffer_add_printf(out, "trident_uptime_seconds %.3f\n",
                        (double)(clock_mono_us() - env->started_us) / 1e6);
    family(out, "trident_config_generation", "gauge", "Configurations loaded (1 at start)");
    evbuffer_add_printf(out, "trident_config_generation %u\n", env->generation);
    family(out, "trident_serving", "gauge", "1 while at least one cluster can take requests");
    evbuffer_add_printf(out, "trident_serving %d\n", status_serving(env));
    family(out, "trident_outcomes_total", "counter", "Outcomes trident decided, by reason");
    for (int r = 1; r < REASON_COUNT; r++) {
        uint64_t n = 0;
        for (int w = 0; w < env->nworkers; w++)
            n += atomic_load_explicit(&env->workers[w]->reasons[r], memory_order_relaxed);
        evbuffer_add_printf(out, "trident_outcomes_total{reason=\"%s\"} %llu\n",
                            reason_name((enum reason)r), (unsigned long long)n);
    }
    listener_metrics(env, out);
    server_metrics(env, out);
    redis_metrics(env, out);
}
