"""``refstyle explain``: the walkthrough's steps on a given image and layer."""

import re

import numpy as np
import pytest
from conftest import shared_path
from PIL import Image

from refstyle.app.cli import main


def explain(capsys, *argv):
    status = main(["explain", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def check_walk(out, layer):
    steps = [int(m) for m in re.findall(r"^(\d+)\. ", out, flags=re.M)]
    assert steps == list(range(1, 11)), out
    checks = re.findall(r"^   finite differences: (PASS within the noise floor|PASS)", out, flags=re.M)
    assert len(checks) == 4 and "FAIL" not in out, out
    assert f"responses F^l at {layer}" in out
    before, after = (float(v) for v in re.search(r"L: (\S+) -> (\S+) in", out).groups())
    assert after < before


def test_explain_with_generated_weights(tmp_path, capsys):
    path = tmp_path / "im.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3)).astype(np.uint8)).save(path)
    status, out, err = explain(capsys, path, "--layer", "conv2_1", "--size", 40)
    assert status == 0, err
    assert "a small generated vgg19" in out and "N_l = 6 filters, M_l = 15×20 = 300 positions" in out
    check_walk(out, "conv2_1")


def test_explain_with_the_real_weights(capsys):
    status, out, err = explain(capsys, shared_path("images", "tubingen.jpg"), "--weights",
                               shared_path("weights", "vgg16_hed_bsds500.caffemodel"), "--layer", "conv3_1", "--size", 40)
    assert status == 0, err
    assert "N_l = 256 filters, M_l = 8×10 = 80 positions" in out
    check_walk(out, "conv3_1")
    # step 10, the paper's layers on the real VGG16 at 30×40: each layer's N_l, M_l and share of L
    paper = out[out.index("10. the paper's layers"):]
    assert "content conv4_2, style conv1_1 conv2_1 conv3_1 conv4_1 conv5_1, w_l = 1/5" in paper
    rows = re.findall(r"^   (content|style) +(conv\d_\d): N_l = +(\d+), M_l = +(\d+)×(\d+) = +(\d+), .* = (\S+) +"
                      r"\((\S+)% of L\)$", paper, flags=re.M)
    assert [(kind, name, int(N), int(M)) for kind, name, N, _, _, M, _, _ in rows] == [
        ("content", "conv4_2", 512, 20), ("style", "conv1_1", 64, 1200), ("style", "conv2_1", 128, 300),
        ("style", "conv3_1", 256, 80), ("style", "conv4_1", 512, 20), ("style", "conv5_1", 512, 6)]
    L = float(re.search(r"^   L = (\S+);", paper, flags=re.M).group(1))
    assert sum(float(term) for *_, term, _ in rows) == pytest.approx(L, rel=1e-3)
    assert sum(float(share) for *_, share in rows) == pytest.approx(100, abs=0.5)
    assert re.search(r"^   finite differences: (PASS: 4 probes|PASS within the noise floor \S+: \d of 4 probes)", paper,
                     flags=re.M)


def test_the_paper_layers_step_is_skipped_on_an_image_too_small_for_conv5_1(tmp_path, capsys):
    path = tmp_path / "im.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 12, 3)).astype(np.uint8)).save(path)
    status, out, err = explain(capsys, path, "--layer", "conv2_1", "--size", 12, "--iters", 2)
    assert status == 0, err
    assert "10. the paper's layers" in out and "(skipped: the image is 12×12, conv5_1 needs 17 pixels on each side)" in out


def test_explain_errors(tmp_path, capsys):
    path = tmp_path / "im.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    status, _, err = explain(capsys, path, "--layer", "conv9_1")
    assert status == 1 and "vgg19 has no layer 'conv9_1'" in err
    status, _, err = explain(capsys, path, "--layer", "conv5_1", "--size", 8)
    assert status == 1 and "too small for conv5_1" in err
