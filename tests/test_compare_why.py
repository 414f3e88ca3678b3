"""``refstyle compare``: image spaces, "not given" losses, the reasons it gives for a difference, the plot."""

import json

import numpy as np
import pytest
from PIL import Image

from refstyle.app.cli import main
from refstyle.app.validate import (
    ZERO_FLOOR, border_ring, channel_affine, channel_swap, compare_arrays, compare_files, constant_factor,
    first_layer_responses, image_space, loss_definition, plot_comparison, pooling_rounding, read_gradient_file,
    to_image_space, write_gradient_file,
)
from refstyle.errors import RefstyleError
from refstyle.nn.inputs import CAFFE_INPUT, LUA_INPUT, TORCHVISION_INPUT, InputStage, describe_input

TOL = 1e-4
FACTOR = ("a loss scaling (alpha, beta, a layer weight, a normalisation such as 1/(4 N_l² M_l²))")


def gradient_file(seed=0, f_channels=4):
    """A small gradient file's arrays in Caffe's space: x, grad, conv1_1 (8×10) and conv2_1 (4×5)."""
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(0, 50, (1, 3, 8, 10)), "loss": np.float64(3.5), "loss_content": np.float64(1.25),
        "loss_style": np.float64(2.0), "grad": rng.normal(size=(1, 3, 8, 10)),
        "F:conv1_1": np.abs(rng.normal(size=(1, f_channels, 8, 10))), "dF:conv1_1": rng.normal(size=(1, f_channels, 8, 10)),
        "F:conv2_1": np.abs(rng.normal(size=(1, 4, 4, 5))), "dF:conv2_1": rng.normal(size=(1, 4, 4, 5)),
    }


def changed(d, **arrays):
    out = dict(d)
    out.update({k.replace("__", ":"): v for k, v in arrays.items()})
    return out


def reasons(a, b):
    return list(compare_arrays(a, b, TOL).reasons)


# ---------------------------------------------------------------------------
# image spaces
# ---------------------------------------------------------------------------


def test_a_converted_gradient_equals_the_gradient_taken_in_the_other_space():
    """L(x) = Σ w · x_caffe: its gradient moved to torchvision's space equals the one taken there."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(1, 3, 4, 5))
    x_b = rng.normal(0, 50, (1, 3, 4, 5))  # B: Caffe's space, grad = w
    to_a, to_b = InputStage(CAFFE_INPUT, TORCHVISION_INPUT), InputStage(TORCHVISION_INPUT, CAFFE_INPUT)
    x_a = to_a.forward(x_b)

    def loss_a(x):  # the same loss as a function of the image in A's space
        return float(np.sum(w * to_b.forward(x)))

    direct = np.zeros_like(x_a)  # L is affine in x_a: each partial derivative is one difference
    for i in np.ndindex(x_a.shape):
        e = np.zeros_like(x_a)
        e[i] = 1.0
        direct[i] = loss_a(x_a + e) - loss_a(x_a)
    moved = to_image_space({"x": x_b, "grad": w}, CAFFE_INPUT, TORCHVISION_INPUT)
    np.testing.assert_allclose(moved["x"], x_a, rtol=0, atol=1e-12)
    np.testing.assert_allclose(moved["grad"], direct, rtol=1e-9, atol=1e-9)
    assert np.max(np.abs(direct - w)) > 1  # the conversion is not the identity


def test_files_in_different_image_spaces_are_compared_in_a_s_space():
    b = gradient_file()  # Caffe's, no key image
    a = to_image_space(b, CAFFE_INPUT, TORCHVISION_INPUT)
    a["image"] = np.array(json.dumps(TORCHVISION_INPUT))
    result = compare_arrays(a, b, TOL)
    assert result.failed == [] and result.converted == (CAFFE_INPUT, TORCHVISION_INPUT)
    assert result.format().splitlines()[0] == (
        f"B's x and grad converted from {describe_input(CAFFE_INPUT)} to {describe_input(TORCHVISION_INPUT)}")
    assert result.format().splitlines()[0] == (
        "B's x and grad converted from BGR 0..255 minus (103.939, 116.779, 123.68) to "
        "RGB 0..1 minus (0.485, 0.456, 0.406) divided by (0.229, 0.224, 0.225)")
    # without the key, the same numbers differ
    del a["image"]
    plain = compare_arrays(a, b, TOL)
    assert plain.converted is None and [r.key for r in plain.failed] == ["x", "grad"]
    assert "converted" not in plain.format()


def test_a_malformed_image_space_names_the_file_and_the_key(tmp_path):
    d = gradient_file()
    assert image_space(d) == CAFFE_INPUT and image_space(changed(d, image=np.array(json.dumps(LUA_INPUT)))) == LUA_INPUT
    for bad in ["{not json", json.dumps({"channels": "RGB"}), json.dumps([1, 2]), json.dumps(dict(CAFFE_INPUT, std=[0, 1, 1]))]:
        path = tmp_path / "bad.npz"
        write_gradient_file(path, changed(d, image=np.array(bad)))
        with pytest.raises(RefstyleError, match=rf"^{path}: the key image must be a JSON image space"):
            read_gradient_file(path)
    with pytest.raises(RefstyleError, match="^B: the key image"):
        compare_arrays(d, changed(d, image=np.array("rgb")))


# ---------------------------------------------------------------------------
# "not given"
# ---------------------------------------------------------------------------


def test_a_nan_content_or_style_loss_is_not_given_and_passes_but_a_nan_elsewhere_differs():
    a = gradient_file()
    b = changed(a, loss_content=np.float64(np.nan), loss_style=np.float64(np.nan))
    for one, other in ((a, b), (b, a), (b, b)):
        result = compare_arrays(one, other, TOL)
        status = {r.key: r.status for r in result.rows}
        assert status["loss_content"] == status["loss_style"] == "not given" and status["loss"] == "ok"
        assert result.failed == [] and "PASS" in result.format()
    for key in ("loss", "grad"):
        bad = changed(a, **{key: np.where(np.ones_like(a[key], bool), np.nan, 0.0)})
        result = compare_arrays(a, bad, TOL)
        row = next(r for r in result.rows if r.key == key)
        assert row.status == "NaN in B" and np.isnan(row.max_rel) and row in result.failed
        assert "inf" not in result.format()


# ---------------------------------------------------------------------------
# the reasons, each alone and its negative
# ---------------------------------------------------------------------------


def test_a_constant_factor_on_the_loss_and_its_gradients_is_named_once():
    a = gradient_file()
    b = changed(a, loss=a["loss"] * 2, grad=a["grad"] * 2, dF__conv1_1=a["dF:conv1_1"] * 2, dF__conv2_1=a["dF:conv2_1"] * 2)
    assert reasons(a, b) == [
        f"off by a constant factor 0.5 on loss, dF:conv1_1, dF:conv2_1, grad: {FACTOR}",
        "F agrees but dF does not at conv1_1, conv2_1: the loss definition at those layers "
        "(its normalisation, layer weight, or Gram form)",
    ]
    # two factors: two lines
    b = changed(a, dF__conv2_1=a["dF:conv2_1"] * 4, grad=a["grad"] * 3)
    result = compare_arrays(a, b, TOL)
    assert constant_factor(result.rows, a, b, TOL) == [
        f"off by a constant factor 0.25 on dF:conv2_1: {FACTOR}", f"off by a constant factor 0.333333 on grad: {FACTOR}"]
    # only scalars differ: their factor is the story
    b = changed(a, loss_style=a["loss_style"] * 10)
    assert reasons(a, b) == [f"off by a constant factor 0.1 on loss_style: {FACTOR}"]


def test_no_constant_factor_for_noise_responses_or_a_lone_scalar_beside_an_array():
    a = gradient_file()
    rng = np.random.default_rng(7)
    b = changed(a, grad=a["grad"] + 0.1 * rng.normal(size=a["grad"].shape), loss=a["loss"] * 2)
    assert constant_factor(compare_arrays(a, b, TOL).rows, a, b, TOL) == []  # the loss alone is not named
    b = changed(a, F__conv2_1=a["F:conv2_1"] * 2)  # a response off by a factor is no loss scaling
    assert constant_factor(compare_arrays(a, b, TOL).rows, a, b, TOL) == []


@pytest.mark.parametrize("width", [1, 2])
def test_a_difference_on_the_border_ring_only(width):
    a = gradient_file()
    g = a["grad"].copy()
    g[..., :width, :] += 1.0
    g[..., :, -width:] -= 0.5
    b = changed(a, grad=g)
    ring = (f"differs only on the border ring of grad (width {width}): zero padding in a different image space, "
            "or the input convention folded into conv1_1 (refstyle grad --weights-input / the convention's image)")
    assert reasons(a, b) == [ring]


def test_no_border_ring_for_an_interior_difference_or_a_small_map():
    a = gradient_file()
    g = a["grad"].copy()
    g[..., 4, 5] += 1.0
    b = changed(a, grad=g)
    assert border_ring(compare_arrays(a, b, TOL).rows, a, b, TOL) is None
    f = a["F:conv2_1"].copy()  # 4×5: too small to have an interior
    f[..., 0, :] += 1.0
    b = changed(a, F__conv2_1=f)
    assert border_ring(compare_arrays(a, b, TOL).rows, a, b, TOL) is None


def test_responses_that_differ_at_the_first_layer_while_x_agrees():
    a = gradient_file()
    b = changed(a, F__conv1_1=a["F:conv1_1"] + 0.5)
    assert reasons(a, b) == [
        "responses differ already at conv1_1: the input convention (channel order, range, mean/std) of the weights"]
    rows = compare_arrays(a, changed(b, x=a["x"] + 1.0), TOL).rows  # x differs too: not the weights' convention
    assert first_layer_responses(rows) is None
    rows = compare_arrays(a, changed(a, F__conv2_1=a["F:conv2_1"] + 0.5), TOL).rows  # a later layer
    assert first_layer_responses(rows) is None


def test_x_and_grad_in_the_other_channel_order():
    a = gradient_file()
    b = changed(a, x=a["x"][:, ::-1], grad=a["grad"][:, ::-1])
    assert reasons(a, b) == ["x and grad agree with B's channels reversed: one file is RGB, the other BGR"]
    b = changed(a, grad=a["grad"][:, ::-1])
    assert reasons(a, b)[0] == "grad agrees with B's channels reversed: one file is RGB, the other BGR"


def test_no_channel_swap_for_responses_or_other_differences():
    a = gradient_file(f_channels=3)
    b = changed(a, F__conv1_1=a["F:conv1_1"][:, ::-1])  # a response's channels are features
    result = compare_arrays(a, b, TOL)
    assert channel_swap(result.rows, a, b, TOL) is None
    assert result.reasons == (
        "responses differ already at conv1_1: the input convention (channel order, range, mean/std) of the weights",)
    b = changed(a, x=a["x"][:, ::-1] + 1.0)
    assert channel_swap(compare_arrays(a, b, TOL).rows, a, b, TOL) is None


def test_x_that_differs_by_a_per_channel_affine_map():
    a = gradient_file()
    scale, offset = np.array([2.0, 0.5, 4.0]), np.array([1.0, -3.0, 0.25])
    b = changed(a, x=(a["x"] - offset[None, :, None, None]) / scale[None, :, None, None])  # a = scale b + offset
    assert reasons(a, b) == [
        "x differs by a per-channel affine map (scale (2, 0.5, 4), offset (1, -3, 0.25)): "
        "the files are in different image spaces; record the space in the key `image`"]
    b = changed(a, x=b["x"][:, ::-1])
    assert reasons(a, b) == [
        "x differs by a per-channel affine map of B's channels reversed (scale (2, 0.5, 4), offset (1, -3, 0.25)): "
        "the files are in different image spaces; record the space in the key `image`"]


def test_no_affine_map_for_noise_or_a_pure_swap():
    a = gradient_file()
    b = changed(a, x=a["x"] + np.random.default_rng(3).normal(size=a["x"].shape))
    assert channel_affine(compare_arrays(a, b, TOL).rows, a, b, TOL) is None
    b = changed(a, x=a["x"][:, ::-1])
    assert channel_affine(compare_arrays(a, b, TOL).rows, a, b, TOL) is None  # channel_swap's


def test_shapes_off_by_one_on_pooled_layers():
    a = gradient_file()
    b = changed(a, F__conv2_1=a["F:conv2_1"][..., :4], dF__conv2_1=a["dF:conv2_1"][..., :4])
    assert reasons(a, b) == [
        "shapes differ by one row/column from conv2_1 on: ceil against floor pooling (refstyle --rounding floor|ceil)"]


def test_no_pooling_reason_before_the_first_pooling_or_for_larger_differences():
    a = gradient_file()
    b = changed(a, F__conv1_1=a["F:conv1_1"][..., :9])  # before any pooling
    assert pooling_rounding(compare_arrays(a, b, TOL).rows, a, b) is None
    b = changed(a, F__conv2_1=a["F:conv2_1"][..., :3])  # two columns
    assert pooling_rounding(compare_arrays(a, b, TOL).rows, a, b) is None
    b = changed(a, F__conv2_1=a["F:conv2_1"][:, :3, :, :4])  # channels too
    assert pooling_rounding(compare_arrays(a, b, TOL).rows, a, b) is None


def test_responses_that_agree_with_a_gradient_that_does_not():
    a = gradient_file()
    b = changed(a, dF__conv2_1=a["dF:conv2_1"] + 0.3)
    assert reasons(a, b) == [
        "F:conv2_1 agrees but dF:conv2_1 does not: the loss definition at conv2_1 (its normalisation, layer weight, or Gram form)"]
    b = changed(b, F__conv2_1=a["F:conv2_1"] + 0.3)  # the responses differ as well
    assert loss_definition(compare_arrays(a, b, TOL).rows) is None


def test_agreeing_files_have_no_reasons():
    a = gradient_file()
    result = compare_arrays(a, dict(a), TOL)
    assert result.reasons == () and "why:" not in result.format()


# ---------------------------------------------------------------------------
# the plot and the command
# ---------------------------------------------------------------------------


def test_the_plot_shows_each_row_s_error(tmp_path):
    a = gradient_file()
    b = changed(a, grad=a["grad"] * 2, loss_style=np.float64(np.nan), F__conv2_1=a["F:conv2_1"][..., :4])
    b["F:conv1_1"] = a["F:conv1_1"] * (1 + 1e-7)
    pa, pb, out = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "errors.png"
    write_gradient_file(pa, a)
    write_gradient_file(pb, b)
    result = compare_files(pa, pb, TOL, plot=out)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width >= 600 and 300 <= im.height <= 1000
    labels, values = plot_comparison(result, tmp_path / "again.png", names=(str(pa), str(pb)))
    assert "loss_style" not in labels and labels[:2] == ["x", "loss"] and labels[-1] == "grad"
    errors = {r.key: r.max_rel for r in result.rows}
    assert values[labels.index("grad")] == errors["grad"] == pytest.approx(0.5)
    assert values[labels.index("F:conv1_1")] == errors["F:conv1_1"] == pytest.approx(1e-7 / (1 + 1e-7))
    assert values[labels.index("x")] == ZERO_FLOOR and errors["x"] == 0  # an exact 0, floored for the log scale
    assert values[labels.index("F:conv2_1")] == 2.0  # a shape that differs: drawn at the top
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_the_command_says_why_and_draws_the_plot(tmp_path, capsys):
    a = gradient_file()
    b = changed(a, F__conv1_1=a["F:conv1_1"] + 0.5, dF__conv2_1=a["dF:conv2_1"] * 3, grad=a["grad"] * 3)
    pa, pb, plot = str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), str(tmp_path / "why.png")
    write_gradient_file(pa, a)
    write_gradient_file(pb, b)
    assert main(["compare", pa, pb, "--plot", plot]) == 1
    out = capsys.readouterr().out.splitlines()
    why = [line for line in out if line.startswith("why: ")]
    assert why == [
        f"why: off by a constant factor 0.333333 on dF:conv2_1, grad: {FACTOR}",
        "why: F:conv2_1 agrees but dF:conv2_1 does not: the loss definition at conv2_1 "
        "(its normalisation, layer weight, or Gram form)",
        "why: responses differ already at conv1_1: the input convention (channel order, range, mean/std) of the weights",
    ]
    fail = next(i for i, line in enumerate(out) if line.startswith("FAIL: 3 of 9 arrays"))
    assert out.index(why[0]) == fail + 1 and out[-1] == f"wrote {plot}"
    with Image.open(plot) as im:
        assert im.size[0] > 100
    # an existing output is refused before any work, unless --force
    before = (tmp_path / "why.png").stat().st_mtime_ns
    assert main(["compare", pa, pb, "--plot", plot]) == 1
    assert "exists: choose another output name or pass --force" in capsys.readouterr().err
    assert (tmp_path / "why.png").stat().st_mtime_ns == before
    assert main(["compare", pa, pb, "--plot", plot, "--force"]) == 1
    assert f"wrote {plot}" in capsys.readouterr().out
