"""The manifest: the seal that makes a run (or a corpus day) visible and verifiable (SPEC §6).

Its shape is written down here as TypedDicts (:class:`Manifest` for a run, :class:`DaySeal` for
a corpus day): plain dicts at run time, so the JSON bytes are exactly what the dicts hold, and
every key read or written is checked by the type checker.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict, cast

import polars
import pyarrow

from .._version import __version__
from ..errors import RunError
from ..sources.base import SourceInfo

LAKE_VERSION = "v1"


@dataclass(frozen=True)
class FileEntry:
    """One file of a run as the seal lists it (path relative to the run or day directory)."""

    path: str
    rows: int
    bytes: int
    sha256: str


class FileRecord(TypedDict):
    """One sealed file: path relative to the run (or day) directory, rows, size, sha256."""

    path: str
    rows: int
    bytes: int
    sha256: str


class Exporter(TypedDict):
    name: str
    version: str
    writers: dict[str, str]


class SourceSnapshot(SourceInfo):
    """Where the candles came from (no secrets), and when."""

    chain: str
    as_of: str


class AlertsInput(TypedDict):
    path: str
    sha256: str
    rows: int
    name: str


class Inputs(TypedDict):
    alerts: AlertsInput
    source_snapshot: SourceSnapshot


class SliceSpec(TypedDict):
    dataset: str
    interval: str
    interval_s: int
    window: str
    pre: int
    post: int
    anchor_rule: str
    dedup_rule: str
    chain: str


class SlicesOutput(TypedDict):
    path: str
    mint_buckets: int
    files: int
    rows: int
    bytes: int
    compression: str
    target_file_mb: float


class Outputs(TypedDict):
    slices: SlicesOutput


class CoverageSummary(TypedDict):
    """SPEC §4 totals: kept/dropped alerts and the alerts per status."""

    path: str
    strict: bool
    min_required_pre: int
    target_total: int
    kept_events: int
    dropped_events: int
    complete: int
    partial: int
    insufficient: int


class Sealed(TypedDict):
    """What every seal holds: the files it makes visible and their identity."""

    lake_version: str
    created_at: str
    exporter: Exporter
    files: list[FileRecord]
    content_sha256: str


class Manifest(Sealed):
    """``manifest.json`` of a run (SPEC §6)."""

    run_id: str
    inputs: Inputs
    slice_spec: SliceSpec
    outputs: Outputs
    coverage: CoverageSummary


class DaySeal(Sealed):
    """The seal of one corpus day (``_seals/.../date=D.json``)."""

    kind: Literal["corpus_day"]
    dataset: str
    date: str
    interval: str
    interval_s: int
    chain: str
    source_snapshot: SourceSnapshot
    dedup_rule: str
    rows: int
    bytes: int


class MintsRestriction(TypedDict):
    """The mints a ``--mints`` corpus export was restricted to: how many, SHA-256 of the list."""

    restricted: bool
    count: int
    sha256: str


class RestrictedDaySeal(DaySeal, total=False):
    """A corpus day's seal that may record a ``--mints`` restriction."""

    mints: MintsRestriction


def created_at() -> str:
    """UTC ISO-8601 now, or ``SOURCE_DATE_EPOCH`` when set (reproducible builds convention)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None:
        try:
            moment = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc)
        except ValueError as exc:
            raise RunError(f"SOURCE_DATE_EPOCH={epoch!r}: expected integer seconds") from exc
    else:
        moment = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def library_versions() -> dict[str, str]:
    """Versions of what wrote the files: same versions are part of the byte-identity promise."""
    return {"polars": polars.__version__, "pyarrow": pyarrow.__version__}


def exporter() -> Exporter:
    """Who wrote the files, with the library versions that shaped their bytes."""
    return {"name": "lakeslice", "version": __version__, "writers": library_versions()}


def content_sha256(files: Iterable[FileEntry]) -> str:
    """SHA-256 over the sorted ``"path sha256\\n"`` lines: the identity of the data.

    >>> a, b = FileEntry("a.parquet", 1, 10, "aa"), FileEntry("b.parquet", 2, 20, "bb")
    >>> content_sha256([a, b]) == content_sha256([b, a])
    True
    """
    lines = sorted(f"{f.path} {f.sha256}\n" for f in files)
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def files_section(files: Iterable[FileEntry]) -> list[FileRecord]:
    """The ``files`` list of a seal, sorted by path."""
    return [
        FileRecord(path=f.path, rows=f.rows, bytes=f.bytes, sha256=f.sha256)
        for f in sorted(files, key=lambda f: f.path)
    ]


def dumps(manifest: Sealed | dict) -> bytes:
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def read_manifest(run_dir: Path, *, seal: Path | None = None) -> Manifest:
    """The seal of a run (``manifest.json`` inside it); see :func:`read_seal` for a corpus day."""
    return cast(Manifest, read_seal(run_dir, seal=seal))


def read_seal(run_dir: Path, *, seal: Path | None = None) -> Sealed:
    """The seal of a run (``manifest.json`` inside it) or of a corpus day (``seal``)."""
    path = Path(seal) if seal is not None else Path(run_dir) / "manifest.json"
    if Path(run_dir).is_symlink() and not Path(run_dir).exists():
        raise RunError(f"{run_dir}: unsealed (a link to a missing generation)")
    if not Path(run_dir).is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    if not path.is_file():
        raise RunError(f"{run_dir}: unsealed (no {path.name}); readers refuse it")
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: unreadable manifest ({exc})") from exc
