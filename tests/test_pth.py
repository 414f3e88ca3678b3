"""The PyTorch state-dict reader, its name mapping and the input-convention fold.

Files come from torch.save itself (both layouts) where torch is installed, and from a
small hand-made writer below (no torch needed) for what torch cannot be asked to
write: hostile pickles, big-endian files, damaged files.
"""

import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import tracemalloc
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
from conftest import ROOT, require_torch

import refstyle
from refstyle.errors import WeightsError
from refstyle.nn.inputs import TORCHVISION_INPUT
from refstyle.weights.fold import to_caffe_input
from refstyle.weights.naming import INPUTS, TORCHVISION_LAYOUTS, caffe_name, name_keys
from refstyle.weights import pth, torch_pickle
from refstyle.weights.pth import fold_batchnorm, read_pth
from refstyle.weights.torch_pickle import MAGIC_NUMBER, MAX_NESTING, pth_format
from refstyle.nn.layers import conv_forward
from refstyle.nn.inputs import CAFFE_INPUT

# torchvision's features indices of the convolutions, written out as in the brief
# (naming.py derives them from refstyle.nn.arch's layer tables).
VGG16_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
VGG19_CONVS = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]


def small(arch, seed=0, dtype="float32"):
    return refstyle.generate_weights(arch, widths=(4, 5, 6, 7, 8), seed=seed, dtype=dtype)


def checkpoint_keys(weights, naming, prefix=""):
    """``{checkpoint key: array}`` naming ``weights`` the way a scheme does, plus a classifier."""
    arch = refstyle.nn.arch.infer_arch(weights)
    convs = {"vgg16": VGG16_CONVS, "vgg19": VGG19_CONVS}[arch]
    sd = OrderedDict()
    for i, (name, (W, b)) in enumerate(weights.items()):
        stem = {
            "torchvision": f"features.{convs[i]}",
            "caffe": name,
            "keras": f"block{name[4]}_conv{name[6]}",
        }[naming]
        sd[f"{prefix}{stem}.weight"] = W
        sd[f"{prefix}{stem}.bias"] = b
    sd[f"{prefix}classifier.0.weight"] = np.ones((3, 8), np.float32)  # read past, never loaded
    sd[f"{prefix}classifier.0.bias"] = np.ones(3, np.float32)
    return sd


def assert_layers_equal(layers, weights):
    assert list(layers) == list(weights)
    for name, (W, b) in weights.items():
        assert layers[name][0].dtype == np.float32 and layers[name][1].dtype == np.float32
        np.testing.assert_array_equal(layers[name][0], W)
        np.testing.assert_array_equal(layers[name][1], b)


# ---------------------------------------------------------------------------
# A hand-made writer of both layouts (no torch): GLOBALs and persistent ids as torch writes them
# ---------------------------------------------------------------------------


class Global:
    """Pickled as the opcode ``GLOBAL module name``, whatever Python has under that name."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle asks that a reduce function be callable; never called
        raise TypeError(f"{self.module}.{self.name} is a stand-in")


class Tensor:
    """A tensor over a storage: pickled as ``torch._utils._rebuild_tensor_v2(...)``."""

    def __init__(self, storage, offset, size, stride, func="_rebuild_tensor_v2"):
        self.storage, self.offset, self.size, self.stride, self.func = storage, offset, size, stride, func

    def __reduce__(self):
        args = (self.storage, self.offset, tuple(self.size), tuple(self.stride))
        if self.func == "_rebuild_tensor_v2":
            args += (False, OrderedDict())
        return Global("torch._utils", self.func), args


class Storage:
    """Raw storage bytes with a torch type name, e.g. ``FloatStorage``; ``view`` for legacy views."""

    def __init__(self, key, type_name, data, numel=None, view=None):
        self.key, self.type_name, self.data, self.view = key, type_name, data, view
        self.numel = numel


class HandPickler(pickle._Pickler):
    def __init__(self, file, legacy):
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        super().save(obj, save_persistent_id)

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        pid = ("storage", Global("torch", obj.type_name), obj.key, "cpu", obj.numel)
        return (*pid, obj.view) if self.legacy else pid


def hand_pickle(obj, legacy=False):
    f = io.BytesIO()
    HandPickler(f, legacy).dump(obj)
    return f.getvalue()


def storage_of(a, key):
    a = np.ascontiguousarray(a)
    type_name = {"float32": "FloatStorage", "float16": "HalfStorage", "float64": "DoubleStorage"}[a.dtype.name]
    return Storage(key, type_name, a.astype(a.dtype.newbyteorder("<")).tobytes(), numel=a.size)


def hand_state(arrays):
    """A state dict of contiguous tensors, one storage each: ``(OrderedDict, [Storage])``."""
    sd, storages = OrderedDict(), []
    for i, (key, a) in enumerate(arrays.items()):
        s = storage_of(a, str(i))
        storages.append(s)
        stride = np.ascontiguousarray(a).strides
        sd[key] = Tensor(s, 0, a.shape, [st // a.itemsize for st in stride])
    return sd, storages


def write_zip(path, pkl, storages, byteorder=b"little", root="archive", compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        z.writestr(f"{root}/data.pkl", pkl)
        if byteorder is not None:
            z.writestr(f"{root}/byteorder", byteorder)
        for s in storages:
            z.writestr(f"{root}/data/{s.key}", s.data)
        z.writestr(f"{root}/version", b"3\n")


def write_legacy(path, pkl, storages, little_endian=True, magic=None):
    order = "<" if little_endian else ">"
    with open(path, "wb") as f:
        f.write(magic if magic is not None else pickle.dumps(MAGIC_NUMBER, protocol=2))
        f.write(pickle.dumps(1001, protocol=2))
        sys_info = {"protocol_version": 1001, "little_endian": little_endian, "type_sizes": {"int": 4}}
        f.write(pickle.dumps(sys_info, protocol=2))
        f.write(pkl)
        f.write(pickle.dumps([s.key for s in storages], protocol=2))
        f.writelines(struct.pack(order + "q", s.numel) + s.data for s in storages)


def hand_file(path, arrays, legacy=False):
    sd, storages = hand_state(arrays)
    if legacy:
        write_legacy(path, hand_pickle(sd, legacy=True), storages)
    else:
        write_zip(path, hand_pickle(sd), storages)
    return path


# ---------------------------------------------------------------------------
# Files written by torch.save
# ---------------------------------------------------------------------------


def torch_save(torch, sd, path, legacy):
    tensors = OrderedDict((k, torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v)
                          for k, v in sd.items())  # fmt: skip
    torch.save(tensors, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_torchvision_names_round_trip(tmp_path, arch, legacy):
    torch = require_torch()
    w = small(arch, seed=1)
    path = torch_save(torch, checkpoint_keys(w, "torchvision"), tmp_path / "vgg.pth", legacy)
    layers, info = read_pth(path)
    assert_layers_equal(layers, w)
    assert info["format"] == ("pth-legacy" if legacy else "pth-zip")
    assert (info["naming"], info["arch"], info["layout"], info["prefix"]) == ("torchvision", arch, arch, "")
    assert info["input"] == TORCHVISION_INPUT
    assert info["ignored"] == ["classifier.0.weight", "classifier.0.bias"]
    assert pth_format(path) == info["format"]


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("naming", ["caffe", "keras"])
def test_caffe_and_keras_names_with_prefix_and_wrapper(tmp_path, naming, legacy):
    """The Gatys tutorial's conv1_1.weight; DataParallel's module. prefix; a training checkpoint."""
    torch = require_torch()
    w = small("vgg19", seed=2)
    sd = checkpoint_keys(w, naming, prefix="module.")
    checkpoint = {"epoch": 3, "optimizer": {"state": {0: {"step": torch.tensor(1.0)}}, "param_groups": []},
                  "state_dict": OrderedDict((k, torch.from_numpy(v)) for k, v in sd.items())}  # fmt: skip
    path = tmp_path / "checkpoint.pt"
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)
    layers, info = read_pth(path)
    assert_layers_equal(layers, w)
    assert (info["naming"], info["prefix"], info["wrapper"]) == (naming, "module.", "state_dict")
    assert info["input"] == CAFFE_INPUT and "arch" not in info  # the names alone say vgg19 to infer_arch


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_views_offsets_and_strides(tmp_path, legacy):
    """Tensors saved as views share one storage: transposed, sliced, at an offset."""
    torch = require_torch()
    w = small("vgg16", seed=3)
    W1, b1 = w["conv1_1"]
    W2, b2 = w["conv1_2"]
    shared = torch.zeros(1000)
    shared[10 : 10 + W1.size] = torch.from_numpy(W1.transpose(3, 2, 1, 0).copy()).reshape(-1)
    shared[500 : 500 + b1.size] = torch.from_numpy(b1)
    sd = OrderedDict()
    sd["conv1_1.weight"] = shared[10 : 10 + W1.size].view(W1.shape[::-1]).permute(3, 2, 1, 0)  # non-contiguous
    sd["conv1_1.bias"] = shared[500 : 500 + b1.size]
    both = torch.from_numpy(np.concatenate([b2, b2 * 2]))
    sd["conv1_2.weight"] = torch.from_numpy(W2)
    sd["conv1_2.bias"] = both[::2]  # stride 2 into a bigger storage
    assert not sd["conv1_1.weight"].is_contiguous() and sd["conv1_1.bias"].storage_offset() == 500
    path = tmp_path / "views.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    layers, _ = read_pth(path)
    np.testing.assert_array_equal(layers["conv1_1"][0], W1)
    np.testing.assert_array_equal(layers["conv1_1"][1], b1)
    np.testing.assert_array_equal(layers["conv1_2"][0], W2)
    np.testing.assert_array_equal(layers["conv1_2"][1], np.concatenate([b2, b2 * 2])[::2])
    assert layers["conv1_1"][0].flags.c_contiguous and layers["conv1_1"][0].flags.writeable


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_other_float_types_become_float32(tmp_path, dtype):
    torch = require_torch()
    w = small("vgg16", seed=4)
    sd = OrderedDict((k, torch.from_numpy(v).to(getattr(torch, dtype))) for k, v in checkpoint_keys(w, "caffe").items())
    path = tmp_path / f"{dtype}.pth"
    torch.save(sd, path)
    layers, _ = read_pth(path)
    for name in w:
        expected = sd[f"{name}.weight"].float().numpy()  # torch's own widening to float32
        np.testing.assert_array_equal(layers[name][0], expected)
        assert layers[name][0].dtype == np.float32


def test_parameters_and_vgg16_bn_folded(tmp_path):
    """named_parameters() pickles Parameters; vgg16_bn's BatchNorms fold into the convs exactly."""
    torch = require_torch()
    rng = np.random.default_rng(5)
    w = small("vgg16", seed=5)
    modules = []
    for W, b in w.values():
        conv = torch.nn.Conv2d(W.shape[1], W.shape[0], 3, padding=1)
        conv.weight.data, conv.bias.data = torch.from_numpy(W), torch.from_numpy(b)
        bn = torch.nn.BatchNorm2d(W.shape[0])
        bn.weight.data = torch.from_numpy(rng.uniform(0.5, 2, W.shape[0]).astype(np.float32))
        bn.bias.data = torch.from_numpy(rng.standard_normal(W.shape[0]).astype(np.float32))
        bn.running_mean = torch.from_numpy(rng.standard_normal(W.shape[0]).astype(np.float32))
        bn.running_var = torch.from_numpy(rng.uniform(0.5, 2, W.shape[0]).astype(np.float32))
        modules += [conv, bn, torch.nn.ReLU()]
        if len(modules) in (6, 13, 23, 33, 43):  # after conv1_2, conv2_2, conv3_3, conv4_3, conv5_3
            modules.append(torch.nn.MaxPool2d(2))
    features = torch.nn.Sequential(*modules).eval()
    path = tmp_path / "vgg16_bn.pth"
    torch.save({"features": features.state_dict()}, path)  # not a wrapper key: refused below
    with pytest.raises(WeightsError, match="a dict without tensors"):
        read_pth(path)
    torch.save(features.state_dict(), path)  # features alone: bare indices 0.weight, 1.running_mean, ...
    bare, info = read_pth(path)
    assert (info["naming"], info["layout"], info["arch"], info["prefix"]) == ("torchvision", "vgg16_bn", "vgg16", "")
    torch.save(OrderedDict((f"features.{k}", v) for k, v in features.state_dict().items()), path)
    layers, info = read_pth(path)
    assert (info["layout"], info["arch"]) == ("vgg16_bn", "vgg16") and "folded" in info["batchnorm"]
    for name in layers:
        np.testing.assert_array_equal(bare[name][0], layers[name][0])
    assert "features.1.num_batches_tracked" in info["ignored"]
    x = rng.standard_normal((1, 3, 6, 7)).astype(np.float32)
    with torch.no_grad():
        expected = features[:3](torch.from_numpy(x)).numpy()  # conv1_1, bn, relu
    y, _ = conv_forward(x.astype(np.float64), *(a.astype(np.float64) for a in layers["conv1_1"]))
    np.testing.assert_allclose(np.maximum(y, 0), expected, rtol=1e-5, atol=1e-5)

    params = OrderedDict((f"features.{k}", p) for k, p in features.named_parameters())
    params.update((f"features.{k}", v) for k, v in features.named_buffers())
    assert isinstance(params["features.0.weight"], torch.nn.Parameter)
    torch.save(params, path, _use_new_zipfile_serialization=False)
    again, _ = read_pth(path)
    for name in layers:
        np.testing.assert_array_equal(again[name][0], layers[name][0])


def test_fold_batchnorm_formula():
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((2, 3, 3, 3)), rng.standard_normal(2)
    gamma, beta, mean, var = (
        rng.uniform(0.5, 2, 2),
        rng.standard_normal(2),
        rng.standard_normal(2),
        rng.uniform(1, 2, 2),
    )
    x = rng.standard_normal((1, 3, 5, 5))
    y, _ = conv_forward(x, W, b)
    bn = gamma[None, :, None, None] * (y - mean[None, :, None, None]) / np.sqrt(var + 1e-5)[None, :, None, None]
    bn += beta[None, :, None, None]
    y_folded, _ = conv_forward(x, *fold_batchnorm(W, b, gamma, beta, mean, var))
    np.testing.assert_allclose(y_folded, bn, rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_whole_models_and_torchscript_are_refused(tmp_path):
    torch = require_torch()
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    path = tmp_path / "model.pth"
    torch.save(model, path)
    with pytest.raises(WeightsError, match=r"refusing to load: the pickle asks for torch\.nn\.modules"):
        read_pth(path)
    torch.jit.save(torch.jit.script(model), path)
    with pytest.raises(WeightsError, match="TorchScript"):
        read_pth(path)
    torch.save([torch.zeros(2)], path)
    with pytest.raises(WeightsError, match="holds a list, not a state dict"):
        read_pth(path)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_truncated_torch_files(tmp_path, legacy):
    torch = require_torch()
    path = torch_save(torch, checkpoint_keys(small("vgg16"), "torchvision"), tmp_path / "vgg.pth", legacy)
    data = path.read_bytes()
    for cut in (len(data) - 100, len(data) // 2, 40):
        path.write_bytes(data[:cut])
        with pytest.raises(WeightsError, match=r"damaged|not a PyTorch checkpoint"):
            read_pth(path)


# ---------------------------------------------------------------------------
# Hand-made files (no torch)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_hand_made_files_read_without_torch(tmp_path, legacy):
    w = small("vgg19", seed=6)
    path = hand_file(tmp_path / "hand.pth", checkpoint_keys(w, "torchvision", prefix="vgg19."), legacy)
    layers, info = read_pth(path)
    assert_layers_equal(layers, w)
    assert (info["arch"], info["prefix"]) == ("vgg19", "vgg19.")


def test_wrapped_checkpoint_without_torch(tmp_path):
    """{"epoch": ..., "model": {"module.features.N...": ...}}, as DataParallel training scripts save."""
    w = small("vgg16", seed=12)
    sd, storages = hand_state(checkpoint_keys(w, "torchvision", prefix="module."))
    write_zip(tmp_path / "ckpt.pth", hand_pickle({"epoch": 7, "args": [1, "x"], "model": sd}), storages)
    layers, info = read_pth(tmp_path / "ckpt.pth")
    assert_layers_equal(layers, w)
    assert (info["wrapper"], info["prefix"], info["arch"]) == ("model", "module.", "vgg16")


def test_big_endian_zip_and_legacy_views(tmp_path):
    w = small("vgg16", seed=7)
    arrays = checkpoint_keys(w, "caffe")
    sd, storages = hand_state(arrays)
    for s, a in zip(storages, arrays.values(), strict=True):
        s.data = np.ascontiguousarray(a).astype(">f4").tobytes()
    write_zip(tmp_path / "big.pth", hand_pickle(sd), storages, byteorder=b"big")
    assert_layers_equal(read_pth(tmp_path / "big.pth")[0], w)

    # Legacy (PyTorch < 1.0) views: the tensor's storage is a slice of a root storage.
    W, b = w["conv1_1"]
    root = storage_of(np.concatenate([np.zeros(5, np.float32), W.ravel(), b]), "root")
    W_view = Storage("root", "FloatStorage", None, numel=root.numel, view=("v1", 5, W.size))
    b_view = Storage("root", "FloatStorage", None, numel=root.numel, view=("v2", 5 + W.size, b.size))
    sd = OrderedDict([("conv1_1.weight", Tensor(W_view, 0, W.shape, [27, 9, 3, 1], "_rebuild_tensor")),
                      ("conv1_1.bias", Tensor(b_view, 0, b.shape, [1]))])  # fmt: skip
    write_legacy(tmp_path / "views.pth", hand_pickle(sd, legacy=True), [root])
    layers, _ = read_pth(tmp_path / "views.pth")
    np.testing.assert_array_equal(layers["conv1_1"][0], W)
    np.testing.assert_array_equal(layers["conv1_1"][1], b)


class Payload:
    """Unpickling this runs ``function(argument)``: ``os.system`` or ``builtins.exec``."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


def payloads(marker):
    return {
        "os.system": Payload(os.system, f"touch {marker}"),
        "builtins.exec": Payload(exec, f"open({str(marker)!r}, 'w').close()"),
    }


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("function", ["os.system", "builtins.exec"])
def test_hostile_pickles_are_refused_unrun(tmp_path, function, legacy):
    marker = tmp_path / "payload-ran"
    payload = payloads(marker)[function]
    pickle.loads(pickle.dumps(payload, protocol=2))  # the payload is real: a plain unpickler runs it
    assert marker.exists()
    marker.unlink()

    w = small("vgg16", seed=8)
    sd, storages = hand_state(checkpoint_keys(w, "caffe"))
    sd["conv1_2.bias"] = payload  # hidden among real tensors
    path = tmp_path / "hostile.pth"
    (write_legacy if legacy else write_zip)(path, hand_pickle(sd, legacy=legacy), storages)
    # os.system is posix.system or nt.system; protocol 2 writes Python 2's name for builtins
    asked = f"{os.system.__module__}.system" if function == "os.system" else "__builtin__.exec"
    with pytest.raises(WeightsError, match=rf"refusing to load: the pickle asks for {asked}, which a weights file"):
        read_pth(path)
    assert not marker.exists()


def test_hostile_legacy_header_is_refused_unrun(tmp_path):
    """The legacy layout has four pickles before the storages; the first is as guarded as the main one."""
    marker = tmp_path / "payload-ran"
    evil = pickle.dumps(payloads(marker)["os.system"], protocol=2)
    magic = pickle.dumps(MAGIC_NUMBER, protocol=2)
    hostile_magic = magic[:-1] + b"0" + evil  # the magic number, POP, then the payload
    pickle.loads(hostile_magic)  # the payload is real
    assert marker.exists()
    marker.unlink()
    write_legacy(tmp_path / "hostile.pth", evil, [], magic=hostile_magic)
    with pytest.raises(WeightsError, match="refusing to load"):
        read_pth(tmp_path / "hostile.pth")
    assert not marker.exists()


def test_hostile_tensor_arguments(tmp_path):
    """Strides or offsets past the storage (which would read other memory) and attribute-setting BUILDs."""
    a = np.arange(27, dtype=np.float32).reshape(1, 3, 3, 3)
    s = storage_of(a, "0")
    for offset, stride in [(1, [27, 9, 3, 1]), (0, [27, 9, 3, 2]), (0, [27, 9, 3, -1])]:
        sd = OrderedDict([("conv1_1.weight", Tensor(s, offset, a.shape, stride))])
        write_zip(tmp_path / "oob.pth", hand_pickle(sd), [s])
        with pytest.raises(WeightsError, match="damaged"):
            read_pth(tmp_path / "oob.pth")
    # A tensor repeating one element 2^40 times (stride 0) would exhaust memory.
    one = storage_of(np.ones(1, np.float32), "0")
    sd = OrderedDict([("conv1_1.weight", Tensor(one, 0, (2**10, 2**10, 2**10, 1), (0, 0, 0, 0)))])
    write_zip(tmp_path / "huge.pth", hand_pickle(sd), [one])
    with pytest.raises(WeightsError, match=r"has shape \(1024, 1024, 1024, 1\), not that of 3×3 filters"):
        read_pth(tmp_path / "huge.pth")
    # BUILD on an admitted global (setting attributes of refstyle's functions) is refused.
    build = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}X\x08\x00\x00\x00__call__K\x01sb."
    write_zip(tmp_path / "build.pth", build, [])
    with pytest.raises(WeightsError, match="sets attributes"):
        read_pth(tmp_path / "build.pth")


def refused(path):
    """read_pth(path) must refuse the file: ``(message, peak MiB that Python and NumPy allocated meanwhile)``."""
    tracemalloc.start()
    try:
        with pytest.raises(WeightsError) as refusal:
            read_pth(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return str(refusal.value), peak / 2**20


def test_amplified_tensors_are_refused_before_they_are_built(tmp_path):
    """Small files whose tensors would swell to gigabytes are refused with their shapes, unbuilt."""
    one = storage_of(np.ones(1, np.float32), "0")
    zero_stride = (0, 0, 0, 0)
    # amplify4.pth: four 4,971,026-filter weights, each element the storage's only one (stride 0): 2 GB.
    huge = Tensor(one, 0, (4971026, 3, 3, 3), zero_stride)
    sd = OrderedDict((f"conv{n}.weight", huge) for n in ("1_1", "1_2", "2_1"))
    write_zip(tmp_path / "amplify.pth", hand_pickle(sd), [one])
    message, peak = refused(tmp_path / "amplify.pth")
    assert "conv1_1.weight (conv1_1) has shape (4971026, 3, 3, 3), not that of 3×3 filters" in message
    assert peak < 50
    # A shape within the limits (4096 filters of 4096 channels, 600 MB) but more elements than its storage.
    sd = OrderedDict([("conv1_1.weight", Tensor(one, 0, (4096, 4096, 3, 3), zero_stride))])
    write_zip(tmp_path / "repeated.pth", hand_pickle(sd), [one])
    message, peak = refused(tmp_path / "repeated.pth")
    assert "conv1_1.weight (conv1_1) has 150994944 elements from a storage of 1: it repeats elements" in message
    assert peak < 50
    # Every filter the same 64×64×3×3 elements of one storage: each within it, together 16× the file.
    W = np.ones((64, 64, 3, 3), np.float32)
    s = storage_of(W, "0")
    sd = OrderedDict((f"conv{b}_{k}.weight", Tensor(s, 0, W.shape, [576, 9, 3, 1])) for b in (1, 2) for k in (1, 2))
    write_zip(tmp_path / "overlap.pth", hand_pickle(sd), [s])
    message, _ = refused(tmp_path / "overlap.pth")
    assert "its tensors hold more elements than their storages" in message and "overlap" in message
    # Biases and BatchNorm vectors are checked against the filters before anything is read.
    big = storage_of(np.ones(2**20, np.float32), "1")
    for key in ("conv1_1.bias", "features.1.running_var"):
        filters = Tensor(s, 0, W.shape, [576, 9, 3, 1])
        w = OrderedDict([("features.0.weight" if key[0] == "f" else "conv1_1.weight", filters)])
        if key[0] == "f":
            w.update((f"features.1.{p}", Tensor(s, 0, (64,), (1,))) for p in ("weight", "bias", "running_mean"))
        w[key] = Tensor(big, 0, (2**20,), (1,))
        write_zip(tmp_path / "vector.pth", hand_pickle(w), [s, big])
        message, _ = refused(tmp_path / "vector.pth")
        assert f"{key} " in message and "has shape (1048576,), its filters (64, 64, 3, 3)" in message

    # Behind those checks, the reader's own: no tensor built has more elements than its
    # storage, and the storages read add up to at most the file's size (honest zip records
    # do not overlap).
    arrays = torch_pickle._Arrays(lambda key, nbytes: bytes(nbytes), "little", 1000)
    with pytest.raises(torch_pickle.Damaged, match="from a storage of 1 elements: more elements than its storage holds"):
        arrays.tensor(torch_pickle.TensorRef(torch_pickle._Storage("1", "f4", 1, None), 0, (2, 2), (0, 0), False))
    arrays.tensor(torch_pickle.TensorRef(torch_pickle._Storage("a", "f4", 200, None), 0, (200,), (1,), False))
    with pytest.raises(torch_pickle.Damaged, match="storages add up to more than the file's 1000 bytes"):
        arrays.tensor(torch_pickle.TensorRef(torch_pickle._Storage("b", "f4", 200, None), 0, (200,), (1,), False))


def test_compressed_records_are_refused_unread(tmp_path):
    """torch.save stores its records; a deflated one is refused, as is one claiming more than the file."""
    numel = 2**25  # 128 MiB of float32 zeros, deflated to 130 KB: a zip bomb
    bomb = Storage("0", "FloatStorage", None, numel=numel)
    sd = OrderedDict([("conv1_1.weight", Tensor(bomb, 0, (64, 3, 3, 3), (27, 9, 3, 1)))])
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", hand_pickle(sd))
        z.writestr("archive/byteorder", b"little")
        info = zipfile.ZipInfo("archive/data/0")
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w") as member:
            for _ in range(numel * 4 // 2**20):
                member.write(bytes(2**20))
    assert path.stat().st_size < 2**20
    message, peak = refused(path)  # its 128 MiB, more than the file holds, are not even looked at
    assert f"its storages add up to more than the file's {path.stat().st_size} bytes" in message
    assert peak < 50

    sd, storages = hand_state(checkpoint_keys(small("vgg16"), "caffe"))
    with zipfile.ZipFile(tmp_path / "deflated-storage.pth", "w") as z:  # random filters: fits in the file
        z.writestr("archive/data.pkl", hand_pickle(sd))
        for s in storages:
            z.writestr(f"archive/data/{s.key}", s.data, compress_type=zipfile.ZIP_DEFLATED)
    message, _ = refused(tmp_path / "deflated-storage.pth")
    assert "record archive/data/0 is compressed (zip method 8), which torch.save never does" in message
    write_zip(tmp_path / "deflated.pth", hand_pickle(sd), storages, byteorder=None, compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(WeightsError, match="record archive/data.pkl is compressed"):
        read_pth(tmp_path / "deflated.pth")

    # A stored record whose directory entry claims the 4096 bytes its storage has, of which
    # the file holds 108 (reading on would run into the central directory).
    pad = Storage("pad", "FloatStorage", bytes(4096))  # no tensor's: makes the file bigger than 4096 bytes
    short = Storage("0", "FloatStorage", bytes(108), numel=1024)
    sd = OrderedDict([("conv1_1.weight", Tensor(short, 0, (1, 3, 3, 3), (27, 9, 3, 1)))])
    write_zip(tmp_path / "claims.pth", hand_pickle(sd), [pad, short])
    data = bytearray((tmp_path / "claims.pth").read_bytes())
    entry = data.index(b"archive/data/0", data.index(b"PK\x01\x02")) - 46  # its central directory header
    struct.pack_into("<II", data, entry + 20, 4096, 4096)  # compressed and uncompressed sizes
    (tmp_path / "claims.pth").write_bytes(bytes(data))
    claims = f"record archive/data/0 claims 4096 bytes, more than the file's {len(data)} bytes hold"
    with pytest.raises(WeightsError, match=claims):
        read_pth(tmp_path / "claims.pth")


def test_wrappers_that_hold_themselves_or_nest_deep(tmp_path):
    selfref = {}
    selfref["state_dict"] = selfref
    write_zip(tmp_path / "selfref.pth", hand_pickle(selfref), [])
    with pytest.raises(WeightsError, match="the dict under state_dict is one that holds it, not a state dict"):
        read_pth(tmp_path / "selfref.pth")
    cycle = {"model": {"state_dict": None}}
    cycle["model"]["state_dict"] = cycle
    write_zip(tmp_path / "cycle.pth", hand_pickle(cycle), [])
    with pytest.raises(WeightsError, match="the dict under model/state_dict is one that holds it"):
        read_pth(tmp_path / "cycle.pth")

    w = small("vgg16", seed=14)
    sd, storages = hand_state(checkpoint_keys(w, "caffe"))
    wrapped = sd
    for key in ("state_dict", "model", "net", "weights"):
        wrapped = {key: wrapped, "epoch": 1}
    write_zip(tmp_path / "four.pth", hand_pickle(wrapped), storages)
    layers, info = read_pth(tmp_path / "four.pth")
    assert_layers_equal(layers, w)
    assert info["wrapper"] == "weights/net/model/state_dict"
    write_zip(tmp_path / "five.pth", hand_pickle({"params": wrapped}), storages)
    with pytest.raises(WeightsError, match="no tensors within 4 wrappers \\(params/weights/net/model\\)"):
        read_pth(tmp_path / "five.pth")


def test_deeply_nested_pickles_are_refused_not_crashed(tmp_path, monkeypatch):
    deep = b"\x80\x02)" + b"\x85" * 200_000  # a tuple in a tuple in ... 200,000 deep
    # As a persistent id (deeppid.pth): its repr in the message overflowed the recursion limit.
    write_zip(tmp_path / "deeppid.pth", deep + b"Q.", [])
    with pytest.raises(WeightsError, match=f"objects nested more than {MAX_NESTING} deep"):
        read_pth(tmp_path / "deeppid.pth")
    write_legacy(tmp_path / "deeppid-legacy.pth", deep + b"Q.", [])
    with pytest.raises(WeightsError, match=f"objects nested more than {MAX_NESTING} deep"):
        read_pth(tmp_path / "deeppid-legacy.pth")
    # As a dict key: CPython hashes a tuple by a recursion with no limit, and dies (SIGSEGV);
    # run in a process of its own so that a regression fails this test, not the test run.
    write_zip(tmp_path / "deepkey.pth", b"\x80\x02}" + deep + b"K\x01s.", [])
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from refstyle.weights.pth import read_pth; read_pth(sys.argv[1])",
         str(tmp_path / "deepkey.pth")],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])),
    )  # fmt: skip
    assert run.returncode == 1 and f"objects nested more than {MAX_NESTING} deep" in run.stderr, run.stderr[-2000:]

    # Nested less deep, a persistent id is named in the message, shortened.
    write_zip(tmp_path / "pid.pth", b"\x80\x02)" + b"\x85" * 60 + b"Q.", [])
    with pytest.raises(WeightsError, match=r"an unknown persistent id \(\(\(") as refusal:
        read_pth(tmp_path / "pid.pth")
    assert len(str(refusal.value)) < 400
    nested = ()
    for _ in range(100_000):
        nested = (nested,)
    assert len(torch_pickle.short_repr(nested)) < 80 and len(torch_pickle.short_repr(10**10000)) < 80
    # Anything that still recurses too deep, or runs out of memory, is a refusal, not a traceback.
    hand_file(tmp_path / "good.pth", checkpoint_keys(small("vgg16"), "caffe"))
    for error in (RecursionError, MemoryError):

        def fail(*args, error=error):
            raise error("too much")

        monkeypatch.setattr(pth, "_layers", fail)
        with pytest.raises(WeightsError, match=f"damaged or unreadable .*{error.__name__}: too much"):
            read_pth(tmp_path / "good.pth")


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_features_alone_with_bare_indices(tmp_path, arch):
    """torch.save(vgg.features.state_dict()) names its keys 0.weight, 2.weight, ...: torchvision's, bare."""
    w = small(arch, seed=15)
    bare = OrderedDict((key.removeprefix("features."), a) for key, a in checkpoint_keys(w, "torchvision").items()
                       if key.startswith("features."))  # fmt: skip
    assert list(bare)[:4] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    layers, info = read_pth(hand_file(tmp_path / "features.pth", bare))
    assert_layers_equal(layers, w)
    assert (info["naming"], info["layout"], info["arch"], info["prefix"]) == ("torchvision", arch, arch, "")
    assert info["input"] == TORCHVISION_INPUT and info["ignored"] == []
    dp = OrderedDict((f"module.{key}", a) for key, a in bare.items())  # DataParallel(vgg.features)
    layers, info = read_pth(hand_file(tmp_path / "dp.pth", dp, legacy=True))
    assert_layers_equal(layers, w)
    assert (info["arch"], info["prefix"]) == (arch, "module.")


def test_features_alone_with_torch(tmp_path):
    """The Sequential torchvision's vgg19().features is, saved alone by torch."""
    torch = require_torch()
    w = small("vgg19", seed=16)
    modules = []
    for name in refstyle.ARCHS["vgg19"]:
        if name.startswith("conv"):
            W, b = w[name]
            conv = torch.nn.Conv2d(W.shape[1], W.shape[0], 3, padding=1)
            conv.weight.data, conv.bias.data = torch.from_numpy(W), torch.from_numpy(b)
            modules += [conv, torch.nn.ReLU(inplace=True)]
        else:
            modules.append(torch.nn.MaxPool2d(2, 2))
    features = torch.nn.Sequential(*modules)
    assert [k for k in features.state_dict()][:4] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    torch.save(features.state_dict(), tmp_path / "features.pth")
    layers, info = read_pth(tmp_path / "features.pth")
    assert_layers_equal(layers, w)
    assert (info["naming"], info["layout"], info["arch"]) == ("torchvision", "vgg19", "vgg19")


def test_damaged_and_foreign_files(tmp_path):
    w = small("vgg16", seed=9)
    arrays = checkpoint_keys(w, "caffe")
    good = hand_file(tmp_path / "good.pth", arrays).read_bytes()
    cases = {
        "empty.pth": (b"", "empty"),
        "text.pth": (b"version https://git-lfs.github.com/spec/v1\n", "not a PyTorch checkpoint"),
        "cut.pth": (good[: len(good) // 2], "damaged"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(WeightsError, match=message):
            read_pth(tmp_path / name)
    with tarfile.open(tmp_path / "old.pth", "w") as tar:
        tar.add(tmp_path / "good.pth", arcname="pickle")
    with pytest.raises(WeightsError, match="tar-format checkpoint"):
        read_pth(tmp_path / "old.pth")
    with pytest.raises(WeightsError, match="no such weights file"):
        read_pth(tmp_path / "missing.pth")

    sd, storages = hand_state(arrays)
    storages[0].data = storages[0].data[:-4]  # a storage shorter than its tensor
    write_zip(tmp_path / "short.pth", hand_pickle(sd), storages)
    with pytest.raises(WeightsError, match=r"storage 0 has \d+ bytes, its tensors need"):
        read_pth(tmp_path / "short.pth")
    write_legacy(tmp_path / "short-legacy.pth", hand_pickle(sd, legacy=True), storages)
    with pytest.raises(WeightsError, match=r"truncated|damaged"):
        read_pth(tmp_path / "short-legacy.pth")

    np.savez(tmp_path / "arrays.npz", a=np.ones(2))
    assert pth_format(tmp_path / "arrays.npz") is None
    with pytest.raises(WeightsError, match="not a PyTorch checkpoint"):
        read_pth(tmp_path / "arrays.npz")

    write_zip(tmp_path / "list.pth", hand_pickle([1, 2]), [])
    with pytest.raises(WeightsError, match="holds a list, not a state dict"):
        read_pth(tmp_path / "list.pth")
    write_zip(tmp_path / "other.pth", hand_pickle({"encoder.0.weight": sd["conv1_1.weight"]}), storages[:1])
    with pytest.raises(WeightsError, match="no VGG convolutions found among the keys"):
        read_pth(tmp_path / "other.pth")


def test_shape_and_dtype_problems_are_named(tmp_path):
    W = np.ones((3, 3, 3, 4), np.float32)  # a Keras-layout kernel under a PyTorch name
    hand_file(tmp_path / "keras-layout.pth", {"conv1_1.weight": np.ones((4, 3, 1, 1), np.float32)})
    with pytest.raises(WeightsError, match=r"conv1_1.weight \(conv1_1\) has shape \(4, 3, 1, 1\)"):
        read_pth(tmp_path / "keras-layout.pth")
    hand_file(tmp_path / "bias-only.pth", {"conv1_1.bias": W[0, 0, 0]})
    with pytest.raises(WeightsError, match=r"conv1_1 has conv1_1\.bias but no weight"):
        read_pth(tmp_path / "bias-only.pth")


# ---------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------


def test_torchvision_layouts_match_torchvision():
    assert list(TORCHVISION_LAYOUTS["vgg16"][2]) == VGG16_CONVS
    assert list(TORCHVISION_LAYOUTS["vgg19"][2]) == VGG19_CONVS
    assert list(TORCHVISION_LAYOUTS["vgg16_bn"][2]) == [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]
    assert list(TORCHVISION_LAYOUTS["vgg19"][2].values()) == list(refstyle.nn.arch.conv_layers("vgg19"))
    assert caffe_name("features.16.weight", "vgg19") == ("conv3_4", "W")
    assert caffe_name("features.17.bias", "vgg16") == ("conv4_1", "b")
    assert caffe_name("features.16.weight", "vgg16") is None  # a ReLU in vgg16
    assert caffe_name("features.4.running_var", "vgg16_bn") == ("conv1_2", "var")
    assert caffe_name("model.conv5_4.bias") == ("conv5_4", "b")
    assert caffe_name("block3_conv2.weight") == ("conv3_2", "W")
    assert caffe_name("myconv1_1.weight") is None and caffe_name("classifier.0.weight") is None
    with pytest.raises(ValueError, match="layout"):
        caffe_name("features.0.weight")


def test_name_keys_finds_the_arch_or_says_why_not():
    def keys(indices, prefix=""):
        return [f"{prefix}features.{n}.{p}" for n in indices for p in ("weight", "bias")]

    assert name_keys(keys(VGG16_CONVS)).arch == "vgg16"
    assert name_keys(keys(VGG19_CONVS[:9], "module.")).arch == "vgg19"  # features[:19]: up to conv4_1
    short = name_keys(keys(VGG16_CONVS[:7]))  # up to conv3_3: vgg16 and vgg19 alike
    assert short.arch is None and max(n for n, _ in short.names.values()) == "conv3_3"
    with pytest.raises(WeightsError, match="fit no torchvision VGG layout"):
        name_keys(keys([0, 3, 6, 8, 10]))  # AlexNet's
    with pytest.raises(WeightsError, match="more than one conv stack"):
        name_keys(keys(VGG16_CONVS, "a.") + keys(VGG16_CONVS, "b."))
    with pytest.raises(WeightsError, match="more than one conv stack"):
        name_keys([*keys([0]), "conv1_2.weight"])

    def bare(indices, prefix=""):
        return [key.replace("features.", "") for key in keys(indices, prefix)]

    assert name_keys(bare(VGG16_CONVS)).arch == "vgg16" and name_keys(bare(VGG19_CONVS, "module.")).arch == "vgg19"
    assert name_keys(bare(VGG16_CONVS)).scheme == "torchvision"
    assert caffe_name("16.weight", "vgg19") == ("conv3_4", "W") and caffe_name("module.4.running_var", "vgg16_bn")
    with pytest.raises(WeightsError, match="more than one conv stack \\(N, features.N\\)"):
        name_keys(keys(VGG16_CONVS) + bare(VGG16_CONVS))
    with pytest.raises(WeightsError, match="the modules N at N = 0, 3, 6, 8, 10 fit no torchvision VGG layout"):
        name_keys(bare([0, 3, 6, 8, 10]))
    with pytest.raises(WeightsError, match="no VGG convolutions found"):  # another Sequential's indices
        name_keys(["classifier.0.weight", "encoder.2.bias", "net.module.0.weight"])
    assert INPUTS == {"torchvision": TORCHVISION_INPUT, "caffe": CAFFE_INPUT, "keras": CAFFE_INPUT}


# ---------------------------------------------------------------------------
# Folding torchvision's input into conv1_1
# ---------------------------------------------------------------------------


def conv0(x, W):
    return conv_forward(x, W, np.zeros(W.shape[0]))[0]


def test_to_caffe_input_is_exact_inside_the_image():
    rng = np.random.default_rng(10)
    W, b = rng.standard_normal((5, 3, 3, 3)) * 0.2, rng.standard_normal(5)
    rgb = rng.uniform(0, 255, (1, 3, 9, 11))  # an image, RGB, 0..255
    mean, std = np.array(TORCHVISION_INPUT["mean"]), np.array(TORCHVISION_INPUT["std"])
    x_tv = (rgb / 255 - mean[None, :, None, None]) / std[None, :, None, None]
    x_caffe = rgb[:, ::-1] - np.array(CAFFE_INPUT["mean"])[None, :, None, None]

    layers = {"conv1_1": (W, b), "conv1_2": (W, b)}
    folded, note = to_caffe_input(layers, TORCHVISION_INPUT)
    assert layers["conv1_1"][0] is W and folded["conv1_2"] is layers["conv1_2"]  # inputs untouched
    W2, b2 = folded["conv1_1"]
    y_tv, _ = conv_forward(x_tv, W, b)
    y_caffe, _ = conv_forward(x_caffe, W2, b2)
    scale = np.abs(y_tv).max()
    np.testing.assert_allclose(y_caffe[..., 1:-1, 1:-1], y_tv[..., 1:-1, 1:-1], rtol=0, atol=1e-13 * scale)

    # The border: as if the pixels outside were Caffe's mean instead of torchvision's,
    # delta = mu - 255·mean_tv (BGR): Δy = Σ_{outside taps} W'·delta.
    delta = np.array(CAFFE_INPUT["mean"]) - 255 * mean[::-1]
    np.testing.assert_allclose(delta, [0.409, 0.499, 0.005], atol=1e-9)
    inside = conv0(np.broadcast_to(delta[None, :, None, None], x_caffe.shape).copy(), W2)
    expected = np.einsum("ocuv,c->o", W2, delta)[None, :, None, None] - inside
    np.testing.assert_allclose(y_caffe - y_tv, expected, rtol=0, atol=1e-13 * scale)
    # The docstring's bounds: 0.499·Σ_outside|W'| per output, which is 0.499/255 < 0.2% of
    # the range of that output over all images (255·Σ|W'|).
    absW = np.abs(W2)
    outside = absW.sum(axis=(1, 2, 3))[None, :, None, None] - conv0(np.ones_like(x_caffe), absW)
    assert np.all(np.abs(y_caffe - y_tv) <= 0.499 * outside + 1e-12 * scale)
    assert np.all(np.abs(y_caffe - y_tv).max(axis=(0, 2, 3)) <= 0.002 * 255 * absW.sum(axis=(1, 2, 3)))
    assert "0.499 grey levels" in note


def test_to_caffe_input_float32_and_caffe_conventions():
    w = small("vgg16", seed=11)
    same, note = to_caffe_input(w, CAFFE_INPUT)
    assert same["conv1_1"] is w["conv1_1"] and "nothing folded" in note
    folded, _ = to_caffe_input(w, TORCHVISION_INPUT)
    assert folded["conv1_1"][0].dtype == np.float32 and folded["conv1_1"][1].dtype == np.float32
    with pytest.raises(WeightsError, match="lack conv1_1"):
        to_caffe_input({"conv1_2": w["conv1_2"]}, TORCHVISION_INPUT)


def test_a_torchvision_checkpoint_through_load_weights_matches_torch(tmp_path, capsys):
    """The whole path a user takes: torch.save(vgg.features' state dict) -> refstyle, Caffe input folded in.

    refstyle's network on the Caffe-preprocessed image equals torch's own layers on the
    torchvision-preprocessed image, away from the border that the fold changes.
    """
    torch = require_torch()
    w = small("vgg19", seed=3)
    path = torch_save(torch, checkpoint_keys(w, "torchvision"), tmp_path / "vgg19.pth", legacy=False)
    with pytest.warns(refstyle.RefstyleWarning, match="--weights-input caffe"):  # the key names are only a guess
        loaded = refstyle.load_weights(path)
    assert loaded.meta["format"] == "pth-zip" and loaded.meta["arch"] == "vgg19"
    assert loaded.meta["input"] == CAFFE_INPUT and loaded.meta["input_conversion"]["from"] == TORCHVISION_INPUT
    rgb = np.random.default_rng(0).integers(0, 256, (21, 26, 3)).astype(np.uint8)
    net = refstyle.VGG(loaded, pooling="max", dtype="float64")
    F = net.responses(refstyle.preprocess(rgb, "float64"), ["conv2_1"])["conv2_1"]
    mean, std = np.array(TORCHVISION_INPUT["mean"]), np.array(TORCHVISION_INPUT["std"])
    x = torch.tensor(((rgb / 255.0 - mean) / std).transpose(2, 0, 1)[None])
    conv = lambda h, name: torch.relu(torch.nn.functional.conv2d(h, torch.tensor(w[name][0], dtype=torch.float64),  # noqa: E731
                                                                 torch.tensor(w[name][1], dtype=torch.float64), padding=1))
    h = conv(conv(x, "conv1_1"), "conv1_2")
    h = conv(torch.nn.functional.max_pool2d(h, 2, 2, ceil_mode=True), "conv2_1")
    expected = h.numpy()
    inner = (slice(None), slice(None), slice(3, -3), slice(3, -3))  # the fold is exact away from the border
    np.testing.assert_allclose(F[inner], expected[inner], rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    assert np.abs(F - expected).max() < 0.01 * np.abs(expected).max()  # and close at the border
    # converted once, the .npz records the fold and is not folded again when loaded
    out = tmp_path / "vgg19.npz"
    from refstyle.app.cli import main

    assert main(["weights", "convert", str(path), str(out)]) == 0
    assert "input convention: conv1_1 folded from the input" in capsys.readouterr().out
    again = refstyle.load_weights(out)
    assert again.meta["input_conversion"]["from"] == TORCHVISION_INPUT and again.meta["original_format"] == "pth-zip"
    assert again.meta["naming"] == "torchvision" and again.meta["checkpoint"]["layout"] == "vgg19"
    assert again.meta["naming"] == "torchvision" and again.meta["checkpoint"]["layout"] == "vgg19"
    np.testing.assert_array_equal(again["conv1_1"][0], loaded["conv1_1"][0].astype(np.float32))
    np.testing.assert_array_equal(again["conv1_1"][1], loaded["conv1_1"][1].astype(np.float32))


def test_a_stated_input_is_taken_and_not_warned_about(tmp_path, recwarn):
    """neural-style-pt's model files: torchvision's key names holding Caffe weights; stated, they are read right."""
    torch = require_torch()
    w = small("vgg16", seed=5)
    path = torch_save(torch, checkpoint_keys(w, "torchvision"), tmp_path / "vgg16-00b39a1b.pth", legacy=False)
    caffe = refstyle.load_weights(path, input="caffe")
    assert not [r for r in recwarn if issubclass(r.category, refstyle.RefstyleWarning)]
    assert caffe.meta["input"] == CAFFE_INPUT and "input_conversion" not in caffe.meta
    np.testing.assert_array_equal(caffe["conv1_1"][0], w["conv1_1"][0].astype(np.float32))  # nothing folded
    kept = refstyle.load_weights(path, input="torchvision", fold=False)
    assert kept.meta["input"] == TORCHVISION_INPUT and "input_conversion" not in kept.meta
    with pytest.raises(refstyle.RefstyleError, match="unknown input convention 'bgr'"):
        refstyle.load_weights(path, input="bgr")


def test_a_known_file_name_gives_its_records_input_with_a_warning(tmp_path):
    """vgg16-00b39a1b.pth outside the cache: the record vgg16-neural-style-pt says Caffe's input; nothing folded."""
    torch = require_torch()
    w = small("vgg16", seed=6)
    path = torch_save(torch, checkpoint_keys(w, "torchvision"), tmp_path / "vgg16-00b39a1b.pth", legacy=True)
    with pytest.warns(refstyle.RefstyleWarning, match="known weights vgg16-neural-style-pt"):
        named = refstyle.load_weights(path)
    assert named.meta["input"] == CAFFE_INPUT and "input_conversion" not in named.meta
    np.testing.assert_array_equal(named["conv1_1"][0], w["conv1_1"][0].astype(np.float32))
    other = torch_save(torch, checkpoint_keys(w, "torchvision"), tmp_path / "vgg16.pth", legacy=True)
    with pytest.warns(refstyle.RefstyleWarning, match="taken to be torchvision's"):
        guessed = refstyle.load_weights(other)
    assert guessed.meta["input_conversion"]["from"] == TORCHVISION_INPUT  # folded, on the guess it warned about


def test_weights_info_says_where_a_pth_files_input_comes_from(tmp_path, capsys):
    from refstyle.app.cli import main

    torch = require_torch()
    w = small("vgg16", seed=7)
    named = torch_save(torch, checkpoint_keys(w, "torchvision"), tmp_path / "vgg16-00b39a1b.pth", legacy=False)
    other = torch_save(torch, checkpoint_keys(w, "torchvision"), tmp_path / "other.pth", legacy=False)
    assert main(["weights", "info", str(named)]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("input:"))
    assert "'range': [0, 255]" in line and "from the record vgg16-neural-style-pt, by the file's name" in line
    assert main(["weights", "info", str(other)]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("input:"))
    assert "'std': [0.229, 0.224, 0.225]" in line and "a guess from torchvision's key names" in line


def test_weights_convert_takes_a_stated_input(tmp_path, capsys):
    """--weights-input on weights convert: stated Caffe's, nothing is folded and no warning is given."""
    from refstyle.app.cli import main

    torch = require_torch()
    w = small("vgg16", seed=8)
    path = torch_save(torch, checkpoint_keys(w, "torchvision"), tmp_path / "mine.pth", legacy=False)
    assert main(["weights", "convert", str(path), str(tmp_path / "a.npz"), "--weights-input", "caffe"]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err and "input convention" not in out
    np.testing.assert_array_equal(refstyle.load_weights(tmp_path / "a.npz")["conv1_1"][0],
                                  w["conv1_1"][0].astype(np.float32))
    assert main(["weights", "convert", str(path), str(tmp_path / "b.npz")]) == 0
    out, err = capsys.readouterr()
    assert "taken to be torchvision's" in err and "conv1_1 folded from the input" in out
