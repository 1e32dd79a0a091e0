/*
 * affinity: the pure parts of sticky sessions. Finding the session cookie in a request or in a
 * response's Set-Cookie, turning its value into the key that is stored (a digest: an application's
 * session cookie is a secret and never reaches Redis or the logs), issuing a new session id, and
 * writing the Set-Cookie for it. conn_affinity.c joins these to the request's life and to Redis.
 */
#ifndef TRIDENT_AFFINITY_H
#define TRIDENT_AFFINITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config-t.h"
#include "headers.h"
#include "http.h"

#define AFFINITY_ID_LEN 32 /* an issued session id: 128 random bits in hex */

/* How a request's session found its server (counted per worker, exported as metrics). */
enum affinity_result {
    AFFINITY_NEW,    /* no session yet, or one nobody knows: the balancer chose */
    AFFINITY_CACHE,  /* this worker's memory */
    AFFINITY_REDIS,  /* Redis */
    AFFINITY_MOVED,  /* its server could not serve: moved (same provider first) */
    AFFINITY_LOCAL,  /* Redis unavailable or too slow: memory, else the session's hash */
    AFFINITY_RESULT_COUNT
};

const char *affinity_result_name(enum affinity_result r);

/* The value of cookie `name` in the request's Cookie fields ("a=b; c=d", RFC 6265 section 5.4);
 * the first one wins. Returns whether there is one with a non-empty value. */
bool affinity_request_cookie(const struct http_msg *req, const char *name, struct slice *value);

/* The value the response's Set-Cookie fields give cookie `name` (the last one wins). Returns
 * false when none sets it, or when the last one deletes it (empty value, Max-Age=0). */
bool affinity_response_cookie(const struct http_msg *resp, const char *name, struct slice *value);

/* Whether `v` looks like an id trident issued (AFFINITY_ID_LEN lowercase hex digits). */
bool affinity_id_valid(const char *v, size_t n);

/* A fresh session id (NUL-terminated). Returns 0 or -1 (no entropy). */
int affinity_new_id(char out[AFFINITY_ID_LEN + 1]);

/* The session key: the first 16 bytes of SHA-256 of the cookie's value. */
void affinity_key(const char *value, size_t len, uint8_t key[16]);

/* key in hex (NUL-terminated), as it appears in the Redis key. */
void affinity_key_hex(const uint8_t key[16], char out[33]);

/* The Set-Cookie value for an issued id: Path=/, HttpOnly, SameSite, Secure over TLS, Max-Age if
 * configured. Returns the length, or -1 if buf is too small. */
int affinity_set_cookie(const struct affinity_conf *conf, const char *id, bool secure, char *buf,
                        size_t len);

#endif
