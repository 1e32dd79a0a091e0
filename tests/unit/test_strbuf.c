/* Unit tests for strbuf: bounded appends and JSON escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "strbuf.h"

static void
test_json_escape_quotes_backslash_and_controls(void **state)
{
    char buf[128];
    struct strbuf sb;
    const char in[] = "a\"b\\c\nd\x01\x7f\xc3\xa9";

    strbuf_init(&sb, buf, sizeof(buf));
    strbuf_json_escape(&sb, in, sizeof(in) - 1);
    assert_string_equal(buf, "a\\\"b\\\\c\\nd\\u0001\\u007f\xc3\xa9");
    assert_false(sb.truncated);
}

static void
test_append_past_capacity_truncates_and_flags(void **state)
{
    char buf[8];
    struct strbuf sb;

    strbuf_init(&sb, buf, sizeof(buf));
    strbuf_puts(&sb, "0123456789");
    assert_string_equal(buf, "0123456");
    assert_true(sb.truncated);
    strbuf_printf(&sb, "%d", 42);
    assert_string_equal(buf, "0123456");
}

static void
test_json_str_adds_commas_between_fields(void **state)
{
    char buf[64];
    struct strbuf sb;

    strbuf_init(&sb, buf, sizeof(buf));
    strbuf_putc(&sb, '{');
    strbuf_json_str(&sb, "a", "x", 1);
    strbuf_json_str(&sb, "b", "y\"", 2);
    strbuf_putc(&sb, '}');
    assert_string_equal(buf, "{\"a\":\"x\",\"b\":\"y\\\"\"}");
}

static void
test_iso8601_has_milliseconds(void **state)
{
    char buf[64];
    struct strbuf sb;

    strbuf_init(&sb, buf, sizeof(buf));
    strbuf_iso8601_ms(&sb, 1767225600123LL); /* 2026-01-01T00:00:00.123Z */
    assert_string_equal(buf, "2026-01-01T00:00:00.123Z");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_escape_quotes_backslash_and_controls),
        cmocka_unit_test(test_append_past_capacity_truncates_and_flags),
        cmocka_unit_test(test_json_str_adds_commas_between_fields),
        cmocka_unit_test(test_iso8601_has_milliseconds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
