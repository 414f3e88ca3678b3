"""The benchmark scripts run, and refstyle and PyTorch in them compute one objective.

No time is asserted (speed lives in ``benchmarks/``): these runs are tiny, and check
that the scripts a later session will run on a GPU or a new machine still work, and
that the implementations they time agree on the loss and its gradient.
"""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import IN_CI

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def need_torch():
    if importlib.util.find_spec("torch") is None:
        if IN_CI:
            pytest.fail("torch is not installed: CI installs it with the 'test' extra")
        pytest.skip("torch is not installed (pip install -e '.[test]')")


def run_script(tmp_path, name, *args):
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args, "-o", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_run_py_times_one_objective_in_refstyle_and_torch(tmp_path):
    r = run_script(tmp_path, "run.py", "--sizes", "32", "--arch", "vgg16", "--repeat", "1", "--lbfgs", "2",
                   "--peak-sizes", "256", "--threads", "1,2")
    assert sorted((row["threads"], row["impl"]) for row in r["results"]) == [
        (1, "fast"), (1, "torch"), (2, "fast"), (2, "torch")]
    for threads in (1, 2):
        rows = {row["impl"]: row for row in r["results"] if row["threads"] == threads}
        assert rows["torch"]["loss_rel_diff_to_fast"] < 1e-5
        assert rows["torch"]["grad_rel_diff_to_fast"] < 1e-2  # 2-norm; a ReLU mask may flip in float32
        for row in rows.values():
            assert row["lbfgs"]["iterations"] == 2 and row["memory"]["config_mb"] > 0


def test_gpu_py_on_the_cpu(tmp_path):
    r = run_script(tmp_path, "gpu.py", "--device", "cpu", "--sizes", "32", "--repeat", "1", "--transfer", "2",
                   "--kernels", "reference,fast")
    timed = {row["impl"]: row for row in r["results"] if "seconds" in row}
    assert set(timed) == {"reference", "fast", "torch"}
    for impl in ("reference", "fast"):
        assert timed[impl]["loss_rel_diff_to_torch"] < 1e-5
    transfers = {row["impl"]: row["transfer"] for row in r["results"] if "transfer" in row}
    faster = min(("reference", "fast"), key=lambda k: timed[k]["seconds"]["median"])
    assert set(transfers) == {faster, "torch"}  # --transfer-kernels auto: the faster kernel set
    for t in transfers.values():
        assert t["iterations"] == 2 and math.isfinite(t["final_loss"]) and t["final_loss"] < t["initial_loss"]
    assert transfers[faster]["initial_loss"] == pytest.approx(transfers["torch"]["initial_loss"], rel=1e-5)
