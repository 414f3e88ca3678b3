"""Conventions as data: records checked field by field, a user's own record reproduces an implementation refstyle
does not know (command line and API alike), and one builder applies a convention everywhere."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_torch
from PIL import Image

import refstyle
from refstyle.app.cli import main
from refstyle.app.validate import read_gradient_file
from refstyle.errors import RefstyleError
from refstyle.paper.conventions import CONVENTIONS, get_convention, parse_record
from refstyle.paper.expressions import Expression

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = (4, 6, 8, 8, 8)


def readme_record():
    """The record that README's "Describe your own implementation" writes, as README shows it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    part = text[text.index("### Describe your own implementation"):]
    return json.loads(re.search(r"```json\n(.*?)```", part, re.S).group(1))


# --- records are data, checked field by field ----------------------------------------------


@pytest.mark.parametrize("record, message", [
    ({}, "field 'name'"),
    ({"name": "x", "colour": 1}, "unknown field(s) colour"),
    ({"name": "x", "pooling": "mean"}, "field 'pooling': expected one of 'avg', 'max'"),
    ({"name": "x", "rounding": "up"}, "field 'rounding'"),
    ({"name": "x", "names": "mine"}, "field 'names'"),
    ({"name": "x", "alpha": -1}, "field 'alpha': expected a number ≥ 0"),
    ({"name": "x", "beta": "1"}, "field 'beta'"),
    ({"name": "x", "image": "bgr"}, "field 'image': expected one of caffe, lua, torchvision, rgb01"),
    ({"name": "x", "image": {"channels": "RGB", "range": [0, 1]}}, "field 'image'"),
    ({"name": "x", "feed": "weights"}, "field 'feed'"),
    ({"name": "x", "content": {"layers": "conv4_2"}}, "field 'content.layers': expected a list of layer names"),
    ({"name": "x", "content": {"scale": 2}}, "field 'content' has unknown key(s) scale"),
    ({"name": "x", "content": {"divide_by": "N*Q"}}, "field 'content.divide_by': 'N*Q' uses 'Q'"),
    ({"name": "x", "style": {"divide_by": "__import__('os')"}}, "field 'style.divide_by'"),
    ({"name": "x", "style": {"gram_divide_by": "H*W"}}, "field 'style.gram_divide_by': 'H*W' uses 'H'"),
    ({"name": "x", "style": {"weights": [1, 2]}}, "field 'style.weights': expected 5 numbers"),
    ({"name": "x", "style": {"weights": "1/M"}}, "field 'style.weights': '1/M' uses 'M'"),
    ({"name": "x", "style": {"normalise_weights": "yes"}}, "field 'style.normalise_weights': expected true or false"),
    ({"name": "x", "tv": {"form": "l2"}}, "field 'tv.form': expected one of 'squared', 'l1'"),
    ({"name": "x", "tv": {"weight": float("nan")}}, "field 'tv.weight'"),
])
def test_a_bad_record_gets_one_line_naming_the_field(record, message):
    with pytest.raises(RefstyleError) as e:
        parse_record(record, "my.json")
    assert message in str(e.value) and str(e.value).startswith("my.json: ") and "\n" not in str(e.value)


def test_a_bad_record_file_is_refused_at_parse_time(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "bad", "style": {"divide_by": "N^2 * Z"}}))
    with pytest.raises(SystemExit) as e:
        main(["gradcheck", "--convention", str(bad)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "field 'style.divide_by': 'N^2 * Z' uses 'Z'" in err and "Traceback" not in err
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(SystemExit):
        main(["gradcheck", "--convention", str(tmp_path / "broken.json")])
    assert "not a readable JSON convention record" in capsys.readouterr().err


def test_expressions_are_arithmetic_only():
    assert Expression("4*3^2*(H*W)^2")(H=2, W=3) == 4 * 9 * 36
    assert Expression("1e3/N**2")(N=10) == 10.0 and Expression(2)() == 2.0
    for text in ("N.__class__", "f(N)", "[N]", "N if N else M", "'a'"):
        with pytest.raises(RefstyleError, match="not a formula"):
            Expression(text)
    with pytest.raises(RefstyleError, match="a formula: '1/N' is nan at N=0, but must be a finite number ≥ 0"):
        Expression("1/N")(N=0)
    with pytest.raises(RefstyleError, match="'N-8' is 0 at N=8, but must be a finite number > 0"):
        Expression("N-8", where="r.json: field 'content.divide_by'", sign="> 0")(N=8)
    with pytest.raises(RefstyleError, match="is not a real number"):
        Expression("(0-N)^0.5")(N=4)
    with pytest.raises(RefstyleError, match="'0-1' is -1 at any values"):
        Expression("0-1")()
    with pytest.raises(RefstyleError, match="at most 200 are read"):
        Expression("+".join(["N"] * 200_000))


def test_every_builtin_record_is_read_from_its_file_and_the_docs_show_them():
    names = {p.stem for p in (ROOT / "refstyle" / "paper" / "records").glob("*.json")}
    assert names == set(CONVENTIONS) >= {"paper", "neural-style", "neural-style-pt", "neural-style-pt-x256",
                                         "pytorch-tutorial", "gatys-pytorch", "tf-tutorial", "keras-example",
                                         "anishathalye"}
    paper = CONVENTIONS["paper"]  # the paper's factors are 1: equation 7 as written
    assert paper.content_factor(64, 100, 10, 10) == 1.0 and paper.style_factor(64, 100, 10, 10) == 1.0
    assert paper.style_layer_weights(list("abcde"), [1] * 5) == dict.fromkeys("abcde", 0.2)
    check = subprocess.run([sys.executable, str(ROOT / "docs" / "make_conventions.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_keras_divides_by_the_image_not_the_layer():
    c = CONVENTIONS["keras-example"]
    N, M, H, W = 8, 16, 32, 32
    # Σ(G−A)²/(4·3²·(H·W)²) = E_l · 4N²M²/(4·9·H²W²)
    assert c.style_factor(N, M, H, W) == pytest.approx(4 * N**2 * M**2 / (4 * 9 * (H * W) ** 2), rel=1e-15)
    assert c.style_factor(N, M, 2 * H, W) == pytest.approx(c.style_factor(N, M, H, W) / 4, rel=1e-15)


def test_anishathalye_takes_its_mean_from_the_weights():
    c = CONVENTIONS["anishathalye"]
    space = c.image_space({"channels": "RGB", "range": [0, 255], "mean": [120.0, 110.0, 100.0]})
    assert space == {"channels": "RGB", "range": [0, 255], "mean": [120.0, 110.0, 100.0]}
    caffe = c.image_space(refstyle.nn.inputs.CAFFE_INPUT)  # Caffe's BGR mean, in x's RGB order
    assert caffe["mean"] == pytest.approx([123.68, 116.779, 103.939])
    with pytest.raises(RefstyleError, match="takes its mean pixel from the weights"):
        c.image_space(None)
    w = c.style_layer_weights(c.style_layers, [1] * 5)
    assert list(w.values()) == pytest.approx([0.2] * 5)
    steep = c._replace(layer_weights=Expression("2^k", ("N", "n", "k")))
    assert list(steep.style_layer_weights(c.style_layers, [1] * 5).values()) == pytest.approx(
        [1 / 31, 2 / 31, 4 / 31, 8 / 31, 16 / 31])


# --- a user's own record reproduces an implementation refstyle does not know ----------------


def made_up_implementation(torch, layers, p, a, x, record):
    """An independent PyTorch rewrite of the implementation README's record describes (float64, autograd).

    Caffe's input fed as it is; 3×3 pad-1 convolutions and ReLUs; nn.MaxPool2d (floor); content: the mean of
    (F − P)² at relu4_2; style: Gram / (N·M) of each image with its own size, the sum of the squared differences,
    weighted per layer; loss = alpha · content + beta · Σ_l w_l · style_l.
    """
    F = torch.nn.functional
    order = ["conv1_1", "conv1_2", "pool", "conv2_1", "conv2_2", "pool", "conv3_1", "conv3_2", "conv3_3", "conv3_4",
             "pool", "conv4_1", "conv4_2", "conv4_3", "conv4_4", "pool", "conv5_1"]

    def responses(img):
        h, out = img, {}
        for name in order:
            if name == "pool":
                h = F.max_pool2d(h, 2, 2)
            else:
                W, b = layers[name]
                h = F.relu(F.conv2d(h, torch.tensor(W), torch.tensor(b), padding=1))
                out[name] = h
        return out

    def gram(h):
        f = h.reshape(h.shape[1], -1)
        return f @ f.T / f.numel()

    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    with torch.no_grad():
        P = responses(t(p))["conv4_2"]
        A = {k: gram(v) for k, v in responses(t(a)).items()}
    xt = t(x).requires_grad_(True)
    R = responses(xt)
    content = ((R["conv4_2"] - P) ** 2).mean()
    style_layers = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]
    style = sum(w * ((gram(R[n]) - A[n]) ** 2).sum() for w, n in zip(record["style"]["weights"], style_layers))
    loss = record["alpha"] * content + record["beta"] * style
    loss.backward()
    return loss.item(), xt.grad.numpy()


@pytest.mark.parametrize("shape", [(32, 32), (37, 35)], ids=["even", "odd"])
def test_a_record_of_your_own_reproduces_your_implementation(tmp_path, capsys, shape):
    torch = require_torch()
    record = readme_record()
    (tmp_path / "mine.json").write_text(json.dumps(record))
    rng = np.random.default_rng(11)
    weights = refstyle.generate_weights("vgg19", widths=WIDTHS, seed=4, dtype="float64")
    layers = {k: (np.asarray(W, np.float64), np.asarray(b, np.float64)) for k, (W, b) in weights.items()}
    refstyle.save_npz(weights, tmp_path / "w.npz")
    layers = dict(refstyle.load_weights(tmp_path / "w.npz"))  # float32-rounded, as the file holds them
    layers = {k: (np.asarray(W, np.float64), np.asarray(b, np.float64)) for k, (W, b) in layers.items()}
    photo, art = (rng.integers(0, 256, shape + (3,)).astype(np.uint8) for _ in range(2))
    p, a = (refstyle.preprocess(im, "float64") for im in (photo, art))
    x = p + 10 * rng.standard_normal(p.shape)
    loss, grad = made_up_implementation(torch, layers, p, a, x, record)

    for name, im in (("photo", photo), ("art", art)):
        Image.fromarray(im).save(tmp_path / f"{name}.png")
    np.save(tmp_path / "x.npy", x)
    status = main(["grad", str(tmp_path / "photo.png"), str(tmp_path / "art.png"), "--weights", str(tmp_path / "w.npz"),
                   "--convention", str(tmp_path / "mine.json"), "--x", str(tmp_path / "x.npy"), "--dtype", "float64",
                   "--size", str(max(shape)), "-o", str(tmp_path / "ours.npz")])
    assert status == 0, capsys.readouterr().err
    ours = read_gradient_file(tmp_path / "ours.npz")
    assert float(ours["loss"]) == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(ours["grad"], grad, rtol=1e-6, atol=1e-6 * np.abs(grad).max())

    # the API, the same record: the same numbers
    settings = refstyle.Settings(convention=str(tmp_path / "mine.json"))
    net = refstyle.build_network(tmp_path / "w.npz", settings, dtype="float64")
    assert (net.pooling, net.rounding) == ("max", "floor")
    e = refstyle.build_objective(net, photo, [art], settings).evaluate(x)
    assert e.loss == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(e.grad, grad, rtol=1e-6, atol=1e-6 * np.abs(grad).max())
    # and the paper's settings on this network: refused, not computed
    with pytest.raises(RefstyleError, match="pools 'max', but the settings .convention paper. say 'avg'"):
        refstyle.build_objective(net, photo, [art], refstyle.Settings())


# --- one builder: the API, figure and explain apply a convention as grad and transfer do ----


def test_the_api_refuses_a_network_that_contradicts_the_convention():
    w = refstyle.generate_weights("vgg19", widths=WIDTHS, seed=1)
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    gatys = refstyle.Settings(convention="gatys-pytorch")
    with pytest.raises(RefstyleError, match="pools 'avg', but the settings .convention gatys-pytorch. say 'max'"):
        refstyle.build_objective(refstyle.VGG(w), rgb, [rgb], gatys)
    with pytest.raises(RefstyleError, match="rounds its pooling 'ceil', but .* say 'floor'"):
        refstyle.build_objective(refstyle.VGG(w, pooling="max"), rgb, [rgb], gatys)
    tutorial = refstyle.Settings(convention="pytorch-tutorial")
    with pytest.raises(RefstyleError, match="optimises an image in RGB 0..1"):
        refstyle.build_objective(refstyle.VGG(w, pooling="max", rounding="floor"), rgb, [rgb], tutorial)
    net = refstyle.build_network(w, tutorial)
    assert (net.pooling, net.rounding, net.image["channels"]) == ("max", "floor", "RGB")
    assert refstyle.build_objective(net, rgb, [rgb], tutorial).layers == [  # its content tap, then its style taps
        "conv2_2:pre", "conv1_1:pre", "conv1_2:pre", "conv2_1:pre", "conv3_1:pre"]
    # the settings' own pooling and rounding win over the convention's, through the same builder
    mine = gatys._replace(pooling="avg", rounding="ceil")
    assert refstyle.build_objective(refstyle.VGG(w), rgb, [rgb], mine).net.pooling == "avg"


def test_figure_builds_every_cell_with_the_convention_rounding_and_weights_input(tmp_path, capsys, monkeypatch):
    from refstyle.app import figures

    rng = np.random.default_rng(2)
    for name in ("photo.png", "art.png"):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3)).astype(np.uint8)).save(tmp_path / name)
    grid = {"defaults": {"content": "photo.png", "styles": ["art.png"], "style_layers": ["conv1_1", "conv2_1"],
                         "content_layers": ["conv2_2"]},
            "rows": [{"label": "r"}], "columns": [{"label": "t"}, {"label": "s", "kind": "style"}]}
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    refstyle.save_npz(refstyle.generate_weights("vgg19", widths=WIDTHS, seed=3), tmp_path / "w.npz")
    built, real = [], figures.build_network

    def build(weights, settings, **kw):
        net = real(weights, settings, **kw)
        built.append((settings.convention, net.pooling, net.rounding, kw.get("weights_input"), net.image["range"]))
        return net

    monkeypatch.setattr(figures, "build_network", build)
    status = main(["figure", str(tmp_path / "grid.json"), "-o", str(tmp_path / "g.png"), "--weights",
                   str(tmp_path / "w.npz"), "--images", str(tmp_path), "--size", "24", "--iters", "2",
                   "--cache", str(tmp_path / "cache"), "--convention", "neural-style-pt-x256", "--rounding", "ceil",
                   "--weights-input", "caffe"])
    assert status == 0, capsys.readouterr().err
    assert built == [("neural-style-pt-x256", "max", "ceil", "caffe", [0, 256])] * 3  # the grid, then each cell


def test_explain_applies_the_pooling_rounding_and_convention(capsys, tmp_path):
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (20, 20, 3)).astype(np.uint8)).save(tmp_path / "a.png")
    assert main(["explain", str(tmp_path / "a.png"), "--layer", "conv2_1", "--size", "20", "--iters", "1",
                 "--pooling", "max", "--rounding", "floor", "--convention", "gatys-pytorch"]) == 0
    out = capsys.readouterr().out
    assert "pooling='max', rounding='floor'" in out
    assert "the gatys-pytorch convention's layers" in out and "α = 1, β = 1" in out
    assert main(["explain", str(tmp_path / "a.png"), "--layer", "conv_3", "--size", "20", "--iters", "1",
                 "--convention", "pytorch-tutorial"]) == 0
    out = capsys.readouterr().out
    assert "x = RGB 0..1" in out and "pooling='max', rounding='floor'" in out


def test_get_convention_reads_a_path_and_names_the_builtins(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"name": "r", "alpha": 2}))
    assert get_convention(str(tmp_path / "r.json")).alpha == 2.0
    with pytest.raises(RefstyleError, match="unknown convention 'nope': choose one of .*keras-example"):
        get_convention("nope")


@pytest.mark.parametrize("convention", ["tf-tutorial", "pytorch-tutorial", "anishathalye"])
def test_a_transfer_runs_with_a_convention_that_names_layers_its_own_way(convention):
    """Keras's blockB_convK, the tutorial's taps before the ReLU, relu4_2: sized and run as refstyle's taps."""
    w = refstyle.generate_weights("vgg19", widths=WIDTHS, seed=5)
    rgb = np.random.default_rng(4).integers(0, 256, (33, 40, 3)).astype(np.uint8)
    settings = refstyle.Settings(convention=convention, size=40, iters=2)
    net = refstyle.build_network(w, settings)
    result = refstyle.synthesize(net, rgb, [rgb], settings)
    assert result.rgb.shape == (33, 40, 3) and result.results[-1].iterations >= 1
    deepest = {"tf-tutorial": "conv5_2", "pytorch-tutorial": "conv3_1:pre", "anishathalye": "conv5_2"}[convention]
    with pytest.raises(RefstyleError, match=f"too small for {deepest}: it needs at least"):
        refstyle.synthesize(net, rgb, [rgb], settings._replace(size=4))


@pytest.mark.parametrize("record, message", [
    ({"content": {"divide_by": "N-8"}}, "field 'content.divide_by': 'N-8' is 0 at N=8, but must be a finite number > 0"),
    ({"style": {"divide_by": "0-1"}}, "field 'style.divide_by': '0-1' is -1 at any values, but must be a finite number > 0"),
    ({"style": {"gram_divide_by": "M-M"}}, "field 'style.gram_divide_by': 'M-M' is 0"),
    ({"style": {"weights": "0-1"}}, "field 'style.weights': '0-1' is -1 at any values, but must be a finite number ≥ 0"),
    ({"style": {"divide_by": "(0-N)^0.5"}}, "field 'style.divide_by': '\\(0-N\\)\\^0.5' is not a real number"),
    ({"style": {"divide_by": "1e-300"}, "beta": 1e300}, "the loss and the gradient at this x are not finite"),
])
def test_a_record_whose_value_is_wrong_at_some_layer_gets_one_line(tmp_path, capsys, record, message):
    (tmp_path / "r.json").write_text(json.dumps({"name": "r", **record}))
    refstyle.save_npz(refstyle.generate_weights("vgg19", widths=WIDTHS, seed=1), tmp_path / "w.npz")
    rgb = np.random.default_rng(0).integers(0, 256, (20, 20, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    status = main(["grad", str(tmp_path / "a.png"), str(tmp_path / "a.png"), "--weights", str(tmp_path / "w.npz"),
                   "--convention", str(tmp_path / "r.json"), "--size", "20", "-o", str(tmp_path / "g.npz")])
    err = capsys.readouterr().err
    assert status == 1 and re.search(message, err) and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "g.npz").exists()


def test_style_targets_of_another_gram_divisor_and_a_layer_twice_are_refused():
    w = refstyle.generate_weights("vgg19", widths=WIDTHS, seed=1)
    net = refstyle.build_network(w, refstyle.Settings(convention="tf-tutorial"))
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    a = refstyle.preprocess(rgb, space=net.image)
    paper_targets = refstyle.style_targets(net, [a], ["conv1_1"])  # divided by 1, the paper's
    with pytest.raises(RefstyleError, match="divide each Gram matrix by 1, but the tf-tutorial convention by M"):
        refstyle.Objective(net, {}, paper_targets, alpha=0.0, beta=1.0, convention="tf-tutorial")
    ok = refstyle.style_targets(net, [a], ["conv1_1"], convention="tf-tutorial")
    assert refstyle.Objective(net, {}, ok, alpha=0.0, beta=1.0, convention="tf-tutorial")(a)[0] == pytest.approx(0.0)
    settings = refstyle.Settings(convention="tf-tutorial", style_layers=("block1_conv1", "conv1_1"))
    with pytest.raises(RefstyleError, match="the style layer conv1_1 is given twice"):
        refstyle.build_objective(net, rgb, [rgb], settings)


def test_a_list_of_weights_weights_the_records_own_layers():
    c = CONVENTIONS["anishathalye"]  # content weights [1, 0] for relu4_2, relu5_2
    assert c.content_layer_weights(["conv4_2"], [8]) == {"conv4_2": 1.0}
    assert c.content_layer_weights(["conv5_2", "conv3_1"], [8, 8]) == {"conv5_2": 0.0, "conv3_1": 1.0}


@pytest.mark.parametrize("convention", ["tf-tutorial", "anishathalye", "neural-style"])
def test_explain_with_a_convention_that_has_total_variation_or_a_weight_list(tmp_path, capsys, convention):
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 40, 3)).astype(np.uint8)).save(tmp_path / "a.png")
    refstyle.save_npz(refstyle.generate_weights("vgg19", widths=WIDTHS, seed=1), tmp_path / "w.npz")
    assert main(["explain", str(tmp_path / "a.png"), "--layer", "conv2_1", "--size", "40", "--iters", "1",
                 "--weights", str(tmp_path / "w.npz"), "--convention", convention]) == 0
    out = capsys.readouterr().out
    assert "10. the " + convention + " convention's layers" in out
    assert ("total variation" in out) == (CONVENTIONS[convention].tv_weight > 0)
    step7 = out[out.index("7. total loss"):out.index("8. back-propagation")]
    numbers = [float(v) for v in re.findall(r"(-?[\d.]+e[-+]\d+|-?[\d.]+)", step7.splitlines()[1])]
    total, terms = numbers[0], numbers[1:]
    assert total == pytest.approx(sum(terms[k] * terms[k + 1] for k in range(0, len(terms), 2)), rel=1e-4)


def test_check_network_knows_the_filters():
    w = refstyle.generate_weights("vgg19", widths=WIDTHS, seed=1)
    anish = refstyle.Settings(convention="anishathalye")
    net = refstyle.build_network(w, anish)
    assert net.filters == "transposed" and "filters='transposed'" in repr(net)
    np.testing.assert_array_equal(net.params["conv2_1"][0], np.asarray(w["conv2_1"][0], np.float32).swapaxes(2, 3))
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    as_stored = refstyle.VGG(w, pooling="max", image=net.image)
    with pytest.raises(RefstyleError, match="runs its filters 'as-stored', but the settings .convention anishathalye. "
                                            "say 'transposed'"):
        refstyle.build_objective(as_stored, rgb, [rgb], anish)


def test_figure_cache_key_holds_a_record_files_contents(tmp_path):
    from refstyle.app.figures import Job, cell_key

    sha = lambda path: refstyle.io.file_sha256(path)  # noqa: E731
    (tmp_path / "w").write_bytes(b"w")
    for name in ("k.json", "elsewhere.json"):
        (tmp_path / name).write_text(json.dumps({"name": "k", "pooling": "max"}))
    job = lambda rec: Job("style", None, (), refstyle.Settings(convention=str(tmp_path / rec)), str(tmp_path / "w"),  # noqa: E731
                          "vgg19", "float32", "cpu")
    assert cell_key(job("k.json"), sha) == cell_key(job("elsewhere.json"), sha)  # the contents, not the path
    before = cell_key(job("k.json"), sha)
    (tmp_path / "k.json").write_text(json.dumps({"name": "k", "pooling": "max", "content": {"divide_by": "N*M"}}))
    assert cell_key(job("k.json"), sha) != before
