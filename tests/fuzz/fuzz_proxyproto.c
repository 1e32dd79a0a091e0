/*
 * fuzz_proxyproto: the PROXY protocol header reader (v1 text, v2 binary). conn.c calls
 * proxyproto_parse() on whatever a recv(MSG_PEEK) returned, so the verdict must not depend on
 * where the bytes were cut: for every prefix of the input the answer is "more" until it becomes
 * complete (with one length, which never changes after) or invalid (for good).
 */
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"
#include "proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int settled = PROXYPROTO_MORE;
    size_t max = size < PROXYPROTO_V2_MAX + 16 ? size : PROXYPROTO_V2_MAX + 16;

    for (size_t len = 1; len <= max; len++) {
        struct sockaddr_storage src;
        int rc;

        memset(&src, 0xa5, sizeof(src));
        rc = proxyproto_parse(data, len, &src);
        FUZZ_ASSERT(rc == PROXYPROTO_MORE || rc == PROXYPROTO_INVALID || rc > 0);
        if (settled != PROXYPROTO_MORE) {
            FUZZ_ASSERT(rc == settled); /* a verdict, once given, stands */
        } else if (rc > 0) {
            FUZZ_ASSERT((size_t)rc <= len && rc <= PROXYPROTO_V2_MAX);
            FUZZ_ASSERT(src.ss_family == AF_UNSPEC || src.ss_family == AF_INET ||
                        src.ss_family == AF_INET6);
        }
        settled = rc;
    }
    return 0;
}
