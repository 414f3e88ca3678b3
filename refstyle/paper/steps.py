"""What every optimiser reports: each step, the result, and the bookkeeping between them.

A :class:`Tracker` wraps ``evaluate(x) -> (loss, grad)``: it counts evaluations, keeps
the image with the lowest loss seen, refuses a non-finite loss with a clear error, and
tells the caller's ``callback`` of each iteration with a :class:`Step`. A callback may
raise :class:`StopOptimization` to end the run early.
"""

import math
import time
from typing import NamedTuple

import numpy as np

from ..backend import array_module
from ..errors import RefstyleError


class Step(NamedTuple):
    iteration: int  # 1-based
    evaluations: int  # objective evaluations so far
    loss: float
    x: object  # the image that has this loss (do not modify)
    seconds: float  # since the start


class Result(NamedTuple):
    x: object  # the image with the lowest loss seen
    loss: float
    iterations: int
    evaluations: int
    history: list  # the loss after each iteration
    interrupted: bool  # stopped by Ctrl-C or a callback
    message: str


class StopOptimization(Exception):
    """Raised by a callback to end the optimisation early (the best image is kept)."""


class Tracker:
    """Counts evaluations, keeps the best image, and checks for non-finite losses."""

    def __init__(self, evaluate):
        self.evaluate = evaluate
        self.evaluations = 0
        self.best_loss = math.inf
        self.best_x = None
        self.iteration = 0
        self.history = []
        self.start = time.perf_counter()

    def __call__(self, x):
        with np.errstate(over="ignore", invalid="ignore"):  # a non-finite loss is reported below
            loss, grad = self.evaluate(x)
        self.evaluations += 1
        loss = float(loss)
        if not math.isfinite(loss):
            raise RefstyleError(
                f"the loss became {loss} at iteration {self.iteration + 1} (evaluation {self.evaluations}): "
                "the optimisation diverged; lower the learning rate or the style weight (--beta, --ratio), "
                "or start from the photograph (--init content)"
            )
        if loss < self.best_loss:
            self.best_loss = loss
            self.best_x = array_module(x).array(x, copy=True)
        return loss, grad

    def step(self, loss, x, callback):
        self.iteration += 1
        self.history.append(float(loss))
        if callback is not None:  # a copy: the optimiser goes on to change its x in place
            x = array_module(x).array(x, copy=True)
            callback(Step(self.iteration, self.evaluations, float(loss), x, time.perf_counter() - self.start))

    def result(self, interrupted, message):
        return Result(
            self.best_x, self.best_loss, self.iteration, self.evaluations, self.history, interrupted, message
        )
