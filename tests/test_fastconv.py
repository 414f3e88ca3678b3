"""The fast kernels (refstyle.nn.fast) against the reference ones (refstyle.nn.layers).

Every kernel the fast path replaces — the 3×3 convolution with its ReLU (Winograd,
channels-last im2col, and im2col over planes for few channels), its input gradient,
and both Caffe poolings — is compared with the reference on odd sizes (7×9, 1×1, 2×3,
…), with bands of one row (the smallest budget) and of the whole image, forward and
backward, in float64 (to 1e-12: the same function up to rounding) and float32 (to
2e-6 per layer, 2e-5 through a whole network: rounding of a different order of
operations). Then the whole VGG and the paper's objective with ``kernels="fast"``
against ``kernels="reference"``. Speed is measured in ``benchmarks/``, never here.
"""

import threading

import numpy as np
import pytest
from conftest import max_rel_error

import refstyle
from refstyle.nn import fast as fc
from refstyle.nn import layers as L
from refstyle.backend import to_numpy
from refstyle.errors import RefstyleError
from refstyle.paper.losses import as_matrix, content_loss, gram, style_loss
from refstyle.paper.objective import Objective, content_targets, style_targets

rng = np.random.default_rng(2024)

# Largest relative error (max |a - b| / max |b|) allowed between the fast and the
# reference kernels: one layer, and a whole network with its objective.
RTOL_LAYER = {np.dtype("float32"): 2e-6, np.dtype("float64"): 1e-12}
RTOL_NET = {np.dtype("float32"): 2e-5, np.dtype("float64"): 1e-12}

# Spatial sizes: odd and even, a single pixel, a single row, one band of tiles.
SIZES = [(7, 9), (1, 1), (2, 3), (1, 6), (5, 4), (8, 8)]
# (input channels, output channels): few channels use "planes", 16 and more Winograd or im2col.
CHANNELS = [(3, 8), (16, 5), (20, 32)]
BUDGETS = [1, None]  # one row (or tile row) per band, and the default


def blob(xp, dtype, shape, scale=1.0):
    return xp.asarray(rng.standard_normal(shape) * scale, dtype=dtype)


def conv_weights(xp, dtype, C, O):
    W = blob(xp, dtype, (O, C, 3, 3), 1 / np.sqrt(9 * C))
    return W, blob(xp, dtype, (O,), 0.3)


# --- convolution + ReLU --------------------------------------------------------


@pytest.mark.parametrize("method", fc.METHODS)
@pytest.mark.parametrize("C, O", CHANNELS)
@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("budget", BUDGETS)
def test_conv_relu_matches_the_reference(xp, dtype, method, C, O, hw, budget):
    x = blob(xp, dtype, (1, C) + hw)
    W, b = conv_weights(xp, dtype, C, O)
    z, conv_cache = L.conv_forward(x, W, b)
    F_ref, relu_cache = L.relu_forward(z)
    dF = blob(xp, dtype, F_ref.shape)
    dx_ref = L.conv_backward(L.relu_backward(dF, relu_cache), conv_cache)

    plan = fc.conv_plan(W, b, method)
    assert plan.method == (method if C >= fc.MIN_CHANNELS else "planes")
    work = fc.Workspace(xp)
    F, cache = fc.conv_relu_forward(fc.hwc_view(x), plan, work, budget)
    dx = fc.conv_relu_backward(fc.to_hwc(dF), cache, work, budget)
    assert F.shape == hw + (O,) and dx.shape == hw + (C,)
    assert F.dtype == dtype and dx.dtype == dtype and type(F) is type(x)
    assert max_rel_error(to_numpy(fc.nchw(F)), to_numpy(F_ref)) < RTOL_LAYER[dtype]
    assert max_rel_error(to_numpy(fc.nchw(dx)), to_numpy(dx_ref)) < RTOL_LAYER[dtype]


@pytest.mark.parametrize("hw", [(7, 9), (6, 5)])
def test_winograd_without_bias_or_relu_is_the_plain_correlation(hw):
    x = rng.standard_normal((1, 17) + hw)
    W = rng.standard_normal((6, 17, 3, 3))
    y = fc.winograd_conv(fc.hwc_view(x), fc.winograd_filters(W))
    assert max_rel_error(fc.nchw(y), L.conv_forward(x, W, np.zeros(6))[0]) < 1e-13
    # and with the backward filters, the correlation with the flipped, channel-swapped W
    dy = rng.standard_normal((1, 6) + hw)
    dx = fc.winograd_conv(fc.hwc_view(dy), fc.winograd_backward_filters(fc.winograd_filters(W)))
    assert max_rel_error(fc.nchw(dx), L.conv_backward(dy, L.ConvCache(W))) < 1e-13


def test_backward_filters_are_the_transform_of_the_flipped_transposed_filters():
    W = rng.standard_normal((5, 7, 3, 3))
    flipped = np.ascontiguousarray(W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    direct = fc.winograd_filters(flipped)  # (16, C, O): the backward maps O channels to C
    for copy in (False, True):
        U_back = fc.winograd_backward_filters(fc.winograd_filters(W), copy=copy)
        for k in range(16):
            np.testing.assert_allclose(U_back[k], direct[k], rtol=0, atol=1e-14)


def test_winograd_filters_follow_the_equation():
    W = rng.standard_normal((2, 3, 3, 3))
    U = fc.winograd_filters(W)
    for o in range(2):
        for c in range(3):
            expected = fc.WINOGRAD_G @ W[o, c] @ fc.WINOGRAD_G.T  # U = G g Gᵀ
            np.testing.assert_allclose(U[:, o, c].reshape(4, 4), expected, rtol=0, atol=1e-14)


def test_winograd_filters_in_float32_are_rounded_float64_ones():
    W = rng.standard_normal((24, 20, 3, 3))
    U64 = fc.winograd_filters(W)
    out = np.empty((16, 24, 20), np.float32)
    U32 = fc.winograd_filters(W.astype(np.float32), out=out)
    assert U32 is out and U32.dtype == np.float32
    assert max_rel_error(U32, U64) < 4e-7  # a few float32 units: a sum of at most nine terms


@pytest.mark.parametrize("small_layer", [0, 10**9])
def test_both_layouts_of_the_backward_filters_give_the_input_gradient(monkeypatch, small_layer):
    # big layers use views of U for the input gradient, small ones a contiguous copy
    monkeypatch.setattr(fc.conv, "SMALL_LAYER", small_layer)
    x, dF = rng.standard_normal((1, 20, 7, 6)), rng.standard_normal((1, 24, 7, 6))
    W, b = conv_weights(np, np.float64, 20, 24)
    z, conv_cache = L.conv_forward(x, W, b)
    _, relu_cache = L.relu_forward(z)
    dx_ref = L.conv_backward(L.relu_backward(dF, relu_cache), conv_cache)
    work = fc.Workspace()
    _, cache = fc.conv_relu_forward(fc.hwc_view(x), fc.conv_plan(W, b), work)
    dx = fc.conv_relu_backward(fc.to_hwc(dF), cache, work)
    assert max_rel_error(fc.nchw(dx), dx_ref) < 1e-12
    copy_bytes = 0 if small_layer == 0 else 16 * 20 * 24 * 8
    assert work.nbytes("filters") >= 16 * 20 * 24 * 8 + copy_bytes


def test_the_fast_network_keeps_no_transformed_filters():
    # U = G g Gᵀ would hold 16/9 of the weights: it is made in each sweep, in one buffer
    weights = {name: conv_weights(np, np.float32, C, O) for name, C, O in
               [("conv1_1", 3, 16), ("conv1_2", 16, 16), ("conv2_1", 16, 24), ("conv2_2", 24, 24)]}
    net = refstyle.VGG(weights, arch="vgg16", kernels="fast")
    for name, plan in net.kernel_set.plans.items():
        if plan.method == "winograd":
            assert plan.K is net.params[name][0] and plan.K_back is None
    x = blob(np, np.float32, (1, 3, 12, 10))
    F, cache = net.forward(x, ["conv1_2", "conv2_2"])
    net.backward({n: np.ones_like(v) for n, v in F.items()}, cache)
    largest = max(16 * W.shape[0] * W.shape[1] * 4 for W, _ in weights.values())
    # small layers add a contiguous copy for the input gradient
    assert largest <= net.kernel_set.workspace.nbytes("filters") <= 2 * largest + 2 * fc.Workspace.ALIGN


def test_a_workspace_serves_layers_of_every_shape_in_turn():
    work = fc.Workspace()
    x = rng.standard_normal((1, 16, 9, 7))
    layers = [conv_weights(np, np.float64, 16, 24), conv_weights(np, np.float64, 24, 16)]
    h, h_ref = fc.hwc_view(x), x
    for W, b in layers:
        h, _ = fc.conv_relu_forward(h, fc.conv_plan(W, b), work, budget=4096)
        h_ref = np.maximum(L.conv_forward(h_ref, W, b)[0], 0)
        assert max_rel_error(fc.nchw(h), h_ref) < 1e-12
    # bands of one tile row: the scratch depends on the width, not on the height
    held = work.nbytes("bands")
    fc.conv_relu_forward(fc.to_hwc(rng.standard_normal((1, 24, 41, 7))), fc.conv_plan(*layers[1]), work, budget=4096)
    assert 0 < work.nbytes("bands") == held
    work.clear()
    assert work.nbytes() == 0


def test_the_kernels_do_not_write_into_their_inputs():
    x = rng.standard_normal((1, 16, 5, 6))
    W, b = conv_weights(np, np.float64, 16, 16)
    x0, W0 = x.copy(), W.copy()
    plan = fc.conv_plan(W, b)
    F, cache = fc.conv_relu_forward(fc.hwc_view(x), plan)
    dF = fc.to_hwc(rng.standard_normal((1, 16, 5, 6)))
    dF0 = dF.copy()
    fc.conv_relu_backward(dF, cache)
    pooled, pool_cache = fc.pool_forward(F, "max")
    F0 = F.copy()
    fc.pool_backward(np.ones_like(pooled), pool_cache)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(W, W0)
    np.testing.assert_array_equal(dF, dF0)
    np.testing.assert_array_equal(F, F0)


def test_unknown_method():
    with pytest.raises(ValueError, match="method must be one of"):
        fc.conv_plan(np.zeros((2, 16, 3, 3)), np.zeros(2), "fft")


# --- pooling -------------------------------------------------------------------


@pytest.mark.parametrize("mode", L.POOLINGS)
@pytest.mark.parametrize("hw", [(1, 1), (1, 3), (2, 3), (3, 3), (4, 4), (5, 7), (6, 9), (7, 2)])
def test_pool_matches_the_reference(xp, dtype, mode, hw):
    x = blob(xp, dtype, (1, 5) + hw)
    y_ref, cache_ref = L.pool_forward(x, mode)
    dy = blob(xp, dtype, y_ref.shape)
    dx_ref = L.pool_backward(dy, cache_ref)
    y, cache = fc.pool_forward(fc.to_hwc(x), mode)
    dx = fc.pool_backward(fc.to_hwc(dy), cache)
    assert y.dtype == dtype and dx.dtype == dtype and type(y) is type(x)
    if mode == "avg" and xp is not np:
        # CuPy's reduction kernel adds a window's cells in tree order, the fast kernel one by
        # one: the same sum up to rounding, a few units in the last place of the window's
        # largest cell (the divisors 1, 2, 4 are exact either way)
        assert max_rel_error(to_numpy(fc.nchw(y)), to_numpy(y_ref)) <= 16 * np.finfo(dtype).eps
    else:  # NumPy sums the same cells in the same order, and max pooling does no arithmetic
        np.testing.assert_array_equal(to_numpy(fc.nchw(y)), to_numpy(y_ref))
    np.testing.assert_array_equal(to_numpy(fc.nchw(dx)), to_numpy(dx_ref))  # dy times 1, 1/2 or 1/4: exact


def test_max_pool_routes_ties_to_the_first_maximum():
    x = np.array([[5.0, 5.0, 1.0, 3.0, 7.0], [5.0, 5.0, 3.0, 2.0, 7.0], [1.0, 1.0, 1.0, 1.0, 0.0]]).reshape(1, 1, 3, 5)
    y, cache = fc.pool_forward(fc.to_hwc(x), "max")
    dx = fc.pool_backward(fc.to_hwc(np.arange(1.0, 7.0).reshape(1, 1, 2, 3)), cache)
    y_ref, cache_ref = L.pool_forward(x, "max")
    np.testing.assert_array_equal(fc.nchw(y), y_ref)
    np.testing.assert_array_equal(fc.nchw(dx), L.pool_backward(np.arange(1.0, 7.0).reshape(1, 1, 2, 3), cache_ref))
    np.testing.assert_array_equal(fc.nchw(dx)[0, 0, 0], [1.0, 0.0, 0.0, 2.0, 3.0])


def test_unknown_pooling_mode():
    with pytest.raises(ValueError, match="pooling mode"):
        fc.pool_forward(np.zeros((2, 2, 1)), "min")


# --- layouts and masks -----------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (1, 17, 4, 3), (1, 64, 9, 10), (1, 1, 1, 1)])
def test_layout_conversions(xp, shape):
    x = blob(xp, np.float32, shape)
    h = fc.to_hwc(x)
    assert h.flags.c_contiguous and h.shape == shape[2:] + shape[1:2]
    np.testing.assert_array_equal(to_numpy(h), to_numpy(x)[0].transpose(1, 2, 0))
    np.testing.assert_array_equal(to_numpy(fc.nchw(h)), to_numpy(x))
    np.testing.assert_array_equal(to_numpy(fc.nchw(fc.hwc_view(x))), to_numpy(x))
    assert fc.nchw(h).flags.c_contiguous
    twice = fc.add_nchw(h.copy(), x)
    np.testing.assert_array_equal(to_numpy(twice), 2 * to_numpy(h))
    # a blob that is channels last in memory (the fast network's responses and their gradients)
    v = fc.nchw_view(h)
    assert v.shape == shape and fc.hwc_view(v).flags.c_contiguous
    np.testing.assert_array_equal(to_numpy(v), to_numpy(x))
    copy = fc.to_hwc(v)
    np.testing.assert_array_equal(to_numpy(copy), to_numpy(h))
    copy[...] = 0  # a copy: h is not touched
    np.testing.assert_array_equal(to_numpy(h), to_numpy(x)[0].transpose(1, 2, 0))
    np.testing.assert_array_equal(to_numpy(fc.add_nchw(h.copy(), v)), 2 * to_numpy(h))


@pytest.mark.parametrize("C", [1, 8, 13, 64])
def test_relu_masks_round_trip(xp, C):
    F = xp.asarray(np.maximum(rng.standard_normal((5, 6, C)), 0))
    F[0, 0] = 0.0  # exactly zero: no gradient (Caffe's > 0)
    mask = fc.relu_mask(F)
    for lo, hi, columns in [(0, 5, slice(None)), (1, 3, slice(1, None, 2)), (4, 5, slice(0, None, 2))]:
        np.testing.assert_array_equal(to_numpy(fc.mask_rows(mask, lo, hi, columns, C)), to_numpy(F[lo:hi, columns] > 0))


# --- bands on several threads ----------------------------------------------------


def threaded(monkeypatch, threads):
    """A NumPy workspace with ``threads`` band threads, threading even the small layers of these tests."""
    monkeypatch.setattr(fc.layout, "THREAD_BYTES", 0)
    return fc.Workspace(np, threads=threads)


@pytest.mark.parametrize("method", fc.METHODS)
@pytest.mark.parametrize("C, O", [(3, 8), (20, 24)])
@pytest.mark.parametrize("hw, budget", [((13, 11), 1), ((9, 10), 20000), ((12, 7), None)])
def test_bands_on_threads_compute_what_one_thread_does(monkeypatch, dtype, method, C, O, hw, budget):
    x = blob(np, dtype, hw + (C,))
    W, b = conv_weights(np, dtype, C, O)
    plan = fc.conv_plan(W, b, method)
    results = {}
    for threads in (1, 2, 3):
        work = threaded(monkeypatch, threads)
        F, cache = fc.conv_relu_forward(x, plan, work, budget)
        dF = np.asarray(rng.standard_normal(F.shape) if threads == 1 else results[1][2], dtype=dtype)
        dx = fc.conv_relu_backward(dF, cache, work, budget)
        y, pool_cache = fc.pool_forward(F, "avg", work)
        dy = fc.pool_backward(y, pool_cache, work)
        added = [fc.add_nchw(dx.copy(), blob_, work) for blob_ in (fc.nchw(x), fc.nchw_view(x))]  # both memory orders
        results[threads] = (F, fc.mask_rows(cache.mask, 0, hw[0], slice(None), O), dF, dx, y, dy, *added)
    for threads in (2, 3):
        for a, b_ in zip(results[threads], results[1]):
            if budget == 1:  # the same bands (one row each): the same arithmetic on any thread
                np.testing.assert_array_equal(a, b_)
            else:  # bands split anew for the threads: the same sums, perhaps added in another order
                assert max_rel_error(a, b_) <= RTOL_LAYER[np.dtype(dtype)]
    if budget is None:  # and all agree with the reference kernels
        F_ref, _ = L.relu_forward(L.conv_forward(fc.nchw(x), W, b)[0])
        assert max_rel_error(fc.nchw(results[2][0]), F_ref) < RTOL_LAYER[np.dtype(dtype)]
    for added in results[2][6:]:
        np.testing.assert_array_equal(added, results[2][3] + x)


def test_bands_split_the_rows_evenly_within_the_budget(monkeypatch):
    work = threaded(monkeypatch, 2)
    assert work.bands(10, 100, 250) == ([(k, k + 1) for k in range(10)], 2)  # 125 bytes a thread: one row a band
    assert work.bands(7, 100, 10**6) == ([(0, 3), (3, 7)], 2)  # one band each
    assert fc.Workspace(np, threads=4).bands(3, 100, 10**6) == ([(0, 1), (1, 2), (2, 3)], 3)
    assert fc.Workspace(np, threads=1).bands(10, 100, 250) == ([(k, k + 2) for k in range(0, 10, 2)], 1)
    monkeypatch.setattr(fc.layout, "THREAD_BYTES", 10**4)
    assert work.bands(7, 100, 10**6) == ([(0, 7)], 1)  # too little work to share


def test_bands_run_on_threads_at_once_each_with_its_own_scratch(monkeypatch):
    if fc.blas_threads() is None:
        pytest.skip("NumPy's BLAS here is not an OpenBLAS whose threads can be set: the bands run on one thread")
    work = threaded(monkeypatch, 3)
    meeting = threading.Barrier(3, timeout=30)  # passed only if three bands run at the same time
    seen = []

    def body(r0, r1, slot):
        seen.append((r0, r1, slot, threading.get_ident(), fc.blas_threads()))
        if r0 < 3:
            meeting.wait()

    work.run_bands(6, 100, 300, body)
    assert sorted(b[:2] for b in seen) == [(k, k + 1) for k in range(6)]
    first = [b for b in seen if b[0] < 3]
    assert len({b[2] for b in first}) == 3 and len({b[3] for b in first}) == 3  # three slots, three threads
    assert {b[4] for b in seen} == {1}  # one BLAS thread each meanwhile

    def fails(r0, r1, slot):
        raise ArithmeticError(f"band {r0}")

    with pytest.raises(ArithmeticError, match="band"):
        work.run_bands(6, 100, 300, fails)


def test_a_device_workspace_has_one_thread():
    import cupy_emulation

    assert fc.Workspace(cupy_emulation, threads=4).threads == 1
    assert fc.Workspace(np, threads=4).threads == 4
    with pytest.raises(ValueError, match="at least 1"):
        fc.Workspace(np, threads=0)


def test_the_blas_is_held_to_one_thread_per_band_and_given_back():
    before = fc.blas_threads()
    if before is None:
        pytest.skip("NumPy's BLAS here is not an OpenBLAS whose threads can be set")
    with fc.blas_limit(1) as held:
        assert held and fc.blas_threads() == 1
        with fc.blas_limit(1):
            pass
        assert fc.blas_threads() == 1  # an inner holder leaves it held
    assert fc.blas_threads() == before


def test_the_network_on_two_threads_computes_what_it_does_on_one(monkeypatch):
    monkeypatch.setattr(fc.layout, "THREAD_BYTES", 0)
    weights = refstyle.generate_weights("vgg19", widths=WIDTHS, depth="conv5_1", seed=3, dtype="float32")
    x = refstyle.preprocess(rng.uniform(0, 255, (37, 30, 3)))
    net = refstyle.VGG(weights, arch="vgg19", dtype="float32", kernels="fast")
    layers = ["conv1_1", "conv2_1", "conv3_1", "conv4_2", "conv5_1"]
    out = {}
    for threads in (1, 2):
        net.kernel_set.threads = threads
        assert net.kernel_set.threads == threads
        F, cache = net.forward(x, layers)
        dF = {n: np.ones(F[n].shape, np.float32) for n in layers}
        out[threads] = ({n: np.array(F[n]) for n in layers}, net.backward(dF, cache))
    for n in layers:  # bands split anew for two threads: the same sums, perhaps in another order
        assert max_rel_error(out[2][0][n], out[1][0][n]) < RTOL_NET[np.dtype("float32")]
    assert max_rel_error(out[2][1], out[1][1]) < RTOL_NET[np.dtype("float32")]
    assert not np.array_equal(out[2][1], 0 * out[1][1])


# --- the whole network and the objective ------------------------------------------

WIDTHS = (16, 16, 24, 32, 32)  # at least 16 channels in, so that Winograd runs from conv1_2 on


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
@pytest.mark.parametrize("pooling", L.POOLINGS)
@pytest.mark.parametrize("kernels", ["fast", "im2col"])
def test_vgg_responses_and_gradients_match_the_reference(arch, pooling, kernels, dtype):
    w = refstyle.generate_weights(arch, widths=WIDTHS, seed=4)
    ref = refstyle.VGG(w, arch=arch, pooling=pooling, dtype=dtype, kernels="reference")
    net = refstyle.VGG(w, arch=arch, pooling=pooling, dtype=dtype, kernels=kernels)
    assert net.kernel_set.plans["conv1_1"].method == "planes"
    assert net.kernel_set.plans["conv1_2"].method == ("winograd" if kernels == "fast" else "im2col")
    x = rng.standard_normal((1, 3, 19, 23)) * 50  # 19×23 → 10×12 → 5×6 → 3×3 → 2×2 → 1×1
    names = list(refstyle.ARCHS[arch])
    F, cache = net.forward(x, names)
    F_ref, cache_ref = ref.forward(x, names)
    for name in names:
        assert F[name].shape == F_ref[name].shape and F[name].dtype == dtype
        assert max_rel_error(F[name], F_ref[name]) < RTOL_NET[dtype], name
    dF = {name: rng.standard_normal(F[name].shape).astype(dtype) for name in ["conv1_1", "conv2_2", "pool3", "conv4_1", "pool5"]}
    dF0 = {name: g.copy() for name, g in dF.items()}
    dx = net.backward(dF, cache)
    assert dx.shape == x.shape and dx.dtype == dtype and dx.flags.c_contiguous
    assert max_rel_error(dx, ref.backward(dF, cache_ref)) < RTOL_NET[dtype]
    for name in dF:
        np.testing.assert_array_equal(dF[name], dF0[name])  # the gradients given are not written to


@pytest.mark.parametrize("width", [16, 14])
def test_responses_and_style_gradients_stay_channels_last(dtype, width):
    # the responses are views of the network's channels-last arrays (no copy), and the
    # style loss gives its gradient in the same memory order (no transposing copy); where
    # a layer's width is odd (14 → 7 at conv2_1) the response is a Caffe-ordered copy
    w = refstyle.generate_weights("vgg16", widths=WIDTHS, seed=5, depth="conv2_1")
    net = refstyle.VGG(w, dtype=dtype, kernels="fast")
    F, _ = net.forward(rng.standard_normal((1, 3, 12, width)) * 50, ["conv1_2", "conv2_1"])
    A = {name: gram(blob(np, dtype, F[name].shape)) for name in F}
    for name, F_l in F.items():
        channels_last = F_l.shape[3] % 2 == 0
        assert fc.hwc_view(F_l).flags.c_contiguous == channels_last
        assert F_l.flags.c_contiguous != channels_last
        assert np.shares_memory(as_matrix(F_l), F_l)  # a matrix view, in either order
        E, dF = style_loss(F_l, A[name])
        assert dF.shape == F_l.shape and fc.hwc_view(dF).flags.c_contiguous == channels_last
        E_c, dF_c = style_loss(np.ascontiguousarray(F_l), A[name])
        assert dF_c.flags.c_contiguous
        assert E == pytest.approx(E_c, rel=RTOL_LAYER[dtype]) and max_rel_error(dF, dF_c) < RTOL_LAYER[dtype]


def test_gradient_checks_take_channels_last_responses():
    # check_gradient probes a copy of its input by flat index: in C order, whatever x's order
    w = refstyle.generate_weights("vgg16", widths=WIDTHS, seed=6, depth="conv1_2")
    net = refstyle.VGG(w, dtype="float64", kernels="fast")
    F_l = net.forward(rng.standard_normal((1, 3, 6, 8)) * 50, "conv1_2")[0]["conv1_2"]
    assert not F_l.flags.c_contiguous
    P = rng.standard_normal(F_l.shape)
    report = refstyle.check_gradient(lambda f: content_loss(f, P), F_l, coords=5, directions=2)
    assert report.max_rel_error < 1e-5  # the old flat indexing of a channels-last copy gave 1.0


def test_winograd_filters_refuse_an_out_they_cannot_write():
    W = rng.standard_normal((4, 6, 3, 3))
    with pytest.raises(ValueError, match="C-contiguous"):
        fc.winograd_filters(W, out=np.zeros((16, 6, 4)).transpose(0, 2, 1))


def test_the_objective_and_its_gradient_match_the_reference(dtype):
    w = refstyle.generate_weights("vgg19", widths=WIDTHS, seed=8)
    p, a, x = (rng.uniform(-100, 100, (1, 3, 21, 18)) for _ in range(3))
    results = {}
    for kernels in ("reference", "fast"):
        net = refstyle.VGG(w, dtype=dtype, kernels=kernels)
        obj = Objective(net, content_targets(net, p, ["conv4_2"]), style_targets(net, [a], ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]), beta=1e4)
        results[kernels] = obj(x.astype(dtype))
    (L_ref, g_ref), (L_fast, g_fast) = results["reference"], results["fast"]
    assert abs(L_fast - L_ref) / abs(L_ref) < RTOL_NET[dtype]
    assert max_rel_error(g_fast, g_ref) < RTOL_NET[dtype]


def test_fast_gradient_passes_finite_differences():
    w = refstyle.generate_weights("vgg19", widths=WIDTHS, seed=9, depth="conv3_1")
    net = refstyle.VGG(w, dtype="float64", kernels="fast")
    p, a, x = (rng.uniform(-100, 100, (1, 3, 11, 9)) for _ in range(3))
    obj = Objective(net, content_targets(net, p, ["conv2_2"]), style_targets(net, [a], ["conv1_1", "conv3_1"]), alpha=1.0, beta=1e3)
    assert refstyle.check_gradient(obj, x, coords=10, directions=3).max_rel_error < 1e-6


def test_kernels_are_checked_and_shown():
    w = refstyle.generate_weights("vgg16")
    assert refstyle.VGG(w).kernels == "reference"  # the readable kernels unless asked
    assert "kernels='fast'" in repr(refstyle.VGG(w, kernels="fast"))
    assert "kernels" not in repr(refstyle.VGG(w))
    with pytest.raises(RefstyleError, match="unknown kernels 'gpu'"):
        refstyle.VGG(w, kernels="gpu")


def test_band_threads_take_their_share_from_omp_num_threads(monkeypatch):
    """figure --jobs N sets OMP_NUM_THREADS to each worker's share of the cores: the bands keep to it."""
    from refstyle.nn.fast import threads

    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.cores() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.cores() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    assert threads.cores() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    assert threads.cores() == 4
