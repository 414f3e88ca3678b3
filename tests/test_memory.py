"""The memory estimate: near the measured peak, and a run too large for the machine refused before any work."""

import re
import tracemalloc

import numpy as np
import pytest
from PIL import Image

import refstyle
from refstyle.app.cli import main
from refstyle.errors import RefstyleError
from refstyle.paper import memory
from refstyle.paper.memory import ESTIMATE_FACTOR, check_run_memory, estimate_memory, run_shapes

rng = np.random.default_rng(28)
STYLE = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]
GiB = 2**30


@pytest.fixture(scope="module")
def full_width(tmp_path_factory):
    """VGG19 at the published widths (80 MB of float32: the weights' part of the estimate is real)."""
    folder = tmp_path_factory.mktemp("full")
    weights = folder / "vgg19.npz"
    refstyle.save_npz(refstyle.generate_weights("vgg19", widths=(64, 128, 256, 512, 512), seed=1, dtype="float32"),
                      weights)
    return folder, weights


def measured_peak(capsys, argv):
    tracemalloc.start()
    try:
        status = main([str(a) for a in argv])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 0, capsys.readouterr().err
    capsys.readouterr()
    return peak


@pytest.mark.parametrize("size, kernels, optimizer, dtype", [
    (96, "fast", "lbfgs", "float32"),  # the command line's default
    (128, "reference", "adam", "float64"),
])
def test_the_estimate_is_within_its_factor_of_the_measured_peak(full_width, capsys, size, kernels, optimizer, dtype):
    folder, weights = full_width
    photo, art = (size * 3 // 4, size), (size, size)
    for name, shape in (("photo.png", photo), ("art.png", art)):
        Image.fromarray(rng.integers(0, 256, shape + (3,)).astype(np.uint8)).save(folder / name)
    peak = measured_peak(capsys, ["transfer", folder / "photo.png", folder / "art.png", "--weights", weights,
                                  "--size", size, "--iters", 2, "--kernels", kernels, "--optimizer", optimizer,
                                  "--dtype", dtype, "-o", folder / "out.png", "--force"])
    e = estimate_memory("vgg19", run_shapes(photo, size, 1.0, [art]), STYLE + ["conv4_2"], dtype, kernels, optimizer,
                        content_layers=["conv4_2"])
    assert 1 / ESTIMATE_FACTOR < peak / e.arrays < ESTIMATE_FACTOR, (peak / 2**20, e)


def test_a_size_the_memory_cannot_hold_is_refused_before_any_allocation(tiny_run, capsys, monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": 8 * GiB)
    out = tiny_run["dir"] / "big.png"
    tracemalloc.start()
    try:
        status = main(["transfer", tiny_run["photo"], tiny_run["art"], "--weights", tiny_run["weights"],
                       "--size", "8000", "-o", str(out)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    _, err = capsys.readouterr()
    assert status == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert peak < 16 * 2**20  # nothing of the 8000-pixel run was allocated (its first layer alone: 12 GB)
    found = re.fullmatch(r"refstyle: error: --size 8000 needs about ([\d.]+) GiB of memory \(weights \d+ MiB, layers "
                         r"[\d.]+ GiB, optimiser [\d.]+ GiB\), but this machine has 8\.0 GiB available: --size (\d+) "
                         r"fits\n", err)
    assert found, err
    assert float(found.group(1)) > 100  # VGG19 to conv5_1 at 8000×6000 and SciPy's L-BFGS-B history
    fits = int(found.group(2))
    photo, art = (24, 32), (32, 32)

    def total(size):
        shapes = run_shapes(photo, size, 1.0, [art])
        return estimate_memory("vgg19", shapes, STYLE + ["conv4_2"], content_layers=["conv4_2"]).total

    assert total(fits) <= 8 * GiB < total(fits + 1)  # the largest size that fits, exactly
    assert not out.exists()


def test_a_gpu_run_is_checked_against_the_gpus_memory(monkeypatch):
    free = {"cpu": 64 * GiB, "gpu": 1 * GiB}
    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": free[device])
    settings = refstyle.Settings(size=1024, optimizer="lbfgs-xp")
    with pytest.raises(RefstyleError, match=r"--size 1024 needs about .* but the GPU has 1\.0 GiB free: --size \d+ fits"):
        check_run_memory(settings, (768, 1024), [(1024, 1024)], device="gpu")
    check_run_memory(settings._replace(size=128), (768, 1024), [(1024, 1024)], device="gpu")  # fits: no error


def test_the_estimate_grows_with_what_the_run_holds():
    layers, shapes = STYLE + ["conv4_2"], [(256, 256)]
    e = estimate_memory("vgg19", shapes, layers)
    assert estimate_memory("vgg19", [(512, 512)], layers).blobs == pytest.approx(4 * e.blobs, rel=0.01)
    assert estimate_memory("vgg19", shapes, layers, dtype="float64").blobs == 2 * e.blobs
    assert estimate_memory("vgg19", shapes, layers, kernels="reference").blobs > 2 * e.blobs  # every response kept
    assert estimate_memory("vgg19", shapes, ["conv1_1"]).blobs < 0.7 * e.blobs  # a shallow run stops early
    assert estimate_memory("vgg19", shapes, layers, optimizer="adam").history < e.history / 10
    assert estimate_memory("vgg16", shapes, layers).weights < e.weights


def test_available_memory_reads_meminfo_else_sysconf_and_a_containers_limit(monkeypatch, tmp_path):
    found = memory.available_memory()
    assert found is None or found > 0
    files = {"/proc/meminfo": "MemTotal: 67108864 kB\nMemAvailable: 33554432 kB\n",  # 32 GiB available
             "/sys/fs/cgroup/memory.max": "max\n", "/sys/fs/cgroup/memory.current": "1073741824\n"}
    real_open = open

    def fake_open(path, *args, **kwargs):
        if path not in files:
            raise FileNotFoundError(path)
        (tmp_path / "f").write_text(files[path])
        return real_open(tmp_path / "f", *args, **kwargs)

    monkeypatch.setattr(memory, "open", fake_open, raising=False)
    assert memory.available_memory() == 32 * GiB  # no container limit
    files["/sys/fs/cgroup/memory.max"] = str(4 * GiB)
    assert memory.available_memory() == 3 * GiB  # the container's 4 GiB, 1 GiB of it used
    del files["/proc/meminfo"]
    monkeypatch.setattr(memory.os, "sysconf", lambda name: {"SC_AVPHYS_PAGES": 1024, "SC_PAGE_SIZE": 4096}[name])
    assert memory.available_memory() == 4 * 2**20  # the free pages, under the container's room


def test_a_figure_is_checked_for_the_cells_it_runs_at_once(tiny_run, capsys, monkeypatch):
    import json

    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": 4 * GiB)
    grid = tiny_run["dir"] / "grid.json"
    grid.write_text(json.dumps({
        "title": "two cells", "defaults": {"kind": "transfer", "content": "photo.png", "styles": ["art.png"]},
        "rows": [{"label": "a", "ratio": 1e-3}, {"label": "b", "ratio": 1e-2}], "columns": [{"label": "c"}],
    }))
    out, cache = tiny_run["dir"] / "grid.png", tiny_run["dir"] / "cache"
    argv = ["figure", grid, "-o", out, "--weights", tiny_run["weights"], "--images", tiny_run["dir"], "--iters", 2,
            "--cache", cache]
    errors = []
    for jobs in (1, 2):
        status = main([str(a) for a in argv + ["--size", 2048, "--jobs", jobs]])
        err = capsys.readouterr()[1]
        assert status == 1 and err.count("\n") == 1, err
        errors.append(err)
    assert "runs at once" not in errors[0] and "for 2 runs at once" in errors[1]
    one, two = (int(re.search(r"--size (\d+) fits", e).group(1)) for e in errors)
    assert two < one  # two cells at once fit in less
    assert not out.exists() and not cache.exists()  # no cell ran
    assert main([str(a) for a in argv + ["--size", 32, "--jobs", 2]]) == 0  # a size that fits runs
