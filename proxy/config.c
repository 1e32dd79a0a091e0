/*
 * config: reading the JSON file, the walk through the schema table, then the checks that span
 * several fields (duplicates, totals). Also the reference counting that lets threads share one
 * immutable config. It does not apply a config (worker.c and main.c do).
 */
#include <ctype.h>
#include <grp.h>
#include <jansson.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_schema.h"
#include "hex.h"

static int __attribute__((format(printf, 2, 3)))
cross_fail(struct config_error *err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}

static int
check_listeners(const struct config *cfg, struct config_error *err)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        if (cfg->listeners[i].tls != NULL && cfg->listeners[i].https_redirect_port != 0)
            return cross_fail(err,
                              "listeners[%zu].https_redirect_port: only valid on a listener "
                              "without tls",
                              i);
    }
    for (size_t i = 0; i < cfg->nlisteners; i++)
        for (size_t j = 0; j < i; j++)
            if (addr_equal(&cfg->listeners[i].addr, &cfg->listeners[j].addr))
                return cross_fail(err, "listeners[%zu].address: same address as listeners[%zu]",
                                  i, j);
    return 0;
}

/* Server ids are unique across clusters: logs, metrics and the admin endpoint name servers by id
 * alone. Inside one cluster an address may appear once. */
static int
check_servers(const struct config *cfg, size_t ci, struct config_error *err)
{
    const struct cluster_conf *c = &cfg->clusters[ci];

    for (size_t si = 0; si < c->nservers; si++) {
        const struct server_conf *s = &c->servers[si];
        for (size_t cj = 0; cj <= ci; cj++) {
            const struct cluster_conf *o = &cfg->clusters[cj];
            size_t end = cj == ci ? si : o->nservers;
            for (size_t sj = 0; sj < end; sj++) {
                if (strcmp(s->id, o->servers[sj].id) == 0)
                    return cross_fail(err,
                                      "clusters[%zu].servers[%zu].id: duplicate id \"%s\" "
                                      "(also clusters[%zu].servers[%zu])",
                                      ci, si, s->id, cj, sj);
                if (cj == ci && addr_equal(&s->addr, &o->servers[sj].addr))
                    return cross_fail(err,
                                      "clusters[%zu].servers[%zu].address: same address as "
                                      "clusters[%zu].servers[%zu]",
                                      ci, si, ci, sj);
            }
        }
    }
    return 0;
}

/* "200-399" or "200,204,300-302": ranges of three-digit statuses. */
static int
parse_status_ranges(const char *text, struct health_conf *h)
{
    const char *p = text;

    h->nstatus_ranges = 0;
    while (*p != '\0') {
        char *end;
        long lo = strtol(p, &end, 10), hi = lo;

        if (end == p || h->nstatus_ranges == 16)
            return -1;
        if (*end == '-') {
            p = end + 1;
            hi = strtol(p, &end, 10);
            if (end == p)
                return -1;
        }
        if (lo < 100 || hi > 599 || lo > hi || (*end != ',' && *end != '\0'))
            return -1;
        h->status_ranges[h->nstatus_ranges][0] = (uint16_t)lo;
        h->status_ranges[h->nstatus_ranges][1] = (uint16_t)hi;
        h->nstatus_ranges++;
        p = *end == ',' ? end + 1 : end;
    }
    return h->nstatus_ranges > 0 ? 0 : -1;
}

static int
check_health(struct health_conf *h, const char *where, struct config_error *err)
{
    if (h == NULL)
        return 0;
    if (parse_status_ranges(h->expect_status, h) < 0)
        return cross_fail(err,
                          "%s.expect_status: expected statuses 100..599 such as \"200-399\" or "
                          "\"200,204,300-302\"",
                          where);
    if (h->path[0] != '/')
        return cross_fail(err, "%s.path: must start with /", where);
    for (const char *c = h->path; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            return cross_fail(err, "%s.path: no spaces or control characters", where);
    return 0;
}

static int
check_cluster_health(struct cluster_conf *c, size_t i, struct config_error *err)
{
    char where[96];

    snprintf(where, sizeof(where), "clusters[%zu].health", i);
    if (check_health(c->health, where, err) < 0)
        return -1;
    if (c->health != NULL && c->health->type == CHECK_TLS && c->tls == NULL)
        return cross_fail(err, "%s.type: \"tls\" needs the cluster's tls section", where);
    for (size_t j = 0; j < c->nservers; j++) {
        const struct health_conf *sh = c->servers[j].health;
        snprintf(where, sizeof(where), "clusters[%zu].servers[%zu].health", i, j);
        if (check_health(c->servers[j].health, where, err) < 0)
            return -1;
        if (sh != NULL && sh->type == CHECK_TLS && c->tls == NULL)
            return cross_fail(err, "%s.type: \"tls\" needs the cluster's tls section", where);
    }
    if ((size_t)c->min_healthy > c->nservers)
        return cross_fail(err, "clusters[%zu].min_healthy: %d is more than the cluster's %zu "
                               "servers", i, c->min_healthy, c->nservers);
    return 0;
}

static int
check_clusters(struct config *cfg, struct config_error *err)
{
    int total = 0;

    for (size_t i = 0; i < cfg->nclusters; i++) {
        const struct cluster_conf *c = &cfg->clusters[i];
        int servers_weight = 0;

        for (size_t j = 0; j < i; j++)
            if (strcmp(c->name, cfg->clusters[j].name) == 0)
                return cross_fail(err, "clusters[%zu].name: duplicate name \"%s\"", i, c->name);
        if (check_servers(cfg, i, err) < 0 || check_cluster_health(&cfg->clusters[i], i, err) < 0)
            return -1;
        if (c->tls != NULL && (c->tls->cert == NULL) != (c->tls->key == NULL))
            return cross_fail(err, "clusters[%zu].tls.%s: required with %s", i,
                              c->tls->cert == NULL ? "cert" : "key",
                              c->tls->cert == NULL ? "key" : "cert");
        for (size_t s = 0; s < c->nservers; s++)
            servers_weight += c->servers[s].weight;
        if (c->weight > 0 && servers_weight == 0)
            return cross_fail(err,
                              "clusters[%zu].servers: every server has weight 0 but the cluster "
                              "has weight %d",
                              i, c->weight);
        if (servers_weight > 0)
            total += c->weight;
        cfg->nservers += c->nservers;
    }
    if (total == 0)
        return cross_fail(err, "clusters: no cluster can take traffic (all weights are 0)");
    return 0;
}

/* The CIDR strings at `path` (a JSON path such as "admin.allow") into a calloc'd array. */
static int
parse_cidrs(char **texts, size_t n, struct cidr **out, const char *path, const char *example,
            struct config_error *err)
{
    *out = calloc(n ? n : 1, sizeof(**out));
    if (*out == NULL)
        return cross_fail(err, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++)
        if (cidr_parse(texts[i], &(*out)[i]) < 0)
            return cross_fail(err, "%s[%zu]: expected an address or a network such as %s", path,
                              i, example);
    return 0;
}

static int
check_admin(struct config *cfg, struct config_error *err)
{
    struct admin_conf *a = cfg->admin;

    if (a == NULL)
        return 0;
    for (size_t i = 0; i < a->ntokens; i++) {
        for (size_t j = 0; j < 32; j++) {
            const char *d = a->tokens[i].sha256 + 2 * j;
            int hi = hex_value(d[0]), lo = hex_value(d[1]);
            if (hi < 0 || lo < 0)
                return cross_fail(err, "admin.tokens[%zu].sha256: expected 64 hex digits", i);
            a->tokens[i].digest[j] = (uint8_t)(hi << 4 | lo);
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(a->tokens[i].name, a->tokens[j].name) == 0)
                return cross_fail(err, "admin.tokens[%zu].name: duplicate name \"%s\"", i,
                                  a->tokens[i].name);
    }
    if (parse_cidrs(a->allow, a->nallow, &a->allow_nets, "admin.allow",
                    "10.0.0.0/8 or ::1/128", err) < 0)
        return -1;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (addr_equal(&cfg->listeners[i].addr, &a->addr))
            return cross_fail(err, "admin.address: same address as listeners[%zu]", i);
    return 0;
}

static int
check_redis(struct config *cfg, struct config_error *err)
{
    struct redis_conf *r = cfg->redis;
    char why[256];

    if (r == NULL)
        return 0;
    if ((r->address == NULL) == (r->nsentinels == 0))
        return cross_fail(err, "redis: give either address or sentinels");
    if (r->nsentinels > 0 && r->master_name == NULL)
        return cross_fail(err, "redis.master_name: required with sentinels");
    if (r->nsentinels == 0 && r->master_name != NULL)
        return cross_fail(err, "redis.master_name: only with sentinels");
    if (r->backoff_min_ms > r->backoff_max_ms)
        return cross_fail(err, "redis.backoff_min_ms: more than backoff_max_ms");
    for (const char *p = r->prefix; *p; p++)
        if (*p <= ' ' || *p >= 127)
            return cross_fail(err, "redis.prefix: printable characters without spaces only");
    r->sentinel_addrs = calloc(r->nsentinels ? r->nsentinels : 1, sizeof(*r->sentinel_addrs));
    if (r->sentinel_addrs == NULL)
        return cross_fail(err, "redis.sentinels: out of memory");
    for (size_t i = 0; i < r->nsentinels; i++)
        if (addr_parse(r->sentinels[i], 0, &r->sentinel_addrs[i], why, sizeof(why)) < 0)
            return cross_fail(err, "redis.sentinels[%zu]: %s", i, why);
    return 0;
}

static bool
names_listener(const struct config *cfg, const char *s)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct listener_conf *l = &cfg->listeners[i];
        if ((l->name != NULL && strcmp(l->name, s) == 0) || strcmp(l->address, s) == 0)
            return true;
    }
    return false;
}

static bool
is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && strchr("!#$%&'*+-.^_`|~", *s) == NULL)
            return false;
    return true;
}

/* A route_match of item i of the array at `what` (for error paths). */
static int
check_match(const struct config *cfg, const struct route_match *m, const char *what, size_t i,
            struct config_error *err)
{
    for (size_t j = 0; j < m->nlisteners; j++)
        if (!names_listener(cfg, m->listeners[j]))
            return cross_fail(err, "%s[%zu].listeners[%zu]: no listener is named or bound to "
                                   "\"%s\"", what, i, j, m->listeners[j]);
    for (size_t j = 0; j < m->nhosts; j++)
        for (const char *p = m->hosts[j]; *p; p++)
            if (*p == ':' || *p <= ' ' || *p >= 127 || (*p >= 'A' && *p <= 'Z'))
                return cross_fail(err, "%s[%zu].hosts[%zu]: expected a lower-case host name "
                                       "without port", what, i, j);
    if (m->path_prefix[0] != '/')
        return cross_fail(err, "%s[%zu].path_prefix: must start with /", what, i);
    return 0;
}

#define CIDR_EXAMPLE "10.0.0.0/8 or 2001:db8::/32"

static int
check_access_rule(struct config *cfg, size_t i, struct config_error *err)
{
    struct access_rule_conf *r = &cfg->access.rules[i];
    char path[64];

    for (size_t j = 0; j < i; j++)
        if (strcmp(cfg->access.rules[j].name, r->name) == 0)
            return cross_fail(err, "access.rules[%zu].name: duplicate name \"%s\"", i, r->name);
    if (check_match(cfg, &r->where, "access.rules", i, err) < 0)
        return -1;
    for (size_t j = 0; j < r->nmethods; j++)
        if (!is_token(r->methods[j]))
            return cross_fail(err, "access.rules[%zu].methods[%zu]: expected a method name", i, j);
    snprintf(path, sizeof(path), "access.rules[%zu].allow", i);
    if (parse_cidrs(r->allow, r->nallow, &r->allow_nets, path, CIDR_EXAMPLE, err) < 0)
        return -1;
    snprintf(path, sizeof(path), "access.rules[%zu].deny", i);
    return parse_cidrs(r->deny, r->ndeny, &r->deny_nets, path, CIDR_EXAMPLE, err);
}

static int
check_trusted_proxies(struct config *cfg, struct config_error *err)
{
    char path[64];

    for (size_t i = 0; i < cfg->nlisteners; i++) {
        struct listener_conf *l = &cfg->listeners[i];
        snprintf(path, sizeof(path), "listeners[%zu].trusted_proxies", i);
        if (parse_cidrs(l->trusted_proxies, l->ntrusted_proxies, &l->trusted_nets, path,
                        "10.0.0.0/8", err) < 0)
            return -1;
    }
    return 0;
}

static int
check_access(struct config *cfg, struct config_error *err)
{
    for (size_t i = 0; i < cfg->nlisteners; i++)
        for (size_t j = 0; j < i && cfg->listeners[i].name != NULL; j++)
            if (cfg->listeners[j].name != NULL &&
                strcmp(cfg->listeners[i].name, cfg->listeners[j].name) == 0)
                return cross_fail(err, "listeners[%zu].name: duplicate name \"%s\"", i,
                                  cfg->listeners[i].name);
    for (size_t i = 0; i < cfg->access.nrules; i++)
        if (check_access_rule(cfg, i, err) < 0)
            return -1;
    return 0;
}

static int
check_rate_limit(struct config *cfg, size_t i, struct config_error *err)
{
    struct rate_limit_conf *r = &cfg->rate_limits[i];
    int burst = r->burst > 0 ? r->burst : r->requests;

    for (size_t j = 0; j < i; j++)
        if (strcmp(cfg->rate_limits[j].name, r->name) == 0)
            return cross_fail(err, "rate_limits[%zu].name: duplicate name \"%s\"", i, r->name);
    if (check_match(cfg, &r->where, "rate_limits", i, err) < 0)
        return -1;
    if (strcmp(r->key, "client_ip") == 0) {
        r->key_kind = RATE_KEY_CLIENT_IP;
    } else if (strncmp(r->key, "header:", 7) == 0 && is_token(r->key + 7)) {
        r->key_kind = RATE_KEY_HEADER;
        r->header = r->key + 7;
        r->header_len = strlen(r->header);
        for (char *p = r->header; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    } else {
        return cross_fail(err, "rate_limits[%zu].key: expected \"client_ip\" or "
                               "\"header:NAME\"", i);
    }
    r->interval_us = (uint64_t)r->per_s * 1000000 / (uint64_t)r->requests;
    if (r->interval_us == 0)
        return cross_fail(err, "rate_limits[%zu].requests: more than a million per second", i);
    r->tolerance_us = r->interval_us * (uint64_t)(burst - 1);
    return 0;
}

static int
check_rate_limits(struct config *cfg, struct config_error *err)
{
    for (size_t i = 0; i < cfg->nrate_limits; i++)
        if (check_rate_limit(cfg, i, err) < 0)
            return -1;
    return 0;
}

static int
check_process(struct config *cfg, struct config_error *err)
{
    struct process_conf *p = &cfg->process;
    const struct passwd *pw;
    const struct group *gr;

    if (p->user == NULL) {
        if (p->group != NULL)
            return cross_fail(err, "process.group: only with process.user");
        return 0;
    }
    /* cppcheck-suppress getpwnamCalled ; config loads on the main thread, the only reader */
    if ((pw = getpwnam(p->user)) == NULL)
        return cross_fail(err, "process.user: no user named \"%s\"", p->user);
    if (pw->pw_uid == 0)
        return cross_fail(err, "process.user: \"%s\" is root", p->user);
    p->uid = pw->pw_uid;
    p->gid = pw->pw_gid;
    if (p->group != NULL) {
        /* cppcheck-suppress getgrnamCalled ; config loads on the main thread, the only reader */
        if ((gr = getgrnam(p->group)) == NULL)
            return cross_fail(err, "process.group: no group named \"%s\"", p->group);
        p->gid = gr->gr_gid;
    }
    if (p->gid == 0)
        return cross_fail(err, "process.group: the group is root's");
    return 0;
}

/* The host name, cut to what a name may hold. */
static int
default_instance_id(struct config *cfg, struct config_error *err)
{
    char host[65] = "trident";

    if (cfg->instance_id != NULL)
        return 0;
    gethostname(host, sizeof(host) - 1);
    for (char *p = host; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            *p = '-';
    cfg->instance_id = strdup(host[0] ? host : "trident");
    return cfg->instance_id != NULL ? 0 : cross_fail(err, "instance_id: out of memory");
}

static void
config_free(struct config *cfg)
{
    if (cfg->admin != NULL)
        free(cfg->admin->allow_nets);
    if (cfg->redis != NULL)
        free(cfg->redis->sentinel_addrs);
    for (size_t i = 0; i < cfg->nlisteners; i++)
        free(cfg->listeners[i].trusted_nets);
    for (size_t i = 0; i < cfg->access.nrules; i++) {
        free(cfg->access.rules[i].allow_nets);
        free(cfg->access.rules[i].deny_nets);
    }
    cfg_free(&cfg_root, cfg);
    free(cfg->path);
    free(cfg);
}

/* ---- ${VAR} and ${VAR:-default} in string values ---------------------------------------- */

#define EXPANDED_MAX 4096

/* Expand one string into out; returns 0, or -1 with the reason in why. */
static int
expand_string(const char *in, char *out, size_t outlen, char *why, size_t whylen)
{
    size_t o = 0;

    while (*in != '\0') {
        const char *end, *dash;
        char name[65];
        const char *val;
        size_t n;

        if (in[0] != '$' || in[1] != '{') {
            if (o + 1 >= outlen)
                goto toolong;
            out[o++] = *in++;
            continue;
        }
        end = strchr(in + 2, '}');
        /* the value itself is never quoted: it may be a password */
        if (end == NULL) {
            snprintf(why, whylen, "unterminated ${ (no closing })");
            return -1;
        }
        dash = strstr(in + 2, ":-");
        n = (size_t)((dash != NULL && dash < end ? dash : end) - (in + 2));
        if (n == 0 || n >= sizeof(name)) {
            snprintf(why, whylen, "bad variable name in ${...} (1 to 64 characters)");
            return -1;
        }
        memcpy(name, in + 2, n);
        name[n] = '\0';
        val = getenv(name);
        if (val == NULL && dash != NULL && dash < end) {
            n = (size_t)(end - (dash + 2));
            if (o + n >= outlen)
                goto toolong;
            memcpy(out + o, dash + 2, n);
            o += n;
        } else if (val == NULL) {
            snprintf(why, whylen, "environment variable %.64s is not set (${NAME:-default} gives "
                                  "a default)",
                     name);
            return -1;
        } else {
            n = strlen(val);
            if (o + n >= outlen)
                goto toolong;
            memcpy(out + o, val, n);
            o += n;
        }
        in = end + 1;
    }
    out[o] = '\0';
    return 0;
toolong:
    snprintf(why, whylen, "longer than %d characters once expanded", EXPANDED_MAX - 1);
    return -1;
}

/* Walk every string value, expanding variables in place; errors name the JSON path. */
static int
expand_env(json_t *v, char *path, size_t len, struct config_error *err)
{
    char buf[EXPANDED_MAX], why[256];
    json_t *item;
    size_t i;

    if (json_is_object(v)) {
        const char *key;
        json_object_foreach(v, key, item)
        {
            int n = snprintf(path + len, 256 - len, "%s%s", len ? "." : "", key);
            if (n > 0 && len + (size_t)n < 256 && expand_env(item, path, len + (size_t)n, err) < 0)
                return -1;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, item)
        {
            int n = snprintf(path + len, 256 - len, "[%zu]", i);
            if (n > 0 && len + (size_t)n < 256 && expand_env(item, path, len + (size_t)n, err) < 0)
                return -1;
        }
    } else if (json_is_string(v) && strstr(json_string_value(v), "${") != NULL) {
        path[len] = '\0';
        if (expand_string(json_string_value(v), buf, sizeof(buf), why, sizeof(why)) < 0)
            return cross_fail(err, "%s: %s", path, why);
        json_string_set(v, buf);
    }
    path[len] = '\0';
    return 0;
}

static struct config *
config_from_json(json_t *root, struct config_error *err)
{
    struct config *cfg = calloc(1, sizeof(*cfg));

    if (cfg == NULL) {
        cross_fail(err, "out of memory");
        return NULL;
    }
    char path[256] = "";

    atomic_init(&cfg->refs, 1);
    if (expand_env(root, path, 0, err) < 0 ||
        cfg_walk(&cfg_root, root, cfg, err->msg, sizeof(err->msg)) < 0)
        goto fail;
    if (check_listeners(cfg, err) < 0 || check_clusters(cfg, err) < 0 ||
        check_admin(cfg, err) < 0 || check_redis(cfg, err) < 0 || check_access(cfg, err) < 0 || check_trusted_proxies(cfg, err) < 0 ||
        check_process(cfg, err) < 0 || check_rate_limits(cfg, err) < 0 ||
        default_instance_id(cfg, err) < 0)
        goto fail;
    return cfg;
fail:
    config_free(cfg);
    return NULL;
}

static struct config *
config_from_loaded(json_t *root, const json_error_t *jerr, struct config_error *err)
{
    struct config *cfg;

    if (root == NULL) {
        cross_fail(err, "line %d column %d: %s", jerr->line, jerr->column, jerr->text);
        return NULL;
    }
    cfg = config_from_json(root, err);
    json_decref(root);
    return cfg;
}

struct config *
config_load(const char *path, struct config_error *err)
{
    json_error_t jerr;
    /* Duplicate keys are refused: with them the file would not mean what it says. */
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    struct config *cfg = config_from_loaded(root, &jerr, err);

    if (cfg != NULL && (cfg->path = strdup(path)) == NULL) {
        config_unref(cfg);
        cross_fail(err, "out of memory");
        return NULL;
    }
    return cfg;
}

struct config *
config_parse(const char *text, struct config_error *err)
{
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);

    return config_from_loaded(root, &jerr, err);
}

struct config *
config_ref(struct config *cfg)
{
    atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
    return cfg;
}

void
config_unref(struct config *cfg)
{
    if (cfg == NULL)
        return;
    if (atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) != 1)
        return;
    config_free(cfg);
}

const struct server_conf *
config_find_server(const struct config *cfg, const char *id, const struct cluster_conf **cluster)
{
    for (size_t i = 0; i < cfg->nclusters; i++) {
        for (size_t j = 0; j < cfg->clusters[i].nservers; j++) {
            if (strcmp(cfg->clusters[i].servers[j].id, id) == 0) {
                if (cluster != NULL)
                    *cluster = &cfg->clusters[i];
                return &cfg->clusters[i].servers[j];
            }
        }
    }
    return NULL;
}

void
config_print_reference(FILE *out)
{
    cfg_print_reference(&cfg_root, out);
}

static bool
str_equal(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

bool
config_redis_equal(const struct redis_conf *a, const struct redis_conf *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    if (!str_equal(a->address, b->address) || !str_equal(a->master_name, b->master_name) ||
        !str_equal(a->username, b->username) || !str_equal(a->password, b->password) ||
        !str_equal(a->prefix, b->prefix) || a->nsentinels != b->nsentinels ||
        a->database != b->database || a->connect_timeout_ms != b->connect_timeout_ms ||
        a->command_timeout_ms != b->command_timeout_ms || a->io_timeout_ms != b->io_timeout_ms ||
        a->backoff_min_ms != b->backoff_min_ms || a->backoff_max_ms != b->backoff_max_ms ||
        a->max_pending != b->max_pending)
        return false;
    for (size_t i = 0; i < a->nsentinels; i++)
        if (strcmp(a->sentinels[i], b->sentinels[i]) != 0)
            return false;
    return true;
}

int
config_ticket_rotate_s(const struct config *cfg)
{
    int s = 0;

    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct tls_listen_conf *t = cfg->listeners[i].tls;
        if (t != NULL && t->session_tickets && (s == 0 || t->ticket_rotate_s < s))
            s = t->ticket_rotate_s;
    }
    return s;
}
