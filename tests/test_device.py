"""The GPU path, checked on every CI run: on the suite's CuPy emulation where no GPU is present.

Budgets: what one evaluation of the objective costs on the device in transfers,
synchronisations and calls (kernel launches), counted by ``cupy_emulation.counting``.
End to end: the fast network, the objective, ``style_loss`` and the command line with
``--device gpu``. What only a real GPU can show (CuPy's own summation order, speed) is
not here: see README, "The GPU".
"""

import csv
import json
import os

import numpy as np
import pytest
from conftest import emulated_gpu
from PIL import Image

import refstyle
from refstyle.app.cli import main

rng = np.random.default_rng(16)

# One evaluation at 512×512 with the reference kernels (the GPU's default): the call count
# does not grow with the image or the widths (no bands), so it is stated for any network.
REFERENCE_CALLS_AT_512 = 530


@pytest.fixture()
def gpu(monkeypatch):
    return emulated_gpu(monkeypatch)


def objective_on(gpu, size, kernels, pooling="avg", widths=(4, 6, 8, 8, 8), dtype="float32"):
    w = refstyle.generate_weights("vgg19", widths=widths, depth="conv5_1", seed=3, dtype=dtype)
    net = refstyle.VGG(w, kernels=kernels, device="gpu", pooling=pooling, dtype=dtype)
    photo, art = (rng.uniform(0, 255, (size, size, 3)) for _ in range(2))
    objective = refstyle.build_objective(net, photo, [art], refstyle.Settings(pooling=pooling))
    x = gpu.asarray(refstyle.preprocess(rng.uniform(0, 255, (size, size, 3)), dtype))
    return objective, x


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("kernels", ["reference", "fast", "im2col"])
def test_an_evaluation_reads_one_array_and_uploads_nothing(gpu, kernels, pooling):
    objective, x = objective_on(gpu, 40, kernels, pooling, widths=(4, 16, 16, 16, 16))
    objective.evaluate(x)  # the first sweep uploads what is constant (Winograd's filter transform), once
    with gpu.counting() as c:
        e = objective.evaluate(x)
    assert c.h2d == 0, c.report()
    # the losses of all six layers come back together, as one float64 array
    assert (c.d2h, c.d2h_bytes, c.syncs) == (1, 8 * 6, 1), c.report()
    assert type(e.grad) is gpu.ndarray and isinstance(e.loss, float)
    assert c.copies == 0, c.report()  # no hidden copies: each view bound once, no matmul into a transposed out


def test_the_reference_kernels_make_few_calls_at_512(gpu):
    objective, x = objective_on(gpu, 512, "reference", widths=(4, 4, 8, 8, 8))
    objective.evaluate(x)
    with gpu.counting() as c:
        objective.evaluate(x)
    assert c.calls <= REFERENCE_CALLS_AT_512, c.report()
    assert (c.h2d, c.syncs) == (0, 1)


@pytest.mark.parametrize("kernels, constants", [("reference", 0), ("fast", 1)])
def test_the_constants_go_up_once_per_dtype(gpu, kernels, constants):
    w = refstyle.generate_weights("vgg19", widths=(4, 16, 16, 16, 16), depth="conv5_1", seed=3, dtype="float32")
    net = refstyle.VGG(w, kernels=kernels, device="gpu")
    photo, art = (rng.uniform(0, 255, (24, 24, 3)) for _ in range(2))
    x = gpu.asarray(refstyle.preprocess(photo))
    with gpu.counting() as c:  # two forward sweeps for the targets, then three evaluations
        objective = refstyle.build_objective(net, photo, [art], refstyle.Settings())
        for _ in range(3):
            objective.evaluate(x)
    # the photograph and the artwork, and for Winograd its filter transform WINOGRAD_T in float32, once
    assert c.h2d == 2 + constants, c.report()


@pytest.mark.parametrize("kernels", ["reference", "fast", "im2col"])
def test_the_objective_on_the_device_is_numpys(gpu, kernels):
    """Loss, layer losses and gradient on the emulated device against the same network on NumPy, float64."""
    w = refstyle.generate_weights("vgg19", widths=(4, 16, 16, 16, 16), depth="conv5_1", seed=5, dtype="float64")
    photo, art, x = (rng.uniform(0, 255, (21, 26, 3)) for _ in range(3))
    settings = refstyle.Settings(tv_weight=1e-3)
    evaluations = {}
    for device in ("cpu", "gpu"):
        net = refstyle.VGG(w, kernels=kernels, device=device, dtype="float64")
        objective = refstyle.build_objective(net, photo, [art], settings)
        evaluations[device] = objective.evaluate(net.xp.asarray(refstyle.preprocess(x, "float64")))
    cpu, dev = evaluations["cpu"], evaluations["gpu"]
    assert dev.loss == pytest.approx(cpu.loss, rel=1e-12)
    assert dev.layer_losses == pytest.approx(cpu.layer_losses, rel=1e-12)
    np.testing.assert_allclose(dev.grad.get(), cpu.grad, rtol=1e-10, atol=1e-12 * np.abs(cpu.grad).max())
    for name in cpu.F:
        np.testing.assert_allclose(dev.F[name].get(), cpu.F[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("width", [6, 7])
def test_style_loss_on_the_device_keeps_the_response_layout(gpu, width):
    """A channels-last response (the fast network's) gets its gradient in the same memory order, on the device."""
    F_hwc = np.maximum(rng.standard_normal((5, width, 8)), 0)
    A = rng.standard_normal((8, 8))
    A = A @ A.T
    F_host = F_hwc.transpose(2, 0, 1)[None]
    E_host, dF_host = refstyle.style_loss(F_host, A)
    F_dev = gpu.asarray(F_hwc).transpose(2, 0, 1)[None]
    with gpu.counting() as c:
        E, dF = refstyle.style_loss(F_dev, gpu.asarray(A))
    assert (c.syncs, c.d2h, c.copies) == (0, 0, 0), c.report()
    assert float(E) == pytest.approx(E_host, rel=1e-12)
    np.testing.assert_allclose(dF.get(), dF_host, rtol=1e-12)
    assert dF.transpose(0, 2, 3, 1)[0].flags.c_contiguous  # channels last, as F


# --- the command line with --device gpu ------------------------------------------------------


@pytest.fixture()
def small(tmp_path):
    weights = tmp_path / "w.npz"
    refstyle.save_npz(refstyle.generate_weights("vgg19", widths=(3, 4, 4, 4, 4), seed=2), weights)
    paths = {}
    for name, shape in [("photo", (20, 26)), ("art", (24, 24))]:
        paths[name] = str(tmp_path / f"{name}.png")
        Image.fromarray(rng.integers(0, 256, shape + (3,)).astype(np.uint8)).save(paths[name])
    return dict(paths, weights=str(weights), dir=tmp_path)


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def meta(path):
    with Image.open(path) as im:
        return json.loads(im.text["refstyle"])


def losses(path):
    with open(os.path.splitext(path)[0] + ".losses.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@pytest.mark.parametrize("optimizer", [None, "lbfgs", "lbfgs-xp", "gd", "adam"])
def test_transfer_on_the_device_with_every_optimizer(gpu, small, capsys, optimizer):
    out = small["dir"] / f"{optimizer}.png"
    extra = [] if optimizer is None else ["--optimizer", optimizer]
    status, _, err = run(capsys, "transfer", small["photo"], small["art"], "--weights", small["weights"], "-o", out,
                         "--size", 26, "--iters", 4, "--device", "gpu", *extra)
    assert status == 0, err
    m = meta(out)
    assert m["device"] == "gpu"
    assert m["settings"]["optimizer"] == (optimizer or "lbfgs-xp")  # the device's default optimiser
    assert m["kernels"] == "reference"  # and kernels
    trace = losses(out)
    assert len(trace) == 4 and min(trace[1:]) < trace[0]


def test_the_device_gives_the_cpus_numbers(gpu, small, capsys):
    runs = {}
    for device in ("cpu", "gpu"):
        out = small["dir"] / f"{device}.png"
        status, _, err = run(capsys, "transfer", small["photo"], small["art"], "--weights", small["weights"], "-o", out,
                             "--size", 26, "--iters", 5, "--device", device, "--optimizer", "lbfgs-xp",
                             "--kernels", "fast", "--dtype", "float64")
        assert status == 0, err
        runs[device] = losses(out)
    assert runs["gpu"] == pytest.approx(runs["cpu"], rel=1e-9)


@pytest.mark.parametrize("what, extra", [("content", ["--layer", "conv2_1"]), ("style", ["--layers", "conv1_1,conv2_1"])])
def test_reconstruct_on_the_device(gpu, small, capsys, what, extra):
    out = small["dir"] / f"{what}.png"
    status, _, err = run(capsys, "reconstruct", what, small["photo"], *extra, "--weights", small["weights"], "-o", out,
                         "--size", 26, "--iters", 3, "--device", "gpu")
    assert status == 0, err
    assert meta(out)["device"] == "gpu" and losses(out)[-1] < losses(out)[0]


def test_figure_on_the_device(gpu, small, capsys):
    grid = small["dir"] / "grid.json"
    grid.write_text(json.dumps({
        "title": "device", "defaults": {"kind": "transfer", "content": "photo.png", "styles": ["art.png"]},
        "rows": [{"label": "conv1_1", "style_layers": ["conv1_1"]}],
        "columns": [{"label": "1e-3", "ratio": 1e-3}, {"label": "texture", "kind": "style"}],
    }))
    out = small["dir"] / "grid.png"
    status, stdout, err = run(capsys, "figure", grid, "-o", out, "--weights", small["weights"], "--images", small["dir"],
                              "--size", 24, "--iters", 3, "--cache", small["dir"] / "cells", "--device", "gpu")
    assert status == 0, err
    assert "2 cells computed" in stdout
    with Image.open(out) as im:
        assert im.width > 100


def test_no_gpu_is_one_clear_line(small, capsys, monkeypatch):
    from refstyle import backend

    if backend.have_gpu():
        pytest.skip("a GPU is present")
    status, _, err = run(capsys, "transfer", small["photo"], small["art"], "--weights", small["weights"],
                         "-o", small["dir"] / "o.png", "--size", 26, "--iters", 2, "--device", "gpu")
    assert status == 1 and err.count("\n") == 1 and "--device gpu needs CuPy" in err
    assert not os.path.exists(small["dir"] / "o.png")


def test_lbfgs_xp_keeps_its_two_loop_recursion_on_the_device(gpu):
    """The line search reads a few scalars per iteration; the 2m dot products of the recursion stay on the device."""
    from refstyle.paper.lbfgs import lbfgs_xp

    a = gpu.asarray(rng.uniform(1, 10, (1, 3, 8, 8)))

    def quadratic(x):
        return 0.5 * (a * x * x).sum(), a * x

    x0 = gpu.asarray(rng.standard_normal((1, 3, 8, 8)))
    per_iteration = {}
    for m in (5, 20):
        with gpu.counting() as c:
            result = lbfgs_xp(quadratic, x0, 30, maxcor=m)
        assert result.iterations == 30 and type(result.x) is gpu.ndarray
        per_iteration[m] = c.syncs / result.iterations
    assert per_iteration[20] <= 10  # with the recursion's dots read back it was over 40
    assert per_iteration[20] - per_iteration[5] < 1
