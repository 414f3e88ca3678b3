"""Figure grids: grid files, the cell cache and its keys, resuming, local and Dask parallel runs."""

import json
import os

import numpy as np
import pytest
from conftest import IN_CI
from PIL import Image

import refstyle
from refstyle.app import figures
from refstyle.app.cli import main
from refstyle.errors import RefstyleError
from refstyle.paper.settings import Settings
from refstyle.app.figures import CellCache, cell_job, cell_key, find_images, load_grid, make_grid, parse_grid

rng = np.random.default_rng(21)

TINY = {
    "title": "tiny",
    "defaults": {"kind": "transfer", "content": "photo.png", "styles": ["art.png"]},
    "rows": [{"label": "conv1_1", "style_layers": ["conv1_1"]}, {"label": "conv2_1", "style_layers": ["conv1_1", "conv2_1"]}],
    "columns": [{"label": "α/β = 1e-3", "ratio": 1e-3}, {"label": "α/β = 1e-1", "ratio": 1e-1}],
}


@pytest.fixture()
def setup(tmp_path):
    """Small generated weights, two random images, the tiny 2×2 grid file, and a cache folder."""
    weights = tmp_path / "w.npz"
    refstyle.save_npz(refstyle.generate_weights("vgg19", widths=(3, 4, 4, 4, 4), seed=1), weights)
    images = tmp_path / "images"
    images.mkdir()
    for name, shape in [("photo.png", (18, 24)), ("art.png", (24, 24))]:
        Image.fromarray(rng.integers(0, 256, shape + (3,)).astype(np.uint8)).save(images / name)
    grid = tmp_path / "tiny.json"
    grid.write_text(json.dumps(TINY))
    return {"weights": str(weights), "images": str(images), "grid": str(grid), "cache": str(tmp_path / "cache"),
            "dir": tmp_path}


def figure(capsys, setup, out, *extra):
    status = main(["figure", setup["grid"], "-o", str(out), "--weights", setup["weights"], "--images", setup["images"],
                   "--size", "24", "--iters", "4", "--cache", setup["cache"], *map(str, extra)])
    stdout, err = capsys.readouterr()
    return status, stdout, err


def test_a_tiny_grid_end_to_end(setup, capsys):
    out = setup["dir"] / "grid.png"
    status, stdout, err = figure(capsys, setup, out)
    assert status == 0, err
    assert "4 cells computed, 0 from the cache" in stdout and "tiny cells" in err
    with Image.open(out) as im:
        assert im.width > 300 and im.height > 300
    assert len(os.listdir(setup["cache"])) == 4
    status, stdout, _ = figure(capsys, setup, out, "--force")
    assert status == 0 and "0 cells computed, 4 from the cache" in stdout


def test_resume_after_an_interrupted_run_reuses_finished_cells(setup, capsys, monkeypatch):
    real_run_cell, calls = figures.run_cell, []

    def run_cell(job):
        calls.append(job)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the run is killed while its third cell runs
        return real_run_cell(job)

    monkeypatch.setattr(figures, "run_cell", run_cell)
    out = setup["dir"] / "grid.png"
    status, stdout, err = figure(capsys, setup, out)
    assert status == 130 and not out.exists()
    assert len(os.listdir(setup["cache"])) == 2  # the two finished cells, and nothing half-written
    calls.clear()
    status, stdout, err = figure(capsys, setup, out)
    assert status == 0, err
    assert len(calls) == 2 and "2 cells computed, 2 from the cache" in stdout


def test_the_same_cells_in_two_local_processes(setup, tmp_path):
    grid = load_grid(setup["grid"])
    images = find_images(grid, setup["images"])
    serial = make_grid(grid, images, setup["weights"], size=24, iters=3, cache_dir=tmp_path / "a")
    parallel = make_grid(grid, images, setup["weights"], size=24, iters=3, cache_dir=tmp_path / "b", jobs=2)
    assert serial.computed == parallel.computed == 4
    for at, im in serial.images.items():
        np.testing.assert_array_equal(im, parallel.images[at])


def test_a_grid_through_a_dask_cluster_on_localhost(setup, tmp_path, capsys):
    try:
        import distributed
    except ImportError:
        if IN_CI:
            pytest.fail("distributed is not installed: CI installs it with the 'test' extra")
        pytest.skip("distributed is not installed (pip install -e '.[test]')")
    with distributed.LocalCluster(
        host="127.0.0.1", n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        out = tmp_path / "dask.png"
        status, stdout, err = figure(capsys, setup, out, "--scheduler", cluster.scheduler_address)
        assert status == 0, err
        assert "4 cells computed" in stdout and out.exists()
    grid = load_grid(setup["grid"])
    local = make_grid(grid, find_images(grid, setup["images"]), setup["weights"], size=24, iters=4,
                      cache_dir=tmp_path / "local")
    cache = CellCache(setup["cache"])
    stored = sorted(cache.load(k[:-4])["loss"] for k in os.listdir(setup["cache"]))
    assert stored == sorted(s["loss"] for s in local.stats.values())  # the workers computed the same cells


def test_the_cache_key_changes_when_any_setting_changes(setup, tmp_path):
    grid = load_grid(setup["grid"])
    images = find_images(grid, setup["images"])
    spec = grid.cells[0].spec
    job = cell_job(spec, images, setup["weights"], "vgg19", Settings(), size=24, iters=4)
    sha = lambda path: refstyle.io.file_sha256(path)  # noqa: E731
    key = cell_key(job, sha)
    assert key == cell_key(cell_job(dict(spec), images, setup["weights"], "vgg19", Settings(), size=24, iters=4), sha)
    variants = [
        job._replace(settings=job.settings._replace(**{field: value}))
        for field, value in [
            ("size", 25), ("iters", 5), ("seed", 1), ("alpha", 2e-3), ("beta", 2.0), ("content_layers", ("conv3_1",)),
            ("style_layers", ("conv1_1", "conv3_1")), ("layer_weights", {"conv1_1": 2.0}), ("style_scale", 0.5),
            ("init", "content"), ("optimizer", "adam"), ("tv_weight", 1e-3), ("preserve_color", True),
            ("scales", 2), ("style_blend", (1.0,)), ("optimizer_options", {"maxcor": 5}), ("bounds", False),
            ("pooling", "max"), ("rounding", "floor"), ("convention", "gatys-pytorch"), ("content_weights", {"conv4_2": 2.0}),
        ]
    ] + [job._replace(weights_input="torchvision"), job._replace(dtype="float64"), job._replace(arch="vgg16"), job._replace(device="gpu"),
         job._replace(kind="style"), job._replace(kernels="reference")]
    keys = {cell_key(v, sha) for v in variants}
    assert len(keys) == len(variants) and key not in keys
    # the contents of the weights and the images enter the key, not their paths
    other = tmp_path / "w2.npz"
    refstyle.save_npz(refstyle.generate_weights("vgg19", widths=(3, 4, 4, 4, 4), seed=2), other)
    assert cell_key(job._replace(weights=str(other)), sha) != key
    copy = tmp_path / "copy.png"
    copy.write_bytes(open(job.content, "rb").read())
    assert cell_key(job._replace(content=str(copy)), sha) == key
    Image.fromarray(rng.integers(0, 256, (18, 24, 3)).astype(np.uint8)).save(copy)
    assert cell_key(job._replace(content=str(copy)), sha) != key


def test_missing_images_name_the_expected_files(setup, tmp_path, capsys):
    os.remove(os.path.join(setup["images"], "art.png"))
    out = tmp_path / "o.png"
    status, _, err = figure(capsys, setup, out)
    assert status == 1 and "needs the images art.png, photo.png" in err and "missing: art.png" in err
    assert "--images DIR" in err and err.count("\n") == 1 and not out.exists()
    status = main(["figure", "fig3", "-o", str(out), "--weights", setup["weights"], "--images", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert status == 1 and "composition_vii.jpg, tubingen.jpg" in err


def test_the_papers_figures_are_declared_as_data():
    fig3 = load_grid("fig3")
    assert fig3.row_labels == ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]
    assert fig3.col_labels == ["α/β = 1e-5", "α/β = 1e-4", "α/β = 1e-3", "α/β = 1e-2"]
    last = fig3.cells[-1].spec
    assert last["ratio"] == 1e-2 and last["style_layers"][-1] == "conv5_1" and last["styles"] == ["composition_vii.jpg"]
    fig2 = load_grid("fig2")
    kinds = [[c.spec["kind"] for c in fig2.cells if c.row == r] for r in (0, 1)]
    assert kinds == [["empty"] + ["image"] * 5, ["image"] + ["transfer"] * 5]
    assert [c.spec.get("ratio") for c in fig2.cells if c.row == 1][1:] == [1e-3, 1e-3, 1e-3, 1e-4, 1e-4]
    assert figures.required_images(fig2) == sorted(
        ["tubingen.jpg", "shipwreck.jpg", "starry_night.jpg", "the_scream.jpg", "seated-nude.jpg", "composition_vii.jpg"]
    )
    content = load_grid("fig1-content")
    assert [c.spec.get("content_layers") for c in content.cells][1:] == [[f"conv{k}_1"] for k in range(1, 6)]
    style = load_grid("fig1-style")
    assert [len(c.spec.get("style_layers", [])) for c in style.cells] == [0, 1, 2, 3, 4, 5]


def test_bad_grid_files():
    with pytest.raises(RefstyleError, match="unknown key\\(s\\) colour in 'rows'"):
        parse_grid({"rows": [{"colour": 1}], "columns": [{}]})
    with pytest.raises(RefstyleError, match="kind 'painting'"):
        parse_grid({"rows": [{"kind": "painting"}], "columns": [{}]})
    with pytest.raises(RefstyleError, match="outside the 1×1 grid"):
        parse_grid({"rows": [{}], "columns": [{}], "cells": {"1,0": {}}})
    with pytest.raises(RefstyleError, match="non-empty 'rows' and 'columns'"):
        parse_grid({"rows": []})
    with pytest.raises(RefstyleError, match="neither a known figure"):
        load_grid("fig9")


def test_local_workers_share_the_cores(monkeypatch):
    """--jobs N gives each worker cores/N BLAS threads unless the user set a number, and restores the environment."""
    for var in figures.BLAS_THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "7")
    with figures._blas_threads(3):
        assert os.environ["OPENBLAS_NUM_THREADS"] == "3" and os.environ["OMP_NUM_THREADS"] == "3"
        assert os.environ["MKL_NUM_THREADS"] == "7"
    assert "OPENBLAS_NUM_THREADS" not in os.environ and os.environ["MKL_NUM_THREADS"] == "7"


@pytest.mark.parametrize("option, expected", [((), "fast"), (("--kernels", "reference"), "reference")])
def test_cells_run_with_the_kernels_asked_for(setup, capsys, monkeypatch, option, expected):
    built, real_build = [], figures.build_network

    def build(*args, **kwargs):
        net = real_build(*args, **kwargs)
        built.append(net.kernels)
        return net

    monkeypatch.setattr(figures, "build_network", build)
    status, stdout, err = figure(capsys, setup, setup["dir"] / "grid.png", *option)
    assert status == 0, err
    assert built == [expected] * 5  # the grid's network, checked before any cell, and one per cell
