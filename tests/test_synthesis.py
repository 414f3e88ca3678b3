"""Synthesis end to end: ``refstyle transfer`` and ``refstyle reconstruct``, their outputs and errors."""

import csv
import re
import warnings
import json
import os

import numpy as np
import pytest
from conftest import shared_path
from PIL import Image

import refstyle
from refstyle.app.cli import main
from refstyle.paper.objective import Objective
from refstyle.paper.optimize import adam, gradient_descent, lbfgs

rng = np.random.default_rng(11)


def real_weights():
    return str(shared_path("weights", "vgg16_hed_bsds500.caffemodel"))


def image(name):
    return str(shared_path("images", name))


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def leftovers(folder):
    """Temporary files an interrupted or failed write might leave behind."""
    return [f for f in os.listdir(folder) if f.endswith(".part")]


def png_meta(path):
    with Image.open(path) as im:
        return json.loads(im.text["refstyle"])


def test_transfer_with_real_weights_lowers_the_loss_tenfold(tmp_path, capsys):
    out = tmp_path / "t.png"
    status, stdout, err = run(
        capsys, "transfer", image("tubingen.jpg"), image("starry_night.jpg"), "--weights", real_weights(),
        "--size", 40, "--iters", 30, "-o", out,
    )
    assert status == 0, err
    assert f"wrote {out}" in stdout and "t.losses.csv" in stdout
    assert "it/s" in err  # the progress line
    with Image.open(out) as im:
        assert im.size == (40, 30) and im.mode == "RGB"
    with open(tmp_path / "t.losses.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 30 and int(rows[-1]["iteration"]) == 30
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    assert last < first / 10, (first, last)
    meta = png_meta(out)
    assert meta["iterations"] == 30 and meta["evaluations"] >= 30 and meta["arch"] == "vgg16"
    assert meta["weights_sha256"] == "33327b9549f4ff50b8c2e01fc8919b6c187a79045743425e4adb0f27f6672ffa"
    assert meta["settings"]["seed"] == 0 and meta["settings"]["alpha"] == 1e-3 and meta["refstyle"] == refstyle.__version__
    assert meta["loss"] == pytest.approx(min(float(r["loss"]) for r in rows), rel=1e-6)


def test_content_reconstruction_from_conv2_1_is_close(tmp_path):
    """The paper's Fig. 1 (content): white noise optimised to match P^{conv2_1} of the photograph."""
    net = refstyle.VGG(refstyle.load_weights(real_weights()), pooling="avg", dtype="float32")
    photo = refstyle.resize_longer(refstyle.load_image(image("tubingen.jpg")), 32)
    settings = refstyle.Settings(content_layers=("conv2_1",), alpha=1.0, beta=0.0, size=32, iters=150)
    result = refstyle.synthesize(net, photo, [], settings)
    F, _ = net.forward(result.x, ["conv2_1"])
    P, _ = net.forward(refstyle.preprocess(photo), ["conv2_1"])
    start, _ = net.forward(refstyle.paper.images.white_noise(photo.shape[:2], 0), ["conv2_1"])
    error = np.linalg.norm(F["conv2_1"] - P["conv2_1"]) / np.linalg.norm(P["conv2_1"])
    noise_error = np.linalg.norm(start["conv2_1"] - P["conv2_1"]) / np.linalg.norm(P["conv2_1"])
    assert error < 0.05 and noise_error > 0.5, (error, noise_error)


@pytest.fixture()
def small(tmp_path):
    """Small generated VGG19 weights and random images: fast command-line runs."""
    weights = tmp_path / "small.npz"
    refstyle.save_npz(refstyle.generate_weights("vgg19", widths=(4, 4, 6, 6, 6), seed=3), weights)
    paths = {"weights": str(weights)}
    for name, shape in [("photo", (24, 32)), ("art", (30, 30)), ("tiny", (8, 8))]:
        path = tmp_path / f"{name}.png"
        Image.fromarray(rng.integers(0, 256, shape + (3,)).astype(np.uint8)).save(path)
        paths[name] = str(path)
    return paths


def transfer(capsys, small, out, *extra):
    return run(capsys, "transfer", small["photo"], small["art"], "--weights", small["weights"], "--size", 32,
               "--iters", 5, "-o", out, *extra)


def test_same_seed_same_bytes(small, tmp_path, capsys):
    outs = [tmp_path / f"{name}.png" for name in ("a", "b", "c")]
    assert transfer(capsys, small, outs[0], "--seed", 7)[0] == 0
    assert transfer(capsys, small, outs[1], "--seed", 7)[0] == 0
    assert transfer(capsys, small, outs[2], "--seed", 8)[0] == 0
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert outs[0].read_bytes() != outs[2].read_bytes()


def test_options_reach_the_run(small, tmp_path, capsys):
    out = tmp_path / "o.png"
    status, _, err = transfer(
        capsys, small, out, "--ratio", "1e-2", "--style-layers", "conv1_1,conv2_1", "--layer-weights", "0.5,2",
        "--scales", 2, "--save-every", 2, "--init", "content", "--tv-weight", "1e-3", "--preserve-color",
    )
    assert status == 0, err
    s = png_meta(out)["settings"]
    assert (s["alpha"], s["beta"], s["scales"], s["init"]) == (1e-2, 1.0, 2, "content")
    assert s["style_layers"] == ["conv1_1", "conv2_1"] and s["layer_weights"] == {"conv1_1": 0.5, "conv2_1": 2.0}
    snapshots = sorted(f for f in os.listdir(tmp_path) if f.startswith("o.0"))
    assert snapshots == ["o.00002.png", "o.00004.png", "o.00006.png", "o.00008.png", "o.00010.png"]


@pytest.mark.parametrize("optimizer, extra", [("gd", ["--lr", "1e-3"]), ("adam", ["--lr", "1"]),
                                              ("lbfgs-xp", ["--maxcor", "7"])])
def test_other_optimizers_run_from_the_command_line(small, tmp_path, capsys, optimizer, extra):
    out = tmp_path / "o.png"
    status, stdout, err = transfer(capsys, small, out, "--optimizer", optimizer, *extra)
    assert status == 0, err
    settings = png_meta(out)["settings"]
    assert settings["optimizer"] == optimizer
    if optimizer == "lbfgs-xp":
        assert settings["optimizer_options"] == {"maxcor": 7} and settings["bounds"] is False  # it has none


def test_reconstructions_from_the_command_line(small, tmp_path, capsys):
    out = tmp_path / "c.png"
    status, _, err = run(capsys, "reconstruct", "content", small["photo"], "--layer", "conv2_1", "--weights",
                         small["weights"], "--size", 24, "--iters", 5, "-o", out)
    assert status == 0, err
    assert png_meta(out)["settings"]["beta"] == 0.0
    out = tmp_path / "s.png"
    status, _, err = run(capsys, "reconstruct", "style", small["art"], "--layers", "conv1_1,conv2_1,conv3_1",
                         "--weights", small["weights"], "--size", 24, "--iters", 5, "-o", out)
    assert status == 0, err
    meta = png_meta(out)
    assert meta["settings"]["alpha"] == 0.0 and meta["settings"]["style_layers"] == ["conv1_1", "conv2_1", "conv3_1"]
    with Image.open(out) as im:
        assert im.size == (24, 24)


# (a value out of its option's range is a usage error, exit 2: tests/test_bad_input.py)
ERRORS = [
    (["--weights", "missing.npz"], "no such weights file"),
    (["--arch", "vgg16"], "'conv3_4' that vgg16 lacks"),
    (["--style-layers", "conv1_1,conv9_9"], "no layer 'conv9_9'"),
    (["--content-layers", "fc7"], "no layer 'fc7'"),
    (["--size", 8], "too small for conv5_1"),
    (["--layer-weights", "1,2"], "--layer-weights has 2 values for 5 style layers"),
    (["--ratio", "1e-3", "--alpha", "1"], "either --ratio or --alpha/--beta"),
    (["--optimizer", "gd", "--lr", "1e30"], r"the loss became (inf|nan) at iteration \d+"),
    (["--init", "nothere.png"], "nothere.png: no such image file"),
    (["--lr", "0.1"], "--lr is the step size of gd and adam"),
    (["--optimizer", "adam", "--maxcor", "5"], "--maxcor is an option of lbfgs, not of adam"),
    (["--optimizer", "gd", "--no-bounds"], "--no-bounds is an option of lbfgs"),
    (["--optimizer", "lbfgs-xp", "--lr", "1"], "--lr is the step size of gd and adam"),
    (["--size", 40, "--scales", 4], "too small for conv5_1.*coarsest of --scales 4; use fewer --scales"),
]


@pytest.mark.parametrize("extra, message", ERRORS, ids=[e[1][:24] for e in ERRORS])
def test_user_errors_exit_1_with_one_line_and_no_file(small, tmp_path, capsys, extra, message):
    out = tmp_path / "o.png"
    argv = ["transfer", small["photo"], small["art"], "--weights", small["weights"], "--size", 32, "--iters", 5,
            "-o", out]
    # a later option wins over the default --weights/--size given first
    status, stdout, err = run(capsys, *argv, *extra)
    assert status == 1, (stdout, err)
    errors = [line for line in err.splitlines() if line.startswith("refstyle: error: ")]
    assert len(errors) == 1 and err.endswith(errors[0] + "\n") and "Traceback" not in err, err
    assert re.search(message, errors[0]), err
    assert not out.exists() and not (tmp_path / "o.losses.csv").exists() and not leftovers(tmp_path)


def test_reconstruction_options_and_errors(small, tmp_path, capsys):
    out = tmp_path / "r.png"
    base = ["--weights", small["weights"], "--size", 24, "--iters", 3, "-o", out]
    status, _, err = run(capsys, "reconstruct", "content", small["photo"], "--layer", "conv2_1", "--alpha", 2, *base)
    assert status == 0, err
    assert (png_meta(out)["settings"]["alpha"], png_meta(out)["settings"]["beta"]) == (2.0, 0.0)
    out.unlink()
    (tmp_path / "r.losses.csv").unlink()
    for argv, message in [
        (["content", small["photo"], "--layer", "conv2_1", "--ratio", "1e-3"], "one loss term"),
        (["style", small["art"], "--layers", "conv1_1", "--alpha", "1"], "one loss term"),
        (["style", small["art"], "--layers", "conv1_1", "--init", "content"], "--init content starts from the photograph"),
        (["content", small["photo"], "--layer", "conv2_1", "--init", "style"], "--init style starts from the artwork"),
    ]:
        status, _, err = run(capsys, "reconstruct", *argv, *base)
        assert status == 1 and message in err and "Traceback" not in err, err
        assert not out.exists() and not leftovers(tmp_path)


def test_every_output_is_checked_before_the_run(small, tmp_path, capsys):
    """A folder named like the output, or an existing log or snapshot, stops the run before it starts."""
    folder = tmp_path / "dir.png"
    folder.mkdir()
    status, _, err = transfer(capsys, small, folder, "--force")
    assert status == 1 and "is a folder" in err
    out = tmp_path / "o.png"
    (tmp_path / "o.losses.csv").write_text("precious")
    status, _, err = transfer(capsys, small, out)
    assert status == 1 and "o.losses.csv exists" in err and not out.exists()
    (tmp_path / "o.losses.csv").unlink()
    (tmp_path / "o.00004.png").write_text("precious")
    status, _, err = transfer(capsys, small, out, "--save-every", 2)
    assert status == 1 and "o.00004.png exists" in err and not out.exists()
    assert transfer(capsys, small, out, "--save-every", 2, "--force")[0] == 0
    assert (tmp_path / "o.00004.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_inputs(small, tmp_path, capsys):
    out = tmp_path / "o.png"
    notimage = tmp_path / "notes.png"
    notimage.write_text("not an image")
    for content, style, message in [
        (tmp_path / "none.jpg", small["art"], "none.jpg: no such image file"),
        (notimage, small["art"], "not an image that Pillow can read"),
        (small["photo"], tmp_path, "is a folder, not an image"),
        (small["photo"], "skimage:no_such_picture", "has no image 'no_such_picture'|come with scikit-image"),
    ]:
        status, _, err = run(capsys, "transfer", content, style, "--weights", small["weights"], "--size", 32, "-o", out)
        assert status == 1 and err.count("\n") == 1 and "Traceback" not in err, err
        assert re.search(message, err), err
    # an artwork too small for the deepest style layer, after sizing with --style-scale
    status, _, err = run(capsys, "transfer", small["photo"], small["art"], "--weights", small["weights"], "--size", 32,
                         "--style-scale", "0.25", "-o", out)
    assert status == 1 and "the artwork is 8×8 pixels, too small for conv5_1" in err
    assert not out.exists() and not leftovers(tmp_path)


def test_bad_option_values_exit_2(small, tmp_path, capsys):
    for extra in (["--iters", "0"], ["--size", "big"], ["--pooling", "min"], ["--optimizer", "sgd"]):
        with pytest.raises(SystemExit) as e:
            main(["transfer", small["photo"], small["art"], "--weights", small["weights"], "-o", str(tmp_path / "o.png"),
                  *extra])
        assert e.value.code == 2
    assert not (tmp_path / "o.png").exists()


def test_an_existing_output_is_kept_without_force(small, tmp_path, capsys):
    out = tmp_path / "keep.png"
    out.write_bytes(b"precious")
    status, _, err = transfer(capsys, small, out)
    assert status == 1 and "--force" in err and out.read_bytes() == b"precious"
    assert transfer(capsys, small, out, "--force")[0] == 0
    with Image.open(out) as im:
        assert im.size == (32, 24)


def test_ctrl_c_writes_the_best_image_so_far(small, tmp_path, capsys, monkeypatch):
    calls = [0]
    evaluate = Objective.evaluate

    def interrupted_on_the_sixth_call(self, x):
        calls[0] += 1
        if calls[0] == 6:
            raise KeyboardInterrupt
        return evaluate(self, x)

    monkeypatch.setattr(Objective, "evaluate", interrupted_on_the_sixth_call)
    out = tmp_path / "o.png"
    status, stdout, err = transfer(capsys, small, out, "--iters", 50)
    assert status == 130, err
    assert "interrupted after" in stdout and "best image so far" in stdout
    meta = png_meta(out)
    assert meta["interrupted"] is True and 1 <= meta["iterations"] < 50 and meta["evaluations"] == 5
    with open(tmp_path / "o.losses.csv") as f:
        assert len(list(csv.DictReader(f))) == meta["iterations"]
    assert not leftovers(tmp_path)


def test_ctrl_c_before_any_image_writes_nothing(small, tmp_path, capsys, monkeypatch):
    def interrupted(self, x):
        raise KeyboardInterrupt

    monkeypatch.setattr(Objective, "evaluate", interrupted)
    out = tmp_path / "o.png"
    status, stdout, err = transfer(capsys, small, out)
    assert status == 130 and "interrupted" in err
    assert not out.exists() and not leftovers(tmp_path)


def test_optimisers_keep_the_best_image_and_count_evaluations():
    """A quadratic bowl: every optimiser descends, and the returned x has the lowest loss seen."""
    target = np.linspace(-1, 1, 12).reshape(1, 3, 2, 2)

    def evaluate(x):
        d = x - target
        return 0.5 * float((d * d).sum()), d

    x0 = np.zeros_like(target)
    r = lbfgs(evaluate, x0, iters=20)
    assert r.loss < 1e-12 and r.evaluations >= r.iterations and not r.interrupted
    np.testing.assert_allclose(r.x, target, atol=1e-6)
    r = lbfgs(evaluate, x0, iters=20, bounds=(-0.5, 0.5))
    np.testing.assert_allclose(r.x, np.clip(target, -0.5, 0.5), atol=1e-6)
    r = gradient_descent(evaluate, x0, iters=100, lr=0.5, rtol=1e-3)
    assert r.iterations < 100 and "relative loss change" in r.message
    assert r.loss == min(r.history)
    r = gradient_descent(evaluate, x0, iters=3, lr=2.5)  # diverging: the best is the start
    assert r.loss == pytest.approx(evaluate(x0)[0]) and np.array_equal(r.x, x0)


def test_transfer_is_reproducible_through_the_api():
    """Two runs of synthesize with one seed give the same array; the white-noise start is seeded."""
    net = refstyle.VGG(refstyle.generate_weights("vgg19", widths=(3, 3, 4, 4, 4), seed=2, dtype="float32"))
    photo = rng.integers(0, 256, (20, 26, 3)).astype(np.uint8)
    art = rng.integers(0, 256, (26, 26, 3)).astype(np.uint8)
    settings = refstyle.Settings(size=26, iters=4)
    a = refstyle.synthesize(net, photo, [art], settings)
    b = refstyle.synthesize(net, photo, [art], settings)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.x.shape == (1, 3, 20, 26) and a.results[0].iterations == 4


def _tiny_problem(seed=2):
    net = refstyle.VGG(refstyle.generate_weights("vgg19", widths=(3, 3, 4, 4, 4), seed=seed, dtype="float64"))
    photo = rng.integers(0, 256, (27, 36, 3)).astype(np.uint8)
    art = rng.integers(0, 256, (36, 36, 3)).astype(np.uint8)
    return net, photo, art


@pytest.mark.parametrize("optimizer, options", [("gd", {"lr": 0.1}), ("adam", {"lr": 10.0})])
def test_gd_and_adam_lower_the_loss(optimizer, options):
    net, photo, art = _tiny_problem()
    settings = refstyle.Settings(size=36, iters=15, optimizer=optimizer, optimizer_options=options)
    history = refstyle.synthesize(net, photo, [art], settings).results[0].history
    assert len(history) == 15 and history[-1] < 0.5 * history[0], history


@pytest.mark.parametrize("optimizer, options", [(gradient_descent, {"lr": 0.3}), (adam, {"lr": 0.3}), (lbfgs, {})])
def test_each_step_reports_an_image_with_its_own_loss(optimizer, options):
    """Each Step's x is the image that has its loss, and stays so after the optimiser moves on."""
    target = np.linspace(-1, 1, 12).reshape(1, 3, 2, 2)

    def evaluate(x):
        return 0.5 * float(((x - target) ** 2).sum()), x - target

    steps = []
    optimizer(evaluate, np.full_like(target, 0.3), iters=5, callback=lambda step: steps.append((step.loss, step.x)), **options)
    assert len(steps) >= 3 and steps[-1][0] < steps[0][0]
    for loss, x in steps:
        assert evaluate(x)[0] == loss


def test_preserve_color_keeps_the_photographs_chroma():
    from refstyle.paper.synthesis import preserve_color

    result = rng.random((6, 5, 3)) * 255
    photo = rng.integers(0, 256, (6, 5, 3)).astype(np.uint8)
    out = preserve_color(result, photo)
    yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    np.testing.assert_allclose(out @ yiq[0], result @ yiq[0], atol=1e-9)  # the result's luminance
    np.testing.assert_allclose(out @ yiq[1:].T, photo.astype(float) @ yiq[1:].T, atol=1e-9)  # the photo's chroma
    net, photo, art = _tiny_problem()
    plain = refstyle.synthesize(net, photo, [art], refstyle.Settings(size=36, iters=3))
    kept = refstyle.synthesize(net, photo, [art], refstyle.Settings(size=36, iters=3, preserve_color=True))
    np.testing.assert_array_equal(plain.x, kept.x)
    np.testing.assert_allclose(kept.rgb, preserve_color(plain.rgb, plain.photo), atol=1e-12)


def test_two_scales_run_coarse_then_fine():
    from refstyle.paper.synthesis import scale_sizes

    assert scale_sizes(26, 2) == [13, 26] and scale_sizes(25, 2) == [13, 25] and scale_sizes(100, 3) == [25, 50, 100]
    net, photo, art = _tiny_problem()
    sizes = []
    layers = {"content_layers": ("conv3_1",), "style_layers": ("conv1_1", "conv2_1", "conv3_1")}
    one = refstyle.synthesize(net, photo, [art], refstyle.Settings(size=36, iters=4, **layers))
    two = refstyle.synthesize(net, photo, [art], refstyle.Settings(size=36, iters=4, scales=2, **layers),
                              on_scale=lambda k, shape: sizes.append(shape))
    assert sizes == [(14, 18), (27, 36)] and len(two.results) == 2 and two.x.shape == one.x.shape
    assert np.abs(two.x - one.x).max() > 1.0


def test_transfer_kernels_fast_by_default_and_reference_on_request(small, tmp_path, capsys):
    """The command line runs the fast kernels; --kernels reference the readable ones: the same losses to rounding."""
    runs = {}
    for kernels in ("fast", "reference"):
        out = tmp_path / f"{kernels}.png"
        extra = [] if kernels == "fast" else ["--kernels", "reference"]
        status, _, err = transfer(capsys, small, out, "--iters", 3, *extra)
        assert status == 0, err
        assert png_meta(out)["kernels"] == kernels
        with open(tmp_path / f"{kernels}.losses.csv") as f:
            runs[kernels] = [float(r["loss"]) for r in csv.DictReader(f)]
    assert runs["fast"][0] == pytest.approx(runs["reference"][0], rel=1e-5)


def test_a_run_that_stops_before_its_iterations_says_so():
    """ftol = gtol = 0: only the iteration cap should end L-BFGS. Started at the photograph with the
    content term alone, the gradient is 0 and L-BFGS-B stops at once: a warning names the stop and why."""
    net, photo, art = _tiny_problem()
    settings = refstyle.Settings(size=36, iters=5, init="content", beta=0.0)
    with pytest.warns(refstyle.RefstyleWarning, match=r"lbfgs stopped after 0 of 5 iterations: .*GRADIENT"):
        result = refstyle.synthesize(net, photo, [art], settings)
    assert result.results[0].loss == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a run that reaches its cap warns nothing, nor one stopped by a tolerance asked for
        refstyle.synthesize(net, photo, [art], refstyle.Settings(size=36, iters=3))
        stopped = refstyle.synthesize(net, photo, [art], settings._replace(optimizer_options={"gtol": 1e-3}))
    assert stopped.results[0].iterations == 0


def test_float32_losses_are_summed_in_float64():
    """A float32 loss summed in float32 carries ~1e-7 of itself in rounding, more than L-BFGS's first
    step changes a style loss at the white noise at 256 px (its line search then fails at once)."""
    from refstyle.paper.losses import content_loss, style_loss

    F = rng.random((1, 64, 128, 128)).astype(np.float32)
    P = rng.random((1, 64, 128, 128)).astype(np.float32)
    d = F - P
    assert content_loss(F, P)[0] == pytest.approx(0.5 * (d * d).astype(np.float64).sum(), rel=1e-12, abs=0)
    A = (rng.random((64, 64)) * 1e3).astype(np.float32)
    Fm = F.reshape(64, -1)
    D = Fm @ Fm.T - A
    expected = (D * D).astype(np.float64).sum() / (4 * 64**2 * (128 * 128) ** 2)
    assert style_loss(F, A)[0] == pytest.approx(expected, rel=1e-12, abs=0)
