"""Run one Python test module for ctest: `python3 tests/pyunit.py path/to/test_x.py`.

Plain `python3 -m unittest` exits 0 when tests were skipped, so ctest would count a test whose
tool is missing (testssl.sh, root for buildah, ...) as passed. Here:

- every test passed, none skipped: exit 0;
- a failure or an error: exit 1;
- something skipped: the skips are listed on stderr, then exit 77, which ctest reports as
  "Skipped" (SKIP_RETURN_CODE), never as "Passed"; with TRIDENT_TEST_STRICT=1 (scripts/test, and
  so CI) exit 1 instead: there a missing tool fails the run;
- no test at all ran: exit 1 (a module that lost its tests tests nothing).
"""
import os
import sys
import unittest

SKIPPED = 77


def main(argv):
    if len(argv) != 2 or not argv[1].endswith(".py"):
        print("usage: pyunit.py TEST_MODULE.py", file=sys.stderr)
        return 2
    directory, name = os.path.split(os.path.abspath(argv[1]))
    sys.path.insert(0, directory)
    suite = unittest.defaultTestLoader.loadTestsFromName(name[:-3])
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    if not result.wasSuccessful():
        return 1
    if result.testsRun == 0 and not result.skipped:
        print(f"{name}: no test ran", file=sys.stderr)
        return 1
    if not result.skipped:
        return 0
    for test, why in result.skipped:
        print(f"SKIPPED {test.id()}: {why}", file=sys.stderr)
    if os.environ.get("TRIDENT_TEST_STRICT") == "1":
        print(f"{name}: {len(result.skipped)} test(s) skipped, which fails a strict run "
              "(TRIDENT_TEST_STRICT=1): install what they need (scripts/install-deps test)",
              file=sys.stderr)
        return 1
    return SKIPPED


if __name__ == "__main__":
    sys.exit(main(sys.argv))
