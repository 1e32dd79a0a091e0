"""The README's measured figures stay tied to committed results: every bench/results/ file the
README links exists and names the commit it measured ("checkout at <hash>"), and that commit is
the one the README names beside the link. Usage: python3 tests/docs_results.py SOURCE_DIR"""
import os
import re
import sys


def main(root):
    with open(os.path.join(root, "README.md")) as f:
        readme = f.read()
    links = re.findall(r"\[(bench/results/[^\]]+\.md)\]\((bench/results/[^)]+\.md)\)"
                       r"(?:,\s*`[^`]+`\s+at\s+([0-9a-f]{7,40}))?", readme)
    problems = []
    if not links:
        problems.append("the README links no file in bench/results/")
    for text, target, named in links:
        path = os.path.join(root, target)
        if text != target:
            problems.append(f"link text {text} points at {target}")
        if not os.path.exists(path):
            problems.append(f"{target}: linked from the README, not in the repository")
            continue
        with open(path) as f:
            m = re.search(r"checkout at ([0-9a-f]{7,40})", f.read())
        if m is None:
            problems.append(f"{target}: names no commit (\"checkout at <hash>\")")
        elif named and not (m.group(1).startswith(named) or named.startswith(m.group(1))):
            problems.append(f"{target}: measured {m.group(1)}, the README says {named}")
    for p in problems:
        print(f"docs_results: {p}", file=sys.stderr)
    if not problems:
        print(f"docs_results: {len(links)} results files linked, each naming its commit")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
