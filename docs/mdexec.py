"""Run the Python blocks of a Markdown file in order and check (or rewrite) the output shown after each.

In the document, a fenced ``python`` block may be followed directly by a fenced
``text`` block: that is what the Python block prints. All blocks share one namespace,
run from the folder of the document, as a reader typing them one after another would.

    python docs/mdexec.py docs/walkthrough.md            # check: exit 1 and a diff where they disagree
    python docs/mdexec.py docs/walkthrough.md --update   # rewrite the text blocks from a fresh run

Outputs are compared line by line: the words must be equal, and the numbers equal to a
relative 1e-3 (float32 arithmetic differs in its last digits between machines); two
numbers both below 1e-6 in magnitude count as equal, since such values in the
walkthrough are rounding noise (finite-difference errors, residuals).
"""

import contextlib
import io
import os
import re
import sys

FENCE = re.compile(r"^```(\w*)\s*$")
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
RTOL, NOISE = 1e-3, 1e-6


def blocks(text):
    """``[(kind, first line index, last line index, body)]`` of the fenced blocks of ``text``."""
    lines = text.split("\n")
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m and m.group(1):
            j = i + 1
            while j < len(lines) and lines[j].rstrip() != "```":
                j += 1
            found.append((m.group(1), i, j, "\n".join(lines[i + 1 : j])))
            i = j + 1
        else:
            i += 1
    return found


def pairs(text):
    """``[(python block, its text block or None)]`` in document order."""
    found = blocks(text)
    out = []
    for k, block in enumerate(found):
        if block[0] != "python":
            continue
        nxt = found[k + 1] if k + 1 < len(found) else None
        following = nxt if nxt and nxt[0] == "text" and _only_blank_between(text, block[2], nxt[1]) else None
        out.append((block, following))
    return out


def _only_blank_between(text, end, start):
    lines = text.split("\n")
    return all(not line.strip() for line in lines[end + 1 : start])


def execute(path):
    """Run every Python block of the document; ``[(python block, text block, printed output)]``."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    namespace = {"__name__": "__walkthrough__"}
    results = []
    here = os.getcwd()
    os.chdir(os.path.dirname(os.path.abspath(path)))
    try:
        for code, shown in pairs(text):
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                exec(compile(code[3], f"{path}:{code[1] + 2}", "exec"), namespace)
            results.append((code, shown, buf.getvalue().rstrip("\n")))
    finally:
        os.chdir(here)
    return text, results


def same_line(expected, actual):
    """Equal words and numbers equal to RTOL (both below NOISE in magnitude counts as equal)."""
    if NUMBER.sub("#", expected) != NUMBER.sub("#", actual):
        return False
    for a, b in zip(NUMBER.findall(expected), NUMBER.findall(actual)):
        a, b = float(a), float(b)
        if abs(a) < NOISE and abs(b) < NOISE:
            continue
        if abs(a - b) > RTOL * max(abs(a), abs(b)):
            return False
    return True


def differences(results):
    """``[(line number in the document, expected, actual)]`` of every output that disagrees."""
    out = []
    for code, shown, printed in results:
        expected = [] if shown is None else shown[3].split("\n")
        actual = printed.split("\n") if printed else []
        if shown is None and actual:
            out.append((code[1] + 1, "(no output block)", printed))
            continue
        if len(expected) != len(actual):
            out.append((shown[1] + 1, "\n".join(expected), printed))
            continue
        for k, (e, a) in enumerate(zip(expected, actual)):
            if not same_line(e, a):
                out.append((shown[1] + 2 + k, e, a))
    return out


def update(path, text, results):
    """Rewrite the document with each Python block's output in the text block after it."""
    lines = text.split("\n")
    for code, shown, printed in sorted(results, key=lambda r: -r[0][1]):  # bottom up: indices stay valid
        if shown is not None:
            lines[shown[1] + 1 : shown[2]] = printed.split("\n") if printed else []
        elif printed:
            lines[code[2] + 1 : code[2] + 1] = ["", "```text", *printed.split("\n"), "```"]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0]
    text, results = execute(path)
    if "--update" in argv:
        update(path, text, results)
        print(f"updated {path}: {len(results)} blocks")
        return 0
    diffs = differences(results)
    for line, expected, actual in diffs:
        print(f"{path}:{line}: expected\n  {expected}\ngot\n  {actual}")
    print(f"{path}: {len(results)} blocks, {len(diffs)} differences")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
