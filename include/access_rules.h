/*
 * access_rules: the edge checks a request head passes before it is routed. The path is
 * normalised first (percent-decoding of unreserved characters, "//" merged, "." and ".."
 * resolved) so that rules see what the application will see: "/public/..%2fadmin" or
 * "/%61dmin" cannot slip past a rule for "/admin/". A path that climbs above the root, holds
 * an encoded NUL, or an encoded slash or backslash where not allowed is refused. Then the first
 * rule whose conditions hold (listener, Host, path prefix) decides: client CIDRs (deny, then
 * allow), the method allowlist, and the body limit. Pure functions: no sockets, no state.
 */
#ifndef TRIDENT_ACCESS_RULES_H
#define TRIDENT_ACCESS_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config-t.h"
#include "reason.h"

#define ACCESS_PATH_MAX 8192 /* longer paths are refused with 414 */

/* What a request head says, as the rules need it. */
struct access_request {
    const struct listener_conf *listener;
    const struct sockaddr *client;
    const char *method;
    const char *host;   /* Host (may hold a port), or NULL */
    size_t host_len;
    const char *target; /* origin-form: path, then maybe "?query" */
    size_t target_len;
};

struct access_verdict {
    int status;                          /* 0: the request may go on; else the answer */
    enum reason why;
    const char *rule;                    /* the rule that applied, or NULL */
    const char *detail;                  /* what failed (static text), or NULL */
    int64_t max_request_body;            /* the body limit that applies */
};

/* Normalise the path part of `target` into out (ACCESS_PATH_MAX bytes, NUL-terminated); an
 * encoded slash or backslash stays encoded (it separates nothing) and sets *encoded_slash.
 * Returns 0, or the status to refuse with (400 bad percent-encoding, 403 a climb above the root
 * or an encoded NUL, 414 too long) and the reason text in *detail. */
int access_normalize_path(const char *target, size_t len, char *out, bool *encoded_slash,
                          const char **detail);

/* Whether a request (whose normalised path is `path`) is where m applies. */
bool access_route_matches(const struct route_match *m, const struct access_request *r,
                          const char *path);

/* Check a request against a's rules; `default_max_body` is limits.max_request_body. Returns
 * v->status. */
int access_check(const struct access_conf *a, const struct access_request *r,
                 int64_t default_max_body, struct access_verdict *v);

/* The same for a path access_normalize_path() has normalised already (the caller needs it for
 * rate limits too). */
int access_check_path(const struct access_conf *a, const struct access_request *r, const char *path,
                      bool encoded_slash, int64_t default_max_body, struct access_verdict *v);

#endif
