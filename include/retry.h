/*
 * retry: when a failed attempt may be tried again on another server. Pure policy over plain
 * facts, so a unit test states the rules: a connect that failed sent nothing and is always
 * retried; a request that was sent is retried only when it is idempotent and can be replayed
 * whole, and never once a response byte reached the client; attempts and time are bounded.
 */
#ifndef TRIDENT_RETRY_H
#define TRIDENT_RETRY_H

#include <stdbool.h>
#include <stdint.h>

struct retry_facts {
    bool connect_failed;    /* nothing reached the server */
    bool idempotent;        /* RFC 9110 section 9.2.2 */
    bool replayable;        /* the whole request is kept (no body, or a buffered one) */
    bool response_started;  /* the client has received part of a response */
    unsigned attempts;      /* attempts made so far, the failed one included */
    unsigned max_retries;
    uint64_t elapsed_us;    /* since the first attempt began */
    uint64_t budget_us;     /* no new attempt after this */
};

bool retry_allowed(const struct retry_facts *f);

/* Idempotent methods (llhttp method numbers): GET HEAD OPTIONS TRACE PUT DELETE. */
bool retry_method_idempotent(int llhttp_method);

#endif
