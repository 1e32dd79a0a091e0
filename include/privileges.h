/*
 * privileges: what the process may do once it runs. A root process must say why it is root
 * (process.user: it binds, then becomes that user; or process.allow_root); core dumps, which
 * would hold TLS keys and ticket keys, are off unless process.core_dumps.
 */
#ifndef TRIDENT_PRIVILEGES_H
#define TRIDENT_PRIVILEGES_H

#include <stddef.h>

#include "config-t.h"

/* At start-up, before anything is opened: refuse root without a reason, and turn core dumps
 * off (RLIMIT_CORE 0, not dumpable) unless allowed. Returns 0, or -1 with the reason in err. */
int privileges_init(const struct config *cfg, char *err, size_t errlen);

/* Once every socket is bound and every file opened: become process.user (and its group, or
 * process.group) for good. Nothing to do without process.user. Returns 0, or -1 with err. */
int privileges_drop(const struct config *cfg, char *err, size_t errlen);

#endif
