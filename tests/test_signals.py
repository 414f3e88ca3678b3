"""Signals, with real processes: SIGTERM ends a transfer as Ctrl-C does; figure workers die with their parent."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from refstyle.app.signals import Lifeline, stop_signals, stop_status

posix_only = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture()
def small(tiny_run):
    return tiny_run


def refstyle_process(*argv, cwd):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "refstyle", *map(str, argv)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, seconds, what):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"waited {seconds} s for {what}")


@posix_only
def test_sigterm_during_a_transfer_writes_the_best_image_and_exits_143(small):
    out = small["dir"] / "o.png"
    proc = refstyle_process("transfer", small["photo"], small["art"], "--weights", small["weights"], "--size", 32,
                            "--iters", 100000, "--save-every", 1, "-o", out, cwd=small["dir"])
    try:
        wait_for(lambda: (small["dir"] / "o.00003.png").exists() or proc.poll() is not None, 120, "three iterations")
        os.kill(proc.pid, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert stdout.count("\n") == 1 and stdout.startswith("terminated by SIGTERM after "), stdout
    assert "best image so far" in stdout
    with Image.open(out) as im:
        meta = json.loads(im.text["refstyle"])
        assert im.size == (32, 24)
    assert meta["interrupted"] is True and meta["iterations"] >= 3
    assert not [p for p in os.listdir(small["dir"]) if p.endswith(".part")]


@posix_only
def test_sigterm_before_any_image_writes_nothing_and_exits_143(small):
    """Inside stop_signals SIGTERM raises KeyboardInterrupt; the status says which signal it was."""
    with pytest.raises(KeyboardInterrupt):
        with stop_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at once, between two bytecodes
    assert stop_status() == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back
    with pytest.raises(KeyboardInterrupt):
        with stop_signals():
            raise KeyboardInterrupt  # Ctrl-C, or any other KeyboardInterrupt
    assert stop_status() == 130


def children(pid):
    """The pids whose parent is ``pid``, read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry))
    return found


def alive(pid):
    """Running, not gone and not a zombie (a dead child that its new parent has not reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def is_worker(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"spawn_main" in f.read()
    except OSError:
        return False


@linux_only
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_figure_workers_end_when_their_parent_is_killed(small, how):
    grid = small["dir"] / "grid.json"
    grid.write_text(json.dumps({
        "title": "long cells", "defaults": {"kind": "transfer", "content": "photo.png", "styles": ["art.png"]},
        "rows": [{"label": "a", "ratio": 1e-3}, {"label": "b", "ratio": 1e-2}], "columns": [{"label": "c"}],
    }))
    proc = refstyle_process("figure", grid, "-o", small["dir"] / "grid.png", "--weights", small["weights"],
                            "--images", small["dir"], "--size", 32, "--iters", 1000000, "--jobs", 2, "--cache",
                            small["dir"] / "cache", cwd=small["dir"])
    workers = []
    try:
        wait_for(lambda: len([p for p in children(proc.pid) if is_worker(p)]) == 2 or proc.poll() is not None, 120,
                 "two workers")
        workers = [p for p in children(proc.pid) if is_worker(p)]
        assert len(workers) == 2, proc.returncode
        time.sleep(1.0)  # the workers are running their cells
        os.kill(proc.pid, how)
        wait_for(lambda: not any(alive(p) for p in workers), 10, "the workers to end")
        _, stderr = proc.communicate(timeout=30)
        if how == signal.SIGTERM:
            assert proc.returncode == 143 and "terminated by SIGTERM" in stderr and "Traceback" not in stderr, stderr
    finally:
        for pid in [proc.pid] + workers:  # where the test failed, nothing of it is left running
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    assert not (small["dir"] / "grid.png").exists()


def test_a_lifeline_closes_when_cut():
    import multiprocessing

    with Lifeline(multiprocessing.get_context("spawn")) as line:
        line.cut()
        assert line.reader.poll(1)  # the end of the pipe is readable at once
        with pytest.raises(EOFError):
            line.reader.recv_bytes()


@posix_only
def test_a_signal_while_the_image_is_written_is_held_until_it_is_whole(small, capsys, monkeypatch):
    from refstyle.app import commands
    from refstyle.app.cli import main

    real_save = commands.save_image

    def save_after_a_sigterm(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives as the best image is being written
        time.sleep(0.1)
        return real_save(*args, **kwargs)

    monkeypatch.setattr(commands, "save_image", save_after_a_sigterm)
    out = small["dir"] / "o.png"
    status = main(["transfer", small["photo"], small["art"], "--weights", small["weights"], "--size", "32", "--iters",
                   "3", "-o", str(out)])
    stdout, err = capsys.readouterr()
    assert status == 143, err
    assert stdout.startswith("terminated by SIGTERM after 3 iterations: wrote the best image so far")
    with Image.open(out) as im:
        assert json.loads(im.text["refstyle"])["iterations"] == 3
    assert (small["dir"] / "o.losses.csv").read_text().count("\n") == 4  # the header and 3 iterations
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
