/*
 * fuzz_request: a client connection's request side without the socket. The input (after two
 * bytes that seed the split points) is what a client sends on one connection: it is fed in
 * pieces to the request parser (http.h), and each complete head goes through what conn.c does
 * with it: headers_check_request(), path normalisation and the access rules, the body framing,
 * rewrite_request(), then the body through body_pump(), and the next pipelined request.
 *
 * Invariants checked beyond "no crash, no leak, no undefined behaviour":
 * - a request that passed the checks rewrites into a head that the parser accepts again, that
 *   passes the checks again, holds exactly one Host (the one the request was routed by), the
 *   same method, target and framing, and has no CR or LF but at the ends of its lines;
 * - a normalised path starts with '/', has no empty, "." or ".." segment, and normalises to
 *   itself; access_check() and access_check_path() agree;
 * - a re-chunked body decodes to as many bytes as were moved, and is complete when the body is.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "access_rules.h"
#include "body.h"
#include "config.h"
#include "fuzz_util.h"
#include "headers.h"
#include "http.h"
#include "rewrite.h"

#define MAX_HEAD     4096 /* small: the head limit is reached by inputs libFuzzer can make */
#define MAX_FIELDS   32
#define MAX_MESSAGES 8

/* Access rules of every kind (hosts, prefixes, CIDRs, methods, encoded slashes, body limits). */
static const char config_text[] =
    "{\"listeners\":[{\"name\":\"public\",\"address\":\"127.0.0.1:8080\"}],"
    "\"clusters\":[{\"name\":\"a\",\"provider\":\"a\",\"servers\":[{\"id\":\"a-1\","
    "\"address\":\"127.0.0.1:9000\"}]}],"
    "\"limits\":{\"max_request_body\":4096},"
    "\"access\":{\"rules\":["
    "{\"name\":\"admin\",\"path_prefix\":\"/admin/\",\"allow\":[\"10.0.0.0/8\"],"
    "\"methods\":[\"GET\",\"POST\"],\"max_request_body\":64},"
    "{\"name\":\"api\",\"hosts\":[\"api.example.com\",\"*.example.org\"],\"path_prefix\":\"/api/\","
    "\"deny\":[\"192.0.2.0/24\"],\"allow_encoded_slash\":1},"
    "{\"name\":\"static\",\"listeners\":[\"public\"],\"path_prefix\":\"/static/\","
    "\"methods\":[\"GET\",\"HEAD\"]}]}}";

static struct config *cfg;
static struct sockaddr_storage clients[4];

static void
set_client(struct sockaddr_storage *ss, int family, const char *text)
{
    memset(ss, 0, sizeof(*ss));
    ss->ss_family = (sa_family_t)family;
    if (family == AF_INET)
        inet_pton(AF_INET, text, &((struct sockaddr_in *)ss)->sin_addr);
    else
        inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)ss)->sin6_addr);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct config_error err;

    cfg = config_parse(config_text, &err);
    if (cfg == NULL) {
        fprintf(stderr, "fuzz_request: built-in config refused: %s\n", err.msg);
        abort();
    }
    set_client(&clients[0], AF_INET, "10.1.2.3");
    set_client(&clients[1], AF_INET, "192.0.2.7");
    set_client(&clients[2], AF_INET, "203.0.113.5");
    set_client(&clients[3], AF_INET6, "2001:db8::1");
    return 0;
}

static bool
slice_equal(struct slice a, const char *p, size_t n)
{
    return a.n == n && (n == 0 || memcmp(a.p, p, n) == 0);
}

/* ---- path normalisation and access rules ---------------------------------------------------- */

static void
check_normalised(const char *path, bool encoded_slash)
{
    size_t n = strnlen(path, ACCESS_PATH_MAX);
    char again[ACCESS_PATH_MAX];
    const char *detail;
    bool enc2;

    FUZZ_ASSERT(n > 0 && n < ACCESS_PATH_MAX && path[0] == '/');
    FUZZ_ASSERT(strstr(path, "//") == NULL);
    FUZZ_ASSERT(strstr(path, "/./") == NULL && strstr(path, "/../") == NULL);
    FUZZ_ASSERT(!(n >= 2 && strcmp(path + n - 2, "/.") == 0));
    FUZZ_ASSERT(!(n >= 3 && strcmp(path + n - 3, "/..") == 0));
    FUZZ_ASSERT(strchr(path, '\\') == NULL && strchr(path, '?') == NULL);
    FUZZ_ASSERT(access_normalize_path(path, n, again, &enc2, &detail) == 0);
    /* encoded_slash speaks of the target as sent (the server gets that one), so a ".." may have
     * dropped the segment that held it: the flag may only be lost, never gained */
    FUZZ_ASSERT(strcmp(again, path) == 0 && (!enc2 || encoded_slash));
}

/* Returns the verdict's status (0: the request may go on) and the body limit. */
static int
check_access(const struct http_msg *m, const struct req_info *info, struct fuzz_rng *rng,
             int64_t *max_body)
{
    char path[ACCESS_PATH_MAX];
    const char *detail = NULL;
    bool encoded_slash;
    struct access_verdict v, v2;
    struct access_request r = {
        .listener = &cfg->listeners[0],
        .client = (const struct sockaddr *)&clients[fuzz_rng_next(rng) % 4],
        .method = llhttp_method_name((llhttp_method_t)m->parser.method),
        .host = info->host.p,
        .host_len = info->host.n,
        .target = info->target.p,
        .target_len = info->target.n,
    };
    int status = access_normalize_path(r.target, r.target_len, path, &encoded_slash, &detail);

    *max_body = cfg->limits.max_request_body;
    access_check(&cfg->access, &r, cfg->limits.max_request_body, &v2);
    if (status != 0) {
        FUZZ_ASSERT(status == 400 || status == 403 || status == 414);
        FUZZ_ASSERT(detail != NULL && v2.status == status);
        return status;
    }
    check_normalised(path, encoded_slash);
    access_check_path(&cfg->access, &r, path, encoded_slash, cfg->limits.max_request_body, &v);
    FUZZ_ASSERT(v.status == 0 || v.status == 403 || v.status == 405);
    FUZZ_ASSERT(v.status == v2.status && v.max_request_body == v2.max_request_body);
    *max_body = v.max_request_body;
    return v.status;
}

/* ---- the rewritten head --------------------------------------------------------------------- */

static void
check_rewritten(const struct http_msg *m, const struct req_info *info, bool chunked,
                struct evbuffer *out)
{
    size_t len = evbuffer_get_length(out);
    const char *h = (const char *)evbuffer_pullup(out, -1);
    struct evbuffer *again = evbuffer_new();
    struct http_msg r;
    struct req_info i2;
    enum reason why;
    int host = -1, hosts = 0;
    bool slash = info->target.n == 0 || info->target.p[0] == '?';

    fuzz_check_lines(h, len);
    http_msg_init(&r, HTTP_REQUEST, (uint32_t)len, MAX_FIELDS + 8);
    evbuffer_add(again, h, len);
    FUZZ_ASSERT(http_msg_feed(&r, again, NULL) == HTTP_HEAD_DONE);
    FUZZ_ASSERT(evbuffer_get_length(again) == 0);
    FUZZ_ASSERT(headers_check_request(&r, &i2, &why) == 0);
    for (int i = http_find_field(&r, LIT("host"), 0); i >= 0;
         i = http_find_field(&r, LIT("host"), (uint32_t)i + 1), hosts++)
        host = i;
    FUZZ_ASSERT(hosts == 1);
    if (info->host.n > 0) /* the server sees the Host that routing and the rules saw */
        FUZZ_ASSERT(slice_equal(info->host, http_msg_at(&r, r.fields[host].value_off),
                                r.fields[host].value_len));
    FUZZ_ASSERT(r.parser.method == m->parser.method && r.parser.http_minor == 1);
    FUZZ_ASSERT(r.target_len == info->target.n + slash);
    FUZZ_ASSERT(memcmp(http_msg_at(&r, r.target_off) + slash, info->target.p, info->target.n) == 0);
    FUZZ_ASSERT(((r.parser.flags & F_CHUNKED) != 0) == chunked);
    FUZZ_ASSERT((r.parser.flags & F_CONTENT_LENGTH) == (m->parser.flags & F_CONTENT_LENGTH));
    if (m->parser.flags & F_CONTENT_LENGTH)
        FUZZ_ASSERT(r.parser.content_length == m->parser.content_length);
    FUZZ_ASSERT(i2.websocket == info->websocket);
    http_msg_release(&r);
    evbuffer_free(again);
}

/* ---- the body ---------------------------------------------------------------------------------
 */

/* Move the body as conn.c does; true when it ended where the next request may start. */
static bool
pump_body(struct fuzz_feed *f, struct http_msg *m, int64_t max_body)
{
    const llhttp_t *p = &m->parser;
    enum body_kind kind = BODY_NONE;
    struct evbuffer *out;
    enum body_step st;
    struct body b;

    if (p->flags & F_CHUNKED)
        kind = BODY_CHUNKED;
    else if ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0)
        kind = BODY_LENGTH;
    if (kind == BODY_LENGTH && p->content_length > (uint64_t)max_body)
        return false; /* 413 before a byte of it is read */
    body_init(&b, kind, p->content_length, kind == BODY_CHUNKED, (uint64_t)max_body, m);
    out = evbuffer_new();
    while ((st = body_pump(&b, f->in, out)) == BODY_AGAIN && fuzz_more(f))
        ;
    FUZZ_ASSERT(b.moved <= (uint64_t)max_body);
    if (kind == BODY_CHUNKED && (st == BODY_AGAIN || st == BODY_DONE))
        fuzz_check_rechunked(out, b.moved, st == BODY_DONE);
    else if (kind == BODY_LENGTH)
        FUZZ_ASSERT(evbuffer_get_length(out) == b.moved &&
                    b.moved + b.remaining == p->content_length);
    evbuffer_free(out);
    return st == BODY_DONE;
}

/* ---- one request ------------------------------------------------------------------------------
 */

static bool
on_head(struct fuzz_feed *f, struct http_msg *m)
{
    struct rewrite_request_ctx ctx = {
        .client_ip = "192.0.2.1",
        .client = "198.51.100.9",
        .trusted = fuzz_rng_next(&f->rng) & 1,
        .proto = fuzz_rng_next(&f->rng) & 1 ? "https" : "http",
        .request_id = "0123456789abcdef0123456789abcdef",
        .chunked = (m->parser.flags & F_CHUNKED) != 0,
        .default_host = "127.0.0.1:8080",
        .drop_expect = fuzz_rng_next(&f->rng) & 1,
    };
    struct req_info info;
    enum reason why;
    struct evbuffer *out;
    int64_t max_body;
    int status = headers_check_request(m, &info, &why);

    FUZZ_ASSERT(status == 0 || status == 400 || status == 405 || status == 417);
    FUZZ_ASSERT((status == 0) == (why == REASON_NONE));
    if (status != 0)
        return false; /* conn_fail(): the connection closes */
    status = check_access(m, &info, &f->rng, &max_body);
    out = evbuffer_new();
    FUZZ_ASSERT(rewrite_request(m, &info, &ctx, out) == 0);
    check_rewritten(m, &info, ctx.chunked, out);
    evbuffer_free(out);
    return status == 0 && pump_body(f, m, max_body);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_feed f = {.data = data, .size = size, .off = 2};
    struct http_msg m;

    if (size < 2)
        return 0;
    fuzz_rng_init(&f.rng, (uint32_t)data[0] | (uint32_t)data[1] << 8);
    f.in = evbuffer_new();
    http_msg_init(&m, HTTP_REQUEST, MAX_HEAD, MAX_FIELDS);
    for (int n = 0; n < MAX_MESSAGES; n++) {
        enum http_step st;

        while ((st = http_msg_feed(&m, f.in, NULL)) == HTTP_AGAIN && fuzz_more(&f))
            ;
        if (st != HTTP_HEAD_DONE) {
            FUZZ_ASSERT(st == HTTP_AGAIN || m.error != HTTP_ERR_NONE);
            break;
        }
        FUZZ_ASSERT(m.head_complete && m.head_bytes <= MAX_HEAD && m.nfields <= MAX_FIELDS);
        if (!on_head(&f, &m))
            break;
        http_msg_reset(&m); /* next_request(): a pipelined request follows */
    }
    http_msg_release(&m);
    evbuffer_free(f.in);
    return 0;
}
