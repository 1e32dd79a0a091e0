/*
 * log: the error log. One JSON line per message on stderr ({"ts","level","msg"}), written with a
 * single write(2) so lines from different threads never interleave. It is not the access log
 * (access_log.h), which has its own file, format and buffering.
 */
#ifndef TRIDENT_LOG_H
#define TRIDENT_LOG_H

enum log_level {
    LOG_ERROR, /* something failed that an operator must look at */
    LOG_WARN,  /* something failed and trident worked around it */
    LOG_INFO,  /* lifecycle: start, listen, stop, reload */
    LOG_DEBUG, /* per-connection detail; off in production */
};

/* Messages above `level` are dropped. Safe to call from any thread at any time. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* The levels' names, indexed by enum log_level and NULL-terminated (the config schema's enum). */
extern const char *const log_level_names[];

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
