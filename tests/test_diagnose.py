"""``refstyle diagnose``: each implementation's rewrite (``tests/peers.py``) is read back to its record from its numbers.

THEIRS is what a user of that implementation would write: its ``x``, loss and gradient in
its own image space, and (``with_F``) the responses it tapped, under refstyle's names for
them. ``diagnose`` must name the built-in record, write one that ``refstyle grad`` then
reproduces to 1e-6 under ``compare``, and, for a rewrite changed in one place, say that
place in words.
"""

import functools
import json
import re

import numpy as np
import pytest
from conftest import ROOT, require_torch
from PIL import Image

import peers
from refstyle.app.cli import main
from refstyle.nn.inputs import CAFFE_INPUT, LUA_INPUT, RGB01_INPUT
from refstyle.paper.conventions import CONVENTIONS, get_convention, tap_of
from test_reproduce import WIDTHS, caffe_weights_file, float32_layers, images, keras_weights_file, run_grad

SHAPE = (32, 32)
ODD = (37, 35)


def write_theirs(path, x, loss, grad, space, responses=None, convention=None):
    """THEIRS as a user writes it: x, loss, grad in the implementation's space; responses under refstyle's tap names."""
    arrays = {"x": x, "loss": np.float64(loss), "grad": grad, "loss_content": np.nan, "loss_style": np.nan}
    if space is not None:
        arrays["image"] = np.array(json.dumps(space))
    for name, F in (responses or {}).items():
        tap = tap_of(convention, name, "vgg19") if convention is not None else name
        arrays[f"F:{tap}"] = np.asarray(F, np.float64)
    np.savez(path, **arrays)
    return path


class Case:
    """One implementation: its weights file (and stated input), its image space and one evaluation of its peer."""

    def __init__(self, tmp_path, name, shape=SHAPE, seed=11, narrow_art=False, **peer_options):
        torch = require_torch()
        self.name, self.tmp_path = name, tmp_path
        photo, art, start, rng = images(shape, seed)
        if narrow_art:  # an artwork of another size than x: the Gram divisor's M_l can be told
            art = art[:, : shape[1] - 8]
        layers = float32_layers(rng)
        self.extra = []
        noise = rng.standard_normal((1, 3) + shape)
        if name in ("neural-style-pt", "neural-style-pt-x256"):
            state = peers.neural_style_pt_state_dict(layers)
            self.weights = tmp_path / "vgg19-d01eb7cb.pth"
            peers.save_state_dict(torch, state, self.weights)
            self.extra = ["--weights-input", "caffe"]
            scale = peer_options.pop("scale", 255 if name == "neural-style-pt" else 256)
            space, self.space = functools.partial(peers.neural_style_pt_image_space, scale=scale), (
                CAFFE_INPUT if scale == 255 else LUA_INPUT)
            run = lambda p, a, x, d: peers.neural_style_pt(torch, state, p, [a], x, diagnostics=d, **peer_options)  # noqa: E731
        elif name == "neural-style":
            self.weights = caffe_weights_file(tmp_path, layers)
            space, self.space = peers.neural_style_lua_image_space, LUA_INPUT
            state = peers.neural_style_lua_state_dict(layers)
            run = lambda p, a, x, d: peers.neural_style_lua(torch, state, p, [a], x, diagnostics=d, **peer_options)  # noqa: E731
        elif name == "pytorch-tutorial":
            state = peers.pytorch_tutorial_state_dict(layers)
            self.weights = tmp_path / "vgg19_features.pth"
            peers.save_state_dict(torch, state, self.weights)
            self.extra = ["--weights-input", "torchvision"]
            space, self.space = peers.pytorch_tutorial_image_space, RGB01_INPUT
            noise = 0.05 * noise
            run = lambda p, a, x, d: peers.pytorch_tutorial(torch, state, p, a, x, diagnostics=d, **peer_options)  # noqa: E731
        elif name == "gatys-pytorch":
            state = peers.gatys_pytorch_state_dict(layers)
            self.weights = tmp_path / "vgg_conv.pth"
            peers.save_state_dict(torch, state, self.weights)
            space, self.space = peers.gatys_pytorch_image_space, CAFFE_INPUT
            peer_options.setdefault("style_weights", tuple(1e3 / n**2 for n in WIDTHS))
            run = lambda p, a, x, d: peers.gatys_pytorch(torch, state, p, [a], x, diagnostics=d, **peer_options)  # noqa: E731
        elif name == "tf-tutorial":
            art = art[:, : shape[1] - 8]  # the style image keeps its own size: the Gram divisor M_l can be told
            self.weights = keras_weights_file(tmp_path, layers)
            space, self.space = peers.tf_tutorial_image_space, RGB01_INPUT
            noise = 0.05 * noise
            run = lambda p, a, x, d: peers.tf_tutorial(torch, layers, p, a, x, diagnostics=d, **peer_options)  # noqa: E731
        elif name == "keras-example":
            self.weights = keras_weights_file(tmp_path, layers)
            scale = peer_options.pop("scale", 255)
            space = functools.partial(peers.neural_style_pt_image_space, scale=scale)
            self.space = CAFFE_INPUT if scale == 255 else LUA_INPUT
            run = lambda p, a, x, d: peers.keras_example(torch, layers, p, a, x, diagnostics=d, **peer_options)  # noqa: E731
        elif name == "paper":
            self.weights = caffe_weights_file(tmp_path, layers)
            space, self.space = peers.paper_image_space, CAFFE_INPUT
            run = lambda p, a, x, d: peers.paper(torch, layers, p, a, x, diagnostics=d, **peer_options)  # noqa: E731
        elif name == "anishathalye":
            from test_matconvnet import write_mat

            mean = (123.0, 117.0, 104.0)
            self.weights = tmp_path / "imagenet-vgg-verydeep-19.mat"
            write_mat(self.weights, {k: (W.astype(np.float32), b.astype(np.float32)) for k, (W, b) in layers.items()},
                      layout="meta.normalization", average=np.ones((4, 4, 3)) * np.array(mean))
            F = {k: W.transpose(2, 3, 1, 0) for k, (W, _) in layers.items()}
            F["conv1_1"] = F["conv1_1"][:, :, ::-1, :]
            theirs = {k: peers.anishathalye_conv_from_mat(F[k], b) for k, (_, b) in layers.items()}
            space = functools.partial(peers.anishathalye_image_space, mean_pixel=mean)
            self.space = {"channels": "RGB", "range": [0, 255], "mean": list(mean)}
            run = lambda p, a, x, d: peers.anishathalye(torch, theirs, p, [a], x, diagnostics=d, **peer_options)  # noqa: E731
        else:
            raise ValueError(name)
        x = space(start) + noise
        if self.space is RGB01_INPUT:
            x = np.clip(x, 0, 1)
        self.photo, self.art, self.x = photo, art, x
        self.diagnostics = {}
        self.loss, self.grad = run(space(photo), space(art), x, self.diagnostics)

    def theirs(self, with_F, stated=True, convention=None):
        return write_theirs(self.tmp_path / ("theirs-F.npz" if with_F else "theirs.npz"), self.x, self.loss, self.grad,
                            self.space if stated else None, self.diagnostics["responses"] if with_F else None,
                            get_convention(convention or self.name))


def diagnose(case, theirs, capsys, *extra):
    from PIL import Image

    for name, rgb in (("photo", case.photo), ("art", case.art)):
        Image.fromarray(rgb).save(case.tmp_path / f"{name}.png")
    fitted = case.tmp_path / "fitted.json"
    status = main(["diagnose", str(theirs), str(case.tmp_path / "photo.png"), str(case.tmp_path / "art.png"),
                   "--weights", str(case.weights), *case.extra, "-o", str(fitted), "--force", *extra])
    out, err = capsys.readouterr()
    return status, out, without_progress(err), fitted


def without_progress(err):
    """stderr without diagnose's progress lines (``diagnose: networks [...]``, ``diagnose: fits [...]``)."""
    return "".join(line for line in err.splitlines(keepends=True) if not line.startswith("diagnose: "))


def reproduces(case, theirs, fitted, capsys):
    """refstyle grad with the fitted record, then compare against THEIRS at 1e-6."""
    run_grad(case.tmp_path, capsys, case.weights, str(fitted), case.photo, case.art, case.x, *case.extra, "--force")
    status = main(["compare", str(case.tmp_path / f"{fitted}.npz"), str(theirs), "--tol", "1e-6"])
    out, _ = capsys.readouterr()
    assert status == 0, out


BUILT_IN = list(CONVENTIONS)  # every built-in record has its rewrite in Case (an unknown name is a ValueError there)


@pytest.mark.parametrize("with_F", [True, False], ids=["responses", "loss-and-grad"])
@pytest.mark.parametrize("name", BUILT_IN)
def test_each_rewrite_is_diagnosed_as_its_record(tmp_path, capsys, name, with_F):
    case = Case(tmp_path, name)
    theirs = case.theirs(with_F)
    status, out, err, fitted = diagnose(case, theirs, capsys)
    assert status == 0 and not err, out + err
    assert f"THEIRS is {name}: the built-in record reproduces it" in out, out
    loss_error, grad_error = map(float, re.search(r"^fit: the loss to (\S+), the gradient to (\S+) ", out, re.M).groups())
    assert loss_error <= 1e-6 and grad_error <= 1e-6, out
    # tf-tutorial's artwork is narrower than x: its Gram divisor M_l is decided; the others' is not, and is said so
    assert ("cannot decide: the Gram divisor's dependence on M_l" in out) == (name != "tf-tutorial"), out
    record = json.loads(fitted.read_text())
    assert record["name"] == f"{name}-fitted" and record["differences"] == []
    reproduces(case, theirs, fitted, capsys)


PERTURBED = [  # (the rewrite, changed in one place), the shape, with its responses, what diagnose must say
    (("paper", {"layer_weights": (1.0, 3.0, 5.0, 9.0, 13.0)}), SHAPE, True,
     "style weights ∝ 1 : 3 : 5 : 9 : 13, where paper has equal weights"),
    (("gatys-pytorch", {"style_weights": (1.0, 3.0, 5.0, 9.0, 13.0)}), SHAPE, False,
     "style weights ∝ 1 : 3 : 5 : 9 : 13, where gatys-pytorch has weights 1e3/N^2"),
    (("keras-example", {"scale": 256}), SHAPE, True, "input scaled by 256, not 255"),
    (("neural-style", {"ceil_mode": False}), ODD, False, "pooling floor, not ceil"),
    (("keras-example", {"content_layer": "block4_conv2"}), SHAPE, True, "content at conv4_2, not conv5_2"),
    (("pytorch-tutorial", {"content_layers": ("relu_4",)}), SHAPE, False,
     "content at conv2_2, not conv2_2 before its ReLU"),
    # the Lua code taps a conv output correctly when it is the last layer of its truncated network
    (("neural-style", {"style_layers": ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "conv5_1")}), SHAPE, False,
     "style at conv5_1 before its ReLU, not conv5_1"),
    # -normalize_weights divides each strength by the target's longest side: style by N_l, content (conv4_2) by N = 8
    (("neural-style-pt", {"normalize_weights": True}), SHAPE, True,
     ("content weight α = 0.625, where neural-style-pt has 5", "style divided by N^3, where neural-style-pt divides by N^2")),
    # each Gram matrix over its own M_l, an artwork narrower than x (at conv5_1 it pools to x's M_l all the same)
    (("paper", {"gram_over_M": True, "narrow_art": True}), SHAPE, False,
     "each Gram matrix divided by M_l, where paper divides it by 1"),
    (("neural-style-pt", {"tv_weight": 0.01}), SHAPE, True,
     "total variation l1 × 0.01 in the loss, where neural-style-pt has l1 × 0.001 in the loss"),
]


def readme_example():
    """The lines of README's diagnose example ("Validating another implementation"), but its file names."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Validating another implementation"):]
    start = section.index("```text\n") + len("```text\n")
    lines = section[start: section.index("```", start)].splitlines()
    return [line for line in lines if not line.startswith(("THEIRS = ", "wrote "))]


@pytest.mark.parametrize("rewrite, shape, with_F, words", PERTURBED,
                         ids=["paper-uneven-style-weights", "uneven-style-weights", "x256", "floor", "content-layer", "after-relu", "before-relu",
                              "normalised", "gram-over-M", "tv-weight"])
def test_a_changed_rewrite_is_named_with_its_difference(tmp_path, capsys, rewrite, shape, with_F, words):
    name, options = rewrite
    case = Case(tmp_path, name, shape=shape, **options)
    theirs = case.theirs(with_F)
    status, out, err, fitted = diagnose(case, theirs, capsys)
    assert status == 0 and not err, out + err
    words = (words,) if isinstance(words, str) else words
    said = "".join(f"  - {w}\n" for w in words)
    assert f"THEIRS is {name} with {len(words)} difference{'s' * (len(words) > 1)}:\n{said}" in out, out
    if name == "gatys-pytorch":  # README's example is this diagnosis, word for word and number for number
        assert set(readme_example()) <= set(out.splitlines()), out
    even = shape == SHAPE and not options.get("narrow_art")  # the narrow artwork's 24 columns pool to an odd 3
    assert ("cannot decide: the pooling's rounding: ceil and floor give the same numbers here" in out) == even, out
    reproduces(case, theirs, fitted, capsys)


def refstyle_case(tmp_path, capsys, convention, shape=SHAPE):
    """THEIRS from refstyle grad itself, with F:, dF: and the per-layer terms (the paper's own rewrite is peers.paper)."""
    photo, art, start, rng = images(shape, 12)
    weights = caffe_weights_file(tmp_path, float32_layers(rng))
    x = peers.neural_style_pt_image_space(start) + rng.standard_normal((1, 3) + shape)
    arrays, _ = run_grad(tmp_path, capsys, weights, convention, photo, art, x)
    case = Case.__new__(Case)
    case.tmp_path, case.weights, case.extra, case.photo, case.art, case.x = tmp_path, weights, [], photo, art, x
    return case, arrays


def test_the_paper_with_its_per_layer_gradients(tmp_path, capsys):
    case, arrays = refstyle_case(tmp_path, capsys, "paper", ODD)
    theirs = tmp_path / "theirs.npz"
    np.savez(theirs, **arrays)
    status, out, err, fitted = diagnose(case, theirs, capsys)
    assert status == 0 and not err, out + err
    assert "THEIRS is paper: the built-in record reproduces it" in out and "rounding" not in out  # an odd size decides
    reproduces(case, theirs, fitted, capsys)


def test_a_layer_gradient_nothing_explains_is_named(tmp_path, capsys):
    """dF at conv3_1 doubled: the responses are the paper's, but no combination of terms gives that gradient there."""
    case, arrays = refstyle_case(tmp_path, capsys, "paper")
    arrays = dict(arrays, **{"dF:conv3_1": 2 * arrays["dF:conv3_1"]})
    theirs = tmp_path / "theirs.npz"
    np.savez(theirs, **arrays)
    status, out, err, fitted = diagnose(case, theirs, capsys)
    assert status == 1 and not err and not fitted.exists(), out + err
    assert "nothing fits: the gradient at conv3_1 (dF off by" in out, out
    assert "tried: networks with x in 1 space(s)" in out


def test_the_first_layer_whose_responses_nothing_explains(tmp_path, capsys):
    """Their network differs from conv3_1 on (other weights there): the responses say where."""
    torch = require_torch()
    photo, art, start, rng = images(SHAPE, 13)
    layers = float32_layers(rng)
    state = peers.neural_style_pt_state_dict(layers)
    weights = tmp_path / "vgg19-d01eb7cb.pth"
    peers.save_state_dict(torch, state, weights)
    changed = dict(layers, conv3_1=(layers["conv3_1"][0][::-1].copy(), layers["conv3_1"][1]))
    space = peers.neural_style_pt_image_space
    x = space(start) + rng.standard_normal((1, 3) + SHAPE)
    d = {}
    loss, grad = peers.neural_style_pt(torch, peers.neural_style_pt_state_dict(changed), space(photo), [space(art)], x,
                                       diagnostics=d)
    case = Case.__new__(Case)
    case.tmp_path, case.weights, case.extra, case.photo, case.art, case.x = tmp_path, weights, ["--weights-input", "caffe"], photo, art, x
    theirs = write_theirs(tmp_path / "theirs.npz", x, loss, grad, CAFFE_INPUT, d["responses"], get_convention("neural-style-pt"))
    status, out, err, fitted = diagnose(case, theirs, capsys)
    assert status == 1 and not err and not fitted.exists(), out + err
    assert "nothing fits: the responses are explained up to F:conv2_1, but no network explains F:conv3_1" in out, out
    assert "differ from conv3_1 on" in out and "\ntried: networks with x in 1 space(s), each feed" in out, out


def test_a_loss_and_gradient_that_no_record_gives(tmp_path, capsys):
    """neural-style-pt's -normalize_gradients scales each layer's gradient, not its loss: no record computes that."""
    case = Case(tmp_path, "neural-style-pt", normalize_gradients=True)
    status, out, err, fitted = diagnose(case, case.theirs(False), capsys)
    assert status == 1 and not err and not fitted.exists(), out + err
    assert "nothing fits: no combination of the terms tried gives the file's loss and gradient; the closest" in out, out
    assert "\ntried: networks with x in 1 space(s)" in out and "Gram divided by 1 or M_l" in out, out


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("grad"), "a gradient file needs the keys grad"),
    (lambda a: a.update(grad=a["grad"][:, :, :-1]), "grad has shape (1, 3, 31, 32), x (1, 3, 32, 32)"),
    (lambda a: a["grad"].__setitem__((0, 0, 0, 0), np.nan), "grad holds NaN or infinite values"),
    (lambda a: a.update(loss=np.zeros(2)), "loss must be one number"),
    (lambda a: a.update({"F:conv9_1": np.zeros((1, 4, 2, 2))}), "F:conv9_1 names no convolution of vgg19"),
])
def test_bad_files_are_one_line(tmp_path, capsys, change, message):
    case, arrays = refstyle_case(tmp_path, capsys, "paper")
    arrays = {k: np.array(v) for k, v in arrays.items()}
    change(arrays)
    theirs = tmp_path / "theirs.npz"
    np.savez(theirs, **arrays)
    status, out, err, fitted = diagnose(case, theirs, capsys)
    assert status == 1 and not out and err.count("\n") == 1 and message in err, err


def test_a_file_that_states_no_image_space(tmp_path, capsys):
    """Keras's example on images ×256, its file without the key image: x's numbers are tried in each space."""
    case = Case(tmp_path, "keras-example", scale=256)
    status, out, err, fitted = diagnose(case, case.theirs(True, stated=False), capsys)
    assert status == 0 and not err, out + err
    assert "THEIRS is keras-example with 1 difference:\n  - input scaled by 256, not 255\n" in out, out
    assert "note: the file states no image space" in out and "x's numbers fit BGR 0..256" in out
    assert json.loads(fitted.read_text())["image"] == "lua"


def test_float32_numbers_fit_at_the_tolerance_they_meet(tmp_path, capsys):
    """An implementation in float32: its numbers off by about 1e-5. Not within 1e-6, but within --tol 1e-4."""
    case = Case(tmp_path, "neural-style-pt")
    rng = np.random.default_rng(0)
    case.grad = (case.grad * (1 + 1e-5 * rng.standard_normal(case.grad.shape))).astype(np.float32)
    case.loss = case.loss * (1 + 1e-5)
    theirs = case.theirs(True)
    status, out, err, fitted = diagnose(case, theirs, capsys)
    assert status == 1 and "nothing fits" in out and "THEIRS holds float32 numbers" in out and "--tol 0.0001" in out
    status, out, err, fitted = diagnose(case, theirs, capsys, "--tol", "1e-4")
    assert status == 0 and "THEIRS is neural-style-pt: the built-in record reproduces it" in out, out


def test_the_record_is_written_only_where_asked_and_allowed(tmp_path, capsys):
    case, arrays = refstyle_case(tmp_path, capsys, "paper")
    theirs = tmp_path / "theirs.npz"
    np.savez(theirs, **arrays)
    for name in ("fitted.txt", "fitted.json"):
        (tmp_path / name).write_text("keep")
        status = main(["diagnose", str(theirs), str(tmp_path / "photo.png"), str(tmp_path / "art.png"),
                       "--weights", str(case.weights), "-o", str(tmp_path / name)])
        out, err = capsys.readouterr()
        assert status == 1 and not out and err.count("\n") == 1, err
        assert ("must end in .json" if name.endswith(".txt") else "pass --force") in err
        assert (tmp_path / name).read_text() == "keep"
    assert main(["diagnose", str(theirs), str(tmp_path / "photo.png"), str(tmp_path / "art.png"),
                 "--weights", str(case.weights), "--style-blend", "1,2"]) == 1  # said before any weights are read
    out, err = capsys.readouterr()
    assert not out and err == "refstyle: error: 1 style images but 2 --style-blend weights\n", err
    assert main(["diagnose", str(theirs), str(tmp_path / "photo.png"), str(tmp_path / "art.png"),
                 "--weights", str(case.weights)]) == 0  # no -o: the diagnosis alone
    out, err = capsys.readouterr()
    assert "THEIRS is paper" in out
    # progress on stderr (a line each 5 s off a terminal, and at the end): the networks, then the fits, each to its end
    for what in ("networks", "fits"):
        assert re.search(rf"^diagnose: {what} \[#+\] (\d+)/\1 ", err, re.M), err


def test_a_script_that_does_not_know_its_convention_writes_the_file_with_the_bridge(tmp_path, capsys):
    """The tutorial's script, its responses named by the layers they come from (not knowing they are taken before
    the ReLU), its per-layer gradients from autograd: read back as the tutorial, the taps recognised as pre-ReLU."""
    from test_bridge import TUTORIAL_STYLE, setup, tutorial_evaluation, tutorial_model

    from refstyle.app.bridge import record_responses, write_gradient_file_from_torch

    torch, layers, photo, art, x = setup(tmp_path, SHAPE)
    model = tutorial_model(torch, layers)
    F = record_responses(model, TUTORIAL_STYLE)
    loss, _, _ = tutorial_evaluation(torch, model, photo, art, x, F)
    named = dict(zip(["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"], (F[n] for n in TUTORIAL_STYLE)))
    theirs = tmp_path / "theirs.npz"
    arrays = write_gradient_file_from_torch(theirs, x, named, loss, image="rgb01")
    assert "dF:conv2_2" in arrays
    case = Case.__new__(Case)
    case.tmp_path, case.weights, case.extra = tmp_path, tmp_path / "vgg19_features.pth", ["--weights-input", "torchvision"]
    status = main(["diagnose", str(theirs), str(tmp_path / "photo.png"), str(tmp_path / "art.png"),
                   "--weights", str(case.weights), *case.extra, "-o", str(tmp_path / "fitted.json")])
    out = capsys.readouterr().out
    assert status == 0 and "THEIRS is pytorch-tutorial: the built-in record reproduces it" in out, out
    assert "--weights-input torchvision --convention" in out and "numpy.load('" in out  # the next command, whole
    case.photo, case.art = (np.asarray(Image.open(tmp_path / f"{n}.png")) for n in ("photo", "art"))
    case.x = x.detach().numpy()
    reproduces(case, theirs, tmp_path / "fitted.json", capsys)


def test_diagnose_from_python(tmp_path, capsys):
    """``refstyle.diagnose``, as the package exports it: the same diagnosis, and progress as calls."""
    import refstyle

    case, arrays = refstyle_case(tmp_path, capsys, "paper")
    weights = refstyle.load_weights(str(case.weights), fold=False)
    calls = []
    found = refstyle.diagnose(weights, case.photo, [case.art], arrays, progress=lambda *call: calls.append(call))
    assert found.fits and found.base == "paper" and found.words == [] and found.record["name"] == "paper-fitted"
    assert found.loss_error <= 1e-6 and found.grad_error <= 1e-6 and found.notes == []  # the file's image space read
    assert calls[0] == ("networks", 0, calls[0][2]) and calls[-1][0] == "fits" and calls[-1][1] == calls[-1][2]


def test_a_record_that_does_not_reproduce_the_file_is_not_written(tmp_path, capsys, monkeypatch):
    """The terms fit but the record written from them does not (to --tol): said, and no FITTED.json to mislead grad."""
    import refstyle.app.commands as commands

    case, arrays = refstyle_case(tmp_path, capsys, "paper")
    theirs = tmp_path / "theirs.npz"
    np.savez(theirs, **arrays)
    real = commands.diagnose_file

    def off(*args, **kwargs):
        return real(*args, **kwargs)._replace(fits=False, failure="the record reproduces the file only to 2e-06")

    monkeypatch.setattr(commands, "diagnose_file", off)
    status, out, err, fitted = diagnose(case, theirs, capsys)
    assert status == 1 and not err and not fitted.exists(), out + err
    assert "nothing fits: the record reproduces the file only to 2e-06" in out
    assert f"{fitted} not written: the record above does not reproduce THEIRS to --tol 1e-06" in out, out
