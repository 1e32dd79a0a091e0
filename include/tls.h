/*
 * tls: the TLS side of a listener. Builds one SSL_CTX per group of certificates that share the
 * same names (an RSA and an ECDSA certificate for one name go into one SSL_CTX, and OpenSSL picks
 * the one the client's signature algorithms allow), chooses the group by SNI, offers ALPN
 * http/1.1, staples OCSP responses, and keeps the protocol policy: TLS 1.2 minimum, AEAD with
 * forward secrecy, server preference, no compression, no renegotiation. A struct tls_server is
 * immutable once built and reference-counted: workers share it, a reload builds a new one, and a
 * connection holds a reference while its SSL needs it. Upstream TLS is tls_upstream.h's.
 */
#ifndef TRIDENT_TLS_H
#define TRIDENT_TLS_H

#include <event2/bufferevent.h>
#include <openssl/ssl.h>
#include <stddef.h>

#include "config-t.h"
#include "reason.h"
#include "tls_tickets.h"

struct tls_server;

/* Build the TLS side of listeners[index] (for error messages) from conf, using the ticket key
 * store `tickets` (not owned). Returns a server with one reference, or NULL with
 * "listeners[i].tls...: reason" in err. */
struct tls_server *tls_server_new(const struct tls_listen_conf *conf, size_t index,
                                  struct tls_tickets *tickets, char *err, size_t errlen);

struct tls_server *tls_server_ref(struct tls_server *s);

/* Drop a reference; the last frees the SSL_CTXs. Accepts NULL. Any thread. */
void tls_server_unref(struct tls_server *s);

/* A new SSL for an accepted connection, or NULL. */
SSL *tls_server_ssl_new(struct tls_server *s);

/* The HSTS header value for responses on this listener, or NULL when off. */
const char *tls_server_hsts(const struct tls_server *s);

/* Before freeing a TLS bufferevent (either side): OpenSSL evicts the session of an SSL freed
 * without a shutdown and marks it not resumable, and libevent frees without one. Marking a
 * connection whose handshake finished as shut down keeps its session for resumption. No I/O.
 * Does nothing for plain bufferevents. */
void tls_keep_session(struct bufferevent *bev);

/* Drop the expired sessions of s's caches (the main thread, every few seconds; `now`: time()). */
void tls_server_flush_sessions(struct tls_server *s, long now);

/* Classify why a handshake failed, from the OpenSSL error libevent reports (0: none known). */
enum reason tls_handshake_reason(unsigned long ssl_error);

#endif
