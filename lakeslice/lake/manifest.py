"""The manifest: the seal that makes a run (or a corpus day) visible and verifiable (SPEC §6)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import __version__  # noqa: F401  (set before submodules import)
from ..spec import RunError
from .store import write_atomic

LAKE_VERSION = "v1"


@dataclass(frozen=True)
class FileEntry:
    """One file of a run as the manifest lists it (path relative to the run dir)."""

    path: str
    rows: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict:
        return asdict(self)


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


def library_versions() -> dict:
    """Versions of what wrote the files: same versions are part of the byte-identity promise."""
    import polars
    import pyarrow

    return {"polars": polars.__version__, "pyarrow": pyarrow.__version__}


def exporter() -> dict:
    return {"name": "lakeslice", "version": __version__, "writers": library_versions()}


def content_sha256(files: Iterable[FileEntry]) -> str:
    """SHA-256 over the sorted ``"path sha256\\n"`` lines: the identity of the data."""
    lines = sorted(f"{f.path} {f.sha256}\n" for f in files)
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def files_section(files: Iterable[FileEntry]) -> list[dict]:
    return [f.to_dict() for f in sorted(files, key=lambda f: f.path)]


def dumps(manifest: dict) -> bytes:
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def write_json_atomic(path: Path, document: dict) -> None:
    """The seal written with the one atomic-write sequence (store.write_atomic)."""
    try:
        write_atomic(path, dumps(document))
    except RunError as exc:
        raise RunError(f"{path}: cannot write the seal ({str(exc).split('(', 1)[-1].rstrip(')')})") from exc


def read_manifest(run_dir: Path, *, seal: Path | None = None) -> dict:
    """The seal of a run (``manifest.json`` inside it) or of a corpus day (``seal``)."""
    path = Path(seal) if seal is not None else Path(run_dir) / "manifest.json"
    if not Path(run_dir).is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    if not path.is_file():
        raise RunError(f"{run_dir}: unsealed (no {path.name}); readers refuse it")
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: unreadable manifest ({exc})") from exc
