"""Write the built-in convention records into docs/conventions.md, between its markers.

    python docs/make_conventions.py          # rewrite the section from refstyle/paper/records/*.json
    python docs/make_conventions.py --check  # exit 1 if the section is not what the records say

The records are the one place an implementation's convention is written; this page shows
them, and tests/test_conventions.py fails when the page and the records disagree.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from refstyle.nn.inputs import describe_input  # noqa: E402
from refstyle.paper.conventions import CONVENTIONS, FEED_IMAGE, FROM_WEIGHTS  # noqa: E402

PAGE = os.path.join(HERE, "conventions.md")
BEGIN, END = "<!-- records: begin (docs/make_conventions.py) -->", "<!-- records: end -->"
ORDER = ["paper", "neural-style", "neural-style-pt", "neural-style-pt-x256", "pytorch-tutorial", "gatys-pytorch",
         "tf-tutorial", "keras-example", "anishathalye"]


def _space(space):
    if space.get("mean") == FROM_WEIGHTS:
        return f"{space['channels']} {space['range'][0]}..{space['range'][1]} minus the weights file's mean pixel"
    return describe_input(space)


def _weights(rule, normalise=False):
    text = rule.text if hasattr(rule, "text") else ", ".join(f"{w:g}" for w in rule)
    return text + (", normalised to sum 1" if normalise else "")


def _code(c):
    s = c.source or {}
    where = " ".join(str(s[k]) for k in ("repository", "path") if k in s) or s.get("paper", "")
    return where + (f" @ {s['commit']}" if "commit" in s else "")


def table():
    rows = ["| record | x (the image optimised) | conv1_1 is fed | layer names; pooling | content: Σ(F−P)² / D_c "
            "| style: G / g, Σ(Ĝ−Â)² / D_s | α; β; c_l; w_l | total variation |",
            "|---|---|---|---|---|---|---|---|"]
    for name in sorted(CONVENTIONS, key=lambda n: (ORDER + [n]).index(n)):
        c = CONVENTIONS[name]
        feed = {None: "its weights' own input", FEED_IMAGE: "x as it is"}.get(c.feed) if not isinstance(c.feed, dict) \
            else _space(c.feed)
        tv = "none" if c.tv_weight == 0 else f"{c.tv} × {c.tv_weight:g}" + ("" if c.tv_in_loss else ", gradient only")
        rows.append(
            f"| `{name}` | {_space(c.image)} | {feed} | {c.names}; {c.pooling}, {c.rounding}"
            f"{'; filters transposed' if c.filters == 'transposed' else ''} "
            f"| {', '.join(c.content_layers)}; D_c = {c.content_divisor.text} "
            f"| {', '.join(c.style_layers)}; g = {c.gram_divisor.text}, D_s = {c.style_divisor.text} "
            f"| {c.alpha:g}; {c.beta:g}; {_weights(c.content_weights)}; {_weights(c.layer_weights, c.normalise_weights)} "
            f"| {tv} |"
        )
    return rows


def sections():
    out = []
    for name in sorted(CONVENTIONS, key=lambda n: (ORDER + [n]).index(n)):
        c = CONVENTIONS[name]
        out += ["", f"### `{name}`", "", c.description + ".", ""]
        if c.source:
            out += [f"Code: {_code(c)}.", ""]
        out += [f"- {d}" for d in c.differences]
    return out


def section():
    return "\n".join([BEGIN, ""] + table() + sections() + ["", END])


def main(argv):
    with open(PAGE, encoding="utf-8") as f:
        text = f.read()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + section() + text[end:]
    if "--check" in argv:
        if new != text:
            print(f"{PAGE} is not what the records say: run python docs/make_conventions.py")
            return 1
        return 0
    with open(PAGE, "w", encoding="utf-8") as f:
        f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
