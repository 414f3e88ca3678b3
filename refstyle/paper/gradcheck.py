r"""Check any analytic gradient against central finite differences, within what they can resolve.

For ``f(x) -> (loss, grad)`` and a unit direction :math:`u` (a coordinate :math:`e_i`, or a
random direction that moves every coordinate at once), :math:`\varphi(t) = f(x + t u)` and
the numeric derivative at step :math:`h` is the central difference

.. math:: D(h) = \frac{\varphi(h) - \varphi(-h)}{2h} = \varphi'(0) + \frac{h^2}{6}\varphi'''(0) + O(h^4).

:func:`check_gradient` compares it with the analytic ``grad · u``, and gives every probe its
own error bound, because a difference quotient is only as good as the step allows:

- **rounding**: each evaluation of ``f`` is off by up to :math:`\delta`, so :math:`D(h)` by up
  to :math:`\delta/h`. :math:`\delta = \max(\epsilon |f|,\ 3\hat\sigma)`, with :math:`\epsilon` the
  dtype's machine epsilon and :math:`\hat\sigma` the noise of ``f`` measured near ``x`` (below);
- **truncation**: from two steps, :math:`D(2h) - D(h) \approx \frac{3h^2}{6}\varphi'''`, so the
  truncation error of :math:`D(h)` is about :math:`|D(h) - D(2h)|/3`.

A probe's bound is :math:`|D(h) - D(2h)|/3 + 1.5\,\delta/h` (the truncation estimate, which
itself carries up to :math:`0.5\,\delta/h` of rounding, plus the rounding of :math:`D(h)`). Its
first step is the smallest that brings the rounding part below a quarter of the tolerance
times the analytic derivative, :math:`h \ge 1.5\,\delta / (\frac{tol}{4} |a|)`, between the scale
rule :math:`h_0 = \epsilon^{1/3}\max(1, \mathrm{std}(x))` and :math:`64 h_0`. The step is then
balanced: halved (to :math:`h/8` at most) while the truncation part exceeds the rounding part,
or doubled (to :math:`4h` at most) while the probe is unresolved and the rounding part exceeds
six times the truncation part, as long as the bound improves; the estimate with the smallest
bound is kept. Halving costs two evaluations (:math:`\pm h/2`; :math:`\pm h` become the new
:math:`\pm 2h`), so does doubling (:math:`\pm 4h`): a probe takes four evaluations, up to eight
when it grows its step, up to ten at a kink.

**Kinks.** A ReLU switching on or a max-pooling window changing its maximum within
:math:`\pm 2h` makes :math:`\varphi` non-smooth, and then neither :math:`D(h)` nor the
bound can be trusted. The one-sided differences show it: their disagreement at :math:`h`,
:math:`(\varphi(h) - 2\varphi(0) + \varphi(-h))/h`, must equal the curvature term the
:math:`2h` points predict, :math:`(\varphi(2h) - 2\varphi(0) + \varphi(-2h))/(4h)`, up to
:math:`O(h^3)`; the two differ by :math:`|\Delta^4|/(4h)` (:math:`\Delta^4` the fourth difference
of the five points), whose rounding is at most :math:`4\delta/h`. Beyond that the step crossed
a kink (or a curvature too strong for it): the probe is re-probed at :math:`h/2`, down to
:math:`h/8`, then at another coordinate (or direction); the report says so.

**Noise of f.** :math:`\hat\sigma` is measured once, from ``f`` at :math:`x + k\,t\,v`,
:math:`k = 0..6`, along two random unit :math:`v` with :math:`t = h_0/16` (12 evaluations; Moré &
Wild's ECnoise): the :math:`k`-th differences of those seven values are rounding noise for :math:`k \ge 3` (a
response is piecewise linear in ``x``, the paper's losses piecewise polynomials of degree 2
and 4), and :math:`\gamma_k \overline{(\Delta^k)^2}`, :math:`\gamma_k = (k!)^2/(2k)!`, estimates
:math:`\sigma^2`; :math:`\hat\sigma` is the root mean square over :math:`k = 3..6`, the smaller of
the two directions' (a kink crossed on one inflates its estimate).

**Verdict** at a tolerance ``tol`` on the relative error :math:`|a - D|/\max(|a|, |D|, floor)`
(floor :math:`10^{-8}\max|grad|`, so that zero derivatives compare in absolute terms): a
probe whose relative bound is within ``tol`` agrees (relative error :math:`\le` tol) or
fails; one whose bound is wider is *unresolved*: finite differences cannot tell ``tol``
there, and it agrees within the noise (relative error :math:`\le` its bound) or fails. The
report: **PASS** (every probe agrees to tol), **PASS within the noise floor** (no failure, some
probes only within their bounds, the widest being the accuracy the check reached, or left
unresolved at kinks), **FAIL** (a probe disagrees beyond tol and its bound), **UNRESOLVED**
(every probe met kinks at every step).
Run it in float64: in float32 the rounding of ``f`` swamps the difference quotient.
"""

from math import factorial
from typing import NamedTuple

import numpy as np

from ..backend import array_module, to_numpy

NOISE_POINTS = 6  # evaluations of f that measure its noise (seven values with f(x))
STEP_RANGE = 64  # the first step lies between h_0 and 64 h_0
MAX_HALVINGS = 3  # a probe's step goes down to h/8 at most (kinks, truncation): 10 evaluations
MAX_DOUBLINGS = 2  # and up to 4h at most (an unresolved probe dominated by rounding): 8 evaluations


class Probe(NamedTuple):
    where: object  # a coordinate (tuple of indices) or "direction k"
    analytic: float
    numeric: float  # D(h) at the probe's step
    rel_error: float
    bound: float = 0.0  # estimated |numeric - true derivative|: truncation + rounding (inf: unresolved at kinks)
    rel_bound: float = 0.0  # bound on the same scale as rel_error
    step: float = 0.0  # the h of numeric
    evaluations: int = 2
    truncation: float = 0.0  # |D(h) - D(2h)| / 3
    rounding: float = 0.0  # 1.5 δ / h
    notes: tuple = ()  # kinks met, a coordinate moved
    loss_ratio: float = 0.0  # |f| / max(|analytic|, |numeric|): how far below the loss the derivative is

    def status(self, tol):
        """``"agrees"``, ``"noise"`` (unresolved at tol, within its bound), ``"fail"`` or ``"kink"`` (no estimate)."""
        if not np.isfinite(self.rel_bound):
            return "kink"
        if self.rel_bound <= tol:
            return "agrees" if self.rel_error <= tol else "fail"
        return "noise" if self.rel_error <= self.rel_bound else "fail"

    def verdict(self, tol):
        s = self.status(tol)
        if s == "agrees":
            return f"agrees to {self.rel_error:.1e}"
        if s == "noise":
            why = f": |f| is {self.loss_ratio:.0e} × the derivative" if self.rounding >= self.truncation else ""
            return f"agrees within the finite-difference noise {self.rel_bound:.1e}{why}"
        if s == "kink":
            return f"unresolved: kinks at every step down to {self.step:.1e}"
        return f"FAILS: {self.rel_error:.1e} > {max(tol, self.rel_bound):.1e}"


class GradcheckReport(NamedTuple):
    probes: list  # every Probe, coordinates first, then directions
    h: float  # the scale rule's step h_0 (or the one given)
    evaluations: int  # of f in all: the gradient, the noise measurement, every probe
    noise: float = 0.0  # δ, the bound on one evaluation's rounding
    measured_noise: float = 0.0  # 3 σ̂ from the ECnoise differences
    loss: float = 0.0  # f(x)
    eps: float = float(np.finfo(np.float64).eps)

    @property
    def max_rel_error(self):
        return max(p.rel_error for p in self.probes)

    @property
    def median_rel_error(self):
        return float(np.median([p.rel_error for p in self.probes]))

    @property
    def max_rel_bound(self):
        """The widest finite bound of a probe: the accuracy every resolved probe was checked to."""
        return max((p.rel_bound for p in self.probes if np.isfinite(p.rel_bound)), default=float("inf"))

    def worst(self, k=5):
        return sorted(self.probes, key=lambda p: -p.rel_error)[:k]

    def counts(self, tol):
        """``{status: number of probes}`` at ``tol`` (see :meth:`Probe.status`)."""
        out = {"agrees": 0, "noise": 0, "fail": 0, "kink": 0}
        for p in self.probes:
            out[p.status(tol)] += 1
        return out

    def verdict(self, tol):
        """``"PASS"``, ``"PASS within the noise floor"``, ``"FAIL"``, or ``"UNRESOLVED"`` (kinks at every probe)."""
        c = self.counts(tol)
        if c["fail"]:
            return "FAIL"
        if c["agrees"] + c["noise"] == 0:
            return "UNRESOLVED"
        return "PASS" if c["noise"] == 0 and c["kink"] == 0 else "PASS within the noise floor"

    def passed(self, tol):
        """True unless a probe disagrees beyond both ``tol`` and its own bound."""
        return self.verdict(tol) != "FAIL"

    def reached(self, tol):
        """The relative accuracy the check confirms: tol, or the widest bound of an unresolved probe."""
        return max([tol] + [p.rel_bound for p in self.probes if p.status(tol) == "noise"])

    def summary(self, tol):
        """One line: the verdict, what it rests on, and the evaluations it took."""
        c, verdict, n = self.counts(tol), self.verdict(tol), len(self.probes)
        kinks = sum(1 for p in self.probes if p.notes)
        tail = f"; {kinks} re-probed at kinks" if kinks else ""
        tail += f"; {c['kink']} unresolved at kinks" if c["kink"] else ""
        tail += f" ({self.evaluations} evaluations)"
        if verdict == "FAIL":
            p = max((p for p in self.probes if p.status(tol) == "fail"), key=lambda p: p.rel_error)
            return (f"FAIL: {c['fail']} of {n} probes disagree beyond {tol:g} and their bounds; worst {_where(p)}: "
                    f"relative error {p.rel_error:.1e}, bound {p.rel_bound:.1e}{tail}")
        if verdict == "UNRESOLVED":
            return f"UNRESOLVED: every probe met kinks at every step{tail}"
        if verdict == "PASS":
            return (f"PASS: {n} probes agree to {self.max_rel_error:.1e} (tolerance {tol:g}), "
                    f"every bound ≤ {self.max_rel_bound:.1e}{tail}")
        unresolved = [p for p in self.probes if p.status(tol) == "noise"]
        if not unresolved:  # only kinks stood in the way
            return f"PASS within the noise floor: {c['agrees']} of {n} probes agree to {tol:g}{tail}"
        widest = max(unresolved, key=lambda p: p.rel_bound)
        return (f"PASS within the noise floor {widest.rel_bound:.1e}: {c['agrees']} of {n} probes agree to {tol:g}, "
                f"{c['noise']} within their finite-difference bounds (widest at {_where(widest)}, "
                f"where |f| is {widest.loss_ratio:.0e} × the derivative){tail}")

    def format(self, tol=None, k=5):
        probe_evals = sum(p.evaluations for p in self.probes)
        steps = [p.step for p in self.probes]
        lines = [
            f"finite differences: {len(self.probes)} probes, {self.evaluations} evaluations "
            f"({probe_evals} for the probes, steps {min(steps):.2g} .. {max(steps):.2g}; h_0 = {self.h:.3g})",
            f"noise of f: δ = {self.noise:.2g} per evaluation (ε|f| = {self.eps * abs(self.loss):.2g}, "
            f"measured 3σ = {self.measured_noise:.2g}), |f| = {abs(self.loss):.6g}",
            f"relative error: max {self.max_rel_error:.3e}, median {self.median_rel_error:.3e}",
            f"{'where':<22} {'analytic':>13} {'numeric':>13} {'rel. error':>10} {'bound':>8} {'step':>8} evals"
            + ("  verdict" if tol is not None else ""),
        ]
        shown = self.worst(k)
        if tol is not None:  # failures first, then the widest bounds, then the largest errors
            order = {"fail": 0, "kink": 1, "noise": 2, "agrees": 3}
            shown = sorted(self.probes, key=lambda p: (order[p.status(tol)], -p.rel_bound, -p.rel_error))[:k]
        for p in shown:
            line = (f"{_where(p):<22} {p.analytic:>13.5e} {p.numeric:>13.5e} {p.rel_error:>10.2e} "
                    f"{p.rel_bound:>8.1e} {p.step:>8.1e} {p.evaluations:>5}")
            lines.append(line + (f"  {p.verdict(tol)}" if tol is not None else ""))
        for p in self.probes:
            lines += [f"{_where(p)}: {note}" for note in p.notes]
        if tol is not None:
            lines.append(self.summary(tol))
        return "\n".join(lines)

    def __str__(self):
        return self.format()


def _where(p):
    return p.where if isinstance(p.where, str) else "x" + str(list(p.where))


def relative_error(a, n, floor):
    """|a - n| / max(|a|, |n|, floor); ``floor`` keeps derivatives near 0 from dividing by 0."""
    return abs(a - n) / max(abs(a), abs(n), floor)


def measure_noise(f, x, f0, t, rng, directions=2):
    r"""3σ̂, the noise of ``f`` near ``x``: ECnoise's k-th differences (k = 3..6) along random directions.

    :math:`\hat\sigma^2` is the mean over k of :math:`\gamma_k \overline{(\Delta^k)^2}` along each
    direction; a kink crossed on one of them inflates its estimate, so the smallest is kept.
    Returns ``(3σ̂, evaluations)``; see the module docstring.
    """
    xp = array_module(x)
    estimates = []
    for _ in range(directions):
        v = rng.standard_normal(x.shape)
        v = xp.asarray(v / np.linalg.norm(v), dtype=x.dtype)
        values = np.array([f0] + [float(f(x + (k * t) * v)[0]) for k in range(1, NOISE_POINTS + 1)])
        levels = [factorial(k) ** 2 / factorial(2 * k) * np.mean(np.diff(values, k) ** 2) for k in range(3, 7)]
        estimates.append(3 * float(np.sqrt(np.mean(levels))))
    return min(estimates), directions * NOISE_POINTS


class _Stencil(NamedTuple):
    h: float
    D: float  # D(h)
    kink: bool  # the one-sided differences disagree beyond their rounding
    truncation: float  # |D(h) - D(2h)| / 3
    rounding: float  # 1.5 δ / h

    @property
    def bound(self):
        return self.truncation + self.rounding


def probe(phi, f0, analytic, step, delta, floor, tol=1e-6, halvings=MAX_HALVINGS, doublings=MAX_DOUBLINGS):
    r"""The derivative of ``phi`` at 0 with its error bound: a :class:`Probe` (``where`` left None).

    ``phi(t) = f(x + t u)``, ``f0 = phi(0)``. From ``step``, the step is halved while the
    one-sided differences show a kink (beyond their rounding :math:`4\delta/h`) or the
    truncation part exceeds the rounding part and the bound improves; it is doubled while
    the probe is unresolved at ``tol``, the rounding part exceeds six times the truncation
    part and the bound improves, up to a kink. The kink-free estimate with the smallest
    bound is kept (``bound = inf`` when every step down to ``step / 2**halvings`` met a kink).
    """
    values = {0.0: f0}

    def at(t):
        if t not in values:
            values[t] = float(phi(t))
        return values[t]

    def stencil(h):
        p1, m1, p2, m2 = at(h), at(-h), at(2 * h), at(-2 * h)
        D1, D2 = (p1 - m1) / (2 * h), (p2 - m2) / (4 * h)
        one_sided_gap = abs((p1 - 2 * f0 + m1) / h - (p2 - 2 * f0 + m2) / (4 * h))  # = |Δ⁴| / (4h)
        return _Stencil(h, D1, one_sided_gap > 4 * delta / h, abs(D1 - D2) / 3, 1.5 * delta / h)

    def resolved(s):
        return s.bound <= tol * max(abs(analytic), abs(s.D), floor)

    best, kinks, s = None, [], stencil(step)
    for n in range(halvings + 1):
        if n:
            s = stencil(s.h / 2)
        if s.kink:
            kinks.append(s.h)
            if best is not None:  # a kink within a stencil that looked smooth at twice the step: stop
                break
            continue
        if best is not None and s.bound >= best.bound:
            break
        best = s
        if s.truncation <= s.rounding:
            break
    if best is not None and best.h == step:  # rounding-dominated from the start: a larger step may resolve it
        for _ in range(doublings):
            if resolved(best) or 6 * best.truncation >= best.rounding:
                break
            s = stencil(2 * best.h)
            if s.kink or s.bound >= best.bound:
                break
            best = s
    notes = ()
    if kinks:
        notes = (f"the one-sided differences disagree beyond the noise at h = {', '.join(f'{k:.2g}' for k in kinks)} "
                 "(a ReLU kink or max-pooling switch within 2h): "
                 + (f"re-probed at h = {best.h:.2g}" if best is not None else "no kink-free step"),)
    if best is None:  # the smallest step's estimate, for show
        best = s._replace(truncation=float("inf"), rounding=float("inf"))
    scale = max(abs(analytic), abs(best.D), floor)
    return Probe(None, analytic, best.D, relative_error(analytic, best.D, floor), best.bound, best.bound / scale,
                 best.h, len(values) - 1, best.truncation, best.rounding, notes,
                 abs(f0) / max(abs(analytic), abs(best.D), 1e-300))


def check_gradient(f, x, coords=20, directions=5, h=None, seed=0, largest=5, tol=1e-6):
    r"""Compare ``f``'s analytic gradient at ``x`` with central differences, each with its error bound.

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
        Every probe's first step; None chooses it per probe (module docstring) from
        :math:`h_0 = \epsilon^{1/3} \max(1, \mathrm{std}(x))`, the noise of ``f`` and ``tol``.
    tol : float
        The relative error the steps are chosen to resolve (``report.passed(tol)`` may
        then be asked at another).

    Returns a :class:`GradcheckReport`: ``report.format(tol)`` prints it with the verdict,
    ``report.passed(tol)`` is False only when a probe disagrees beyond both ``tol`` and its
    bound. A probe that meets a kink at every step down to 1/8 of its first is replaced
    once by another coordinate of the same kind (largest or random) or another direction.
    """
    xp = array_module(x)
    rng = np.random.default_rng(seed)
    x = xp.array(x, order="C")  # a copy (the probes move it), in C order for flat indexing
    f0, g = f(x)
    f0 = float(f0)
    g = to_numpy(g).astype(np.float64)
    eps = float(np.finfo(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64).eps)
    h0 = float(eps ** (1 / 3) * max(1.0, float(to_numpy(x).std()))) if h is None else float(h)
    measured, evaluations = measure_noise(f, x, f0, h0 / 16, rng)
    delta = max(eps * abs(f0), measured)
    floor = 1e-8 * max(float(np.abs(g).max()), np.finfo(np.float64).tiny)
    flat_g = g.reshape(-1)

    def first_step(a):
        if h is not None:
            return h0
        return min(max(1.5 * delta / (tol / 4 * max(abs(a), floor)), h0), STEP_RANGE * h0)

    def along(u, analytic):
        return probe(lambda t: f(x + t * u)[0], f0, analytic, first_step(analytic), delta, floor, tol)

    def unit(i):
        u = xp.zeros(x.shape, dtype=x.dtype)
        u.reshape(-1)[int(i)] = 1
        return u

    by_size = [int(i) for i in np.argsort(-np.abs(flat_g), kind="stable")]
    picked = by_size[:largest]
    rest = np.setdiff1d(np.arange(flat_g.size), picked)
    randoms = [int(i) for i in rng.permutation(rest)]
    pools = [iter(by_size[largest:]), iter(randoms[coords:])]  # replacements for a coordinate lost to kinks
    jobs = [(i, 0) for i in picked] + [(i, 1) for i in randoms[:coords]]
    used = set(i for i, _ in jobs)
    probes = []
    for i, kind in jobs:
        p = along(unit(i), float(flat_g[i]))
        where = tuple(int(j) for j in np.unravel_index(i, x.shape))
        spare = None if np.isfinite(p.bound) else next((j for j in pools[kind] if j not in used), None)
        if spare is not None:
            used.add(spare)
            q = along(unit(spare), float(flat_g[spare]))
            note = f"kinks at every step down to {p.step:.2g} at x{list(where)}: probed here instead"
            evaluations += p.evaluations
            p, where = q._replace(notes=q.notes + (note,)), tuple(int(j) for j in np.unravel_index(spare, x.shape))
        probes.append(p._replace(where=where))
    for k in range(directions):
        for attempt in range(2):
            u = rng.standard_normal(x.shape)
            u /= np.linalg.norm(u)
            p = along(xp.asarray(u, dtype=x.dtype), float(np.sum(g * u)))
            if np.isfinite(p.bound) or attempt == 1:
                break
            evaluations += p.evaluations
            lost = p.step
        if attempt == 1:
            p = p._replace(notes=p.notes + (f"kinks at every step down to {lost:.2g}: another random direction",))
        probes.append(p._replace(where=f"direction {k}"))
    evaluations += 1 + sum(p.evaluations for p in probes)
    return GradcheckReport(probes, h0, evaluations, delta, measured, f0, eps)
