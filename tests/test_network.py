"""The VGG stacks on small generated weights: layer tables, depth, backward, errors."""

import numpy as np
import pytest
from conftest import max_rel_error, numeric_gradient

import refstyle
from refstyle.nn import layers as L
from refstyle.errors import LayerError, RefstyleError, WeightsError
from refstyle.nn.arch import conv_layers

rng = np.random.default_rng(7)


def test_layer_tables():
    assert refstyle.VGG19_LAYERS[:5] == ("conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2")
    assert len(conv_layers("vgg19")) == 16 and len(conv_layers("vgg16")) == 13
    assert refstyle.VGG19_LAYERS[-5:] == ("conv5_1", "conv5_2", "conv5_3", "conv5_4", "pool5")
    assert refstyle.VGG16_LAYERS[-4:] == ("conv5_1", "conv5_2", "conv5_3", "pool5")
    assert "conv3_4" not in refstyle.VGG16_LAYERS


def _reference_forward(weights, arch, pooling, x, upto):
    """The stack written out by hand from the layer primitives, to compare with VGG."""
    h, out = x, {}
    for name in refstyle.ARCHS[arch]:
        if name.startswith("conv"):
            h = np.maximum(L.conv_forward(h, *weights[name])[0], 0)
        else:
            h = L.pool_forward(h, pooling)[0]
        out[name] = h
        if name == upto:
            return out


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_forward_returns_post_relu_responses_and_stops_at_the_deepest(arch, pooling):
    w = refstyle.generate_weights(arch, seed=3)
    net = refstyle.VGG(w, arch=arch, pooling=pooling, dtype="float64")
    x = rng.standard_normal((1, 3, 19, 23)) * 50
    F, cache = net.forward(x, ["conv3_1", "conv1_2", "pool2"])
    assert set(F) == {"conv3_1", "conv1_2", "pool2"}
    assert cache.names[-1] == "conv3_1" and len(cache.names) == refstyle.ARCHS[arch].index("conv3_1") + 1
    ref = _reference_forward(w, arch, pooling, x, "conv3_1")
    for name in F:
        assert max_rel_error(F[name], ref[name]) < 1e-13
        assert F[name].min() >= 0
    assert F["conv1_2"].shape == (1, 4, 19, 23)
    assert F["pool2"].shape == (1, 6, 5, 6)  # 19 -> 10 -> 5, 23 -> 12 -> 6
    assert F["conv3_1"].shape == (1, 8, 5, 6)


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_backward_from_several_layers_finite_differences(arch, pooling):
    w = refstyle.generate_weights(arch, seed=5)
    net = refstyle.VGG(w, arch=arch, pooling=pooling, dtype="float64")
    x = rng.standard_normal((1, 3, 13, 11)) * 30
    names = ["conv1_1", "conv2_2", "pool3", "conv4_1", "conv5_1"]
    F, cache = net.forward(x, names)
    dF = {name: rng.standard_normal(F[name].shape) for name in names}
    dx = net.backward(dF, cache)
    assert dx.shape == x.shape and dx.dtype == np.float64

    def f(z):
        Fz, _ = net.forward(z, names)
        return sum(float(np.sum(Fz[n] * dF[n])) for n in names)

    coords = rng.choice(x.size, 80, replace=False)
    numeric = numeric_gradient(f, x, h=1e-5, coords=coords)
    assert max_rel_error(dx.reshape(-1)[coords], numeric.reshape(-1)[coords]) < 1e-6


def test_backward_sums_the_gradients_of_its_layers():
    net = refstyle.VGG(refstyle.generate_weights("vgg19"), dtype="float64")
    x = rng.standard_normal((1, 3, 9, 10)) * 30
    F, cache = net.forward(x, ["conv1_2", "conv3_1"])
    d1 = rng.standard_normal(F["conv1_2"].shape)
    d3 = rng.standard_normal(F["conv3_1"].shape)
    both = net.backward({"conv1_2": d1, "conv3_1": d3}, cache)
    apart = net.backward({"conv1_2": d1}, cache) + net.backward({"conv3_1": d3}, cache)
    assert max_rel_error(both, apart) < 1e-12


def test_float32_default_and_weights_that_end_early():
    w = refstyle.generate_weights("vgg19", depth="conv2_1")
    net = refstyle.VGG(w)
    assert net.dtype == np.float32 and net.layers[-1] == "conv2_1"
    F, _ = net.forward(rng.standard_normal((1, 3, 8, 8)), "conv2_1")
    assert F["conv2_1"].dtype == np.float32
    with pytest.raises(LayerError, match="weights end at 'conv2_1'"):
        net.forward(np.zeros((1, 3, 8, 8)), ["conv3_1"])
    # a prefix ending at the last conv of a block also offers that block's pool
    assert refstyle.VGG(refstyle.generate_weights("vgg16", depth="conv2_2")).layers[-1] == "pool2"


# --- errors ------------------------------------------------------------------------


def test_unknown_layer_names():
    net = refstyle.VGG(refstyle.generate_weights("vgg16"), arch="vgg16")
    x = np.zeros((1, 3, 8, 8))
    with pytest.raises(LayerError, match="vgg16 has no layer 'conv6_1'"):
        net.forward(x, ["conv6_1"])
    with pytest.raises(LayerError, match="it is a vgg19 layer"):
        net.forward(x, ["conv5_4"])
    with pytest.raises(LayerError, match="no layers requested"):
        net.forward(x, [])
    F, cache = net.forward(x, ["conv1_1"])
    with pytest.raises(LayerError, match="forward pass stopped at 'conv1_1'"):
        net.backward({"conv2_1": np.zeros(1)}, cache)
    with pytest.raises(RefstyleError, match=r"has shape \(1, 2\)"):
        net.backward({"conv1_1": np.zeros((1, 2))}, cache)


def test_weights_of_the_wrong_architecture():
    with pytest.raises(WeightsError, match="'conv3_4' that vgg16 lacks: these look like vgg19"):
        refstyle.VGG(refstyle.generate_weights("vgg19"), arch="vgg16")
    with pytest.raises(WeightsError, match="lack 'conv3_4'.*look like vgg16"):
        refstyle.VGG(refstyle.generate_weights("vgg16"), arch="vgg19")
    w = dict(refstyle.generate_weights("vgg16"))
    W, b = w["conv2_1"]
    w["conv2_1"] = (W[:, :3], b)
    with pytest.raises(WeightsError, match=r"conv2_1: filters of shape \(6, 3, 3, 3\) do not fit vgg16: expected \(out, 4, 3, 3\)"):
        refstyle.VGG(w, arch="vgg16")
    w = dict(refstyle.generate_weights("vgg16"))
    w["conv1_1"] = (w["conv1_1"][0], np.zeros(3))
    with pytest.raises(WeightsError, match=r"conv1_1: bias of shape \(3,\)"):
        refstyle.VGG(w, arch="vgg16")
    with pytest.raises(RefstyleError, match="unknown architecture 'vgg11'"):
        refstyle.VGG(refstyle.generate_weights("vgg16"), arch="vgg11")
    with pytest.raises(RefstyleError, match="unknown pooling 'min'"):
        refstyle.VGG(refstyle.generate_weights("vgg16"), pooling="min")


def test_the_architecture_is_inferred_from_the_weights():
    assert refstyle.VGG(refstyle.generate_weights("vgg16")).arch == "vgg16"
    assert refstyle.VGG(refstyle.generate_weights("vgg19")).arch == "vgg19"
    plain = dict(refstyle.generate_weights("vgg16"))  # no meta: inferred from the names
    assert refstyle.VGG(plain).arch == "vgg16"


def test_input_must_be_a_caffe_blob():
    net = refstyle.VGG(refstyle.generate_weights("vgg16"))
    with pytest.raises(RefstyleError, match="1×3×H×W"):
        net.forward(np.zeros((8, 8, 3)), ["conv1_1"])


def test_gpu_request_without_cupy_is_a_clear_error():
    from refstyle.backend import have_gpu

    if have_gpu():
        pytest.skip("a GPU is present")
    with pytest.raises(RefstyleError, match="needs CuPy"):
        refstyle.VGG(refstyle.generate_weights("vgg16"), device="gpu")


def test_the_same_numbers_on_every_backend(xp):
    w = refstyle.generate_weights("vgg19", seed=11)
    device = "cpu" if xp is np else "gpu"
    net = refstyle.VGG(w, dtype="float32", device=device)
    ref = refstyle.VGG(w, dtype="float64")
    x = rng.standard_normal((1, 3, 17, 15)) * 40
    names = ["conv2_1", "conv4_1"]
    F, cache = net.forward(xp.asarray(x), names)
    Fr, cache_r = ref.forward(x, names)
    dF = {n: rng.standard_normal(Fr[n].shape) for n in names}
    dx = net.backward({n: xp.asarray(d) for n, d in dF.items()}, cache)
    assert type(dx) is xp.ndarray and dx.dtype == np.float32
    from refstyle.backend import to_numpy

    for n in names:
        assert max_rel_error(to_numpy(F[n]), Fr[n]) < 1e-5
    assert max_rel_error(to_numpy(dx), ref.backward(dF, cache_r)) < 1e-5


class _FakeCupy:
    """A CuPy that imports and counts a GPU, but whose kernels fail (no NVRTC) or whose products are wrong."""

    def __init__(self, fail=None, wrong=False):
        self.fail, self.wrong = fail, wrong
        self.float32 = np.float32
        runtime = type("runtime", (), {"getDeviceCount": staticmethod(lambda: 1)})
        self.cuda = type("cuda", (), {"runtime": runtime})

    def arange(self, n, dtype):
        if self.fail:
            raise RuntimeError(self.fail)
        a = np.arange(n, dtype=dtype)
        fake = self

        class Array(np.ndarray):
            def get(self):
                return np.asarray(self) + (1 if fake.wrong else 0)

        return a.view(Array)


@pytest.mark.parametrize("fake, reason", [
    (_FakeCupy(fail="libnvrtc.so.12: cannot open shared object file"), "cannot run a kernel here.*libnvrtc"),
    (_FakeCupy(wrong=True), "computed a wrong matrix product"),
])
def test_have_gpu_runs_a_kernel_and_a_product_before_it_says_yes(monkeypatch, fake, reason):
    import sys

    from refstyle import backend

    monkeypatch.setitem(sys.modules, "cupy", fake)
    backend._probe.cache_clear()
    try:
        assert not backend.have_gpu()
        with pytest.raises(RefstyleError, match=f"needs CuPy running on an NVIDIA GPU, and CuPy {reason}"):
            refstyle.VGG(refstyle.generate_weights("vgg16"), device="gpu")
        monkeypatch.setitem(sys.modules, "cupy", _FakeCupy())
        backend._probe.cache_clear()
        assert backend.have_gpu()  # the same fake with working kernels passes the probe
    finally:
        backend._probe.cache_clear()
