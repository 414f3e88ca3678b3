r"""Optimisers over the image: SciPy's L-BFGS-B (the paper's), our own L-BFGS, gradient descent, Adam.

Each takes ``evaluate(x) -> (loss, grad)`` (or an :class:`~refstyle.paper.objective.Objective`),
a start image ``x0`` in the network's dtype, and a number of iterations, and returns a
:class:`Result` holding the image with the lowest loss seen. A ``callback(step)`` is
called after each iteration with a :class:`Step`; it may raise
:class:`StopOptimization` to end the run early. Ctrl-C (``KeyboardInterrupt``) also
ends it, and the best image so far is returned with ``interrupted=True``.
A non-finite loss raises :class:`~refstyle.errors.RefstyleError` naming the iteration.

L-BFGS-B defaults follow the author's own Caffe code (DeepTextures): history
(``maxcor``) 20 and ``ftol = gtol = 0``, so that only the iteration cap stops it.

``"lbfgs"`` is SciPy's L-BFGS-B: a float64 vector on the CPU, so on a GPU every
evaluation copies the image to the host and back. ``"lbfgs-xp"`` (:func:`lbfgs_xp`) is
the same quasi-Newton method written with the array module, so it stays on the device
and in the image's dtype; it has no pixel bounds.
"""

import numpy as np

from ..backend import array_module, to_numpy
from ..errors import RefstyleError
from .lbfgs import lbfgs_xp
from .steps import Result, Step, StopOptimization, Tracker  # noqa: F401 (Result, Step: what the optimisers return)

OPTIMIZERS = ("lbfgs", "lbfgs-xp", "gd", "adam")
LBFGS = OPTIMIZERS[:2]  # the quasi-Newton ones: a history (maxcor), no learning rate


def lbfgs(evaluate, x0, iters, maxcor=20, ftol=0.0, gtol=0.0, bounds=None, callback=None):
    """Minimise with SciPy's L-BFGS-B.

    SciPy works on a float64 vector on the CPU; the image is converted to and from
    the network's dtype (and device) once per evaluation.

    Parameters
    ----------
    iters : int
        The iteration cap (``maxiter``). SciPy may evaluate more often than it iterates
        (line searches); both counts are reported.
    maxcor : int
        The number of corrections kept (history size).
    bounds : (low, high) or None
        Pixel bounds in network units, the same for every coordinate; the author's code
        used the source image's min and max.
    """
    from scipy.optimize import minimize

    xp = array_module(x0)
    shape, dtype = x0.shape, x0.dtype
    track = Tracker(evaluate)

    def fun(z):
        x = xp.asarray(z.reshape(shape), dtype=dtype)
        loss, grad = track(x)
        return loss, to_numpy(grad).astype(np.float64).ravel()

    def on_iteration(intermediate_result):
        track.step(intermediate_result.fun, xp.asarray(intermediate_result.x.reshape(shape), dtype=dtype), callback)

    z0 = to_numpy(x0).astype(np.float64).ravel()
    scipy_bounds = None if bounds is None else [(float(bounds[0]), float(bounds[1]))] * z0.size
    options = {"maxiter": int(iters), "maxcor": int(maxcor), "ftol": ftol, "gtol": gtol, "maxfun": max(15000, 3 * int(iters))}
    try:
        res = minimize(fun, z0, jac=True, method="L-BFGS-B", bounds=scipy_bounds, options=options, callback=on_iteration)
    except (KeyboardInterrupt, StopOptimization) as e:
        return track.result(True, "interrupted" if isinstance(e, KeyboardInterrupt) else "stopped")
    return track.result(False, str(res.message))


def gradient_descent(evaluate, x0, iters, lr=1.0, rtol=0.0, callback=None):
    r"""Plain gradient descent :math:`x \leftarrow x - \eta \nabla L`, as the Caffe seed does.

    Stops after ``iters`` iterations, or when the relative change of the loss
    :math:`|L_{t-1} - L_t| / |L_{t-1}|` falls below ``rtol``.
    """
    track = Tracker(evaluate)
    x = array_module(x0).array(x0, copy=True)
    previous = None
    try:
        for _ in range(int(iters)):
            loss, grad = track(x)
            track.step(loss, x, callback)  # before the update: the step reports x with its own loss
            x -= lr * grad
            if previous is not None and rtol > 0 and abs(previous - loss) <= rtol * abs(previous):
                return track.result(False, f"relative loss change below {rtol:g}")
            previous = loss
    except (KeyboardInterrupt, StopOptimization) as e:
        return track.result(True, "interrupted" if isinstance(e, KeyboardInterrupt) else "stopped")
    return track.result(False, "iteration cap reached")


def adam(evaluate, x0, iters, lr=10.0, beta1=0.9, beta2=0.999, eps=1e-8, callback=None):
    r"""Adam (Kingma & Ba): bias-corrected moment estimates, step :math:`\eta \hat m / (\sqrt{\hat v} + \epsilon)`.

    ``lr`` is in network units (pixel values 0..255), hence the default of 10.
    """
    xp = array_module(x0)
    track = Tracker(evaluate)
    x = xp.array(x0, copy=True)
    m = xp.zeros_like(x)
    v = xp.zeros_like(x)
    try:
        for t in range(1, int(iters) + 1):
            loss, grad = track(x)
            track.step(loss, x, callback)  # before the update: the step reports x with its own loss
            m = beta1 * m + (1 - beta1) * grad
            v = beta2 * v + (1 - beta2) * grad * grad
            m_hat = m / (1 - beta1**t)
            v_hat = v / (1 - beta2**t)
            x -= (lr * m_hat / (xp.sqrt(v_hat) + eps)).astype(x.dtype)
    except (KeyboardInterrupt, StopOptimization) as e:
        return track.result(True, "interrupted" if isinstance(e, KeyboardInterrupt) else "stopped")
    return track.result(False, "iteration cap reached")


def minimize_image(evaluate, x0, iters, optimizer="lbfgs", callback=None, **options):
    """Run the named optimiser (``"lbfgs"``, ``"lbfgs-xp"``, ``"gd"`` or ``"adam"``) with its options."""
    if optimizer == "lbfgs":
        return lbfgs(evaluate, x0, iters, callback=callback, **options)
    if optimizer == "lbfgs-xp":
        return lbfgs_xp(evaluate, x0, iters, callback=callback, **options)
    if optimizer == "gd":
        return gradient_descent(evaluate, x0, iters, callback=callback, **options)
    if optimizer == "adam":
        return adam(evaluate, x0, iters, callback=callback, **options)
    raise RefstyleError(f"unknown optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
