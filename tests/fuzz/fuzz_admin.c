/*
 * fuzz_admin: the admin endpoint's request handling without its socket, through admin_serve():
 * parse, route (GET /status, /metrics, /healthz; POST drain/maintenance/ready on servers,
 * clusters and providers; POST /reload), authorise the bearer token, audit, and answer into an
 * evbuffer. The environment is real (a loaded config with an admin section and a token, the
 * health table, the stats registry) but no thread runs and nothing listens; the reload is a stub
 * whose outcome the input chooses. The audit log goes to /dev/null.
 *
 * Input: two bytes that seed the split points (the low bit of the first also chooses whether the
 * client is outside admin.allow), then what the client sends. Invariants: nothing is written
 * before the answer; the answer is one complete HTTP/1.1 response with a known status, a
 * Content-Length that matches its body (none for HEAD) and Connection: close.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "admin.h"
#include "config.h"
#include "fuzz_util.h"
#include "health.h"
#include "http.h"
#include "stats.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The token is "fuzz-token" (printf %s fuzz-token | sha256sum). */
static const char config_text[] =
    "{\"listeners\":[{\"address\":\"127.0.0.1:8080\"}],"
    "\"clusters\":["
    "{\"name\":\"ntt\",\"provider\":\"ntt\",\"servers\":[{\"id\":\"ntt-1\",\"address\":"
    "\"127.0.0.1:9001\"},{\"id\":\"ntt-2\",\"address\":\"127.0.0.1:9002\"}]},"
    "{\"name\":\"gmo\",\"provider\":\"gmo\",\"servers\":[{\"id\":\"gmo-1\",\"address\":"
    "\"[::1]:9003\"}]}],"
    "\"admin\":{\"address\":\"127.0.0.1:9901\",\"audit_log\":\"/dev/null\","
    "\"allow\":[\"127.0.0.0/8\"],"
    "\"tokens\":[{\"name\":\"ops\",\"sha256\":"
    "\"33cc09ba35314d19e32ed9a5a30fca56eebbfab5faec7247fd0403cd26e155b5\"}]}}";

static struct admin_env env;
static struct admin *admin;
static bool reload_ok;

static int
reload_stub(void *arg, char *err, size_t errlen)
{
    if (!reload_ok) {
        snprintf(err, errlen, "clusters[0].servers[0].address: expected host:port");
        return -1;
    }
    env.generation++;
    return 0;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct config_error cerr;
    char err[256];

    env.cfg = config_parse(config_text, &cerr);
    if (env.cfg == NULL) {
        fprintf(stderr, "fuzz_admin: built-in config refused: %s\n", cerr.msg);
        abort();
    }
    env.health = health_new(env.cfg, NULL, NULL, NULL, err, sizeof(err));
    env.stats = stats_new(1);
    env.generation = 1;
    env.reload = reload_stub;
    if (env.health == NULL || env.stats == NULL ||
        (admin = admin_new(NULL, &env, err, sizeof(err))) == NULL) {
        fprintf(stderr, "fuzz_admin: %s\n", err);
        abort();
    }
    return 0;
}

/* The bytes of `out` form one response: a status line with a status the endpoint gives,
 * Content-Length matching the body (no body for HEAD), and Connection: close. */
static void
check_answer(struct evbuffer *out, bool head_only)
{
    static const int known[] = {200, 400, 401, 403, 404, 405, 408, 503};
    struct http_msg r;
    enum http_step st;
    bool status_known = false;
    int cl;

    http_msg_init(&r, HTTP_RESPONSE, 65536, 32);
    FUZZ_ASSERT(http_msg_feed(&r, out, NULL) == HTTP_HEAD_DONE);
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        status_known |= r.parser.status_code == known[i];
    FUZZ_ASSERT(status_known && r.parser.http_major == 1 && r.parser.http_minor == 1);
    FUZZ_ASSERT(!llhttp_should_keep_alive(&r.parser));
    cl = http_find_field(&r, "content-length", 14, 0);
    FUZZ_ASSERT(cl >= 0 && (r.parser.flags & F_CONTENT_LENGTH));
    if (head_only) {
        FUZZ_ASSERT(evbuffer_get_length(out) == 0);
    } else {
        FUZZ_ASSERT(evbuffer_get_length(out) == r.parser.content_length);
        st = http_msg_feed(&r, out, NULL);
        FUZZ_ASSERT(st == HTTP_MSG_DONE || r.parser.content_length == 0);
        FUZZ_ASSERT(evbuffer_get_length(out) == 0);
    }
    http_msg_release(&r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_rng rng;
    struct admin_req r;
    struct evbuffer *in, *out;
    size_t off = 2;
    bool answered = false;

    if (size < 2)
        return 0;
    fuzz_rng_init(&rng, (uint32_t)data[0] | (uint32_t)data[1] << 8);
    reload_ok = (data[1] & 1) != 0;
    in = evbuffer_new();
    out = evbuffer_new();
    admin_req_init(&r, "127.0.0.1:40000", (data[0] & 1) != 0);
    while (!answered && off < size) {
        size_t n = fuzz_piece(&rng, size - off);
        fuzz_add(&rng, in, data + off, n);
        off += n;
        answered = admin_serve(admin, &r, in, out);
        FUZZ_ASSERT(answered == r.answered);
        FUZZ_ASSERT(answered || evbuffer_get_length(out) == 0);
    }
    if (answered) {
        FUZZ_ASSERT(admin_serve(admin, &r, in, out)); /* later bytes: drained, no second answer */
        FUZZ_ASSERT(evbuffer_get_length(in) == 0);
        check_answer(out, r.head_only);
    }
    admin_req_release(&r);
    evbuffer_free(in);
    evbuffer_free(out);
    return 0;
}
