/* Unit tests for config: every refusal names the JSON path of the bad field; defaults apply. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config.h"

#define SERVERS "\"servers\":[{\"id\":\"a1\",\"address\":\"127.0.0.2:8081\"}]"
#define CLUSTER "{\"name\":\"a\",\"provider\":\"ntt\"," SERVERS "}"
#define GOOD    "{\"listeners\":[{\"address\":\"127.0.0.1:8080\"}],\"clusters\":[" CLUSTER "]}"

struct bad_case {
    const char *json;
    const char *error; /* the whole message: path, then reason */
};

static const struct bad_case bad[] = {
#define WITH_ACCESS(rules)                                                                         \
    "{\"listeners\":[{\"name\":\"pub\",\"address\":\"127.0.0.1:8080\"}],\"clusters\":[" CLUSTER \
    "],\"access\":{\"rules\":[" rules "]}}"
    {WITH_ACCESS("{\"name\":\"r\",\"allow\":[\"10.0.0.0/33\"]}"),
     "access.rules[0].allow[0]: expected an address or a network such as 10.0.0.0/8 or "
     "2001:db8::/32"},
    {WITH_ACCESS("{\"name\":\"r\"},{\"name\":\"s\",\"listeners\":[\"pub\",\"priv\"]}"),
     "access.rules[1].listeners[1]: no listener is named or bound to \"priv\""},
    {WITH_ACCESS("{\"name\":\"r\",\"path_prefix\":\"admin\"}"),
     "access.rules[0].path_prefix: must start with /"},
    {WITH_ACCESS("{\"name\":\"r\",\"methods\":[\"GET\",\"BAD METHOD\"]}"),
     "access.rules[0].methods[1]: expected a method name"},
    {WITH_ACCESS("{\"name\":\"r\",\"hosts\":[\"App.example.com\"]}"),
     "access.rules[0].hosts[0]: expected a lower-case host name without port"},
    {WITH_ACCESS("{\"name\":\"r\"},{\"name\":\"r\"}"),
     "access.rules[1].name: duplicate name \"r\""},
    {WITH_ACCESS("{\"path_prefix\":\"/\"}"), "access.rules[0].name: required key is missing"},
    {"{\"listeners\":[{\"address\":\"127.0.0.1:8080\"}],\"clusters\":[" CLUSTER "],\"x\":1}",
     "x: unknown key"},
    {"{\"workers\":\"2\",\"listeners\":[{\"address\":\"127.0.0.1:8080\"}],\"clusters\":[" CLUSTER
     "]}",
     "workers: expected an integer, got a string"},
    {"{\"workers\":0,\"listeners\":[{\"address\":\"127.0.0.1:8080\"}],\"clusters\":[" CLUSTER "]}",
     "workers: 0 is out of range 1..256"},
    {"{\"listeners\":[],\"clusters\":[" CLUSTER "]}", "listeners: expected 1 to 64 items, got 0"},
    {"{\"listeners\":[{\"address\":\"127.0.0.1\"}],\"clusters\":[" CLUSTER "]}",
     "listeners[0].address: expected host:port (IPv6 addresses in brackets)"},
    {"{\"listeners\":[{\"address\":\"127.0.0.1:0\"}],\"clusters\":[" CLUSTER "]}",
     "listeners[0].address: port 0 out of range 1..65535"},
    {"{\"listeners\":[{\"address\":\"127.0.0.1:80\"},{\"address\":\"127.0.0.1:80\"}],"
     "\"clusters\":[" CLUSTER "]}",
     "listeners[1].address: same address as listeners[0]"},
    {"{\"listeners\":[{\"address\":\"127.0.0.1:8080\"}]}", "clusters: required key is missing"},
    {"{\"listeners\":[{\"address\":\"127.0.0.1:8080\"}],\"clusters\":[{\"name\":\"a\","
     "\"provider\":\"ntt\",\"servers\":[{\"id\":\"a1\",\"address\":\"bad\"}]}]}",
     "clusters[0].servers[0].address: expected host:port (IPv6 addresses in brackets)"},
    {"{\"listeners\":[{\"address\":\"127.0.0.1:8080\"}],\"clusters\":[" CLUSTER
     ",{\"name\":\"b\",\"provider\":\"gmo\",\"servers\":[{\"id\":\"b1\",\"address\":"
     "\"no-such-host.invalid:80\"}]}]}",
     "clusters[1].servers[0].address: cannot resolve 'no-such-host.invalid'"},
    {"{\"listeners\":[{\"address\":\"127.0.0.1:8080\"}],\"clusters\":[" CLUSTER
     ",{\"name\":\"b\",\"provider\":\"gmo\"," SERVERS "}]}",
     "clusters[1].servers[0].id: duplicate id \"a1\" (also clusters[0].servers[0])"},
    {"{\"listeners\":[{\"address\":\"127.0.0.1:8080\"}],\"clusters\":[" CLUSTER "," CLUSTER "]}",
     "clusters[1].name: duplicate name \"a\""},
    {"{\"listeners\":[{\"address\":\"127.0.0.1:8080\"}],\"clusters\":[{\"name\":\"a b\","
     "\"provider\":\"ntt\"," SERVERS "}]}",
     "clusters[0].name: expected 1 to 64 characters of A-Z a-z 0-9 . _ -"},
    {"{\"listeners\":[{\"address\":\"127.0.0.1:8080\"}],\"clusters\":[{\"name\":\"a\","
     "\"provider\":\"ntt\",\"balance\":\"random\"," SERVERS "}]}",
     "clusters[0].balance: expected one of \"round_robin\", \"least_conn\""},
    {"{\"listeners\":[{\"address\":\"127.0.0.1:8080\"}],\"clusters\":[{\"name\":\"a\","
     "\"provider\":\"ntt\",\"weight\":0," SERVERS "}]}",
     "clusters: no cluster can take traffic (all weights are 0)"},
    {"{\"listeners\":[{\"address\":\"127.0.0.1:8080\"}],\"clusters\":[" CLUSTER "],"
     "\"timeouts\":{\"client_header_ms\":0}}",
     "timeouts.client_header_ms: 0 is out of range 1..86400000"},
    {"{\"listeners\":[{\"address\":\"127.0.0.1:8080\"}],\"clusters\":[" CLUSTER "],"
     "\"limits\":{\"max_header_bytes\":1.5}}",
     "limits.max_header_bytes: expected an integer, got a number with a fraction"},
    {"{\"listeners\":[{\"address\":\"127.0.0.1:8080\"}],\"clusters\":[" CLUSTER "],"
     "\"log\":{\"error_level\":\"loud\"}}",
     "log.error_level: expected one of \"error\", \"warn\", \"info\", \"debug\""},
    {"{\"listeners\":[{\"address\":\"127.0.0.1:8080\"}],\"clusters\":[" CLUSTER "],"
     "\"timeouts\":{\"client_header\":10}}",
     "timeouts.client_header: unknown key"},
    {"[1,2]", "(root): expected an object, got an array"},
};

static void
test_bad_configs_name_the_path(void **state)
{
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct config_error err;
        struct config *cfg = config_parse(bad[i].json, &err);

        if (cfg != NULL)
            fail_msg("case %zu was accepted", i);
        if (strncmp(err.msg, bad[i].error, strlen(bad[i].error)) != 0)
            fail_msg("case %zu: got \"%s\", expected \"%s\"", i, err.msg, bad[i].error);
    }
}

static void
test_duplicate_json_keys_refused(void **state)
{
    struct config_error err;

    assert_null(config_parse("{\"workers\":1,\"workers\":2}", &err));
    assert_non_null(strstr(err.msg, "duplicate object key"));
}

static void
test_syntax_error_gives_line_and_column(void **state)
{
    struct config_error err;

    assert_null(config_parse("{\n \"workers\": ,\n}", &err));
    assert_non_null(strstr(err.msg, "line 2 column"));
}

static void
test_defaults_fill_missing_sections(void **state)
{
    struct config_error err;
    struct config *cfg = config_parse(GOOD, &err);

    assert_non_null(cfg);
    assert_true(cfg->workers >= 1);
    assert_int_equal(cfg->timeouts.client_header_ms, 10000);
    assert_int_equal(cfg->timeouts.upstream_connect_ms, 500);
    assert_int_equal(cfg->limits.max_header_bytes, 16384);
    assert_int_equal(cfg->limits.max_request_body, 104857600);
    assert_string_equal(cfg->log.access, "stdout");
    assert_int_equal(cfg->listeners[0].backlog, 511);
    assert_int_equal(cfg->clusters[0].weight, 1);
    assert_int_equal(cfg->clusters[0].servers[0].weight, 1);
    assert_int_equal(cfg->nservers, 1);
    config_unref(cfg);
}

static void
test_ipv6_and_wildcard_listeners_accepted(void **state)
{
    struct config_error err;
    struct config *cfg = config_parse(
        "{\"listeners\":[{\"address\":\"[::1]:8080\"},{\"address\":\"*:8080\"}],\"clusters\":["
        "{\"name\":\"a\",\"provider\":\"ntt\",\"servers\":[{\"id\":\"a1\",\"address\":"
        "\"[::1]:9000\"}]}]}",
        &err);

    if (cfg == NULL) {
        fail_msg("%s", err.msg);
        return; /* not reached: cmocka 1.1's fail_msg() jumps out but is not marked noreturn */
    }
    assert_int_equal(cfg->listeners[0].addr.ss.ss_family, AF_INET6);
    assert_int_equal(cfg->listeners[1].addr.ss.ss_family, AF_INET);
    config_unref(cfg);
}

static void
test_wildcard_refused_for_servers(void **state)
{
    struct config_error err;

    assert_null(config_parse("{\"listeners\":[{\"address\":\"127.0.0.1:1\"}],\"clusters\":["
                             "{\"name\":\"a\",\"provider\":\"ntt\",\"servers\":[{\"id\":\"a1\","
                             "\"address\":\"*:9000\"}]}]}",
                             &err));
    assert_string_equal(err.msg, "clusters[0].servers[0].address: wildcard host '*' is only "
                                 "valid for listeners");
}

static void
test_find_server_by_id(void **state)
{
    struct config_error err;
    struct config *cfg = config_parse(GOOD, &err);
    const struct cluster_conf *c = NULL;

    assert_non_null(config_find_server(cfg, "a1", &c));
    assert_string_equal(c->provider, "ntt");
    assert_null(config_find_server(cfg, "zz", NULL));
    config_unref(cfg);
}

static void
test_environment_variables_expand_in_strings(void **state)
{
    struct config_error err;
    struct config *cfg;

    setenv("TRIDENT_TEST_LISTEN", "127.0.0.1:8181", 1);
    unsetenv("TRIDENT_TEST_UNSET");
    cfg = config_parse("{\"listeners\":[{\"address\":\"${TRIDENT_TEST_LISTEN}\"}],"
                       "\"clusters\":[{\"name\":\"a\",\"provider\":\"${TRIDENT_TEST_UNSET:-ntt}\","
                       "\"servers\":[{\"id\":\"a1\",\"address\":\"127.0.0.2:${TRIDENT_TEST_UNSET:-81}\"}]}]}",
                       &err);
    if (cfg == NULL) {
        fail_msg("%s", err.msg);
        return; /* not reached: cmocka 1.1's fail_msg() jumps out but is not marked noreturn */
    }
    assert_string_equal(cfg->listeners[0].address, "127.0.0.1:8181");
    assert_string_equal(cfg->clusters[0].provider, "ntt");
    assert_string_equal(cfg->clusters[0].servers[0].address, "127.0.0.2:81");
    config_unref(cfg);
    assert_null(config_parse("{\"listeners\":[{\"address\":\"${TRIDENT_TEST_UNSET}\"}],"
                             "\"clusters\":[" CLUSTER "]}",
                             &err));
    assert_string_equal(err.msg, "listeners[0].address: environment variable TRIDENT_TEST_UNSET "
                                 "is not set (${NAME:-default} gives a default)");
    /* a value that fails to expand is named by its path, never quoted: it may be a secret */
    assert_null(config_parse("{\"redis\":{\"address\":\"127.0.0.1:6379\","
                             "\"password\":\"s3cr${et\"},\"clusters\":[" CLUSTER "]}",
                             &err));
    assert_string_equal(err.msg, "redis.password: unterminated ${ (no closing })");
    assert_null(config_parse("{\"redis\":{\"address\":\"127.0.0.1:6379\","
                             "\"password\":\"s3cr${}et\"},\"clusters\":[" CLUSTER "]}",
                             &err));
    assert_null(strstr(err.msg, "s3cr"));
}

/* The example config shipped in the repository must stay valid. */
static void
test_shipped_example_is_valid(void **state)
{
    struct config_error err;
    struct config *cfg = config_load(TRIDENT_EXAMPLE_CONFIG, &err);

    if (cfg == NULL)
        fail_msg("%s", err.msg);
    config_unref(cfg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_configs_name_the_path),
        cmocka_unit_test(test_duplicate_json_keys_refused),
        cmocka_unit_test(test_syntax_error_gives_line_and_column),
        cmocka_unit_test(test_defaults_fill_missing_sections),
        cmocka_unit_test(test_ipv6_and_wildcard_listeners_accepted),
        cmocka_unit_test(test_wildcard_refused_for_servers),
        cmocka_unit_test(test_find_server_by_id),
        cmocka_unit_test(test_environment_variables_expand_in_strings),
        cmocka_unit_test(test_shipped_example_is_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
