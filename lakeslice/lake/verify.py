"""Check a sealed run (or corpus day) against its seal: every file's bytes, hash and rows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from ..errors import RunError
from .catalog import corpus_days, existing, kind_of, run_dirs
from .commit import next_seal
from .layout import MANIFEST, day_seal
from .manifest import Sealed, content_sha256, read_seal
from .store import scheme_of
from .writer import FileEntry

_CHUNK = 8 * 1024 * 1024


@dataclass
class VerifyReport:
    run_dir: Path
    files: int = 0
    rows: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_dir(run_dir: str | Path, *, seal: Path | None = None) -> VerifyReport:
    """Recompute each listed file's size, sha256 and row count; list unlisted Parquet files.

    Raises RunError when the directory is not sealed.

    >>> import tempfile, lakeslice as ls
    >>> run = ls.export_run_slices("fixtures/alerts.csv", interval="1m", window="pre5_post10",
    ...                            source="parquet://fixtures/candles.parquet",
    ...                            data_root=tempfile.mkdtemp(), run_id="doc").run_dir
    >>> report = verify_dir(run)
    >>> report.ok, report.files, report.rows
    (True, 6, 91)
    >>> (run / "outputs" / "stray.parquet").write_bytes(b"x")
    1
    >>> verify_dir(run).problems
    ['outputs/stray.parquet: not listed in the seal']
    """
    run_dir = Path(run_dir)
    manifest: Sealed = read_seal(run_dir, seal=seal)
    seal_name = Path(seal).name if seal is not None else "manifest.json"
    report = VerifyReport(run_dir)
    listed = manifest.get("files", [])
    entries = [FileEntry(**f) for f in listed]
    for entry in entries:
        problem = _check(run_dir, entry)
        if problem:
            report.problems.append(problem)
        report.files += 1
        report.rows += entry.rows
        report.bytes += entry.bytes
    names = {e.path for e in entries}
    # Every unlisted file counts, hidden or not, judged relative to the run dir: Polars'
    # scan_parquet of a directory fails on any other file in it (even '.x.crc' or '_SUCCESS').
    own_seal = {seal_name} if seal is None else set()
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir).as_posix()
        if p.is_file() and rel not in names and rel not in own_seal:
            report.problems.append(f"{rel}: not listed in the seal")
    if manifest.get("content_sha256") != content_sha256(entries):
        report.problems.append(f"{seal_name}: content_sha256 does not match its files")
    return report


def _check(run_dir: Path, entry: FileEntry) -> str | None:
    path = run_dir / entry.path
    if not path.is_file():
        return f"{entry.path}: missing"
    size = path.stat().st_size
    if size != entry.bytes:
        return f"{entry.path}: {size} bytes, seal says {entry.bytes}"
    digest = sha256_file(path)
    if digest != entry.sha256:
        return f"{entry.path}: sha256 {digest[:12]}…, seal says {entry.sha256[:12]}…"
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except Exception as exc:  # a hash collision is not the worry; an unreadable footer is
        return f"{entry.path}: unreadable Parquet ({exc})"
    if rows != entry.rows:
        return f"{entry.path}: {rows} rows, seal says {entry.rows}"
    return None


def verify_path(path: str | Path) -> list[VerifyReport]:
    """A run directory, or every day of a corpus tree (unsealed days reported as problems)."""
    if scheme_of(path) is not None:
        from .read import verify_url  # read.py builds on this module

        return verify_url(str(path))
    path = Path(path)
    if (path / MANIFEST).is_file() or not path.is_dir():
        return [verify_dir(path)]
    days = sorted(p for p in path.rglob("date=*") if p.is_dir() and "_seals" not in p.parts)
    if not days:
        return [verify_dir(path)]  # raises: unsealed run directory
    return [verify_day(day) for day in days]


def verify_day(day: Path) -> VerifyReport:
    """A corpus day against its seal; after a crash mid-publish, the pending seal may hold."""
    seal = day_seal(day)
    candidates = [p for p in (seal, next_seal(seal)) if p.is_file()]
    if not candidates:
        return VerifyReport(day, problems=[f"{day.name}: unsealed (no {seal.name})"])
    reports = [verify_dir(day, seal=p) for p in candidates]
    return next((r for r in reports if r.ok), reports[0])


def verify_root(path: str | Path) -> list[VerifyReport]:
    """Every run and every corpus day a path holds (a run, runs directory, data root or corpus).

    Under a root nothing stops at the first problem: each run or day gets its report, an
    unsealed run included. A single run directory that is unsealed raises RunError, as
    :func:`verify_dir` does. A missing path is an InputError (exit 2).
    """
    if scheme_of(path) is not None:  # an s3:// run or corpus tree
        return verify_path(path)
    path = existing(path)
    kind = kind_of(path)
    if kind == "run":
        return [verify_dir(path)]
    reports = []
    for run in run_dirs(path) if kind in ("runs", "root") else []:
        try:
            reports.append(verify_dir(run))
        except RunError as exc:  # unsealed or unreadable seal: a problem of this run
            reports.append(VerifyReport(run, problems=[str(exc).removeprefix(f"{run}: ")]))
    return reports + [verify_day(day) for day in (corpus_days(path) if kind in ("root", "corpus") else [])]
