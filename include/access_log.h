/*
 * access_log: one JSON line per request. The process opens one file descriptor (a file or
 * stdout) whose number never changes: reopening after logrotate dup2()s the new file onto it, so
 * workers never see a swap. Each worker owns a struct access_log that batches the lines completed
 * in one event-loop iteration into one write(2), split at line boundaries so each write stays
 * atomic. It is not the error log (log.h).
 */
#ifndef TRIDENT_ACCESS_LOG_H
#define TRIDENT_ACCESS_LOG_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "reason.h"

struct access_entry {
    long long time_ms;      /* wall clock when the request started */
    const char *request_id;
    const char *client;     /* "ip:port" */
    const char *method;     /* NULL when the head never completed */
    const char *target;     /* as received, not NUL-terminated */
    size_t target_len;
    int http_minor;
    int status;             /* sent to the client; 0 when none was */
    uint64_t bytes_in;      /* from the client, head and body */
    uint64_t bytes_out;     /* to the client, head and body */
    const char *server;     /* server id, or NULL */
    const char *cluster;
    const char *provider;
    int64_t total_us;       /* request start to last byte queued */
    int64_t connect_us;     /* -1: no connect (pooled or none) */
    int64_t upstream_us;    /* request sent to response head; -1: none */
    unsigned attempts;      /* upstream connections tried (retries and a hedge included) */
    bool hedged;            /* a second attempt raced the first */
    enum reason reason;
    const char *rule;       /* the access rule that applied, or NULL */
    const char *tls_version; /* NULL on plain connections */
    const char *tls_cipher;
};

/* Open the destination named by `spec` ("stdout", "off" or a path). Returns the fd (-1 for
 * "off"); on error returns -2 with errno set. */
int access_log_open_fd(const char *spec);

/* Reopen a file destination after rotation, keeping the fd number. Returns 0 or -1. */
int access_log_reopen_fd(int fd, const char *spec);

/* A worker's line batcher writing to fd (-1: logging off). Returns NULL when out of memory. */
struct access_log *access_log_new(struct event_base *base, int fd);

/* Flush and free. Accepts NULL. */
void access_log_free(struct access_log *l);

/* Format e as one line and queue it; it is written before the loop next waits. */
void access_log_write(struct access_log *l, const struct access_entry *e);

#endif
