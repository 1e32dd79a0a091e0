/*
 * tls_tickets: session ticket keys, their rotation, and OpenSSL's ticket callback (RFC 5077's
 * recommended format: key name, IV, AES-256-CBC, HMAC-SHA256).
 */
#include <openssl/core_names.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "tls_tickets.h"

struct tls_tickets {
    pthread_mutex_t lock;
    struct tls_ticket_key keys[TLS_TICKET_KEYS]; /* keys[0] is current */
    long long expires_ms[TLS_TICKET_KEYS];       /* wall clock; 0: until rotated out */
    int nkeys;
};

static int ex_index = -1; /* SSL_CTX ex_data slot for the store (set once, before threads) */
static EVP_CIPHER *aes_256_cbc; /* fetched once: OpenSSL 3 would look it up per ticket */
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void
ex_init(void)
{
    ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    aes_256_cbc = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
}

static const EVP_CIPHER *
ticket_cipher(void)
{
    return aes_256_cbc != NULL ? aes_256_cbc : EVP_aes_256_cbc();
}

static void
push_key(struct tls_tickets *t, const struct tls_ticket_key *k)
{
    memmove(&t->keys[1], &t->keys[0], sizeof(t->keys[0]) * (TLS_TICKET_KEYS - 1));
    memmove(&t->expires_ms[1], &t->expires_ms[0], sizeof(t->expires_ms[0]) * (TLS_TICKET_KEYS - 1));
    t->keys[0] = *k;
    t->expires_ms[0] = 0;
    if (t->nkeys < TLS_TICKET_KEYS)
        t->nkeys++;
}

int
tls_tickets_rotate(struct tls_tickets *t)
{
    struct tls_ticket_key k;

    if (RAND_bytes((unsigned char *)&k, sizeof(k)) != 1)
        return -1;
    pthread_mutex_lock(&t->lock);
    push_key(t, &k);
    pthread_mutex_unlock(&t->lock);
    OPENSSL_cleanse(&k, sizeof(k));
    return 0;
}

int
tls_tickets_replace(struct tls_tickets *t, const struct tls_ticket_key *keys,
                    const long long *expires_ms, int n)
{
    n = n > TLS_TICKET_KEYS ? TLS_TICKET_KEYS : n;
    pthread_mutex_lock(&t->lock);
    OPENSSL_cleanse(t->keys, sizeof(t->keys));
    memcpy(t->keys, keys, sizeof(*keys) * (size_t)n);
    memcpy(t->expires_ms, expires_ms, sizeof(*expires_ms) * (size_t)n);
    t->nkeys = n;
    pthread_mutex_unlock(&t->lock);
    return 0;
}

struct tls_tickets *
tls_tickets_new(void)
{
    struct tls_tickets *t = calloc(1, sizeof(*t));

    pthread_once(&ex_once, ex_init);
    if (t == NULL)
        return NULL;
    pthread_mutex_init(&t->lock, NULL);
    if (tls_tickets_rotate(t) < 0) {
        tls_tickets_free(t);
        return NULL;
    }
    return t;
}

void
tls_tickets_free(struct tls_tickets *t)
{
    if (t == NULL)
        return;
    OPENSSL_cleanse(t->keys, sizeof(t->keys));
    pthread_mutex_destroy(&t->lock);
    free(t);
}

int
tls_tickets_find(struct tls_tickets *t, const uint8_t name[16], struct tls_ticket_key *out)
{
    long long now = clock_wall_ms();
    int found = 0;

    pthread_mutex_lock(&t->lock);
    for (int i = 0; i < t->nkeys; i++) {
        if (memcmp(t->keys[i].name, name, 16) == 0) {
            if (t->expires_ms[i] != 0 && now >= t->expires_ms[i])
                break; /* past its end of life: a full handshake */
            *out = t->keys[i];
            found = i == 0 ? 1 : 2;
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return found;
}

static void
current_key(struct tls_tickets *t, struct tls_ticket_key *out)
{
    pthread_mutex_lock(&t->lock);
    *out = t->keys[0];
    pthread_mutex_unlock(&t->lock);
}

static int
set_mac_key(EVP_MAC_CTX *hctx, uint8_t *hmac_key)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, hmac_key, 32),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };

    return EVP_MAC_CTX_set_params(hctx, params);
}

/* Returns 1 (ticket made / accepted), 2 (accepted, but issue a fresh one: the key is old),
 * 0 (unknown key: full handshake) or -1 (error). */
static int
ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
          EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    struct tls_tickets *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ex_index);
    struct tls_ticket_key k;
    int rc = 1;

    if (t == NULL)
        return -1;
    if (enc) {
        current_key(t, &k);
        if (RAND_bytes(iv, 16) != 1)
            rc = -1;
        memcpy(key_name, k.name, 16);
        if (rc == 1 && (EVP_EncryptInit_ex(cctx, ticket_cipher(), NULL, k.aes_key, iv) != 1 ||
                        set_mac_key(hctx, k.hmac_key) != 1))
            rc = -1;
    } else {
        rc = tls_tickets_find(t, key_name, &k);
        if (rc > 0 && (EVP_DecryptInit_ex(cctx, ticket_cipher(), NULL, k.aes_key, iv) != 1 ||
                       set_mac_key(hctx, k.hmac_key) != 1))
            rc = -1;
    }
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

void
tls_tickets_attach(struct tls_tickets *t, SSL_CTX *ctx)
{
    SSL_CTX_set_ex_data(ctx, ex_index, t);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
}
