/*
 * retry: the retry rules.
 */
#include <llhttp.h>

#include "retry.h"

bool
retry_allowed(const struct retry_facts *f)
{
    if (f->response_started || f->attempts > f->max_retries || f->elapsed_us >= f->budget_us)
        return false;
    if (f->connect_failed)
        return true;
    return f->idempotent && f->replayable;
}

bool
retry_method_idempotent(int m)
{
    return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS || m == HTTP_TRACE ||
           m == HTTP_PUT || m == HTTP_DELETE;
}
