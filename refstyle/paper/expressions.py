r"""Arithmetic written in a convention record: ``"4*N^2*M^2"``, ``"1e3/N^2"``, ``"4*3^2*(H*W)^2"``.

A convention record (:mod:`refstyle.paper.conventions`) states how an implementation
divides and weights the paper's terms as formulas of a few symbols, the way the
implementation's code writes them, so that every constant stays visible in the record:

==========  ===============================================================
``N``       :math:`N_l`, the layer's number of filters
``M``       :math:`M_l = H_l W_l`, the layer's number of positions
``H, W``    the height and width of the image :math:`\vec x` (Keras's example divides by them)
``n``       the number of layers in the list being weighted
``k``       a layer's position in that list, from 0
==========  ===============================================================

Numbers, ``+ - * /``, ``^`` or ``**`` for powers, and parentheses: nothing else is
parsed (no names but these, no calls), so a record cannot run code.
"""

import ast
import math
import operator

from ..errors import RefstyleError

SYMBOLS = {
    "N": "the layer's number of filters N_l",
    "M": "the layer's number of positions M_l",
    "H": "the image's height",
    "W": "the image's width",
    "n": "the number of layers weighted",
    "k": "the layer's position in its list, from 0",
}

MAX_LENGTH = 200  # characters of a formula: a record's are a few

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow}


class Expression:
    """A parsed formula of :data:`SYMBOLS`; call it with the symbols' values: ``Expression("N*M")(N=64, M=9)``."""

    def __init__(self, text, allowed=tuple(SYMBOLS), where="a formula", sign="≥ 0"):
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            text = repr(float(text))
        if not isinstance(text, str) or not text.strip():
            raise RefstyleError(f"{where}: expected a formula such as \"N*M\" or a number, not {text!r}")
        if len(text) > MAX_LENGTH:
            raise RefstyleError(f"{where}: a formula of {len(text):,} characters; at most {MAX_LENGTH} are read")
        self.text, self.where, self.sign = text.strip(), where, sign
        try:
            tree = ast.parse(self.text.replace("^", "**"), mode="eval").body
        except (SyntaxError, RecursionError, MemoryError):
            raise RefstyleError(f"{where}: {text!r} is not a formula (numbers, {', '.join(allowed)}, + - * / ^ and "
                                "parentheses)") from None
        self.symbols = set()
        self._check(tree, allowed, where)
        self._tree = tree

    def _check(self, node, allowed, where):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return
        if isinstance(node, ast.Name):
            if node.id not in allowed:
                raise RefstyleError(f"{where}: {self.text!r} uses {node.id!r}; it may use {', '.join(allowed)} "
                                    f"({'; '.join(f'{s}: {SYMBOLS[s]}' for s in allowed)})")
            self.symbols.add(node.id)
            return
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            self._check(node.left, allowed, where)
            self._check(node.right, allowed, where)
            return
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            self._check(node.operand, allowed, where)
            return
        raise RefstyleError(f"{where}: {self.text!r} is not a formula (numbers, {', '.join(allowed)}, + - * / ^ and "
                            "parentheses)")

    def _eval(self, node, values):
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            return float(values[node.id])
        if isinstance(node, ast.UnaryOp):
            v = self._eval(node.operand, values)
            return -v if isinstance(node.op, ast.USub) else v
        return _OPS[type(node.op)](self._eval(node.left, values), self._eval(node.right, values))

    def __call__(self, **values):
        """The formula's value (a float) for the symbols given; one clear line, naming where the formula was
        written, if it is not a finite real number of its sign (``> 0`` for a divisor, ``≥ 0`` for a weight)."""
        missing = self.symbols - set(values)
        if missing:
            raise RefstyleError(f"{self.where}: {self.text!r} needs {', '.join(sorted(missing))}")
        try:
            v = self._eval(self._tree, values)
        except (ZeroDivisionError, OverflowError, RecursionError):
            v = math.nan
        ok = isinstance(v, float) and math.isfinite(v) and (v > 0 if self.sign == "> 0" else v >= 0)
        if not ok:
            shown = ", ".join(f"{s}={values[s]:g}" for s in sorted(self.symbols))
            value = "not a real number" if isinstance(v, complex) else f"{v:g}"
            raise RefstyleError(f"{self.where}: {self.text!r} is {value} at {shown or 'any values'}, but must be a "
                                f"finite number {self.sign}")
        return v

    def __repr__(self):
        return f"Expression({self.text!r})"

    def __eq__(self, other):
        return isinstance(other, Expression) and other.text == self.text

    def __hash__(self):
        return hash(self.text)
