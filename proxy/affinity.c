/*
 * affinity: cookie parsing (RFC 6265, leniently: what browsers send), session keys and ids.
 */
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "affinity.h"

static const char hex[] = "0123456789abcdef";

const char *
affinity_result_name(enum affinity_result r)
{
    static const char *const names[] = {"new", "cache", "redis", "moved", "local"};

    return r < AFFINITY_RESULT_COUNT ? names[r] : "?";
}

static bool
is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Find `name` among "a=b; c=d" pairs of one Cookie value. */
static bool
find_pair(const char *p, size_t n, const char *name, struct slice *value)
{
    size_t nlen = strlen(name), i = 0;

    while (i < n) {
        size_t start, eq = 0, end;

        while (i < n && (is_ows(p[i]) || p[i] == ';'))
            i++;
        start = i;
        while (i < n && p[i] != ';') {
            if (p[i] == '=' && eq == 0)
                eq = i;
            i++;
        }
        end = i;
        while (end > start && is_ows(p[end - 1]))
            end--;
        if (eq == 0 || eq - start != nlen || memcmp(p + start, name, nlen) != 0)
            continue;
        value->p = p + eq + 1;
        value->n = end - eq - 1;
        if (value->n >= 2 && value->p[0] == '"' && value->p[value->n - 1] == '"') {
            value->p++;
            value->n -= 2;
        }
        return value->n > 0;
    }
    return false;
}

bool
affinity_request_cookie(const struct http_msg *req, const char *name, struct slice *value)
{
    for (int i = http_find_field(req, "cookie", 6, 0); i >= 0;
         i = http_find_field(req, "cookie", 6, (uint32_t)i + 1)) {
        const struct http_field *f = &req->fields[i];
        if (find_pair(http_msg_at(req, f->value_off), f->value_len, name, value))
            return true;
    }
    return false;
}

/* Whether the attributes after a Set-Cookie's first pair delete the cookie (Max-Age=0 or less). */
static bool
deletes(const char *attrs, size_t n)
{
    for (size_t i = 0; i + 8 <= n; i++)
        if (strncasecmp(attrs + i, "max-age=", 8) == 0) {
            size_t j = i + 8;
            return j < n && (attrs[j] == '0' || attrs[j] == '-');
        }
    return false;
}

bool
affinity_response_cookie(const struct http_msg *resp, const char *name, struct slice *value)
{
    size_t nlen = strlen(name);
    bool found = false;

    for (int i = http_find_field(resp, "set-cookie", 10, 0); i >= 0;
         i = http_find_field(resp, "set-cookie", 10, (uint32_t)i + 1)) {
        const struct http_field *f = &resp->fields[i];
        const char *p = http_msg_at(resp, f->value_off), *semi;
        size_t n = f->value_len, first;

        while (n > 0 && is_ows(*p)) {
            p++;
            n--;
        }
        semi = memchr(p, ';', n);
        first = semi != NULL ? (size_t)(semi - p) : n;
        if (first <= nlen || memcmp(p, name, nlen) != 0 || p[nlen] != '=')
            continue;
        value->p = p + nlen + 1;
        value->n = first - nlen - 1;
        while (value->n > 0 && is_ows(value->p[value->n - 1]))
            value->n--;
        found = value->n > 0 && !deletes(p + first, n - first);
    }
    return found;
}

bool
affinity_id_valid(const char *v, size_t n)
{
    if (n != AFFINITY_ID_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strchr(hex, v[i]) == NULL || v[i] == '\0')
            return false;
    return true;
}

int
affinity_new_id(char out[AFFINITY_ID_LEN + 1])
{
    uint8_t raw[AFFINITY_ID_LEN / 2];

    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -1;
    for (size_t i = 0; i < sizeof(raw); i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[AFFINITY_ID_LEN] = '\0';
    return 0;
}

void
affinity_key(const char *value, size_t len, uint8_t key[16])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;

    if (EVP_Digest(value, len, digest, &dlen, EVP_sha256(), NULL) != 1 || dlen < 16)
        memset(digest, 0, 16);
    memcpy(key, digest, 16);
}

void
affinity_key_hex(const uint8_t key[16], char out[33])
{
    for (size_t i = 0; i < 16; i++) {
        out[2 * i] = hex[key[i] >> 4];
        out[2 * i + 1] = hex[key[i] & 15];
    }
    out[32] = '\0';
}

int
affinity_set_cookie(const struct affinity_conf *conf, const char *id, bool secure, char *buf,
                    size_t len)
{
    static const char *const same_site[] = {"Lax", "Strict", "None"};
    char age[32] = "";
    int n;

    if (conf->cookie_max_age_s > 0)
        snprintf(age, sizeof(age), "; Max-Age=%d", conf->cookie_max_age_s);
    /* SameSite=None is only honoured with Secure: browsers drop it otherwise */
    n = snprintf(buf, len, "%s=%s; Path=/; HttpOnly; SameSite=%s%s%s", conf->cookie, id,
                 same_site[conf->same_site], secure || conf->same_site == SAME_SITE_NONE
                                                 ? "; Secure" : "", age);
    return n < 0 || (size_t)n >= len ? -1 : n;
}
