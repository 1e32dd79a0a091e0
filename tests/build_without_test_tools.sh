#!/bin/sh
# Building trident needs none of the test tools (the quick start's first command installs only
# what the build and the demo need). Configures the source tree twice in a scratch directory with
# pkg-config limited to trident's own dependencies, so cmocka cannot be found:
# - TRIDENT_TESTS=AUTO (the default) succeeds, and its only test is tests_not_configured, which
#   fails and names cmocka;
# - TRIDENT_TESTS=ON fails at configure time, naming cmocka.
# Usage: tests/build_without_test_tools.sh SOURCE_DIR   (ctest test build_without_test_tools)
set -eu
src=$(cd "${1:?source dir}" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/trident-notools.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# trident's dependencies and what their .pc files require, and nothing else
mkdir "$work/pc"
for m in openssl libssl libcrypto libevent libevent_core libevent_openssl libevent_pthreads \
         jansson hiredis; do
    pc=$(pkg-config --path "$m") || fail "pkg-config does not know $m"
    ln -s "$pc" "$work/pc/"
done
export PKG_CONFIG_LIBDIR="$work/pc" PKG_CONFIG_PATH=
pkg-config --exists cmocka && fail "cmocka is still visible to pkg-config"

if ! cmake -S "$src" -B "$work/auto" >"$work/auto.log" 2>&1; then
    cat "$work/auto.log" >&2
    fail "configuring without the test tools failed (TRIDENT_TESTS=AUTO)"
fi
grep -q "Tests not configured: the tests need cmocka" "$work/auto.log" ||
    fail "the configure did not say that the tests are left out and why"
tests=$(ctest --test-dir "$work/auto" -N | sed -n 's/^ *Test *#[0-9]*: //p')
[ "$tests" = tests_not_configured ] || fail "tests configured without their tools: $tests"
if ctest --test-dir "$work/auto" >"$work/ctest.log" 2>&1; then
    fail "ctest passed in a tree whose tests are not configured"
fi

if cmake -S "$src" -B "$work/on" -DTRIDENT_TESTS=ON >"$work/on.log" 2>&1; then
    fail "TRIDENT_TESTS=ON configured although cmocka is missing"
fi
grep -q "the tests need cmocka" "$work/on.log" || { cat "$work/on.log" >&2; fail "no reason given"; }
echo "ok: the build needs no test tool; TRIDENT_TESTS=ON and ctest fail without them"
