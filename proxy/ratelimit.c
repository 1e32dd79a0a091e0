/*
 * ratelimit: see ratelimit.h.
 */
#include <openssl/evp.h>
#include <string.h>

#include "limiter.h"
#include "ratelimit.h"

/* Redis's clock (TIME) for every instance, so that skewed clocks do not skew the count. */
const char ratelimit_script[] =
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) "
    "local wait = 0 "
    "local tats = {} "
    "for i, k in ipairs(KEYS) do "
    "  local iv, tol = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i]) "
    "  local tat = tonumber(redis.call('GET', k) or 0) "
    "  if tat < now then tat = now end "
    "  if tat - now > tol then "
    "    if tat - now - tol > wait then wait = tat - now - tol end "
    "  end "
    "  tats[i] = tat + iv "
    "end "
    "if wait > 0 then return wait end "
    "for i, k in ipairs(KEYS) do "
    "  redis.call('SET', k, string.format('%.0f', tats[i]), 'PX', "
    "             math.floor((tats[i] - now) / 1000) + 1000) "
    "end "
    "return 0";

static void
digest_key(const char *name, const void *value, size_t len, uint8_t key[16])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, name, strlen(name) + 1) != 1 || /* the NUL separates */
        EVP_DigestUpdate(ctx, value, len) != 1 || EVP_DigestFinal_ex(ctx, d, &dlen) != 1 ||
        dlen < 16)
        memset(d, 0, 16);
    EVP_MD_CTX_free(ctx);
    memcpy(key, d, 16);
}

/* The request's key for limit l; false when it has none (no such header). */
static bool
key_for(const struct rate_limit_conf *l, const struct access_request *r,
        const struct http_msg *req, uint8_t key[16])
{
    int i;

    if (l->key_kind == RATE_KEY_CLIENT_IP) {
        uint8_t addr[16];
        limiter_key_addr(r->client, addr);
        digest_key(l->name, addr, sizeof(addr), key);
        return true;
    }
    i = http_find_field(req, l->header, l->header_len, 0);
    if (i < 0)
        return false;
    digest_key(l->name, http_msg_at(req, req->fields[i].value_off), req->fields[i].value_len, key);
    return true;
}

size_t
ratelimit_match(const struct rate_limit_conf *limits, size_t n, const struct access_request *r,
                const char *path, const struct http_msg *req, struct rate_hit *hits)
{
    size_t nhits = 0;

    for (size_t i = 0; i < n && nhits < RATELIMIT_MAX_HITS; i++)
        if (access_route_matches(&limits[i].where, r, path) &&
            key_for(&limits[i], r, req, hits[nhits].key))
            hits[nhits++].limit = &limits[i];
    return nhits;
}
