/*
 * tls: server-side SSL_CTXs for a TLS listener, and the callbacks that pick a certificate (SNI),
 * the protocol (ALPN) and the stapled OCSP response.
 */
#include <ctype.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tls.h"

#define NAMES_MAX 64 /* DNS names read from one certificate */

struct staple {
    X509 *cert;           /* borrowed from the SSL_CTX */
    unsigned char *der;   /* OCSP response */
    long len;
};

/* Certificates with the same names, one per key type, in one SSL_CTX. */
struct cert_group {
    SSL_CTX *ctx;
    char *names[NAMES_MAX];
    int nnames;
    int key_types[2]; /* EVP_PKEY_RSA / EVP_PKEY_EC, 0: empty slot */
    struct staple staples[2];
};

struct tls_server {
    atomic_int refs;
    struct cert_group *groups; /* groups[0] is the default */
    size_t ngroups;
    bool strict_sni;
    char hsts[96];             /* "" when off */
};

static int __attribute__((format(printf, 3, 4)))
fail(char *err, size_t errlen, const char *fmt, ...)
{
    unsigned long e = ERR_peek_last_error();
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (e != 0 && n > 0 && (size_t)n < errlen) {
        char why[256];
        ERR_error_string_n(e, why, sizeof(why));
        snprintf(err + n, errlen - (size_t)n, " (%s)", why);
    }
    ERR_clear_error();
    return -1;
}

/* ---- names --------------------------------------------------------------------------------- */

static void
add_name(struct cert_group *g, const char *name, size_t len)
{
    char *copy;

    if (g->nnames == NAMES_MAX || len == 0 || (copy = strndup(name, len)) == NULL)
        return;
    for (char *p = copy; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    g->names[g->nnames++] = copy;
}

/* DNS names from subjectAltName, else the subject's CN (RFC 6125). */
static void
read_names(X509 *x, struct cert_group *g)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);

    for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type == GEN_DNS)
            add_name(g, (const char *)ASN1_STRING_get0_data(gn->d.dNSName),
                     (size_t)ASN1_STRING_length(gn->d.dNSName));
    }
    GENERAL_NAMES_free(sans);
    if (g->nnames == 0) {
        X509_NAME *subj = X509_get_subject_name(x);
        int i = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
        if (i >= 0) {
            ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
            add_name(g, (const char *)ASN1_STRING_get0_data(cn), (size_t)ASN1_STRING_length(cn));
        }
    }
}

static bool
same_names(const struct cert_group *a, const struct cert_group *b)
{
    if (a->nnames != b->nnames)
        return false;
    for (int i = 0; i < a->nnames; i++) {
        bool found = false;
        for (int j = 0; j < b->nnames && !found; j++)
            found = strcmp(a->names[i], b->names[j]) == 0;
        if (!found)
            return false;
    }
    return true;
}

/* Exact name, or a wildcard "*.example.com" covering exactly one label of `host`. */
static bool
name_matches(const char *pattern, const char *host)
{
    const char *dot;

    if (strcasecmp(pattern, host) == 0)
        return true;
    if (pattern[0] != '*' || pattern[1] != '.' || (dot = strchr(host, '.')) == NULL)
        return false;
    return dot != host && strcasecmp(pattern + 1, dot) == 0;
}

static struct cert_group *
find_group(struct tls_server *s, const char *host)
{
    for (size_t i = 0; i < s->ngroups; i++)
        for (int j = 0; j < s->groups[i].nnames; j++)
            if (name_matches(s->groups[i].names[j], host))
                return &s->groups[i];
    return NULL;
}

/* ---- callbacks -------------------------------------------------------------------------------- */

static int
servername_cb(SSL *ssl, int *alert, void *arg)
{
    struct tls_server *s = arg;
    const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    struct cert_group *g = host != NULL ? find_group(s, host) : NULL;

    if (g == NULL) {
        if (!s->strict_sni)
            return SSL_TLSEXT_ERR_OK; /* the default certificate answers */
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    if (SSL_get_SSL_CTX(ssl) != g->ctx)
        SSL_set_SSL_CTX(ssl, g->ctx);
    return SSL_TLSEXT_ERR_OK;
}

static int
alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
        unsigned int inlen, void *arg)
{
    static const unsigned char http11[] = "\x08http/1.1";

    if (SSL_select_next_proto((unsigned char **)out, outlen, http11, sizeof(http11) - 1, in,
                              inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* no overlap: carry on without ALPN, as nginx does */
    return SSL_TLSEXT_ERR_OK;
}

static int
ocsp_cb(SSL *ssl, void *arg)
{
    struct cert_group *g = arg;
    X509 *x = SSL_get_certificate(ssl);

    for (int i = 0; i < 2; i++) {
        struct staple *st = &g->staples[i];
        unsigned char *copy;

        if (st->der == NULL || st->cert != x)
            continue;
        copy = OPENSSL_memdup(st->der, (size_t)st->len);
        if (copy == NULL || SSL_set_tlsext_status_ocsp_resp(ssl, copy, st->len) != 1) {
            OPENSSL_free(copy);
            return SSL_TLSEXT_ERR_NOACK;
        }
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* ---- building ------------------------------------------------------------------------------- */

static SSL_CTX *
new_ctx(const struct tls_listen_conf *c, struct tls_server *s, struct tls_tickets *tickets,
        const char *where, char *err, size_t errlen)
{
    static const unsigned char sid_ctx[] = "trident";
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL) {
        fail(err, errlen, "%s: cannot create a TLS context", where);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, c->min_version == TLS_VERSION_1_3 ? TLS1_3_VERSION
                                                                         : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_SINGLE_ECDH_USE);
    /* Idle connections give their read and write buffers back (issue: memory per idle conn). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_cipher_list(ctx, c->ciphers) != 1) {
        fail(err, errlen, "%s.ciphers: no usable cipher in \"%s\"", where, c->ciphers);
        goto fail;
    }
    if (SSL_CTX_set_ciphersuites(ctx, c->ciphersuites) != 1) {
        fail(err, errlen, "%s.ciphersuites: no usable suite in \"%s\"", where, c->ciphersuites);
        goto fail;
    }
    if (SSL_CTX_set1_groups_list(ctx, c->groups) != 1) {
        fail(err, errlen, "%s.groups: unknown group in \"%s\"", where, c->groups);
        goto fail;
    }
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    SSL_CTX_set_timeout(ctx, c->session_timeout_s);
    if (c->session_cache > 0) {
        /* OpenSSL would scan the whole cache for expired sessions every 255 handshakes, in the
         * handshake that happens to be the 255th: the main thread does it every few seconds
         * instead (tls_server_flush_sessions) */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_AUTO_CLEAR);
        SSL_CTX_sess_set_cache_size(ctx, c->session_cache);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    if (c->session_tickets) {
        tls_tickets_attach(tickets, ctx);
        SSL_CTX_set_num_tickets(ctx, 1); /* TLS 1.3: one resumption needs one (OpenSSL sends 2) */
    } else {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, c->session_cache > 0 ? 1 : 0);
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, s);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

#define OCSP_MAX 65536 /* an OCSP response is a few KiB; refuse anything much larger */

/* Read a DER OCSP response and check that it parses; the bytes are stapled as they are. */
static int
load_ocsp(struct staple *st, const char *path, const char *where, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    const unsigned char *p;
    OCSP_RESPONSE *resp;
    size_t n;

    if (f == NULL)
        return fail(err, errlen, "%s.ocsp: cannot open %s", where, path);
    buf = OPENSSL_malloc(OCSP_MAX);
    n = buf != NULL ? fread(buf, 1, OCSP_MAX, f) : 0;
    (void)fclose(f); /* read-only: a failure loses nothing */
    p = buf;
    resp = n > 0 && n < OCSP_MAX ? d2i_OCSP_RESPONSE(NULL, &p, (long)n) : NULL;
    if (resp == NULL) {
        OPENSSL_free(buf);
        return fail(err, errlen, "%s.ocsp: %s is not a DER OCSP response", where, path);
    }
    OCSP_RESPONSE_free(resp);
    st->der = buf;
    st->len = (long)n;
    return 0;
}

static X509 *
read_leaf(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x;

    if (f == NULL)
        return NULL;
    x = PEM_read_X509(f, NULL, NULL, NULL);
    (void)fclose(f); /* read-only: a failure loses nothing */
    return x;
}

/* The group a certificate with these names and key type joins, or a new one. */
static struct cert_group *
place_cert(struct tls_server *s, struct cert_group *probe, int key_type, const char *where,
           char *err, size_t errlen)
{
    for (size_t i = 0; i < s->ngroups; i++) {
        struct cert_group *g = &s->groups[i];

        if (!same_names(g, probe))
            continue;
        if (g->key_types[0] == key_type || g->key_types[1] == key_type) {
            fail(err, errlen, "%s.cert: a certificate with the same names and key type is "
                              "already loaded", where);
            return NULL;
        }
        return g;
    }
    s->groups[s->ngroups] = *probe;
    memset(probe, 0, sizeof(*probe)); /* the names moved into the new group */
    return &s->groups[s->ngroups++];
}

static int
load_cert(struct tls_server *s, const struct tls_listen_conf *c, size_t i, size_t index,
          struct tls_tickets *tickets, char *err, size_t errlen)
{
    const struct tls_cert_conf *cc = &c->certificates[i];
    struct cert_group probe = {0}, *g;
    char where[96];
    X509 *leaf = read_leaf(cc->cert);
    int key_type, slot;

    snprintf(where, sizeof(where), "listeners[%zu].tls.certificates[%zu]", index, i);
    if (leaf == NULL)
        return fail(err, errlen, "%s.cert: %s holds no PEM certificate", where, cc->cert);
    key_type = EVP_PKEY_get_base_id(X509_get0_pubkey(leaf));
    read_names(leaf, &probe);
    X509_free(leaf);
    if (key_type != EVP_PKEY_RSA && key_type != EVP_PKEY_EC) {
        for (int j = 0; j < probe.nnames; j++)
            free(probe.names[j]);
        return fail(err, errlen, "%s.cert: only RSA and ECDSA keys are supported", where);
    }
    g = place_cert(s, &probe, key_type, where, err, errlen);
    for (int j = 0; j < probe.nnames; j++)
        free(probe.names[j]);
    if (g == NULL)
        return -1;
    if (g->ctx == NULL && (g->ctx = new_ctx(c, s, tickets, where, err, errlen)) == NULL)
        return -1;
    slot = g->key_types[0] == 0 ? 0 : 1;
    g->key_types[slot] = key_type;
    if (SSL_CTX_use_certificate_chain_file(g->ctx, cc->cert) != 1)
        return fail(err, errlen, "%s.cert: cannot load %s", where, cc->cert);
    if (SSL_CTX_use_PrivateKey_file(g->ctx, cc->key, SSL_FILETYPE_PEM) != 1)
        return fail(err, errlen, "%s.key: cannot load %s", where, cc->key);
    if (SSL_CTX_check_private_key(g->ctx) != 1)
        return fail(err, errlen, "%s.key: does not match the certificate", where);
    g->staples[slot].cert = SSL_CTX_get0_certificate(g->ctx);
    if (cc->ocsp != NULL) {
        if (load_ocsp(&g->staples[slot], cc->ocsp, where, err, errlen) < 0)
            return -1;
        SSL_CTX_set_tlsext_status_cb(g->ctx, ocsp_cb);
        SSL_CTX_set_tlsext_status_arg(g->ctx, g);
    }
    return 0;
}

struct tls_server *
tls_server_new(const struct tls_listen_conf *c, size_t index, struct tls_tickets *tickets,
               char *err, size_t errlen)
{
    struct tls_server *s = calloc(1, sizeof(*s));

    if (s == NULL || (s->groups = calloc(c->ncertificates, sizeof(*s->groups))) == NULL) {
        free(s);
        snprintf(err, errlen, "listeners[%zu].tls: out of memory", index);
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->strict_sni = c->strict_sni;
    if (c->hsts_max_age > 0)
        snprintf(s->hsts, sizeof(s->hsts), "max-age=%d%s", c->hsts_max_age,
                 c->hsts_subdomains ? "; includeSubDomains" : "");
    for (size_t i = 0; i < c->ncertificates; i++) {
        if (load_cert(s, c, i, index, tickets, err, errlen) < 0) {
            tls_server_unref(s);
            return NULL;
        }
    }
    return s;
}

struct tls_server *
tls_server_ref(struct tls_server *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void
tls_server_unref(struct tls_server *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < s->ngroups; i++) {
        struct cert_group *g = &s->groups[i];
        for (int j = 0; j < g->nnames; j++)
            free(g->names[j]);
        for (int j = 0; j < 2; j++)
            OPENSSL_free(g->staples[j].der);
        SSL_CTX_free(g->ctx);
    }
    free(s->groups);
    free(s);
}

SSL *
tls_server_ssl_new(struct tls_server *s)
{
    return SSL_new(s->groups[0].ctx);
}

const char *
tls_server_hsts(const struct tls_server *s)
{
    return s->hsts[0] != '\0' ? s->hsts : NULL;
}

void
tls_keep_session(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);

    if (ssl != NULL && SSL_is_init_finished(ssl))
        SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
}

enum reason
tls_handshake_reason(unsigned long e)
{
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        return REASON_TLS_ERROR;
    switch (ERR_GET_REASON(e)) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION: return REASON_TLS_PROTOCOL;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM: return REASON_TLS_NO_SHARED_CIPHER;
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH: return REASON_TLS_NOT_TLS;
    case SSL_R_CALLBACK_FAILED:
    case SSL_R_CLIENTHELLO_TLSEXT: return REASON_TLS_UNKNOWN_SNI;
    }
    return REASON_TLS_ERROR;
}

void
tls_server_flush_sessions(struct tls_server *s, long now)
{
    for (size_t i = 0; s != NULL && i < s->ngroups; i++)
        SSL_CTX_flush_sessions(s->groups[i].ctx, now);
}
