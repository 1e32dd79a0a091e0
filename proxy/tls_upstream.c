/*
 * tls_upstream: client-side SSL_CTXs for clusters that speak TLS, and per-connection SSLs.
 */
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls_upstream.h"

struct tls_client {
    SSL_CTX *ctx;
    bool session_reuse;
};

static struct tls_client *
fail(struct tls_client *t, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static struct tls_client *
fail(struct tls_client *t, char *err, size_t errlen, const char *fmt, ...)
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
    tls_client_free(t);
    return NULL;
}

/* The server issued a session (TLS 1.3: after the handshake): keep it for the next connection. */
static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    SSL_SESSION **slot = SSL_get_app_data(ssl);

    if (slot == NULL)
        return 0;
    SSL_SESSION_free(*slot);
    *slot = sess;
    return 1; /* we keep the reference */
}

static int
load_trust(struct tls_client *t, const struct tls_upstream_conf *c)
{
    if (!c->verify) {
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
        return 0;
    }
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    if (c->ca != NULL)
        return SSL_CTX_load_verify_locations(t->ctx, c->ca, NULL) == 1 ? 0 : -1;
    return SSL_CTX_set_default_verify_paths(t->ctx) == 1 ? 0 : -1;
}

struct tls_client *
tls_client_new(const struct tls_upstream_conf *c, size_t index, char *err, size_t errlen)
{
    static const unsigned char alpn[] = "\x08http/1.1";
    struct tls_client *t = calloc(1, sizeof(*t));

    if (t == NULL || (t->ctx = SSL_CTX_new(TLS_client_method())) == NULL)
        return fail(t, err, errlen, "clusters[%zu].tls: cannot create a TLS context", index);
    t->session_reuse = c->session_reuse;
    SSL_CTX_set_min_proto_version(t->ctx, c->min_version == TLS_VERSION_1_3 ? TLS1_3_VERSION
                                                                            : TLS1_2_VERSION);
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_cipher_list(t->ctx, c->ciphers) != 1)
        return fail(t, err, errlen, "clusters[%zu].tls.ciphers: no usable cipher", index);
    if (SSL_CTX_set_ciphersuites(t->ctx, c->ciphersuites) != 1)
        return fail(t, err, errlen, "clusters[%zu].tls.ciphersuites: no usable suite", index);
    if (load_trust(t, c) < 0)
        return fail(t, err, errlen, "clusters[%zu].tls.ca: cannot load CA certificates", index);
    if (c->cert != NULL && SSL_CTX_use_certificate_chain_file(t->ctx, c->cert) != 1)
        return fail(t, err, errlen, "clusters[%zu].tls.cert: cannot load %s", index, c->cert);
    if (c->key != NULL && (SSL_CTX_use_PrivateKey_file(t->ctx, c->key, SSL_FILETYPE_PEM) != 1 ||
                           SSL_CTX_check_private_key(t->ctx) != 1))
        return fail(t, err, errlen, "clusters[%zu].tls.key: cannot load %s or it does not match "
                                    "the certificate", index, c->key);
    SSL_CTX_set_alpn_protos(t->ctx, alpn, sizeof(alpn) - 1);
    if (c->session_reuse) {
        SSL_CTX_set_session_cache_mode(t->ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(t->ctx, new_session_cb);
    }
    return t;
}

void
tls_client_free(struct tls_client *t)
{
    if (t == NULL)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

static bool
is_ip_literal(const char *name)
{
    unsigned char buf[16];

    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

SSL *
tls_client_ssl_new(struct tls_client *t, const char *name, SSL_SESSION **session_slot)
{
    SSL *ssl = SSL_new(t->ctx);
    bool ip = is_ip_literal(name);

    if (ssl == NULL)
        return NULL;
    /* RFC 6066 section 3: SNI carries host names only, never IP literals. */
    if (!ip && SSL_set_tlsext_host_name(ssl, name) != 1)
        goto fail;
    if (ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) != 1
           : SSL_set1_host(ssl, name) != 1)
        goto fail;
    if (t->session_reuse) {
        SSL_set_app_data(ssl, session_slot);
        if (*session_slot != NULL)
            SSL_set_session(ssl, *session_slot);
    }
    return ssl;
fail:
    SSL_free(ssl);
    return NULL;
}

void
tls_client_default_name(const char *address, char *buf, size_t buflen)
{
    const char *start = address, *end;
    size_t n;

    if (address[0] == '[') {
        start = address + 1;
        end = strchr(start, ']');
    } else {
        end = strrchr(address, ':');
    }
    if (end == NULL)
        end = address + strlen(address);
    n = (size_t)(end - start) < buflen - 1 ? (size_t)(end - start) : buflen - 1;
    memcpy(buf, start, n);
    buf[n] = '\0';
}
