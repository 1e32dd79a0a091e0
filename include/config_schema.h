/*
 * config_schema: the configuration as a declarative table. Each key has its JSON path, type,
 * bounds, default, target field and documentation; one walker uses the table to fill a struct
 * config, to refuse bad input with the path of the bad field, and to print the reference. Checks
 * that span several fields (duplicates, totals) are config.c's, after the walk.
 */
#ifndef TRIDENT_CONFIG_SCHEMA_H
#define TRIDENT_CONFIG_SCHEMA_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum cfg_type {
    CFG_INT,    /* JSON integer into an int, bounds min..max */
    CFG_INT64,  /* JSON integer into an int64_t, bounds min..max */
    CFG_STRING, /* JSON string into a malloc'd char *, length min..max */
    CFG_NAME,   /* CFG_STRING restricted to 1..64 of [A-Za-z0-9._-]: ids, labels */
    CFG_ENUM,   /* JSON string, one of `names`, into an int index */
    CFG_ADDR,   /* JSON "host:port" string into char * and a resolved struct addr */
    CFG_OBJECT, /* nested object into an embedded struct */
    CFG_ARRAY,  /* array of objects into a calloc'd array and a size_t count */
    CFG_BOOL,   /* JSON true/false into a bool */
    CFG_PATH,   /* CFG_STRING naming a file that must be readable when the config loads */
    CFG_SECTION, /* optional object into a calloc'd struct; the pointer stays NULL if absent */
    CFG_STRINGS, /* array of strings into a calloc'd char ** and a size_t count; each string's
                    length min..max, the array's item count 0..count_max */
};

enum cfg_flags {
    CFG_REQUIRED = 1 << 0, /* no default: the key must be present */
    CFG_PASSIVE = 1 << 1,  /* CFG_ADDR for binding: the wildcard host "*" is allowed */
};

struct cfg_object;

struct cfg_field {
    const char *key;
    enum cfg_type type;
    size_t offset;           /* target inside the enclosing struct */
    int64_t min, max;        /* value bounds, string length bounds, or array item counts */
    int64_t def;             /* default for integers and enums */
    const char *def_str;     /* default for strings (NULL: none) */
    int64_t (*def_fn)(void); /* default computed at load time (overrides def) */
    const char *def_doc;     /* how the reference shows a computed default */
    unsigned flags;          /* enum cfg_flags */
    const char *const *names;       /* CFG_ENUM: NULL-terminated value names */
    const struct cfg_object *child; /* CFG_OBJECT, CFG_ARRAY, CFG_SECTION: the item's schema */
    size_t count_offset;            /* CFG_ARRAY: size_t item count inside the enclosing struct */
    size_t addr_offset;             /* CFG_ADDR: struct addr inside the enclosing struct */
    int64_t count_max;              /* CFG_STRINGS: most items */
    const char *doc;
};

struct cfg_object {
    size_t size; /* of the struct an array item or a section fills */
    const struct cfg_field *fields;
    size_t nfields;
};

/* The root of the configuration: fills a struct config. */
extern const struct cfg_object cfg_root;

/* Fill `target` (a zeroed struct described by obj) from `json`. Returns 0, or -1 with
 * "path: reason" in err. On failure `target` may be half-filled: release it with cfg_free(). */
int cfg_walk(const struct cfg_object *obj, json_t *json, void *target, char *err, size_t errlen);

/* Free what cfg_walk allocated inside `target` (strings, arrays); not target itself. */
void cfg_free(const struct cfg_object *obj, void *target);

/* Print one Markdown table row per key, with the full path of each. */
void cfg_print_reference(const struct cfg_object *obj, FILE *out);

#endif
