#!/usr/bin/env python3
"""Count `panic!`, `unwrap()` and `expect(` in library/binary code under crates/*/src,
leaving out test code (`#[cfg(test)]` items and files named tests.rs).

Usage: tools/count_panics.py [--list] [ROOT]   (ROOT defaults to the current directory)
Issue 22 reports these counts before and after; --list prints each remaining site.
"""
import pathlib
import re
import sys

PATTERN = re.compile(r"panic!|unwrap\(\)|expect\(")


def strip_test_items(text):
    """Blank out every item that follows #[cfg(test)] (brace-matched), keeping line numbers."""
    out = list(text)
    i = 0
    while True:
        j = text.find("#[cfg(test)]", i)
        if j < 0:
            break
        k = text.find("{", j)
        semi = text.find(";", j)
        if k < 0 or (0 <= semi < k):
            i = j + 1
            continue
        depth = 0
        end = k
        while end < len(text):
            c = text[end]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    break
            end += 1
        for p in range(j, min(end + 1, len(text))):
            if out[p] != "\n":
                out[p] = " "
        i = end + 1
    return "".join(out)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    listing = "--list" in sys.argv
    root = pathlib.Path(args[0] if args else ".")
    total = 0
    for path in sorted(root.glob("crates/*/src/**/*.rs")):
        if path.name == "tests.rs" or "/tests/" in str(path.relative_to(root)):
            continue
        text = strip_test_items(path.read_text())
        for n, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith("//"):
                continue
            hits = len(PATTERN.findall(line))
            if hits:
                total += hits
                if listing:
                    print(f"{path.relative_to(root)}:{n}: {stripped}")
    print(f"total {total}")


if __name__ == "__main__":
    main()
