"""refstyle.filekind: what a file is, from its first bytes, whatever its name says."""

import pickle
import zipfile

import h5py
import numpy as np
import scipy.io
from PIL import Image

from refstyle.filekind import HEAD, NAMES, kind_of, sniff, what_is


def _write(path, data):
    path.write_bytes(data)
    return path


def test_each_kind_from_a_file_made_by_its_own_writer(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    np.savez(tmp_path / "a.npz", x=np.zeros(3))
    (tmp_path / "a.pkl").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["x"] = np.zeros(3)
    scipy.io.savemat(tmp_path / "a.mat", {"x": np.zeros(3)})
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "a.jpg")
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
        z.writestr("readme.txt", "hello")
    with zipfile.ZipFile(tmp_path / "t.pth", "w") as z:
        z.writestr("t/data.pkl", pickle.dumps({}, protocol=2))
        z.writestr("t/version", "3\n")
    _write(tmp_path / "a.txt", "name: \"VGG_ILSVRC_19_layers\"\nlayers {\n".encode())
    _write(tmp_path / "a.html", b"\n<!DOCTYPE html><html><body>Not found</body></html>")
    _write(tmp_path / "empty", b"")
    expected = {
        "a.npy": "npy", "a.npz": "npz", "a.pkl": "pickle", "a.h5": "hdf5", "a.mat": "mat5", "a.png": "png",
        "a.jpg": "jpeg", "a.zip": "zip", "t.pth": "torch-zip", "a.txt": "text", "a.html": "html", "empty": "empty",
    }
    assert {name: kind_of(tmp_path / name) for name in expected} == expected
    assert what_is(tmp_path / "a.h5") == "an HDF5 file" and what_is(tmp_path / "a.pkl") == "a Python pickle"
    assert what_is(tmp_path / "a.mat") == "a MATLAB 5 .mat file" and what_is(tmp_path / "a.txt") == "text"


def test_a_truncated_zip_is_named_so(tmp_path):
    with zipfile.ZipFile(tmp_path / "w.pth", "w") as z:
        z.writestr("w/data.pkl", b"x" * 5000)
    data = (tmp_path / "w.pth").read_bytes()
    cut = _write(tmp_path / "cut.pth", data[: len(data) // 2])
    assert sniff(cut.read_bytes()) == "zip" and kind_of(cut) == "zip-truncated"
    assert "cut short" in what_is(cut)


def test_signatures_that_need_more_than_the_first_bytes():
    mat73 = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(512, b" ") + b"\x89HDF\r\n\x1a\n" + bytes(100)
    assert sniff(mat73) == "mat73"
    assert sniff(bytes(512) + b"\x89HDF\r\n\x1a\n" + bytes(100)) == "hdf5"  # a user block before HDF5
    legacy = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b".\x80\x02"
    assert sniff(legacy) == "torch-legacy"
    assert sniff(bytes(257) + b"ustar\x0000") == "tar"
    assert sniff(b"\x12\x8f\x03\x0a\x07conv1_1\x28\x04" + bytes(20)) == "protobuf"
    assert sniff(b"\x00\x01\x02\xfe" * 10) == "unknown"


def test_text_cut_inside_a_character_is_still_text():
    text = b"a" + "é".encode("utf-8") * HEAD  # the head ends inside an é
    assert sniff(text[:HEAD]) == "text" and sniff(text[: HEAD - 1]) == "text"
    assert sniff("abc\x00def".encode()) == "unknown"  # a NUL byte is no text
    assert sniff(b"abc\xc3") == "unknown"  # a whole file that ends inside a character is not UTF-8


def test_every_kind_has_a_name():
    assert {sniff(b""), "zip-truncated", "torch-zip", "npz"} <= set(NAMES)
    assert all(name and name == name.strip() for name in NAMES.values())
