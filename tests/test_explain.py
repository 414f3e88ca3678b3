"""``refstyle explain``: the walkthrough's steps on a given image and layer."""

import re

import numpy as np
from conftest import shared_path
from PIL import Image

from refstyle.cli import main


def explain(capsys, *argv):
    status = main(["explain", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def check_walk(out, layer):
    steps = [int(m) for m in re.findall(r"^(\d)\. ", out, flags=re.M)]
    assert steps == list(range(1, 10)), out
    checks = re.findall(r"^   finite differences: (PASS within the noise floor|PASS)", out, flags=re.M)
    assert len(checks) == 3 and "FAIL" not in out, out
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


def test_explain_errors(tmp_path, capsys):
    path = tmp_path / "im.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    status, _, err = explain(capsys, path, "--layer", "conv9_1")
    assert status == 1 and "vgg19 has no layer 'conv9_1'" in err
    status, _, err = explain(capsys, path, "--layer", "conv5_1", "--size", 8)
    assert status == 1 and "too small for conv5_1" in err
