"""``refstyle grad``, ``refstyle compare`` and ``refstyle gradcheck`` from the command line."""

import json

import numpy as np
import pytest
from PIL import Image

import refstyle
from refstyle.paper import losses
from refstyle.app.cli import main
from refstyle.app.validate import compare_arrays, read_gradient_file

rng = np.random.default_rng(5)


@pytest.fixture()
def files(tmp_path):
    """Small generated VGG16 weights, a 'photograph' 20×30 and two 'artworks'."""
    weights = tmp_path / "small.npz"
    refstyle.save_npz(refstyle.generate_weights("vgg16", seed=1), weights)
    paths = {"weights": str(weights)}
    for name, shape in [("photo", (20, 30)), ("art1", (25, 25)), ("art2", (40, 16))]:
        path = tmp_path / f"{name}.png"
        Image.fromarray(rng.integers(0, 256, shape + (3,)).astype(np.uint8)).save(path)
        paths[name] = str(path)
    return paths


def grad(files, out, *extra):
    return main(["grad", files["photo"], files["art1"], "-o", str(out), "--weights", files["weights"], "--size", "24", *extra])


def test_grad_writes_the_documented_keys(files, tmp_path, capsys):
    out = tmp_path / "g.npz"
    assert grad(files, out, "--content-layers", "conv3_1", "--style-layers", "conv1_1,conv2_1") == 0
    d = read_gradient_file(out)
    assert d["x"].shape == (1, 3, 16, 24)  # 20×30 -> longer side 24
    assert d["grad"].shape == d["x"].shape
    for name in ("conv3_1", "conv1_1", "conv2_1"):
        assert d[f"F:{name}"].shape == d[f"dF:{name}"].shape
    assert float(d["loss"]) == pytest.approx(1e-3 * float(d["loss_content"]) + float(d["loss_style"]), rel=1e-12)
    settings = json.loads(str(d["settings"]))
    assert settings["style_sizes"] == [[24, 24]] and settings["convention"] == "paper"
    assert "wrote" in capsys.readouterr().out
    # same seed, same file contents
    out2 = tmp_path / "g2.npz"
    grad(files, out2, "--content-layers", "conv3_1", "--style-layers", "conv1_1,conv2_1")
    assert compare_arrays(d, read_gradient_file(out2), tol=0.0).failed == []


def test_grad_with_a_given_x_and_options(files, tmp_path):
    x = refstyle.paper.images.white_noise((11, 13), seed=9)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "g.npz"
    status = grad(
        files, out, "--x", str(tmp_path / "x.npy"), "--ratio", "1e-2", "--style-scale", "0.5", "--pooling", "max",
        "--layer-weights", "1,2,3,4,5", "--convention", "jcjohnson", "--dtype", "float64",
    )
    assert status == 0
    d = read_gradient_file(out)
    np.testing.assert_array_equal(d["x"], x)
    s = json.loads(str(d["settings"]))
    assert s["alpha"] == 1e-2 and s["beta"] == 1.0 and s["pooling"] == "max"
    assert s["size"] == [11, 13] and s["style_sizes"] == [[7, 7]]  # photograph resized to x; art to 13 × 0.5
    assert s["layer_weights"]["conv5_1"] == 5.0


def test_compare_passes_and_flags_a_wrong_gradient(files, tmp_path, capsys):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    grad(files, a)
    d = dict(np.load(a))
    d["grad"] = d["grad"] * 2.0  # an implementation off by a factor of 2 in its gradient
    np.savez(b, **d)
    capsys.readouterr()
    assert main(["compare", str(a), str(a)]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "FAIL: 1 of" in out and "first is grad" in out and "factor of about 0.5" in out
    # an earlier layer that differs is named first, in network order
    d["F:conv1_1"] = d["F:conv1_1"] + 1.0
    np.savez(b, **d)
    main(["compare", str(a), str(b)])
    assert "first is F:conv1_1" in capsys.readouterr().out


def test_compare_errors(files, tmp_path, capsys):
    np.savez(tmp_path / "partial.npz", x=np.zeros(3))
    assert main(["compare", str(tmp_path / "partial.npz"), str(tmp_path / "partial.npz")]) == 1
    assert "needs the keys loss" in capsys.readouterr().err
    (tmp_path / "t.npz").write_text("hello")
    assert main(["compare", str(tmp_path / "t.npz"), str(tmp_path / "t.npz")]) == 1
    assert "t.npz: text, but a gradient file is a NumPy .npz archive" in capsys.readouterr().err


def test_grad_user_errors(files, tmp_path, capsys):
    out = tmp_path / "g.npz"
    assert grad(files, out, "--style-layers", "conv5_4") == 1
    assert "vgg16 has no layer 'conv5_4'" in capsys.readouterr().err
    assert grad(files, out, "--ratio", "1", "--alpha", "2") == 1
    assert "either --ratio" in capsys.readouterr().err
    assert grad(files, out, "--layer-weights", "1,2") == 1
    assert "2 values for 5 style layers" in capsys.readouterr().err
    assert main(["grad", files["photo"], str(tmp_path / "nope.jpg"), "-o", str(out), "--weights", files["weights"]]) == 1
    assert "no such image file" in capsys.readouterr().err
    archive, empty = tmp_path / "x.npz", tmp_path / "empty.npy"
    np.savez(archive, x=np.zeros((1, 3, 8, 8)))
    np.save(empty, np.zeros((1, 3, 0, 8)))
    for x, message in [(archive, "a NumPy .npz archive, but --x takes one NumPy .npy array"), (empty, "1×3×H×W array"), (tmp_path, "is a folder")]:
        assert grad(files, out, "--x", str(x)) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_gradcheck_command(capsys):
    assert main(["gradcheck", "--size", "20", "--coords", "8", "--directions", "2"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "vgg19" in out


def test_gradcheck_widths_must_be_positive_whole_numbers(capsys):
    for widths in ("4,0,8,8,8", "4,6.5,8,8,8"):
        with pytest.raises(SystemExit) as e:
            main(["gradcheck", "--widths", widths])
        assert e.value.code == 2
    assert main(["gradcheck", "--widths", "4,6,8", "--size", "20"]) == 1
    assert "five filter counts" in capsys.readouterr().err


def test_gradcheck_command_flags_a_wrong_gradient(monkeypatch, capsys):
    right = losses.style_loss

    def style_loss_missing_a_factor(F, A):  # a classic bug: the 4 of 1/(4 N² M²) in the loss only
        E, dF = right(F, A)
        return E, 0.5 * dF

    monkeypatch.setattr("refstyle.paper.objective.style_loss", style_loss_missing_a_factor)
    assert main(["gradcheck", "--size", "20", "--coords", "8", "--directions", "2"]) == 1
    assert "FAIL" in capsys.readouterr().out
