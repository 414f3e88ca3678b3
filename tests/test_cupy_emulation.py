"""The CuPy emulation (tests/cupy_emulation.py): CuPy's rules, NumPy's numbers, and its counters.

Three parts. First the emulation's contract, each rule against what CuPy does (the
sources are cited in the emulation). Then planted mistakes: copies of refstyle's own
modules, found through their public functions and altered one line at a time, run on
emulated arrays; the emulation must refuse (or count) each mistake and pass the
unaltered copy. Last, refstyle's backend hands the emulation out for ``device="gpu"``.
"""

import importlib
import importlib.util
import inspect
import pkgutil
import sys

import cupy_emulation as cupy_emu
import numpy as np
import pytest
from conftest import emulated_gpu

import refstyle
import refstyle.backend

rng = np.random.default_rng(16)


@pytest.fixture
def gpu(monkeypatch):
    """The emulation, as refstyle's GPU module (always the emulation, GPU or not: it is what is tested)."""
    return emulated_gpu(monkeypatch)


def dev(a, dtype=None):
    return cupy_emu.asarray(np.asarray(a, dtype=dtype))


# --- the contract: no implicit conversion to NumPy ---------------------------------------


@pytest.mark.parametrize("convert", [
    np.asarray, np.array, np.ascontiguousarray, lambda a: np.array([a, a + 1.0, 1.0]),
    lambda a: np.asarray(a, dtype=np.float64), lambda a: np.concatenate([np.zeros(3), np.asarray(a)]),
    lambda a: np.zeros(3) + np.array(list(a)),
])
def test_no_implicit_conversion_to_numpy(convert):
    a = dev([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        convert(a)


def test_no_array_interface_or_buffer():
    a = dev([1.0, 2.0])
    assert not hasattr(a, "__array_interface__") and not hasattr(a, "__array_struct__")
    with pytest.raises(TypeError):
        memoryview(a)
    with pytest.raises(TypeError):
        np.frombuffer(a)


def test_iteration_gives_device_arrays_as_cupy_does():
    a = dev([[1.0, 2.0], [3.0, 4.0]])
    rows = list(a)
    assert len(rows) == 2 and all(type(r) is cupy_emu.ndarray for r in rows)
    assert type(list(rows[0])[1]) is cupy_emu.ndarray and list(rows[0])[1].shape == ()
    with pytest.raises(TypeError, match="iteration over a 0-d array"):
        iter(a.sum())


# --- the contract: no mixing with host arrays ------------------------------------------------


HOST = np.ones(3)


@pytest.mark.parametrize("mix", [
    lambda a: a + HOST, lambda a: HOST + a, lambda a: a - HOST, lambda a: HOST * a, lambda a: a / HOST,
    lambda a: a @ HOST, lambda a: HOST @ a, lambda a: a < HOST, lambda a: HOST == a,
    lambda a: np.add(a, HOST), lambda a: np.exp(a) + HOST, lambda a: cupy_emu.maximum(a, HOST),
    lambda a: cupy_emu.matmul(a, HOST), lambda a: cupy_emu.add(a, a, out=np.empty(3)),
    lambda a: np.add(a, a, out=np.empty(3)), lambda a: cupy_emu.multiply(a, [1.0, 2.0, 3.0]),
    lambda a: cupy_emu.take_along_axis(HOST, a.astype(np.int64), axis=0),
    lambda a: cupy_emu.ascontiguousarray(HOST), lambda a: cupy_emu.empty_like(HOST),
    lambda a: cupy_emu.maximum(a, np.zeros(())),  # a 0-d NumPy array is not a scalar
])
def test_host_arrays_are_refused(mix):
    a = dev([1.0, 2.0, 3.0])
    with pytest.raises(TypeError):
        mix(a)


def test_in_place_operators_refuse_host_arrays():
    a = dev([1.0, 2.0, 3.0])
    for op in ("__iadd__", "__isub__", "__imul__", "__itruediv__"):
        with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
            getattr(a, op)(HOST)


def test_item_assignment_and_copyto_refuse_host_arrays_as_cupy_does():
    a = dev(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        a[...] = np.ones((2, 3))
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        a[0] = np.ones(3)
    with pytest.raises(TypeError, match="Unsupported type <class 'list'>"):
        a[0] = [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for copyto"):
        cupy_emu.copyto(a, np.ones((2, 3)))
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for copyto"):
        np.copyto(a, np.ones((2, 3)))  # dispatched to cupy.copyto by __array_function__
    with pytest.raises(TypeError, match="Unsupported type"):
        cupy_emu.copyto(a, dev(np.ones((2, 3))), where=np.ones((2, 3), dtype=bool))


def test_what_cupy_accepts_from_the_host():
    a = dev([1.0, 2.0, 3.0])
    for b in (a + 1, 2 * a, a * np.float32(2), np.float64(1) - a, a ** 2, -a, abs(a)):
        assert type(b) is cupy_emu.ndarray
    assert bool((a < np.array(2.5))[1])  # a 0-d NumPy array in a comparison is its value (core.pyx)
    b = cupy_emu.zeros(3)
    b[...] = np.array(4.0)  # fill with a 0-d NumPy array
    b[1] = np.float32(5)
    cupy_emu.copyto(b[:1], np.array([6.0]))  # copyto a NumPy array of size 1
    np.testing.assert_array_equal(b.get(), [6.0, 5.0, 4.0])
    # advanced indexing copies host indices and values to the device (counted)
    with cupy_emu.counting() as c:
        b[np.array([0, 2])] = np.array([7.0, 8.0])
        picked = b[[0, 1]]
    assert c.h2d == 3 and c.syncs == 0
    np.testing.assert_array_equal(picked.get(), [7.0, 5.0])
    # NumPy's ufuncs and functions dispatch to CuPy's, as on CuPy
    for r in (np.exp(a), np.maximum(a, 0), np.sum(a), np.linalg.norm(a), np.broadcast_to(a, (2, 3))):
        assert type(r) is cupy_emu.ndarray
    np.testing.assert_allclose(np.exp(a).get(), np.exp([1.0, 2.0, 3.0]))


# --- the contract: CuPy's functions and keywords only ---------------------------------------


def test_functions_and_keywords_cupy_lacks():
    a = dev(rng.standard_normal((4, 4)))
    with pytest.raises(TypeError, match="Wrong arguments"):
        cupy_emu.maximum(a, 0, where=a > 0)  # CuPy ufuncs take out, dtype, casting only
    with pytest.raises(TypeError, match="Wrong arguments"):
        np.add(a, a, where=a > 0)
    with pytest.raises(NotImplementedError, match="axis"):
        np.packbits(a > 0, axis=-1)  # cupy.packbits: axis "Not supported yet"
    with pytest.raises(TypeError, match="count"):
        np.unpackbits(cupy_emu.zeros((2, 1), dtype=np.uint8), count=4)  # cupy.unpackbits has no count
    with pytest.raises(TypeError, match="out"):
        cupy_emu.einsum("ij,jk->ik", a, a, out=cupy_emu.empty((4, 4)))  # "out ... not supported"
    with pytest.raises(ValueError, match="C-contiguous"):
        cupy_emu.dot(a, a, out=cupy_emu.empty((4, 4)).T)
    with pytest.raises(TypeError, match="no implementation found"):
        np.pad(a, 1)  # not in the emulation's allow-list: NumPy finds no implementation
    with pytest.raises(AttributeError):
        cupy_emu.pad  # noqa: B018
    with pytest.raises(ValueError, match="Unsupported dtype"):
        cupy_emu.asarray(np.array(["a", "b"]))
    # what CuPy does take (verified signatures): matmul's gufunc keywords, einsum's optimize
    np.testing.assert_allclose(cupy_emu.matmul(a, a, axes=[(0, 1), (0, 1), (0, 1)]).get(), a.get() @ a.get())
    np.testing.assert_allclose(cupy_emu.einsum("ij,jk->ik", a, a, optimize=True).get(), a.get() @ a.get())


def test_reductions_and_vector_products_are_device_scalars():
    v = dev([3.0, 4.0])
    m = dev([[1.0, 2.0], [3.0, 4.0]])
    for r in (v.sum(), v.max(), m.min(), v.mean(), cupy_emu.sum(m), cupy_emu.dot(v, v), v @ v,
              cupy_emu.vdot(v, v), cupy_emu.linalg.norm(v), m[1, 1], m.argmax(), np.sum(m)):
        assert type(r) is cupy_emu.ndarray and r.shape == ()
    with cupy_emu.counting() as c:
        assert float(cupy_emu.linalg.norm(v)) == 5.0 and int(m.argmax()) == 3 and bool(v.sum() > 6)
        assert v.sum().item() == 7.0
    assert c.syncs == 4 and c.d2h == 4


def test_results_are_numpys():
    a64 = rng.standard_normal((3, 5, 7))
    a, W = dev(a64), rng.standard_normal((7, 4))
    checks = [
        (cupy_emu.matmul(a, dev(W)), a64 @ W), ((a * 2 - 1) / 3, (a64 * 2 - 1) / 3),
        (a.sum(axis=(0, 2), dtype=np.float32), a64.sum(axis=(0, 2), dtype=np.float32)),
        (cupy_emu.maximum(a, 0), np.maximum(a64, 0)), (a.transpose(2, 0, 1).reshape(7, -1), a64.transpose(2, 0, 1).reshape(7, -1)),
        (cupy_emu.take_along_axis(a, a.argmax(axis=-1)[..., None], axis=-1), np.take_along_axis(a64, a64.argmax(axis=-1)[..., None], axis=-1)),
    ]
    for got, expected in checks:
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got.get(), expected)


# --- the counters ----------------------------------------------------------------------------


def test_transfers_are_counted_with_their_bytes():
    host = rng.standard_normal((8, 8)).astype(np.float32)
    with cupy_emu.counting() as c:
        a = cupy_emu.asarray(host)
        b = cupy_emu.array(host, dtype=np.float64)
        back = a.get()
        cupy_emu.asnumpy(b)
        cupy_emu.asarray(a)  # already on the device: no transfer, no call
    assert (c.h2d, c.h2d_bytes, c.d2h, c.d2h_bytes) == (2, 256 + 512, 2, 256 + 512)
    assert c.syncs == 2 and c.calls == 0
    np.testing.assert_array_equal(back, host)
    assert isinstance(back, np.ndarray) and type(a) is cupy_emu.ndarray


def test_synchronisations_are_counted_where_they_happen():
    a = dev(rng.standard_normal((4, 5)))
    with cupy_emu.counting() as c:
        float(a[0, 0]), int(a[1, 1] > 0), bool(a.max() > 0), a.sum().item()
        str(a), repr(a), f"{a[0, 0]:.3f}"
        a[a > 0]  # a boolean mask: its count of True values is read on the host
        a[a < 0] = 0.0
        cupy_emu.nonzero(a), cupy_emu.argwhere(a)
        cupy_emu.cuda.Device().synchronize()
    assert c.syncs == 12
    sites = {site for (event, site), n in c.where.items() if event == "sync"}
    assert all(site.startswith("test_cupy_emulation.py:") for site in sites)


def test_calls_count_kernels_and_not_views():
    a = dev(rng.standard_normal((4, 6)))
    with cupy_emu.counting() as c:
        a.reshape(6, 4), a.T, a[1:3, ::2], a.transpose(1, 0), cupy_emu.broadcast_to(a, (2, 4, 6)), a[0, 0]
        cupy_emu.ascontiguousarray(a), a.astype(a.dtype, copy=False)  # nothing to do
    assert c.calls == 0
    with cupy_emu.counting() as c:
        b = a + 1.0
        b *= 2.0
        cupy_emu.ascontiguousarray(b.T)
        b.T.reshape(-1)  # a copy: not a view
        b.sum()
    assert c.calls == 5 and c.by_name["add"] == 1 and c.by_name["reshape (copy)"] == 1


def test_counting_blocks_nest():
    a = dev([1.0, 2.0])
    with cupy_emu.counting() as outer:
        float(a[0])
        with cupy_emu.counting() as inner:
            float(a[1])
    assert (outer.syncs, inner.syncs) == (2, 1)


def test_the_copies_cupy_makes_are_counted():
    M = cupy_emu.zeros((4, 3, 5))
    b = dev(np.arange(5.0))
    with cupy_emu.counting() as c:
        cupy_emu.add(M[1], b, out=M[1])  # M[1] twice: two objects, one memory: CuPy copies the input
    assert c.copies == 1 and c.calls == 2
    with cupy_emu.counting() as c:
        m1 = M[1]
        cupy_emu.add(m1, b, out=m1)  # the same object: no copy
        m1 += b
    assert c.copies == 0 and c.calls == 2
    F = dev(rng.standard_normal((6, 4))).T  # F-ordered, as a channels-last response's matrix
    G = dev(rng.standard_normal((4, 4)))
    with cupy_emu.counting() as c:
        out = cupy_emu.matmul(G, F, out=cupy_emu.empty_like(F))  # matmul into an F-ordered out
    assert c.copies == 1 and out.flags.f_contiguous
    np.testing.assert_allclose(out.get(), G.get() @ F.get())
    with pytest.raises(ValueError, match="out shares memory with an operand"):
        cupy_emu.matmul(G, G, out=G)


# --- planted mistakes in copies of refstyle's modules ------------------------------------------


def defining_module(*function_names):
    """The refstyle module that defines all of ``function_names`` (found by walking the package: modules move)."""
    names = [info.name for info in pkgutil.walk_packages(refstyle.__path__, "refstyle.")]
    for name in names:
        if name.rpartition(".")[2] == "__main__":
            continue  # runs the command line when imported
        module = importlib.import_module(name)
        defined = [getattr(module, f, None) for f in function_names]
        if all(inspect.isfunction(f) and f.__module__ == module.__name__ for f in defined):
            return module
    raise LookupError(f"no refstyle module defines {function_names}")


def planted(tmp_path, functions, *replacements):
    """A copy of the module that defines ``functions`` (a name or a tuple), with each ``(old, new)`` replaced once.

    The copy is written to ``tmp_path`` and imported as a sibling of the original, so its
    relative imports resolve to refstyle's own modules.
    """
    module = defining_module(*((functions,) if isinstance(functions, str) else functions))
    source = inspect.getsource(module)
    for old, new in replacements:
        assert source.count(old) == 1, f"{module.__name__}: {old!r} is not there exactly once; update the plant"
        source = source.replace(old, new)
    stem = module.__name__.rpartition(".")[2]
    path = tmp_path / f"planted_{stem}_{len(list(tmp_path.iterdir()))}.py"
    path.write_text(source)
    name = f"{module.__package__}._{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    copy = importlib.util.module_from_spec(spec)
    sys.modules[name] = copy
    try:
        spec.loader.exec_module(copy)
    finally:
        del sys.modules[name]
    return copy


# Both kernel sets have a pool_forward and a pool_backward: a second name tells their modules apart.
REFERENCE_POOLING = ("pool_backward", "pool_backward_naive")
FAST_POOLING = ("pool_backward", "_inverse_counts")


def conv_inputs(C=3, O=4, hw=(5, 7)):
    x, W, b = rng.standard_normal((1, C) + hw), rng.standard_normal((O, C, 3, 3)), rng.standard_normal(O)
    return (x, W, b), tuple(dev(a) for a in (x, W, b))


def test_a_host_buffer_in_the_convolution(gpu, tmp_path):
    """``np.zeros`` for the padded input: its assignment from the device is an implicit conversion."""
    host, device = conv_inputs()
    ok = planted(tmp_path, "conv_forward")
    np.testing.assert_allclose(ok.conv_forward(*device)[0].get(), ok.conv_forward(*host)[0], rtol=1e-13)
    bad = planted(tmp_path, "conv_forward", ("xpad = xp.zeros((N, C, H + 2, Wd + 2)", "xpad = np.zeros((N, C, H + 2, Wd + 2)"))
    bad.conv_forward(*host)  # fine on NumPy
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        bad.conv_forward(*device)


def test_an_asarray_of_a_device_array(gpu, tmp_path):
    x = dev(rng.standard_normal((1, 3, 4, 4)))
    bad = planted(tmp_path, "relu_forward", ("y = xp.maximum(x, 0)", "y = xp.maximum(np.asarray(x), 0)"))
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        bad.relu_forward(x)
    # NumPy's ufunc on a device array is not a mistake: CuPy's __array_ufunc__ runs it on the device
    allowed = planted(tmp_path, "relu_forward", ("y = xp.maximum(x, 0)", "y = np.maximum(x, 0)"))
    assert type(allowed.relu_forward(x)[0]) is gpu.ndarray


def test_a_host_array_mixed_into_the_pooling_backward(gpu, tmp_path):
    x, dy = dev(rng.standard_normal((1, 2, 5, 7))), dev(rng.standard_normal((1, 2, 3, 4)))
    ok = planted(tmp_path, REFERENCE_POOLING)
    ok.pool_backward(dy, ok.pool_forward(x, "max")[1])
    bad = planted(tmp_path, REFERENCE_POOLING, ("(xp.arange(4, dtype=xp.uint8) ==", "(np.arange(4, dtype=np.uint8) =="))
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        bad.pool_backward(dy, bad.pool_forward(x, "max")[1])


def test_a_host_out_for_the_style_gradient(gpu, tmp_path):
    F = dev(rng.standard_normal((1, 4, 3, 5)))
    A = dev(rng.standard_normal((4, 4)))
    ok = planted(tmp_path, "style_loss")
    with gpu.counting() as c:
        E, dF = ok.style_loss(F, A)
    assert type(E) is gpu.ndarray and E.shape == () and type(dF) is gpu.ndarray  # the loss stays on the device
    assert c.syncs == 0 and c.d2h == 0
    bad = planted(tmp_path, "style_loss", ("dF = diff @ Fm", "dF = array_module(F).matmul(diff, Fm, out=np.empty(Fm.shape, Fm.dtype))"),
                  ("from ..backend import array_module", "import numpy as np\n\nfrom ..backend import array_module"))
    with pytest.raises(TypeError, match="cupy.ndarray"):
        bad.style_loss(F, A)


def test_a_float_of_a_loss_is_a_sync(gpu, tmp_path):
    """Reading each layer's loss as it is computed (the old ``float((diff * diff).sum())``) is a sync per layer."""
    F, P = dev(rng.standard_normal((1, 4, 3, 5))), dev(rng.standard_normal((1, 4, 3, 5)))
    bad = planted(tmp_path, "content_loss", ("return 0.5 * _sum64(diff * diff), diff", "return 0.5 * float((diff * diff).sum()), diff"))
    with gpu.counting() as c:
        bad.content_loss(F, P)
    assert c.syncs == 1 and c.d2h == 1


def test_a_float_in_a_loop_is_a_sync_per_pass(gpu, tmp_path):
    grams = [dev(rng.standard_normal((4, 4))) for _ in range(3)]
    ok = planted(tmp_path, "blend_grams")
    with gpu.counting() as c:
        ok.blend_grams(grams)
    assert c.syncs == 0
    bad = planted(tmp_path, "blend_grams", ("        A += v * G\n", "        A += v * G\n        assert float(abs(A).max()) >= 0\n"))
    with gpu.counting() as c:
        bad.blend_grams(grams)
    assert c.syncs == 3 and c.d2h == 3


def test_numpy_only_bit_packing_on_the_device(gpu, tmp_path):
    """relu_mask packs bits with NumPy only: on CuPy, packbits has no ``axis`` and unpackbits no ``count``."""
    F = dev(np.maximum(rng.standard_normal((3, 4, 10)), 0))
    ok = planted(tmp_path, "relu_mask")
    assert ok.relu_mask(F).dtype == np.bool_
    bad = planted(tmp_path, "relu_mask", ("    if array_module(F) is not np:\n        return F > 0\n", ""))
    with pytest.raises(NotImplementedError, match="axis"):
        bad.relu_mask(F)
    packed = dev(np.packbits(F.get() > 0, axis=-1))
    bad = planted(tmp_path, "mask_rows", ("    if part.dtype == np.bool_:\n        return part\n", ""))
    with pytest.raises(TypeError, match="count"):
        bad.mask_rows(packed, 0, 2, slice(None), 10)


def test_host_pooling_divisors(gpu, tmp_path):
    x = dev(rng.standard_normal((5, 7, 3)))
    ok = planted(tmp_path, FAST_POOLING)
    with gpu.counting() as c:
        ok.pool_forward(x, "avg")
    assert c.h2d == 0
    bad = planted(tmp_path, FAST_POOLING, (
        "rows = xp.minimum(2 * xp.arange(Ho) + 2, H) - 2 * xp.arange(Ho)",
        "rows = np.minimum(2 * np.arange(Ho) + 2, H) - 2 * np.arange(Ho)",
    ), ("from ...backend import array_module", "import numpy as np\n\nfrom ...backend import array_module"))
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        bad.pool_forward(x, "avg")


def test_mask_assignments_in_the_fast_max_pooling_are_syncs(gpu, tmp_path):
    """``argmax[better] = k`` is a boolean-mask assignment: CuPy reads its count on the host, 3 per layer."""
    x = dev(rng.standard_normal((6, 9, 4)))
    ok = planted(tmp_path, FAST_POOLING)
    with gpu.counting() as c:
        y, cache = ok.pool_forward(x, "max")
    assert c.syncs == 0
    bad = planted(tmp_path, FAST_POOLING, ("xp.copyto(argmax, k, where=better)", "argmax[better] = k"))
    with gpu.counting() as c:
        y2, cache2 = bad.pool_forward(x, "max")
    assert c.syncs == 3
    np.testing.assert_array_equal(y2.get(), y.get())
    np.testing.assert_array_equal(cache2.argmax.get(), cache.argmax.get())


# --- refstyle's backend and the xp fixture ----------------------------------------------------


def test_the_backend_hands_out_the_emulation(gpu):
    a = gpu.asarray(np.arange(3.0))
    assert refstyle.backend.array_module(a) is gpu
    assert refstyle.backend.array_module(np.arange(3), 1.0, None) is np
    assert refstyle.backend.device_module("gpu") is gpu and refstyle.backend.have_gpu()
    with gpu.counting() as c:
        host = refstyle.backend.to_numpy(a)
    assert isinstance(host, np.ndarray) and c.d2h == 1
    net = refstyle.VGG(refstyle.generate_weights("vgg16", widths=(4, 4, 4, 4, 4)), device="gpu")
    assert net.xp is gpu and type(net.params["conv1_1"][0]) is gpu.ndarray


def test_the_xp_fixture_is_cupy_or_its_emulation(xp):
    if xp is np:
        pytest.skip("the NumPy half")
    assert refstyle.backend.array_module(xp.zeros(2)) is xp and refstyle.backend.device_module("gpu") is xp
    assert xp.__name__ == "cupy" or xp is cupy_emu
