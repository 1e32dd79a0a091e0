/*
 * tls_upstream: TLS from trident to a cluster's servers. One client SSL_CTX per cluster (CA bundle,
 * verification, client certificate for mutual TLS, protocol policy), shared read-only by all
 * workers. Each connection sends the server's name as SNI and checks the certificate against it;
 * the last session with each server is kept per worker (in the router) and resumed.
 */
#ifndef TRIDENT_TLS_UPSTREAM_H
#define TRIDENT_TLS_UPSTREAM_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "config-t.h"

struct tls_client;

/* Build the client context for clusters[index].tls. NULL with "clusters[i].tls...: reason". */
struct tls_client *tls_client_new(const struct tls_upstream_conf *c, size_t index, char *err,
                                  size_t errlen);

void tls_client_free(struct tls_client *t);

/* A new SSL for a connection to a server called `name` (SNI unless an IP literal; verified when
 * the cluster verifies). `session_slot` keeps the server's last session: it is offered for
 * resumption and replaced when the server issues a new one. NULL on failure. */
SSL *tls_client_ssl_new(struct tls_client *t, const char *name, SSL_SESSION **session_slot);

/* The host part of "host:port" or "[v6]:port" into buf (the default TLS name of a server). */
void tls_client_default_name(const char *address, char *buf, size_t buflen);

#endif
