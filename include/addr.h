/*
 * addr: "host:port" text to socket addresses, and back. Names are resolved once, when the config
 * loads (getaddrinfo blocks, so never inside an event callback). IPv6 literals are written in
 * brackets: "[::1]:8080". It does not open sockets (listener.c, upstream.c do).
 */
#ifndef TRIDENT_ADDR_H
#define TRIDENT_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

#define ADDR_TEXT_MAX 64 /* "[v6-address]:port" with a NUL fits */

struct addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* Parse `text` as host:port and resolve it (first result; numeric hosts are not looked up).
 * `passive` allows the wildcard host "*" (listeners). Returns 0, or -1 with a message in err
 * such as "expected host:port" or "cannot resolve 'x': Name or service not known". */
int addr_parse(const char *text, int passive, struct addr *out, char *err, size_t errlen);

/* Write the numeric form ("127.0.0.1:80", "[::1]:80") into buf; returns buf. */
char *addr_format(const struct addr *a, char *buf, size_t buflen);

/* Write only the numeric host (no port, no brackets) of a sockaddr into buf; returns buf. */
char *addr_host_string(const struct sockaddr *sa, char *buf, size_t buflen);

/* The port of a sockaddr in host order (0 for unknown families). */
unsigned addr_port(const struct sockaddr *sa);

/* Whether two addresses are the same family, host and port. */
int addr_equal(const struct addr *a, const struct addr *b);

#endif
