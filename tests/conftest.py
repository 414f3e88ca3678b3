"""Shared test fixtures: the ../shared data, array backends × dtypes, error measures."""

import os
from pathlib import Path

import numpy as np
import pytest

from refstyle.backend import have_gpu

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"


def shared_path(*parts):
    """A file under the shared data folder ($REFSTYLE_SHARED, default ../shared).

    Missing: the test fails in CI (CI=true), where the data must be present, and is
    skipped elsewhere.
    """
    base = Path(os.environ.get("REFSTYLE_SHARED", ROOT.parent / "shared"))
    path = base.joinpath(*parts)
    if not path.exists():
        message = f"{path} is missing (set REFSTYLE_SHARED to the shared data folder)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_torch():
    """Import torch, the independent peer; in CI its absence is a failure."""
    try:
        import torch
    except ImportError:
        if IN_CI:
            pytest.fail("torch is not installed: CI installs it with the 'test' extra")
        pytest.skip("torch is not installed (pip install -e '.[test]')")
    return torch


BACKENDS = ["numpy", "cupy"]


@pytest.fixture(params=BACKENDS)
def xp(request, monkeypatch):
    """The array module under test: numpy, and cupy.

    "cupy" is the real CuPy where a GPU is present, and elsewhere the suite's emulation of
    it (``cupy_emulation``: NumPy underneath, CuPy's rules on host arrays, implicit
    conversions and signatures on top), which refstyle is then given as its GPU module
    for the duration of the test.
    """
    if request.param == "numpy":
        return np
    if have_gpu():
        import cupy

        return cupy
    return emulated_gpu(monkeypatch)


def emulated_gpu(monkeypatch):
    """Make the CuPy emulation refstyle's GPU module (``device="gpu"``, its arrays) and return it."""
    import cupy_emulation

    import refstyle.backend

    monkeypatch.setattr(refstyle.backend, "_cupy", lambda: cupy_emulation)
    return cupy_emulation


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


def max_rel_error(actual, expected):
    """max |actual - expected| / max |expected|: a scale-free error of a whole array."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = np.max(np.abs(expected))
    return float(np.max(np.abs(actual - expected)) / (scale if scale > 0 else 1.0))


def numeric_gradient(f, x, h=1e-6, coords=None):
    """Central differences of the scalar f at x (float64), on all or the given coordinates."""
    x = np.array(x, dtype=np.float64)
    flat = x.reshape(-1)
    coords = range(flat.size) if coords is None else coords
    grad = np.zeros_like(flat)
    for i in coords:
        old = flat[i]
        flat[i] = old + h
        fp = f(x)
        flat[i] = old - h
        fm = f(x)
        flat[i] = old
        grad[i] = (fp - fm) / (2 * h)
    return grad.reshape(x.shape)


@pytest.fixture(autouse=True)
def isolated_weights_environment(monkeypatch, tmp_path_factory):
    """No test reads the developer's own weight records or writes into their cache."""
    monkeypatch.delenv("REFSTYLE_SOURCES", raising=False)
    monkeypatch.setenv("REFSTYLE_CACHE", str(tmp_path_factory.mktemp("refstyle-cache")))


@pytest.fixture()
def tiny_run(tmp_path):
    """A small generated VGG19 (weights.npz) and random images, a 24×32 photo.png and a 32×32 art.png, in tmp_path."""
    from PIL import Image

    import refstyle

    rng = np.random.default_rng(28)
    weights = tmp_path / "w.npz"
    refstyle.save_npz(refstyle.generate_weights("vgg19", widths=(3, 4, 4, 4, 4), seed=1), weights)
    paths = {"weights": str(weights), "dir": tmp_path}
    for name, shape in [("photo", (24, 32)), ("art", (32, 32))]:
        paths[name] = str(tmp_path / f"{name}.png")
        Image.fromarray(rng.integers(0, 256, shape + (3,)).astype(np.uint8)).save(paths[name])
    return paths
