/*
 * tls_tickets: the keys that encrypt TLS session tickets, behind one small interface so that the
 * fleet can share them across instances (it installs the fleet's set with tls_tickets_replace()).
 * Keys rotate on a schedule: the newest encrypts, the two before it still decrypt, so a ticket
 * lives at most three rotation periods; a key learnt from the fleet also carries its end of life,
 * past which it decrypts nothing even before the next rotation or sync drops it. Thread-safe:
 * workers read keys during handshakes while the main thread rotates them; the lock is held only to
 * copy 80 bytes.
 */
#ifndef TRIDENT_TLS_TICKETS_H
#define TRIDENT_TLS_TICKETS_H

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <stdint.h>

#define TLS_TICKET_KEYS 3 /* the current key and two older ones */

struct tls_ticket_key {
    uint8_t name[16];     /* sent in the clear in each ticket; selects the key */
    uint8_t aes_key[32];  /* AES-256-CBC */
    uint8_t hmac_key[32]; /* HMAC-SHA256 */
};

struct tls_tickets;

/* A store with one fresh random key. NULL when out of memory or entropy. */
struct tls_tickets *tls_tickets_new(void);

void tls_tickets_free(struct tls_tickets *t);

/* Make a new random key current; the oldest one is forgotten. Returns 0 or -1. */
int tls_tickets_rotate(struct tls_tickets *t);

/* Replace every key with `keys` (newest first, at most TLS_TICKET_KEYS are kept): the fleet's
 * set, learnt from Redis. expires_ms[i] is key i's end of life (wall clock, ms). n must be at
 * least 1. Returns 0. */
int tls_tickets_replace(struct tls_tickets *t, const struct tls_ticket_key *keys,
                        const long long *expires_ms, int n);

/* Find a key by name: returns 1 if it is the current key, 2 if an older one, 0 if unknown or
 * past its end of life. */
int tls_tickets_find(struct tls_tickets *t, const uint8_t name[16], struct tls_ticket_key *out);

/* OpenSSL's ticket callback (SSL_CTX_set_tlsext_ticket_key_evp_cb) for an SSL_CTX whose
 * tls_tickets store was attached with tls_tickets_attach(). */
void tls_tickets_attach(struct tls_tickets *t, SSL_CTX *ctx);

#endif
