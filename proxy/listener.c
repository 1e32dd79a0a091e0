/*
 * listener: SO_REUSEPORT listening sockets, one per worker per address.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listener.h"

int
listener_open(const struct addr *a, int backlog, int reuseport, char *err, size_t errlen)
{
    char text[ADDR_TEXT_MAX];
    int fd, one = 1;

    fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0))
        goto fail;
    /* "[::]:80" means IPv6 only, so that "*:80" can be configured beside it. */
    if (a->ss.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
        goto fail;
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, backlog) < 0)
        goto fail;
    return fd;
fail:
    snprintf(err, errlen, "listen on %s: %s", addr_format(a, text, sizeof(text)), strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}
