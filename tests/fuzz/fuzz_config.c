/*
 * fuzz_config: configuration loading from JSON text. config_load() reads a file and hands the
 * JSON to the same validation as config_parse() (json_load_file instead of json_loads); the
 * target calls config_parse() on the input, NUL-terminated, so no file is written per input and
 * every byte reaches jansson and the schema walker. A config that loads is queried the ways the
 * rest of trident does, then released; a refused one must say why. Either way: no crash, no
 * leak (LeakSanitizer checks every input), no undefined behaviour.
 *
 * Name resolution: host:port fields are resolved with getaddrinfo() when a config loads. Here a
 * name that is not numeric would become a DNS query to whatever resolver the machine has, per
 * input; the target's getaddrinfo() below resolves numeric hosts and "localhost" only, so the
 * fuzzer stays off the network and its speed does not depend on a resolver.
 */
#include <dlfcn.h>
#include <netdb.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef int getaddrinfo_fn(const char *, const char *, const struct addrinfo *, struct addrinfo **);

int
getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
            struct addrinfo **res)
{
    static getaddrinfo_fn *real;
    struct addrinfo h = {0};

    if (real == NULL)
        real = (getaddrinfo_fn *)dlsym(RTLD_NEXT, "getaddrinfo");
    if (hints != NULL)
        h = *hints;
    if (node != NULL && strcmp(node, "localhost") != 0)
        h.ai_flags |= AI_NUMERICHOST;
    return real(node, service, &h, res);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    struct config_error err = {0};
    struct config *cfg;

    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    cfg = config_parse(text, &err);
    if (cfg == NULL) {
        FUZZ_ASSERT(err.msg[0] != '\0' && memchr(err.msg, '\0', sizeof(err.msg)) != NULL);
    } else {
        FUZZ_ASSERT(cfg->nlisteners > 0 && cfg->nclusters > 0);
        for (size_t i = 0; i < cfg->nclusters; i++)
            for (size_t j = 0; j < cfg->clusters[i].nservers; j++) {
                const struct cluster_conf *c = NULL;
                FUZZ_ASSERT(config_find_server(cfg, cfg->clusters[i].servers[j].id, &c) ==
                            &cfg->clusters[i].servers[j]);
                FUZZ_ASSERT(c == &cfg->clusters[i]);
            }
        FUZZ_ASSERT(config_redis_equal(cfg->redis, cfg->redis));
        FUZZ_ASSERT(config_ticket_rotate_s(cfg) >= 0);
        config_unref(config_ref(cfg));
        config_unref(cfg);
    }
    free(text);
    return 0;
}
