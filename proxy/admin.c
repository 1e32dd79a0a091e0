/*
 * admin: the admin endpoint's HTTP side. One request per connection (each answer closes it: the
 * callers are curl, Prometheus and health checkers, not browsers), a bounded number of
 * connections, a short deadline, the allowlist at accept, bearer tokens compared by SHA-256 in
 * constant time, and an audit line for every mutating call, allowed or not.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <unistd.h>

#include "admin.h"
#include "clock.h"
#include "fleet.h"
#include "health.h"
#include "http.h"
#include "listener.h"
#include "log.h"
#include "strbuf.h"

#define ADMIN_MAX_CONNS 32
#define ADMIN_MAX_DENIED 8 /* of them, peers outside `allow`: they cannot lock the others out */
#define ADMIN_TIMEOUT_MS 5000 /* a connection's whole life, not an idle time: a peer that sends a
                                 byte now and then does not keep its slot */
#define ADMIN_DENIED_TIMEOUT_MS 1000 /* a peer outside `allow` gets 1 s to say what it wanted */
#define ADMIN_MAX_HEAD 8192

struct admin_conn {
    struct admin *a;
    struct bufferevent *bev;
    struct event *deadline; /* ADMIN_TIMEOUT_MS (ADMIN_DENIED_TIMEOUT_MS) from accept */
    struct admin_req r;
    TAILQ_ENTRY(admin_conn) link;
};

/* One request being answered: where the answer goes. admin_serve() builds it, so that everything
 * below runs without a socket. */
struct call {
    struct admin *a;
    struct admin_req *r;
    struct evbuffer *out;
};

struct admin {
    struct event_base *base;
    struct admin_env *env;
    struct evconnlistener *listener;
    /* cppcheck-suppress unusedStructMember ; sys/queue.h's TAILQ macros use the head's fields */
    TAILQ_HEAD(, admin_conn) conns;
    unsigned nconns, ndenied;
    int audit_fd; /* STDERR_FILENO or a file of ours */
};

static void
conn_free(struct admin_conn *ac)
{
    TAILQ_REMOVE(&ac->a->conns, ac, link);
    ac->a->nconns--;
    if (ac->r.denied)
        ac->a->ndenied--;
    event_free(ac->deadline);
    bufferevent_free(ac->bev);
    admin_req_release(&ac->r);
    free(ac);
}

static void
flushed_cb(struct bufferevent *bev, void *arg)
{
    struct admin_conn *ac = arg;

    if (ac->r.answered && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_free(ac);
}

/* The answer is queued: read no more, write it, and close once it is flushed (flushed_cb). */
static void
conn_answered(struct admin_conn *ac)
{
    bufferevent_disable(ac->bev, EV_READ);
    bufferevent_enable(ac->bev, EV_WRITE);
}

static void
reply(struct call *c, int status, const char *reason, const char *type, const char *body,
      const char *extra)
{
    struct evbuffer *out = c->out;
    size_t len = strlen(body);

    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n",
                        status, reason, type, len, extra != NULL ? extra : "");
    if (!c->r->head_only)
        evbuffer_add(out, body, len);
    c->r->answered = true;
}

/* {"status":N,"error":"...","detail":"..."} */
static void
reply_error(struct call *c, int status, const char *reason, const char *detail, const char *extra)
{
    json_t *o = json_object();
    char *text;

    json_object_set_new(o, "status", json_integer(status));
    json_object_set_new(o, "error", json_string(reason));
    if (detail != NULL)
        json_object_set_new(o, "detail", json_string(detail));
    text = json_dumps(o, JSON_PRESERVE_ORDER);
    reply(c, status, reason, "application/json", text, extra);
    free(text);
    json_decref(o);
}

static void
reply_json(struct call *c, json_t *o)
{
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

    reply(c, 200, "OK", "application/json", text, NULL);
    free(text);
    json_decref(o);
}

/* ---- audit and auth ----------------------------------------------------------------------------- */

static void
audit(struct call *c, const char *token, const char *path, int status, const char *result)
{
    char line[1024];
    struct strbuf sb;

    strbuf_init(&sb, line, sizeof(line) - 1);
    strbuf_puts(&sb, "{\"ts\":\"");
    strbuf_iso8601_ms(&sb, clock_wall_ms());
    strbuf_puts(&sb, "\",\"audit\":\"admin\"");
    strbuf_json_str(&sb, "token", token != NULL ? token : "", token != NULL ? strlen(token) : 0);
    strbuf_json_str(&sb, "client", c->r->client, strlen(c->r->client));
    strbuf_json_str(&sb, "method", llhttp_method_name(c->r->msg.parser.method),
                    strlen(llhttp_method_name(c->r->msg.parser.method)));
    strbuf_json_str(&sb, "path", path, strlen(path));
    strbuf_printf(&sb, ",\"status\":%d", status);
    strbuf_json_str(&sb, "result", result, strlen(result));
    strbuf_puts(&sb, "}");
    line[sb.len++] = '\n';
    if (write(c->a->audit_fd, line, sb.len) < 0)
        log_error("admin: cannot write the audit log: %s", strerror(errno));
}

/* The configured token the request's bearer token hashes to, or NULL; *status says why not. */
static const char *
authorize(struct call *c, int *status)
{
    const struct admin_conf *conf = c->a->env->cfg->admin;
    int i = http_find_field(&c->r->msg, "authorization", 13, 0);
    const struct http_field *f;
    unsigned char digest[32];
    unsigned int dlen = 0;
    const char *v;

    *status = 401;
    if (i < 0)
        return NULL;
    f = &c->r->msg.fields[i];
    v = http_msg_at(&c->r->msg, f->value_off);
    *status = 403;
    if (f->value_len < 8 || strncasecmp(v, "Bearer ", 7) != 0)
        return NULL;
    if (EVP_Digest(v + 7, f->value_len - 7, digest, &dlen, EVP_sha256(), NULL) != 1)
        return NULL;
    for (size_t t = 0; t < conf->ntokens; t++)
        if (CRYPTO_memcmp(digest, conf->tokens[t].digest, 32) == 0)
            return conf->tokens[t].name;
    return NULL;
}

/* ---- mutating calls ------------------------------------------------------------------------------ */

static bool
parse_state(const char *verb, enum admin_state *out)
{
    if (strcmp(verb, "drain") == 0)
        *out = ADMIN_DRAINING;
    else if (strcmp(verb, "maintenance") == 0)
        *out = ADMIN_MAINTENANCE;
    else if (strcmp(verb, "ready") == 0)
        *out = ADMIN_READY;
    else
        return false;
    return true;
}

/* Apply `state` to the servers a kind/name designates; returns their ids (NULL: none matched). */
static json_t *
set_state(struct admin *a, const char *kind, const char *name, enum admin_state state)
{
    const struct config *cfg = a->env->cfg;
    json_t *ids = json_array();
    size_t index = 0;

    for (size_t i = 0; i < cfg->nclusters; i++) {
        const struct cluster_conf *c = &cfg->clusters[i];
        for (size_t j = 0; j < c->nservers; j++, index++) {
            bool hit = strcmp(kind, "servers") == 0    ? strcmp(c->servers[j].id, name) == 0
                       : strcmp(kind, "clusters") == 0 ? strcmp(c->name, name) == 0
                                                       : strcmp(c->provider, name) == 0;
            if (hit) {
                health_set_admin(a->env->health, index, state);
                fleet_admin_changed(a->env->fleet, c->servers[j].id, state);
                json_array_append_new(ids, json_string(c->servers[j].id));
            }
        }
    }
    if (json_array_size(ids) == 0) {
        json_decref(ids);
        return NULL;
    }
    return ids;
}

static void
do_reload(struct call *c, const char *token, const char *path)
{
    struct admin_env *env = c->a->env;
    char err[512], name[128];
    json_t *o;

    /* `token` points into the configuration the reload may free */
    snprintf(name, sizeof(name), "%s", token);
    token = name;
    if (env->reload(env->reload_arg, err, sizeof(err)) < 0) {
        audit(c, token, path, 400, err);
        reply_error(c, 400, "Bad Request", err, NULL);
        return;
    }
    audit(c, token, path, 200, "reloaded");
    o = json_object();
    json_object_set_new(o, "result", json_string("reloaded"));
    json_object_set_new(o, "config_generation", json_integer(env->generation));
    reply_json(c, o);
}

/* POST /reload, or POST /{servers|clusters|providers}/{name}/{drain|maintenance|ready}. */
static void
mutate(struct call *c, const char *path, char **seg, int nseg)
{
    static const char *const state_names[] = {"ready", "draining", "maintenance"};
    enum admin_state state = ADMIN_READY;
    const char *token;
    int status;
    json_t *ids, *o;

    token = authorize(c, &status);
    if (token == NULL) {
        audit(c, NULL, path, status, status == 401 ? "no token" : "bad token");
        reply_error(c, status, status == 401 ? "Unauthorized" : "Forbidden",
                    status == 401 ? "a bearer token is required" : "the token is not valid",
                    status == 401 ? "WWW-Authenticate: Bearer\r\n" : NULL);
        return;
    }
    if (nseg == 1) {
        do_reload(c, token, path);
        return;
    }
    if (!parse_state(seg[2], &state)) { /* dispatch() let only the three verbs through */
        reply_error(c, 404, "Not Found", "no such endpoint", NULL);
        return;
    }
    ids = set_state(c->a, seg[0], seg[1], state);
    if (ids == NULL) {
        audit(c, token, path, 404, "no such target");
        reply_error(c, 404, "Not Found", "no server matches", NULL);
        return;
    }
    audit(c, token, path, 200, state_names[state]);
    log_info("admin: %s set %s %s to %s", token, seg[0], seg[1], state_names[state]);
    o = json_object();
    json_object_set_new(o, "result", json_string("ok"));
    json_object_set_new(o, "state", json_string(state_names[state]));
    json_object_set_new(o, "servers", ids);
    reply_json(c, o);
}

/* ---- dispatch ------------------------------------------------------------------------------------ */

/* Split "/a/b/c" (query cut off) into at most 4 segments, in place. */
static int
split_path(char *path, char **seg)
{
    int n = 0;
    char *q = strchr(path, '?'), *save = NULL;

    if (q != NULL)
        *q = '\0';
    for (char *p = strtok_r(path, "/", &save); p != NULL && n < 4; p = strtok_r(NULL, "/", &save))
        seg[n++] = p;
    return strtok_r(NULL, "/", &save) == NULL ? n : 5; /* 5: too many segments */
}

static bool
is_admin_target(char **seg, int nseg)
{
    enum admin_state st;

    return nseg == 3 &&
           (strcmp(seg[0], "servers") == 0 || strcmp(seg[0], "clusters") == 0 ||
            strcmp(seg[0], "providers") == 0) &&
           parse_state(seg[2], &st);
}

static void
serve_get(struct call *c, const char *what)
{
    struct admin_env *env = c->a->env;

    if (strcmp(what, "status") == 0) {
        char *text = status_json(env);
        reply(c, 200, "OK", "application/json", text, NULL);
        free(text);
    } else if (strcmp(what, "healthz") == 0) {
        bool ok = status_serving(env);
        reply(c, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", "application/json",
              ok ? "{\"status\":\"serving\"}\n" : "{\"status\":\"not serving\"}\n", NULL);
    } else {
        struct evbuffer *buf = evbuffer_new();
        size_t n;
        char *text;

        metrics_write(env, buf);
        n = evbuffer_get_length(buf);
        text = malloc(n + 1);
        evbuffer_remove(buf, text, n);
        text[n] = '\0';
        reply(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text, NULL);
        free(text);
        evbuffer_free(buf);
    }
}

static void
dispatch(struct call *c)
{
    const struct http_msg *m = &c->r->msg;
    int method = m->parser.method;
    char path[512], copy[512], *seg[4];
    int nseg;
    bool get_target, post_target;

    snprintf(path, sizeof(path), "%.*s", (int)m->target_len, http_msg_at(m, m->target_off));
    memcpy(copy, path, sizeof(copy));
    nseg = split_path(copy, seg);
    get_target = nseg == 1 && (strcmp(seg[0], "status") == 0 || strcmp(seg[0], "metrics") == 0 ||
                               strcmp(seg[0], "healthz") == 0);
    post_target = (nseg == 1 && strcmp(seg[0], "reload") == 0) || is_admin_target(seg, nseg);
    c->r->head_only = method == HTTP_HEAD;
    if (c->r->denied) {
        if (method != HTTP_GET && method != HTTP_HEAD)
            audit(c, NULL, path, 403, "address not allowed");
        reply_error(c, 403, "Forbidden", "this address may not use the admin endpoint", NULL);
    } else if (get_target && (method == HTTP_GET || method == HTTP_HEAD))
        serve_get(c, seg[0]);
    else if (post_target && method == HTTP_POST)
        mutate(c, path, seg, nseg);
    else if (get_target)
        reply_error(c, 405, "Method Not Allowed", "use GET", "Allow: GET, HEAD\r\n");
    else if (post_target) {
        audit(c, NULL, path, 405, "method not allowed");
        reply_error(c, 405, "Method Not Allowed", "use POST", "Allow: POST\r\n");
    } else
        reply_error(c, 404, "Not Found", "no such endpoint", NULL);
}

void
admin_req_init(struct admin_req *r, const char *client, bool denied)
{
    memset(r, 0, sizeof(*r));
    http_msg_init(&r->msg, HTTP_REQUEST, ADMIN_MAX_HEAD, 64);
    snprintf(r->client, sizeof(r->client), "%s", client);
    r->denied = denied;
}

void
admin_req_release(struct admin_req *r)
{
    http_msg_release(&r->msg);
}

bool
admin_serve(struct admin *a, struct admin_req *r, struct evbuffer *in, struct evbuffer *out)
{
    struct call c = {a, r, out};
    enum http_step st;

    if (r->answered) {
        evbuffer_drain(in, (size_t)-1);
        return true;
    }
    st = http_msg_feed(&r->msg, in, NULL);
    if (st == HTTP_HEAD_DONE)
        dispatch(&c);
    else if (st == HTTP_ERROR && r->denied)
        reply_error(&c, 403, "Forbidden", "this address may not use the admin endpoint", NULL);
    else if (st == HTTP_ERROR)
        reply_error(&c, 400, "Bad Request", http_msg_error_text(&r->msg), NULL);
    return r->answered;
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
    struct admin_conn *ac = arg;
    bool before = ac->r.answered;

    if (admin_serve(ac->a, &ac->r, bufferevent_get_input(bev), bufferevent_get_output(bev)) &&
        !before)
        conn_answered(ac);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct admin_conn *ac = arg;
    struct call c = {ac->a, &ac->r, bufferevent_get_output(bev)};

    if ((what & BEV_EVENT_TIMEOUT) && !ac->r.answered) {
        reply_error(&c, 408, "Request Timeout", NULL, NULL);
        conn_answered(ac);
    } else {
        conn_free(ac);
    }
}

/* The connection's deadline: as a timeout of its socket. */
static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct admin_conn *ac = arg;

    event_cb(ac->bev, BEV_EVENT_TIMEOUT, ac);
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    struct admin *a = arg;
    const struct admin_conf *conf = a->env->cfg->admin;
    /* Outside the allowlist: the request is read before it is refused, so that a mutating
     * attempt is audited. */
    bool denied = conf->nallow > 0 && !cidr_match_any(conf->allow_nets, conf->nallow, sa);
    struct timeval tv = clock_tv_ms(denied ? ADMIN_DENIED_TIMEOUT_MS : ADMIN_TIMEOUT_MS);
    struct admin_conn *ac;
    struct addr peer;
    char client[ADDR_TEXT_MAX];

    if (a->nconns >= ADMIN_MAX_CONNS || (denied && a->ndenied >= ADMIN_MAX_DENIED) ||
        (ac = calloc(1, sizeof(*ac))) == NULL) {
        close(fd);
        return;
    }
    ac->a = a;
    memcpy(&peer.ss, sa, (size_t)salen);
    peer.len = (socklen_t)salen;
    addr_format(&peer, client, sizeof(client));
    ac->bev = bufferevent_socket_new(a->base, fd, BEV_OPT_CLOSE_ON_FREE);
    ac->deadline = evtimer_new(a->base, deadline_cb, ac);
    if (ac->bev == NULL || ac->deadline == NULL) {
        if (ac->bev != NULL)
            bufferevent_free(ac->bev); /* closes fd */
        else
            close(fd);
        if (ac->deadline != NULL)
            event_free(ac->deadline);
        free(ac);
        return;
    }
    TAILQ_INSERT_TAIL(&a->conns, ac, link);
    a->nconns++;
    a->ndenied += denied;
    admin_req_init(&ac->r, client, denied);
    bufferevent_setcb(ac->bev, read_cb, flushed_cb, event_cb, ac);
    bufferevent_set_timeouts(ac->bev, &tv, &tv);
    bufferevent_enable(ac->bev, EV_READ | EV_WRITE);
    evtimer_add(ac->deadline, &tv);
}

/* ---- life ---------------------------------------------------------------------------------------- */

static int
open_audit(struct admin *a)
{
    const char *path = a->env->cfg->admin->audit_log;
    int fd;

    if (strcmp(path, "stderr") == 0)
        fd = STDERR_FILENO;
    else if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0)
        return -1;
    if (a->audit_fd > STDERR_FILENO)
        close(a->audit_fd);
    a->audit_fd = fd;
    return 0;
}

struct admin *
admin_new(struct event_base *base, struct admin_env *env, char *err, size_t errlen)
{
    const struct admin_conf *conf = env->cfg->admin;
    struct admin *a = calloc(1, sizeof(*a));
    int fd;

    if (a == NULL) {
        snprintf(err, errlen, "admin: out of memory");
        return NULL;
    }
    a->base = base;
    a->env = env;
    a->audit_fd = STDERR_FILENO;
    TAILQ_INIT(&a->conns);
    if (open_audit(a) < 0) {
        snprintf(err, errlen, "admin.audit_log: cannot open %s: %s", conf->audit_log,
                 strerror(errno));
        free(a);
        return NULL;
    }
    if (base == NULL)
        return a; /* no socket: requests come through admin_serve() only */
    fd = listener_open(&conf->addr, 64, 0, err, errlen);
    if (fd < 0 || (a->listener = evconnlistener_new(base, accept_cb, a, LEV_OPT_CLOSE_ON_FREE,
                                                    -1, fd)) == NULL) {
        if (fd >= 0)
            close(fd);
        admin_free(a);
        return NULL;
    }
    return a;
}

void
admin_reconfigure(struct admin *a)
{
    if (open_audit(a) < 0)
        log_error("admin.audit_log: cannot open %s: %s; keeping the current one",
                  a->env->cfg->admin->audit_log, strerror(errno));
}

void
admin_free(struct admin *a)
{
    struct admin_conn *ac;

    if (a == NULL)
        return;
    /* conn_free's TAILQ_REMOVE unlinks ac through tqe_prev, an alias of the head's first pointer
     * that the analyzer does not follow: it then believes TAILQ_FIRST returns the freed ac. */
    while ((ac = TAILQ_FIRST(&a->conns)) != NULL)
        conn_free(ac); /* NOLINT(clang-analyzer-unix.Malloc): a false positive, see above */
    if (a->listener != NULL)
        evconnlistener_free(a->listener);
    if (a->audit_fd > STDERR_FILENO)
        close(a->audit_fd);
    free(a);
}
