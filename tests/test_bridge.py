"""The PyTorch bridge: a user's script writes a gradient file that ``refstyle compare`` checks against ``refstyle grad``.

The "user's script" here is a small nn.Sequential written the way PyTorch's tutorial
builds its model (a normalisation module, then ``conv_i``/``relu_i``/``pool_i``), its
losses computed from the responses the bridge's hooks record.
"""

import json

import numpy as np
import pytest
from conftest import require_torch
from PIL import Image

import peers
from refstyle.app.bridge import gradient_arrays_from_torch, record_responses, write_gradient_file_from_torch
from refstyle.app.cli import main
from refstyle.app.validate import compare_files, read_gradient_file
from refstyle.errors import RefstyleError

WIDTHS = (4, 6, 8, 8, 8)
TUTORIAL_STYLE = ["conv_1", "conv_2", "conv_3", "conv_4", "conv_5"]




def tutorial_model(torch, layers, upto="conv_5"):
    """The tutorial's layout: ``normalization``, then conv_i / relu_i / pool_i (floor max pooling), up to ``upto``."""
    nn = torch.nn

    class Normalize(nn.Module):
        def __init__(self):
            super().__init__()
            self.mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(-1, 1, 1)
            self.std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(-1, 1, 1)

        def forward(self, img):
            return (img - self.mean) / self.std

    model, i = nn.Sequential(), 0
    model.add_module("normalization", Normalize())
    for kind, caffe_name in peers.vgg_sequence("vgg19"):
        i += kind == "conv"
        name = f"{kind}_{i}"
        if kind == "conv":
            W, b = layers[caffe_name]
            conv = nn.Conv2d(W.shape[1], W.shape[0], 3, padding=1).double()
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(W))
                conv.bias.copy_(torch.from_numpy(b))
            model.add_module(name, conv)
        elif kind == "relu":
            model.add_module(name, nn.ReLU(inplace=False))
        else:
            model.add_module(name, nn.MaxPool2d(2, 2))
        if name == upto:
            break
    return model


def gram(torch, F):
    a, b, c, d = F.shape
    X = F.reshape(a * b, c * d)
    return X @ X.T / (a * b * c * d)


def tutorial_evaluation(torch, model, photo, art, x, F):
    """The tutorial's closure, from the recorded responses ``F``: 1e6 Σ mse(G, A) + mse(F, P) at conv_4."""
    mse = torch.nn.functional.mse_loss
    with torch.no_grad():
        model(photo)
        P = F["conv_4"].detach().clone()
        model(art)
        A = {n: gram(torch, F[n]).detach() for n in TUTORIAL_STYLE}
    model(x)
    style = sum(mse(gram(torch, F[n]), A[n]) for n in TUTORIAL_STYLE)
    content = mse(F["conv_4"], P)
    return 1e6 * style + content, content, style


def setup(tmp_path, shape, seed=4):
    torch = require_torch()
    rng = np.random.default_rng(seed)
    layers = {k: (W.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64))
              for k, (W, b) in peers.random_vgg_layers(rng, "vgg19", WIDTHS).items()}
    peers.save_state_dict(torch, peers.pytorch_tutorial_state_dict(layers), tmp_path / "vgg19_features.pth")
    photo, art = (rng.integers(0, 256, shape + (3,)).astype(np.uint8) for _ in range(2))
    space = peers.pytorch_tutorial_image_space
    for name, rgb in (("photo", photo), ("art", art)):  # as README says: the tutorial's tensors saved as PNG
        img = torch.from_numpy(space(rgb))
        Image.fromarray((img[0].permute(1, 2, 0) * 255).round().byte().numpy()).save(tmp_path / f"{name}.png")
    x0 = np.clip(space(rng.integers(0, 256, shape + (3,)).astype(np.uint8))
                 + 0.05 * rng.standard_normal((1, 3) + shape), 0, 1)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return torch, layers, t(space(photo)), t(space(art)), t(x0).requires_grad_(True)


def refstyle_grad(tmp_path, capsys, x, shape, out="ours.npz"):
    np.save(tmp_path / "x.npy", x.detach().numpy())
    status = main(["grad", str(tmp_path / "photo.png"), str(tmp_path / "art.png"),
                   "--weights", str(tmp_path / "vgg19_features.pth"), "--weights-input", "torchvision",
                   "--convention", "pytorch-tutorial", "--x", str(tmp_path / "x.npy"), "--dtype", "float64",
                   "-o", str(tmp_path / out)])  # README's command: --x sets the size
    assert status == 0, capsys.readouterr().err
    capsys.readouterr()
    return tmp_path / out


@pytest.mark.parametrize("shape", [(32, 32), (37, 35)], ids=["even", "odd"])
def test_a_tutorial_script_with_the_bridge_agrees_with_refstyle_grad(tmp_path, capsys, shape):
    torch, layers, photo, art, x = setup(tmp_path, shape)
    model = tutorial_model(torch, layers)
    F = record_responses(model, TUTORIAL_STYLE)  # line 1 of 3 in the user's script
    loss, content, style = tutorial_evaluation(torch, model, photo, art, x, F)
    arrays = write_gradient_file_from_torch(tmp_path / "theirs.npz", x, F, loss, convention="pytorch-tutorial",
                                            loss_content=content, loss_style=style)
    assert sorted(k for k in arrays if k.startswith("F:")) == [
        "F:conv1_1:pre", "F:conv1_2:pre", "F:conv2_1:pre", "F:conv2_2:pre", "F:conv3_1:pre"]
    assert json.loads(str(arrays["image"])) == {"channels": "RGB", "range": [0, 1], "mean": [0.0, 0.0, 0.0]}
    loss.backward()  # the graph was kept: the script goes on as before
    np.testing.assert_allclose(arrays["grad"], x.grad.numpy(), rtol=1e-12, atol=0)
    ours = refstyle_grad(tmp_path, capsys, x, shape)
    result = compare_files(ours, tmp_path / "theirs.npz", tol=1e-6)
    assert not result.failed, result.format()
    keys = [r.key for r in result.rows]
    assert "dF:conv1_1:pre" in keys and "grad" in keys and "loss_style" in keys
    # README's compare line, its plot included
    plot = tmp_path / "tutorial-vs-refstyle.png"
    assert main(["compare", str(ours), str(tmp_path / "theirs.npz"), "--tol", "1e-6", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith("PASS: all") and out[-1] == f"wrote {plot}"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the layer's own dF is not autograd's total: what flows back from deeper layers is taken away
    e = read_gradient_file(ours)
    (total,) = torch.autograd.grad(tutorial_evaluation(torch, model, photo, art, x, F)[0], F["conv_1"])
    assert np.abs(total.numpy() - e["dF:conv1_1:pre"]).max() > 1e-3 * np.abs(e["dF:conv1_1:pre"]).max()
    np.testing.assert_allclose(arrays["dF:conv1_1:pre"], e["dF:conv1_1:pre"], rtol=1e-6,
                               atol=1e-6 * np.abs(e["dF:conv1_1:pre"]).max())


def test_a_left_out_layer_shows_as_a_dF_that_differs(tmp_path, capsys):
    torch, layers, photo, art, x = setup(tmp_path, (32, 32), seed=5)
    model = tutorial_model(torch, layers)
    F = record_responses(model, TUTORIAL_STYLE)
    loss, _, _ = tutorial_evaluation(torch, model, photo, art, x, F)
    partial = {n: F[n] for n in TUTORIAL_STYLE if n != "conv_2"}  # conv_2's style term is in the loss
    write_gradient_file_from_torch(tmp_path / "theirs.npz", x, partial, loss, convention="pytorch-tutorial")
    result = compare_files(refstyle_grad(tmp_path, capsys, x, (32, 32)), tmp_path / "theirs.npz", tol=1e-6)
    failed = [r.key for r in result.failed]
    assert "dF:conv1_1:pre" in failed and "grad" not in failed and "dF:conv2_1:pre" not in failed


def test_totals_not_given_are_nan_and_settings_say_who_wrote_it(tmp_path):
    torch = require_torch()
    x = torch.linspace(-1, 1, 3 * 5 * 5, dtype=torch.float64).reshape(1, 3, 5, 5).requires_grad_(True)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 2, 3, padding=1).double()
    F1 = conv(x)
    F2 = torch.relu(F1)
    loss = (F1 ** 2).sum() + 3 * F2.sum()
    arrays = gradient_arrays_from_torch(x, {"conv1_1": F2, "conv1_1:pre": F1}, loss)
    assert np.isnan(arrays["loss_content"]) and np.isnan(arrays["loss_style"])
    settings = json.loads(str(arrays["settings"]))
    assert settings["writer"] == "refstyle.app.bridge" and settings["names"] == {"conv1_1:pre": "conv1_1:pre",
                                                                                 "conv1_1": "conv1_1"}
    # own terms: d/dF1 (F1²) = 2 F1 (not the total 2 F1 + 3·[F1 > 0]); d/dF2 (3 ΣF2) = 3
    np.testing.assert_allclose(arrays["dF:conv1_1:pre"], 2 * F1.detach().numpy(), rtol=0, atol=1e-14)  # (2F1+3)-3
    np.testing.assert_allclose(arrays["dF:conv1_1"], np.full(F2.shape, 3.0), rtol=1e-14)
    assert json.loads(str(arrays["image"]))["channels"] == "BGR"  # no convention: Caffe's image space


def test_bad_input_is_a_clear_error():
    torch = require_torch()
    x = torch.zeros(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    F = torch.relu(x * 2)
    loss = F.sum()
    with pytest.raises(RefstyleError, match="not in the loss's graph"):
        gradient_arrays_from_torch(x, {"conv1_1": F.detach()}, loss)
    with pytest.raises(RefstyleError, match="'relu9_9' is no layer refstyle knows under the convention neural-style"):
        gradient_arrays_from_torch(x, {"relu9_9": F}, loss, convention="neural-style-pt")
    with pytest.raises(RefstyleError, match="both refstyle's conv1_1"):
        gradient_arrays_from_torch(x, {"relu1_1": F, "conv1_1": F}, loss, convention="neural-style-pt")
    with pytest.raises(RefstyleError, match="scalar tensor"):
        gradient_arrays_from_torch(x, {"conv1_1": F}, float(loss.detach()))
    with pytest.raises(RefstyleError, match="does not require grad"):
        gradient_arrays_from_torch(x.detach(), {"conv1_1": F}, loss)
    with pytest.raises(RefstyleError, match="image must name an image space"):
        gradient_arrays_from_torch(x, {"conv1_1": F}, loss, image={"channels": "XYZ"})
    with pytest.raises(RefstyleError, match="no submodule named 'conv_9'"):
        record_responses(torch.nn.Sequential(torch.nn.ReLU()), ["conv_9"])
