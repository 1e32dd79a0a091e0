/*
 * log: JSON-lines error log on stderr. The level is the one piece of process-wide state here:
 * an atomic, because any thread logs and the level may change on reload.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "strbuf.h"

static atomic_int log_level = LOG_INFO;

const char *const log_level_names[] = {
    [LOG_ERROR] = "error", [LOG_WARN] = "warn", [LOG_INFO] = "info", [LOG_DEBUG] = "debug", NULL,
};

void
log_set_level(enum log_level level)
{
    atomic_store(&log_level, (int)level);
}

enum log_level
log_get_level(void)
{
    return (enum log_level)atomic_load(&log_level);
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
    char line[2048], msg[1536];
    struct strbuf sb, mb;
    va_list ap;

    if ((int)level > atomic_load(&log_level))
        return;
    strbuf_init(&mb, msg, sizeof(msg));
    va_start(ap, fmt);
    strbuf_vprintf(&mb, fmt, ap);
    va_end(ap);

    strbuf_init(&sb, line, sizeof(line) - 2);
    strbuf_puts(&sb, "{\"ts\":\"");
    strbuf_iso8601_ms(&sb, clock_wall_ms());
    strbuf_puts(&sb, "\"");
    strbuf_json_str(&sb, "level", log_level_names[level], strlen(log_level_names[level]));
    strbuf_json_str(&sb, "msg", mb.buf, mb.len);
    strbuf_puts(&sb, "}");
    line[sb.len++] = '\n'; /* room reserved above: the line always ends */
    /* One write per line: atomic for pipes up to PIPE_BUF, which the line never exceeds. */
    if (write(STDERR_FILENO, line, sb.len) < 0)
        return;
}
