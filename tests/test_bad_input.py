"""Hostile and mistaken input (issue 28): each case one line, the exit status of its kind, nothing written.

Usage errors exit 2 (the parser), other user errors 1; none prints a traceback, none
leaves a file behind or overwrites one.
"""

import numpy as np
import pytest
from PIL import Image

from refstyle.app.cli import main

rng = np.random.default_rng(28)


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def parse_error(capsys, argv):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    return stop.value.code, err


@pytest.fixture()
def small(tiny_run):
    return tiny_run


# ---------------------------------------------------------------------------
# numeric options: their ranges at parse time
# ---------------------------------------------------------------------------

SYNTH = ["transfer", "c.png", "s.png", "-o", "o.png", "--weights", "w.npz"]
GRAD = ["grad", "c.png", "s.png", "-o", "g.npz", "--weights", "w.npz"]


@pytest.mark.parametrize("argv, expected", [
    (SYNTH + ["--seed", "-1"], "argument --seed: expected a seed: a whole number ≥ 0, not -1"),
    (["gradcheck", "--seed", "-1"], "argument --seed: expected a seed: a whole number ≥ 0, not -1"),
    (["explain", "i.png", "--seed", "-1"], "argument --seed: expected a seed: a whole number ≥ 0, not -1"),
    (["figure", "fig3", "--seed", "-2"], "argument --seed: expected a seed: a whole number ≥ 0, not -2"),
    (GRAD + ["--seed", "-1"], "argument --seed: expected a seed: a whole number ≥ 0, not -1"),
    (["gradcheck", "--tol", "0"], "argument --tol: expected a number > 0, not 0"),
    (["compare", "a.npz", "b.npz", "--tol=-1e-4"], "argument --tol: expected a number > 0, not -1e-4"),
    (["gradcheck", "--coords", "-5"], "argument --coords: expected a whole number ≥ 1, not -5"),
    (["gradcheck", "--directions", "0"], "argument --directions: expected a whole number ≥ 1, not 0"),
    (SYNTH + ["--ratio", "-1"], "argument --ratio: expected a weight ≥ 0, not -1"),
    (SYNTH + ["--alpha", "-1"], "argument --alpha: expected a weight ≥ 0, not -1"),
    (GRAD + ["--beta", "-1"], "argument --beta: expected a weight ≥ 0, not -1"),
    (SYNTH + ["--tv-weight", "-1"], "argument --tv-weight: expected a weight ≥ 0, not -1"),
    (SYNTH + ["--layer-weights", "1,1,-1,1,1"], "argument --layer-weights: expected a weight ≥ 0, not -1"),
    (SYNTH + ["--style-blend", "1,-1"], "argument --style-blend: expected a weight ≥ 0, not -1"),
    (SYNTH + ["--style-blend", "0,0"], "argument --style-blend: expected weights ≥ 0, at least one > 0"),
    (SYNTH + ["--layer-weights", "0,0,0,0,0"], "argument --layer-weights: expected weights ≥ 0, at least one > 0"),
    (SYNTH + ["--alpha", "0", "--beta", "0"], "--alpha 0 and --beta 0 leave nothing to minimise"),
    (SYNTH + ["--style-scale", "0"], "argument --style-scale: expected a number > 0, not 0"),
    (SYNTH + ["--lr", "-0.5", "--optimizer", "gd"], "argument --lr: expected a number > 0, not -0.5"),
    (SYNTH + ["--save-every", "-3"], "argument --save-every: expected a whole number ≥ 0 (0: off), not -3"),
    (SYNTH + ["--maxcor", "0"], "argument --maxcor: expected a whole number ≥ 1, not 0"),
    (["gradcheck", "--widths", "4,0,8,8,8"], "argument --widths: expected a whole number ≥ 1, not 0"),
    (SYNTH + ["--seed", "1.5"], "argument --seed: expected a whole number, not '1.5'"),
])
def test_numeric_options_out_of_range_are_one_line_and_exit_2(capsys, argv, expected):
    code, err = parse_error(capsys, argv)
    assert code == 2
    assert err.count("\n") == 1 and expected in err, err
    assert err.startswith("refstyle ") and "--help" in err


def test_zero_is_a_weight_and_in_range_where_it_means_off(capsys):
    """The bounds are inclusive where 0 is meaningful: --seed 0, --ratio 0 (style only), --tv-weight 0, a 0 in a list."""
    from refstyle.app.parser import build_parser

    args = build_parser().parse_args(SYNTH + ["--seed", "0", "--ratio", "0", "--tv-weight", "0", "--save-every", "0",
                                              "--style-blend", "0,1", "--layer-weights", "0,1,0,1,0"])
    assert (args.seed, args.ratio, args.tv_weight, args.save_every) == (0, 0.0, 0.0, 0)
    assert args.style_blend == [0.0, 1.0] and args.layer_weights == [0, 1, 0, 1, 0]


def test_a_missing_argument_is_one_line_too(capsys):
    code, err = parse_error(capsys, ["transfer", "c.png"])
    assert code == 2 and err.count("\n") == 1 and "the following arguments are required" in err


# ---------------------------------------------------------------------------
# outputs: PNG only
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["result.jpg", "result.tif", "result"])
def test_an_image_output_that_is_not_png_is_refused_before_any_work(small, capsys, name):
    out = small["dir"] / name
    status, _, err = run(capsys, "transfer", small["photo"], small["art"], "--weights", small["weights"], "--size", 32,
                         "--iters", 2, "-o", out)
    assert status == 1 and err.count("\n") == 1
    assert f"cannot write {out}: refstyle writes only PNG" in err and "e.g. result.png" in err
    assert not out.exists() and not (small["dir"] / "result.losses.csv").exists()
    status, _, err = run(capsys, "reconstruct", "style", small["art"], "--layers", "conv1_1", "--weights",
                         small["weights"], "-o", out)
    assert status == 1 and "refstyle writes only PNG" in err
    status, _, err = run(capsys, "figure", "fig3", "-o", out, "--weights", small["weights"])
    assert status == 1 and "refstyle writes only PNG" in err


def test_an_upper_case_png_suffix_is_png(small, capsys):
    out = small["dir"] / "RESULT.PNG"
    status, _, err = run(capsys, "transfer", small["photo"], small["art"], "--weights", small["weights"], "--size", 32,
                         "--iters", 2, "-o", out)
    assert status == 0, err
    with Image.open(out) as im:
        assert im.format == "PNG"


def test_a_gradient_file_must_be_named_npz(small, capsys):
    out = small["dir"] / "g.txt"
    status, _, err = run(capsys, "grad", small["photo"], small["art"], "--weights", small["weights"], "--size", 32,
                         "-o", out)
    assert status == 1 and "refstyle writes only NumPy .npz archives" in err and "e.g. g.npz" in err
    assert not out.exists()


def test_the_help_says_png_only(capsys):
    with pytest.raises(SystemExit):
        main(["transfer", "--help"])
    assert "PNG only" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# compare: NaN and Inf named, integer arrays refused
# ---------------------------------------------------------------------------


def gradient_file(path, **override):
    arrays = {"x": rng.standard_normal((1, 3, 4, 4)), "loss": np.float64(2.0), "loss_content": np.float64(1.0),
              "loss_style": np.float64(1.0), "grad": rng.standard_normal((1, 3, 4, 4))}
    arrays.update(override)
    np.savez(path, **arrays)
    return path


def test_compare_names_nan_and_inf(tmp_path, capsys):
    a = gradient_file(tmp_path / "a.npz")
    with np.load(a) as z:
        grad = z["grad"].copy()
        x = z["x"]
    grad[0, 0, 0, 0] = np.nan
    b = gradient_file(tmp_path / "b.npz", x=x, grad=grad, loss=np.float64(np.inf))
    status, out, err = run(capsys, "compare", a, b)
    assert status == 1, err
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in ("grad", "loss")}
    assert rows["grad"].endswith("NaN in B") and rows["loss"].endswith("Inf in B")
    table = out.split("\n", 2)[2]  # after the lines A = ..., B = ...
    assert "inf" not in table.replace("Inf in B", "")  # never an error printed as inf
    assert "FAIL:" in out and "in network order the first is loss (Inf in B: no error can be measured" in out


def test_compare_refuses_integer_arrays(tmp_path, capsys):
    a = gradient_file(tmp_path / "a.npz")
    b = gradient_file(tmp_path / "b.npz", x=np.zeros((1, 3, 4, 4), np.uint8))
    status, _, err = run(capsys, "compare", a, b)
    assert status == 1 and err.count("\n") == 1
    assert f"{b}: x holds uint8 values; a gradient file holds floating-point arrays" in err
    c = gradient_file(tmp_path / "c.npz", loss=np.int64(2))
    status, _, err = run(capsys, "compare", c, a)
    assert status == 1 and "loss holds int64 values" in err


# ---------------------------------------------------------------------------
# --x files and compare's inputs: what the file is, and what was expected
# ---------------------------------------------------------------------------


def not_arrays(folder):
    """A text file, a PNG and a .npy renamed .npz: files a user may give where an array file is expected."""
    text = folder / "notes.npy"
    text.write_text("x = [1, 2, 3]\n")
    png = folder / "picture.npy"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(png, format="PNG")
    renamed = folder / "single.npz"
    with open(renamed, "wb") as f:
        np.save(f, np.zeros((1, 3, 4, 4)))
    return {"text": text, "a PNG image": png, "a NumPy .npy array": renamed}


def test_x_names_what_the_file_is(small, capsys):
    out = small["dir"] / "g.npz"
    for what, path in not_arrays(small["dir"]).items():
        if what == "a NumPy .npy array":
            continue  # the one kind --x takes (under any name)
        status, _, err = run(capsys, "grad", small["photo"], small["art"], "--weights", small["weights"], "--x", path,
                             "-o", out)
        assert status == 1 and err.count("\n") == 1 and "Traceback" not in err, err
        assert f"{path}: {what}, but --x takes one NumPy .npy array" in err, err
        assert "allow_pickle" not in err
    assert not out.exists()


def test_compare_names_what_its_inputs_are(small, capsys):
    good = gradient_file(small["dir"] / "good.npz")
    for what, path in not_arrays(small["dir"]).items():
        for a, b in ((path, good), (good, path)):
            status, _, err = run(capsys, "compare", a, b)
            assert status == 1 and err.count("\n") == 1 and "Traceback" not in err, err
            assert f"{path}: {what}, but a gradient file is a NumPy .npz archive" in err, err
            assert "allow_pickle" not in err and "context manager" not in err


# ---------------------------------------------------------------------------
# images: a decompression bomb
# ---------------------------------------------------------------------------


def test_an_image_declaring_12000_by_12000_pixels_is_one_line(small, capsys):
    """Pillow would warn in two raw lines and decode 1.6 GB; refstyle refuses it before decoding."""
    import tracemalloc

    bomb = small["dir"] / "bomb.png"
    Image.new("1", (12000, 12000)).save(bomb)  # 18 MB in memory, a few kB on disk
    out = small["dir"] / "o.png"
    tracemalloc.start()
    try:
        status, _, err = run(capsys, "transfer", small["photo"], bomb, "--weights", small["weights"], "--size", 32,
                             "-o", out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 1 and err.count("\n") == 1 and "Warning" not in err, err
    assert f"{bomb}: declares 144,000,000 pixels, over the 89,478,485 that refstyle reads" in err
    assert peak < 64 * 2**20 and not out.exists()
