/*
 * privileges: see privileges.h. The user and group are looked up when the config loads (an
 * unknown name is a config error); here they are only applied.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "log.h"
#include "privileges.h"

int
privileges_init(const struct config *cfg, char *err, size_t errlen)
{
    const struct process_conf *p = &cfg->process;
    struct rlimit none = {0, 0};

    if (geteuid() == 0 && p->user == NULL && !p->allow_root) {
        snprintf(err, errlen, "running as root without process.user: set it so that trident "
                              "drops to that user once its sockets are bound (or set "
                              "process.allow_root)");
        return -1;
    }
    if (geteuid() == 0 && p->user == NULL)
        log_warn("running as root (process.allow_root): every request is handled with root's "
                 "rights");
    if (!p->core_dumps && (setrlimit(RLIMIT_CORE, &none) < 0 || prctl(PR_SET_DUMPABLE, 0) < 0)) {
        snprintf(err, errlen, "cannot turn core dumps off: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int
privileges_drop(const struct config *cfg, char *err, size_t errlen)
{
    const struct process_conf *p = &cfg->process;

    if (p->user == NULL)
        return 0;
    if (geteuid() != 0) {
        if (geteuid() == p->uid)
            return 0;
        snprintf(err, errlen, "process.user %s: only root can become another user", p->user);
        return -1;
    }
    /* group list first, then the group, then the user: each step needs the rights the next one
     * gives up */
    if (setgroups(1, &p->gid) < 0 || setgid(p->gid) < 0 || setuid(p->uid) < 0) {
        snprintf(err, errlen, "cannot become user %s: %s", p->user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0) { /* must be gone for good */
        snprintf(err, errlen, "could become root again after dropping to %s", p->user);
        return -1;
    }
    if (!p->core_dumps)
        prctl(PR_SET_DUMPABLE, 0); /* setuid resets it on some kernels' paths: set it again */
    log_info("running as user %s (uid %u, gid %u)", p->user, (unsigned)p->uid, (unsigned)p->gid);
    return 0;
}
