/* access_rules: path normalisation and first-match rules. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "access_rules.h"
#include "cidr.h"

static int
norm(const char *target, char *out, bool *slash, const char **detail)
{
    return access_normalize_path(target, strlen(target), out, slash, detail);
}

static void
test_normalisation(void **state)
{
    static const struct {
        const char *in, *out;
        bool slash;
    } ok[] = {
        {"/", "/", false},
        {"/a/b", "/a/b", false},
        {"/a/b/", "/a/b/", false},
        {"//a///b", "/a/b", false},
        {"/a/./b", "/a/b", false},
        {"/a/b/..", "/a/", false},
        {"/a/b/../c", "/a/c", false},
        {"/public/../admin/x", "/admin/x", false},
        {"/%61dmin/%7euser", "/admin/~user", false},
        {"/a/%2e%2E/b", "/b", false},
        {"/a/%2fb", "/a/%2Fb", true},
        {"/a%5cb", "/a%5Cb", true},
        {"/a\\b", "/a%5Cb", true},
        {"/x%20y%3f", "/x%20y%3F", false},
        {"/q?x=../../..", "/q", false},
        {"*", "/", false},
        {"/...", "/...", false},
        {"/a/..b", "/a/..b", false},
    };
    static const struct {
        const char *in;
        int status;
    } bad[] = {
        {"/..", 403},       {"/a/../..", 403}, {"/%2e%2e/etc/passwd", 403}, {"/a%00b", 403},
        {"/a%zz", 400},     {"/a%4", 400},     {"/a%", 400},
    };
    char out[ACCESS_PATH_MAX];
    const char *detail;
    bool slash;

    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(norm(ok[i].in, out, &slash, &detail), 0);
        assert_string_equal(out, ok[i].out);
        assert_int_equal(slash, ok[i].slash);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(norm(bad[i].in, out, &slash, &detail), bad[i].status);
        assert_non_null(detail);
    }
}

static void
test_long_paths_get_414(void **state)
{
    static char target[ACCESS_PATH_MAX + 10];
    char out[ACCESS_PATH_MAX];
    const char *detail;
    bool slash;

    (void)state;
    memset(target, 'a', sizeof(target) - 1);
    target[0] = '/';
    assert_int_equal(norm(target, out, &slash, &detail), 414);
    /* escapes that expand (a backslash becomes %5C) cannot overrun either */
    memset(target + 1, '\\', sizeof(target) - 2);
    assert_int_equal(norm(target, out, &slash, &detail), 414);
}

/* ---- rules ---- */

static struct sockaddr_in
v4(const char *ip)
{
    struct sockaddr_in a = {.sin_family = AF_INET};

    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static char *admin_listeners[] = {"public"};
static char *admin_hosts[] = {"*.example.com"};
static char *admin_methods[] = {"GET", "POST"};
static struct cidr office[1], blocked[1];

static struct access_rule_conf rules[] = {
    {.name = "admin",
     .where = {.listeners = admin_listeners, .nlisteners = 1, .hosts = admin_hosts, .nhosts = 1,
               .path_prefix = "/admin/"},
     .allow_nets = office, .nallow = 1,
     .deny_nets = blocked, .ndeny = 1, .methods = admin_methods, .nmethods = 2,
     .max_request_body = 1024, .allow_encoded_slash = -1},
    {.name = "files", .where = {.path_prefix = "/files/"}, .max_request_body = -1, .allow_encoded_slash = 1},
};
static struct access_conf conf = {.rules = rules, .nrules = 2};
static struct listener_conf public_listener = {.name = "public", .address = "*:443"};
static struct listener_conf other_listener = {.address = "127.0.0.1:8080"};

static int
check(const struct listener_conf *l, const char *ip, const char *method, const char *host,
      const char *target, struct access_verdict *v)
{
    struct sockaddr_in a = v4(ip);
    struct access_request r = {
        .listener = l,
        .client = (const struct sockaddr *)&a,
        .method = method,
        .host = host,
        .host_len = host != NULL ? strlen(host) : 0,
        .target = target,
        .target_len = strlen(target),
    };

    return access_check(&conf, &r, 100, v);
}

static void
test_rules(void **state)
{
    struct access_verdict v;

    (void)state;
    assert_int_equal(cidr_parse("10.0.0.0/8", &office[0]), 0);
    assert_int_equal(cidr_parse("10.6.6.0/24", &blocked[0]), 0);
    /* the admin rule applies: office clients, GET/POST, its body limit */
    assert_int_equal(check(&public_listener, "10.1.2.3", "GET", "app.example.com:443",
                           "/admin/users", &v), 0);
    assert_string_equal(v.rule, "admin");
    assert_int_equal(v.max_request_body, 1024);
    assert_int_equal(check(&public_listener, "192.0.2.1", "GET", "app.example.com",
                           "/admin/users", &v), 403);
    assert_int_equal(v.why, REASON_ACCESS_DENIED);
    assert_int_equal(check(&public_listener, "10.6.6.9", "GET", "app.example.com",
                           "/admin/users", &v), 403);
    assert_int_equal(check(&public_listener, "10.1.2.3", "DELETE", "app.example.com",
                           "/admin/users", &v), 405);
    assert_int_equal(v.why, REASON_METHOD_NOT_ALLOWED);
    /* normalisation cannot be used to step around it */
    assert_int_equal(check(&public_listener, "192.0.2.1", "GET", "APP.Example.COM.",
                           "/static/..//%61dmin/users", &v), 403);
    /* other host, other listener, other path: the rule does not apply */
    assert_int_equal(check(&public_listener, "192.0.2.1", "GET", "example.com", "/admin/x", &v),
                     0);
    assert_null(v.rule);
    assert_int_equal(v.max_request_body, 100);
    assert_int_equal(check(&other_listener, "192.0.2.1", "GET", "a.example.com", "/admin/x", &v),
                     0);
    assert_int_equal(check(&public_listener, "192.0.2.1", "GET", "a.example.com", "/adminx", &v),
                     0);
    /* encoded slashes: refused unless the rule allows them */
    assert_int_equal(check(&public_listener, "192.0.2.1", "GET", NULL, "/x/a%2Fb", &v), 403);
    assert_int_equal(v.why, REASON_PATH_REFUSED);
    assert_int_equal(check(&public_listener, "192.0.2.1", "GET", NULL, "/files/a%2Fb", &v), 0);
    assert_string_equal(v.rule, "files");
    /* traversal is refused before any rule */
    assert_int_equal(check(&public_listener, "10.1.2.3", "GET", NULL, "/files/../../etc", &v),
                     403);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalisation),
        cmocka_unit_test(test_long_paths_get_414),
        cmocka_unit_test(test_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
