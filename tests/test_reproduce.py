"""refstyle reproduces the implementations people use: ``refstyle grad --convention NAME`` against each one's code.

Each peer (``tests/peers.py``) is an independent PyTorch rewrite of that implementation's
published loss code. Both sides get the same weights, in the implementation's own file
format, the same photograph and artwork, and the same image ``x`` in the implementation's
own image space; their losses and gradients must agree to 1e-6 relative in float64, at an
even size and at an odd one (where the pooling's rounding and the padding matter).
"""

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import require_torch
from PIL import Image

import peers
import protowire
from refstyle.app.cli import main
from refstyle.app.validate import read_gradient_file

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(32, 32), (37, 35)]  # even, and odd on both sides (floor pooling reaches pool5 at both)
WIDTHS = (4, 6, 8, 8, 8)


def run_grad(tmp_path, capsys, weights, convention, photo, art, x, *extra):
    for name, rgb in (("photo", photo), ("art", art)):
        Image.fromarray(rgb).save(tmp_path / f"{name}.png")
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / f"{convention}.npz"
    status = main(["grad", str(tmp_path / "photo.png"), str(tmp_path / "art.png"), "--weights", str(weights),
                   "--convention", convention, "--x", str(tmp_path / "x.npy"), "--dtype", "float64",
                   "--size", str(max(photo.shape[:2])), "-o", str(out), *extra])
    _, err = capsys.readouterr()
    assert status == 0, err
    return read_gradient_file(out), err


def float32_layers(rng, arch="vgg19"):
    """Small random VGG weights rounded to float32: what every weights file here stores and refstyle reads."""
    return {k: (W.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64))
            for k, (W, b) in peers.random_vgg_layers(rng, arch, WIDTHS).items()}


def images(shape, seed):
    rng = np.random.default_rng(seed)
    photo, art = (rng.integers(0, 256, shape + (3,)).astype(np.uint8) for _ in range(2))
    start = rng.integers(0, 256, shape + (3,)).astype(np.uint8)
    return photo, art, start, rng


def caffe_weights_file(tmp_path, layers):
    """The weights as a .caffemodel: Caffe's BGR layers, the channel order Keras's released VGG19 keeps."""
    path = tmp_path / "vgg19.caffemodel"
    path.write_bytes(protowire.caffemodel({k: (W, b) for k, (W, b) in layers.items()}))
    return path


def keras_weights_file(tmp_path, layers):
    """The weights as Keras's released VGG19 file (blockB_convK_W_1:0, BGR like Caffe's): what both examples load."""
    from test_keras import write_released

    return write_released(tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
                          {k: (W.astype(np.float32), b.astype(np.float32)) for k, (W, b) in layers.items()})


def agree(refstyle_file, loss, grad):
    assert float(refstyle_file["loss"]) == pytest.approx(loss, rel=1e-6)
    g = refstyle_file["grad"]
    assert g.shape == grad.shape
    np.testing.assert_allclose(g, grad, rtol=1e-6, atol=1e-6 * np.abs(grad).max())


@pytest.mark.parametrize("shape", SIZES, ids=["even", "odd"])
@pytest.mark.parametrize("convention, scale", [("neural-style-pt", 255), ("neural-style-pt-x256", 256)])
def test_neural_style_pt(tmp_path, capsys, shape, convention, scale):
    """ProGamerGov/neural-style-pt with its own model file: torchvision's key names holding Caffe weights.

    Today's master scales the image by 255 (since cbcd023, December 2020), the code before by 256:
    one record each, and neither reproduces the other.
    """
    torch = require_torch()
    photo, art, start, rng = images(shape, 1)
    layers = float32_layers(rng)
    state = peers.neural_style_pt_state_dict(layers)
    peers.save_state_dict(torch, state, tmp_path / "vgg19-d01eb7cb.pth")
    space = functools.partial(peers.neural_style_pt_image_space, scale=scale)
    x = space(start) + rng.standard_normal((1, 3) + shape)
    loss, grad = peers.neural_style_pt(torch, state, space(photo), [space(art)], x)
    ours, err = run_grad(tmp_path, capsys, tmp_path / "vgg19-d01eb7cb.pth", convention, photo, art, x,
                         "--weights-input", "caffe")
    assert "warning" not in err  # the input was stated: nothing guessed
    agree(ours, loss, grad)
    assert json.loads(str(ours["image"]))["range"] == [0, scale]  # x and grad in the implementation's own space
    other = {"neural-style-pt": "neural-style-pt-x256", "neural-style-pt-x256": "neural-style-pt"}[convention]
    theirs, _ = run_grad(tmp_path, capsys, tmp_path / "vgg19-d01eb7cb.pth", other, photo, art, x,
                         "--weights-input", "caffe", "--force")
    assert abs(float(theirs["loss"]) / loss - 1) > 1e-3  # the other record is 255/256 off: the scale matters


def test_neural_style_pt_files_are_read_right_by_their_name_and_warned_about(tmp_path, capsys):
    """Not stated, a torchvision-named file with neural-style-pt's file name takes its record's input (Caffe's)."""
    torch = require_torch()
    photo, art, start, rng = images((32, 32), 2)
    state = peers.neural_style_pt_state_dict(float32_layers(rng))
    peers.save_state_dict(torch, state, tmp_path / "vgg19-d01eb7cb.pth")
    space = peers.neural_style_pt_image_space
    x = space(start)
    loss, grad = peers.neural_style_pt(torch, state, space(photo), [space(art)], x)
    ours, err = run_grad(tmp_path, capsys, tmp_path / "vgg19-d01eb7cb.pth", "neural-style-pt", photo, art, x)
    assert "refstyle: warning:" in err and "the known weights vgg19-neural-style-pt" in err
    assert "BGR 0..255 minus (103.939, 116.779, 123.68)" in err and "--weights-input" in err
    agree(ours, loss, grad)
    assert json.loads(str(ours["settings"]))["weights_input"]["range"] == [0, 255]  # read right: Caffe's input
    # under another name the key names are all there is: torchvision's input, a guess warned about
    peers.save_state_dict(torch, state, tmp_path / "mine.pth")
    ours, err = run_grad(tmp_path, capsys, tmp_path / "mine.pth", "neural-style-pt", photo, art, x, "--force")
    assert "taken to be torchvision's" in err and "--weights-input caffe" in err
    assert json.loads(str(ours["settings"]))["weights_input"]["range"] == [0, 1]
    # (neural-style-pt feeds its ×256 image to any weights, so under its convention the guess changes no number;
    # under the paper's it would: refstyle's input stage maps Caffe's image into the weights' input)


def test_neural_style_pt_weights_fetched_by_name_from_a_local_mirror(tmp_path, capsys, monkeypatch):
    """The record vgg19-neural-style-pt, pointed at a local server: fetched unverified (no size or digest is
    published), then used by name with no warning, since the record states the input."""
    import http.server
    import shutil
    import threading
    from functools import partial

    torch = require_torch()
    photo, art, start, rng = images((32, 32), 3)
    state = peers.neural_style_pt_state_dict(float32_layers(rng))
    served = tmp_path / "served"
    served.mkdir()
    peers.save_state_dict(torch, state, served / "vgg19-d01eb7cb.pth")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.func.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    try:
        from refstyle.weights.catalogue import SOURCES_DIR

        mirror = tmp_path / "records"
        mirror.mkdir()
        record = json.loads((SOURCES_DIR / "vgg19-neural-style-pt.json").read_text())
        record["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/vgg19-d01eb7cb.pth"
        (mirror / "vgg19-neural-style-pt.json").write_text(json.dumps(record))
        monkeypatch.setenv("REFSTYLE_SOURCES", str(mirror))
        monkeypatch.setenv("REFSTYLE_CACHE", str(tmp_path / "cache"))
        assert main(["weights", "fetch", "vgg19-neural-style-pt"]) == 0
        err = capsys.readouterr().err
        size = (served / "vgg19-d01eb7cb.pth").stat().st_size
        assert "could not be verified; its sha256 is" in err and f"its size {size:,} bytes" in err
    finally:
        httpd.shutdown()
        httpd.server_close()
    space = peers.neural_style_pt_image_space
    x = space(start)
    loss, grad = peers.neural_style_pt(torch, state, space(photo), [space(art)], x)
    ours, err = run_grad(tmp_path, capsys, "vgg19-neural-style-pt", "neural-style-pt", photo, art, x)
    assert "warning" not in err
    agree(ours, loss, grad)
    assert json.loads(str(ours["settings"]))["weights_input"]["range"] == [0, 255]
    shutil.rmtree(tmp_path / "cache")


@pytest.mark.parametrize("shape", SIZES, ids=["even", "odd"])
def test_neural_style_lua(tmp_path, capsys, shape):
    """jcjohnson/neural-style (Lua) with the caffemodel it loads: ×256, ceil max pooling, TV in the gradient only."""
    torch = require_torch()
    photo, art, start, rng = images(shape, 3)
    layers = float32_layers(rng)
    space = peers.neural_style_lua_image_space
    x = space(start) + rng.standard_normal((1, 3) + shape)
    loss, grad = peers.neural_style_lua(torch, peers.neural_style_lua_state_dict(layers), space(photo), [space(art)], x)
    ours, _ = run_grad(tmp_path, capsys, caffe_weights_file(tmp_path, layers), "neural-style", photo, art, x)
    agree(ours, loss, grad)


@pytest.mark.parametrize("shape", SIZES, ids=["even", "odd"])
def test_pytorch_tutorial(tmp_path, capsys, shape):
    """PyTorch's tutorial with torchvision's features state dict: taps before the ReLU, RGB 0..1, floor pooling."""
    torch = require_torch()
    photo, art, start, rng = images(shape, 4)
    layers = float32_layers(rng)
    state = peers.pytorch_tutorial_state_dict(layers)
    peers.save_state_dict(torch, state, tmp_path / "vgg19_features.pth")
    space = peers.pytorch_tutorial_image_space
    x = np.clip(space(start) + 0.05 * rng.standard_normal((1, 3) + shape), 0, 1)  # the tutorial clamps to 0..1
    loss, grad = peers.pytorch_tutorial(torch, state, space(photo), space(art), x)
    ours, _ = run_grad(tmp_path, capsys, tmp_path / "vgg19_features.pth", "pytorch-tutorial", photo, art, x,
                       "--weights-input", "torchvision")
    agree(ours, loss, grad)


@pytest.mark.parametrize("shape", SIZES, ids=["even", "odd"])
def test_gatys_pytorch(tmp_path, capsys, shape):
    """The author's PyTorch notebook with a vgg_conv.pth: Gram / M, style weights 1e3/N_l², floor max pooling."""
    torch = require_torch()
    photo, art, start, rng = images(shape, 5)
    layers = float32_layers(rng)
    state = peers.gatys_pytorch_state_dict(layers)
    peers.save_state_dict(torch, state, tmp_path / "vgg_conv.pth")
    space = peers.gatys_pytorch_image_space
    x = space(start) + rng.standard_normal((1, 3) + shape)
    # the notebook writes its weights for the real widths (64, 128, 256, 512, 512): 1e3/N_l² of these
    weights = tuple(1e3 / n**2 for n in WIDTHS)
    loss, grad = peers.gatys_pytorch(torch, state, space(photo), [space(art)], x, style_weights=weights)
    ours, _ = run_grad(tmp_path, capsys, tmp_path / "vgg_conv.pth", "gatys-pytorch", photo, art, x)
    agree(ours, loss, grad)


@pytest.mark.parametrize("shape", SIZES, ids=["even", "odd"])
def test_tf_tutorial(tmp_path, capsys, shape):
    """TensorFlow's tutorial: x RGB 0..1, Keras's preprocess_input inside the model, floor pooling, TV 30 · L1."""
    torch = require_torch()
    photo, art, start, rng = images(shape, 6)
    # the tutorial's style image keeps its own size (its Gram is divided by its own M_l): narrower, the same longer side
    art = art[:, : shape[1] - 8] if shape[0] >= shape[1] else art[: shape[0] - 8]
    layers = float32_layers(rng)
    space = peers.tf_tutorial_image_space
    x = np.clip(space(start) + 0.05 * rng.standard_normal((1, 3) + shape), 0, 1)  # clip_0_1 after each step
    loss, grad = peers.tf_tutorial(torch, layers, space(photo), space(art), x)
    ours, _ = run_grad(tmp_path, capsys, keras_weights_file(tmp_path, layers), "tf-tutorial", photo, art, x)
    assert json.loads(str(ours["image"]))["range"] == [0, 1]
    agree(ours, loss, grad)


@pytest.mark.parametrize("shape", SIZES, ids=["even", "odd"])
def test_keras_example(tmp_path, capsys, shape):
    """Keras's example: Caffe's space, Σ(G−A)² over 4·3²·(H·W)² of the image, the power-1.25 TV in the loss."""
    torch = require_torch()
    photo, art, start, rng = images(shape, 7)
    layers = float32_layers(rng)
    space = peers.keras_example_image_space
    x = space(start) + rng.standard_normal((1, 3) + shape)
    loss, grad = peers.keras_example(torch, layers, space(photo), space(art), x)
    ours, _ = run_grad(tmp_path, capsys, keras_weights_file(tmp_path, layers), "keras-example", photo, art, x)
    agree(ours, loss, grad)


@pytest.mark.parametrize("shape", SIZES, ids=["even", "odd"])
def test_anishathalye(tmp_path, capsys, shape):
    """anishathalye/neural-style: RGB weights whose input is RGB minus the .mat's own mean, its filters transposed in
    space as its vgg.py reads them; SAME (ceil) pooling."""
    torch = require_torch()
    photo, art, start, rng = images(shape, 8)
    from test_matconvnet import write_mat

    bgr = float32_layers(rng)
    mean = (123.0, 117.0, 104.0)  # the file's own averageImage, not Caffe's mean pixel
    write_mat(tmp_path / "imagenet-vgg-verydeep-19.mat", {k: (W.astype(np.float32), b.astype(np.float32))
                                                          for k, (W, b) in bgr.items()},
              layout="meta.normalization", average=np.ones((4, 4, 3)) * np.array(mean))
    # anishathalye's vgg.py reads each .mat kernel (height × width × in × out, as MatConvNet stores it) with its
    # first two axes swapped: its network runs every filter transposed in space, which the record says
    F = {k: W.transpose(2, 3, 1, 0) for k, (W, _) in bgr.items()}  # the .mat's kernels, conv1_1 still BGR
    F["conv1_1"] = F["conv1_1"][:, :, ::-1, :]  # MatConvNet's RGB filters
    theirs = {k: peers.anishathalye_conv_from_mat(F[k], b) for k, (_, b) in bgr.items()}
    space = functools.partial(peers.anishathalye_image_space, mean_pixel=mean)
    x = space(start) + rng.standard_normal((1, 3) + shape)
    loss, grad = peers.anishathalye(torch, theirs, space(photo), [space(art)], x)
    ours, _ = run_grad(tmp_path, capsys, tmp_path / "imagenet-vgg-verydeep-19.mat", "anishathalye", photo, art, x)
    agree(ours, loss, grad)
    as_stored = dict(json.loads((ROOT / "refstyle/paper/records/anishathalye.json").read_text()), filters="as-stored",
                     name="as-stored")
    (tmp_path / "as-stored.json").write_text(json.dumps(as_stored))
    other, _ = run_grad(tmp_path, capsys, tmp_path / "imagenet-vgg-verydeep-19.mat", str(tmp_path / "as-stored.json"),
                        photo, art, x, "--force")
    assert abs(float(other["loss"]) / loss - 1) > 1e-3  # the filters as MatConvNet stores them: another network
    assert json.loads(str(ours["image"]))["mean"] == list(mean)  # the weights file's mean is the image space's


def test_compare_names_the_image_scale_and_the_record_that_fixes_it(tmp_path, capsys):
    """Today's neural-style-pt (×255) against refstyle's record of its older ×256 code: the same x, targets 256/255
    apart. compare says so, and names the record that reproduces B, instead of blaming an affine map of x."""
    torch = require_torch()
    photo, art, start, rng = images((32, 32), 9)
    state = peers.neural_style_pt_state_dict(float32_layers(rng))
    peers.save_state_dict(torch, state, tmp_path / "vgg19-d01eb7cb.pth")
    space = peers.neural_style_pt_image_space  # today's ×255
    x = space(start) + rng.standard_normal((1, 3, 32, 32))
    loss, grad = peers.neural_style_pt(torch, state, space(photo), [space(art)], x)
    np.savez(tmp_path / "theirs.npz", x=x, grad=grad, loss=np.float64(loss), loss_content=np.nan,  # not given
             loss_style=np.nan)  # no `image`: Caffe's space, ×255
    run_grad(tmp_path, capsys, tmp_path / "vgg19-d01eb7cb.pth", "neural-style-pt-x256", photo, art, x,
             "--weights-input", "caffe")
    assert main(["compare", str(tmp_path / "neural-style-pt-x256.npz"), str(tmp_path / "theirs.npz")]) == 1
    out, err = capsys.readouterr()
    assert not err
    assert "why: x holds the same numbers in both files" in out and "scaled 255/256 apart" in out
    assert "B is reproduced by --convention neural-style-pt" in out and "per-channel affine map" not in out
    ours, _ = run_grad(tmp_path, capsys, tmp_path / "vgg19-d01eb7cb.pth", "neural-style-pt", photo, art, x,
                       "--weights-input", "caffe")
    assert main(["compare", str(tmp_path / "neural-style-pt.npz"), str(tmp_path / "theirs.npz"), "--tol", "1e-6"]) == 0
