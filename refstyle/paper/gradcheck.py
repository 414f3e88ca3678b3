r"""Check any analytic gradient against central finite differences.

For ``f(x) -> (loss, grad)``, the numeric derivative along a unit direction :math:`u` is

.. math:: \frac{f(x + h u) - f(x - h u)}{2h} = \nabla f(x) \cdot u + O(h^2)

and :func:`check_gradient` compares it with ``grad · u`` for sampled coordinates
(:math:`u = e_i`: each coordinate's derivative, including those where the analytic
gradient is largest) and for random directions (every coordinate at once). Run it in
float64: in float32 the rounding error of ``f`` swamps the difference quotient.

The step is chosen from the scale of ``x``: :math:`h = \epsilon^{1/3} \max(1, \mathrm{std}(x))`,
about :math:`6\cdot10^{-6}` per unit, which balances the :math:`O(h^2)` truncation error
against the rounding error :math:`\epsilon |f| / h`.
"""

from typing import NamedTuple

import numpy as np

from ..backend import array_module, to_numpy


class Probe(NamedTuple):
    where: object  # a coordinate (tuple of indices) or "direction k"
    analytic: float
    numeric: float
    rel_error: float


class GradcheckReport(NamedTuple):
    probes: list  # every Probe, coordinates first, then directions
    h: float
    evaluations: int

    @property
    def max_rel_error(self):
        return max(p.rel_error for p in self.probes)

    @property
    def median_rel_error(self):
        return float(np.median([p.rel_error for p in self.probes]))

    def worst(self, k=5):
        return sorted(self.probes, key=lambda p: -p.rel_error)[:k]

    def passed(self, tol):
        return self.max_rel_error <= tol

    def format(self, tol=None, k=5):
        lines = [
            f"finite differences: {len(self.probes)} probes, step h = {self.h:.3g}, {self.evaluations} evaluations",
            f"relative error: max {self.max_rel_error:.3e}, median {self.median_rel_error:.3e}",
            f"{'where':<24} {'analytic':>14} {'numeric':>14} {'rel. error':>11}",
        ]
        for p in self.worst(k):
            where = str(p.where) if isinstance(p.where, str) else "x" + str(list(p.where))
            lines.append(f"{where:<24} {p.analytic:>14.6e} {p.numeric:>14.6e} {p.rel_error:>11.3e}")
        if tol is not None:
            verdict = "PASS" if self.passed(tol) else "FAIL"
            lines.append(f"{verdict}: max relative error {self.max_rel_error:.3e} {'<=' if self.passed(tol) else '>'} {tol:g}")
        return "\n".join(lines)

    def __str__(self):
        return self.format()


def relative_error(a, n, floor):
    """|a - n| / max(|a|, |n|, floor); ``floor`` keeps derivatives near 0 from dividing by 0."""
    return abs(a - n) / max(abs(a), abs(n), floor)


def check_gradient(f, x, coords=20, directions=5, h=None, seed=0, largest=5):
    """Compare ``f``'s analytic gradient at ``x`` with central differences.

    Parameters
    ----------
    f : callable
        ``f(x) -> (loss, grad)``, ``grad`` shaped like ``x``.
    x : array
        The point; NumPy or CuPy, float64 recommended.
    coords : int
        Random coordinates to probe, in addition to the ``largest`` coordinates of the
        analytic gradient by magnitude.
    directions : int
        Random unit directions to probe.
    h : float or None
        The step; None chooses it from the scale of ``x``.

    Returns a :class:`GradcheckReport`. Relative errors are taken against a floor of
    1e-8 times the largest analytic derivative, so that derivatives that are 0 are
    compared in absolute terms.
    """
    xp = array_module(x)
    rng = np.random.default_rng(seed)
    x = xp.array(x, order="C")  # a copy (the probes move it), in C order for flat indexing
    _, g = f(x)
    g = to_numpy(g).astype(np.float64)
    if h is None:
        h = float(np.finfo(np.float64).eps ** (1 / 3) * max(1.0, float(to_numpy(x).std())))
    floor = 1e-8 * max(float(np.abs(g).max()), np.finfo(np.float64).tiny)
    flat_g = g.reshape(-1)
    picks = list(np.argsort(-np.abs(flat_g))[:largest])
    rest = np.setdiff1d(np.arange(flat_g.size), picks)
    picks += list(rng.choice(rest, min(coords, rest.size), replace=False))

    def along(u):
        fp, _ = f(x + h * u)
        fm, _ = f(x - h * u)
        return (float(fp) - float(fm)) / (2 * h)

    probes = []
    for i in picks:
        u = xp.zeros(x.shape, dtype=x.dtype)
        u.reshape(-1)[int(i)] = 1
        numeric = along(u)
        where = tuple(int(j) for j in np.unravel_index(int(i), x.shape))
        probes.append(Probe(where, float(flat_g[i]), numeric, 0.0))
    for k in range(directions):
        u = rng.standard_normal(x.shape)
        u /= np.linalg.norm(u)
        numeric = along(xp.asarray(u, dtype=x.dtype))
        probes.append(Probe(f"direction {k}", float(np.sum(g * u)), numeric, 0.0))
    probes = [p._replace(rel_error=relative_error(p.analytic, p.numeric, floor)) for p in probes]
    return GradcheckReport(probes, h, 1 + 2 * len(probes))
