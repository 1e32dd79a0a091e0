/* retry: which failed attempts may go to another server, from a table of facts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <llhttp.h>

#include "retry.h"

/* A GET, whole, that failed after it was sent, on its first attempt of 1 + 2, 10 ms into a
 * 3 s budget: allowed. Each row changes what it names. */
static struct retry_facts
base(void)
{
    return (struct retry_facts){.idempotent = true, .replayable = true, .attempts = 1,
                                .max_retries = 2, .elapsed_us = 10000, .budget_us = 3000000};
}

struct row {
    const char *name;
    struct retry_facts f;
    bool allowed;
};

static void
test_retry_allowed_table(void **state)
{
    struct retry_facts f = base();
    struct row rows[16];
    size_t n = 0;

    (void)state;
    rows[n++] = (struct row){"a sent GET, first attempt", f, true};
    f = base(), f.idempotent = false;
    rows[n++] = (struct row){"a sent POST is never sent twice", f, false};
    f = base(), f.replayable = false;
    rows[n++] = (struct row){"a streamed body cannot be replayed", f, false};
    f = base(), f.idempotent = false, f.replayable = false, f.connect_failed = true;
    rows[n++] = (struct row){"a failed connect sent nothing: even a streamed POST", f, true};
    f = base(), f.response_started = true;
    rows[n++] = (struct row){"a response byte reached the client", f, false};
    f = base(), f.response_started = true, f.connect_failed = true;
    rows[n++] = (struct row){"a started response beats a failed connect", f, false};
    f = base(), f.attempts = 2;
    rows[n++] = (struct row){"the last retry allowed (attempts == max_retries)", f, true};
    f = base(), f.attempts = 3;
    rows[n++] = (struct row){"1 + max_retries attempts made", f, false};
    f = base(), f.max_retries = 0;
    rows[n++] = (struct row){"retries off", f, false};
    f = base(), f.max_retries = 0, f.connect_failed = true;
    rows[n++] = (struct row){"retries off, even for a failed connect", f, false};
    f = base(), f.elapsed_us = 3000000;
    rows[n++] = (struct row){"the budget is spent at its end", f, false};
    f = base(), f.elapsed_us = 2999999;
    rows[n++] = (struct row){"within the budget", f, true};
    f = base(), f.budget_us = 0, f.connect_failed = true;
    rows[n++] = (struct row){"a zero budget allows nothing", f, false};
    for (size_t i = 0; i < n; i++) {
        if (retry_allowed(&rows[i].f) != rows[i].allowed)
            fail_msg("%s: expected %s", rows[i].name, rows[i].allowed ? "allowed" : "refused");
    }
}

static void
test_idempotent_methods_are_rfc_9110s(void **state)
{
    static const struct {
        int method;
        bool idempotent;
    } rows[] = {
        {HTTP_GET, true},     {HTTP_HEAD, true},   {HTTP_OPTIONS, true}, {HTTP_TRACE, true},
        {HTTP_PUT, true},     {HTTP_DELETE, true}, {HTTP_POST, false},   {HTTP_PATCH, false},
        {HTTP_CONNECT, false}, {-1, false},        {1000, false},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        if (retry_method_idempotent(rows[i].method) != rows[i].idempotent)
            fail_msg("method %d: expected %s", rows[i].method,
                     rows[i].idempotent ? "idempotent" : "not idempotent");
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_allowed_table),
        cmocka_unit_test(test_idempotent_methods_are_rfc_9110s),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
