/*
 * config: load, validate and share the JSON configuration. Validation is complete before anything
 * runs: unknown keys, wrong types, out-of-range values, duplicates and unresolvable addresses are
 * refused with the JSON path of the bad field. The result is immutable and reference-counted.
 */
#ifndef TRIDENT_CONFIG_H
#define TRIDENT_CONFIG_H

#include <stdio.h>

#include "config-t.h"

struct config_error {
    char msg[512]; /* "clusters[1].servers[0].address: expected host:port" */
};

/* Load and validate the file at `path`. Returns a config with one reference, or NULL with the
 * reason in *err. */
struct config *config_load(const char *path, struct config_error *err);

/* The same from JSON text in memory (tests, reload from the admin endpoint). */
struct config *config_parse(const char *text, struct config_error *err);

/* Take another reference; returns cfg. Safe from any thread. */
struct config *config_ref(struct config *cfg);

/* Drop a reference; the last one frees the config. Accepts NULL. */
void config_unref(struct config *cfg);

/* Whether two redis sections (either may be NULL) say the same. */
bool config_redis_equal(const struct redis_conf *a, const struct redis_conf *b);

/* The shortest ticket key rotation period among TLS listeners using tickets; 0 when none does. */
int config_ticket_rotate_s(const struct config *cfg);

/* Find a server by id across all clusters; NULL when absent. */
const struct server_conf *config_find_server(const struct config *cfg, const char *id,
                                             const struct cluster_conf **cluster);

/* Print the configuration reference (every key, type, default, range, meaning) as Markdown. */
void config_print_reference(FILE *out);

#endif
