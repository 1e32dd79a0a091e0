/*
 * ratelimit: which rate limits a request counts against, and under which key. Every limit whose
 * route matches and whose key the request has counts it (GCRA: one "theoretical arrival time"
 * per key; a request is refused while it lies more than the burst allowance ahead). The key is
 * a SHA-256 digest of the limit's name and the value, so that API keys never reach Redis or
 * memory dumps in the clear. Pure, except for the digest.
 */
#ifndef TRIDENT_RATELIMIT_H
#define TRIDENT_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "access_rules.h"
#include "config-t.h"
#include "http.h"

#define RATELIMIT_MAX_HITS 8 /* limits one request counts against; more are not checked */

struct rate_hit {
    const struct rate_limit_conf *limit;
    uint8_t key[16];
};

/* The limits of cfg that count request r (normalised path `path`, head `req`), into hits.
 * Returns how many. */
size_t ratelimit_match(const struct rate_limit_conf *limits, size_t n,
                       const struct access_request *r, const char *path,
                       const struct http_msg *req, struct rate_hit *hits);

/* The Lua script that counts hits in Redis (KEYS: one per hit; ARGV: interval and tolerance in
 * microseconds per hit). It returns 0 when every key admits the request (and counts it in all),
 * else the microseconds until the first refusing key admits one (and counts nothing). */
extern const char ratelimit_script[];

#endif
