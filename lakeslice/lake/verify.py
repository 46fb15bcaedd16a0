"""Check sealed runs and corpus days against their seals, trusting nothing on disk.

Every problem is listed, never only the first: each listed file's size, sha256 and row count;
files nobody listed; symbolic links and empty directories (readers would meet them, verify
never follows them); seal entries that are malformed or point outside the directory (``..``,
absolute paths); summary counts that disagree with the files; and for a corpus, days without a
seal and seals without a day. One unreadable seal makes one problem; the other days are still
checked.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import LakesliceError, RunError
from .catalog import corpus_days, existing, kind_of, run_dirs
from .commit import next_seal
from .layout import MANIFEST, day_seal, generations_key
from .manifest import Sealed, content_sha256, read_seal
from .store import scheme_of
from .writer import FileEntry

__all__ = [
    "VerifyReport",
    "verify_dir",
    "verify_day",
    "verify_root",
    "manifest_problems",
    "sha256_file",
]

_CHUNK = 8 * 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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


# --------------------------------------------------------------------------------------------
# The seal's shape


def unsafe_path(path: object) -> str | None:
    """Why a seal's file path could leave its directory (or is no path at all); None when safe.

    >>> unsafe_path("slices/a.parquet"), unsafe_path("../x"), unsafe_path("/etc/passwd")
    (None, "'../x': goes outside the directory ('..')", "'/etc/passwd': absolute path")
    """
    if not isinstance(path, str) or not path:
        return f"{path!r}: not a relative path"
    if path.startswith("/") or "\\" in path or re.match(r"^[A-Za-z]:", path):
        return f"{path!r}: absolute path"
    parts = PurePosixPath(path).parts
    if ".." in parts:
        return f"{path!r}: goes outside the directory ('..')"
    if any(p in ("", ".") for p in path.split("/")) or "\x00" in path:
        return f"{path!r}: not a normalized relative path"
    return None


def _entry_problems(i: int, entry: object) -> list[str]:
    if not isinstance(entry, dict):
        return [f"files[{i}]: expected an object with path, rows, bytes, sha256"]
    out = []
    if set(entry) != {"path", "rows", "bytes", "sha256"}:
        out.append(f"files[{i}]: keys {sorted(entry)}, expected bytes, path, rows, sha256")
    if (why := unsafe_path(entry.get("path"))) is not None:
        out.append(f"files[{i}] path {why}")
    for key in ("rows", "bytes"):
        value = entry.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            out.append(f"files[{i}] {key} {value!r}: expected a count")
    if not isinstance(entry.get("sha256"), str) or not _SHA256.match(entry["sha256"]):
        out.append(f"files[{i}] sha256 {entry.get('sha256')!r}: expected 64 hex digits")
    return out


def manifest_problems(manifest: object, *, seal_name: str = MANIFEST) -> list[str]:
    """Problems of a seal's shape and of its file paths (none: it can be trusted to name files).

    >>> manifest_problems({"files": [{"path": "../a", "rows": 1, "bytes": 1, "sha256": "0" * 64}],
    ...                    "content_sha256": "0" * 64})
    ["manifest.json: files[0] path '../a': goes outside the directory ('..')"]
    """
    if not isinstance(manifest, dict):
        return [f"{seal_name}: expected a JSON object, found {type(manifest).__name__}"]
    files = manifest.get("files")
    if not isinstance(files, list):
        return [f"{seal_name}: 'files' is {type(files).__name__}, expected a list"]
    out = [f"{seal_name}: {p}" for i, e in enumerate(files) for p in _entry_problems(i, e)]
    paths = [e.get("path") for e in files if isinstance(e, dict)]
    dup = sorted({p for p in paths if isinstance(p, str) and paths.count(p) > 1})
    out += [f"{seal_name}: {p!r} listed twice" for p in dup]
    if not isinstance(manifest.get("content_sha256"), str):
        out.append(f"{seal_name}: 'content_sha256' missing")
    return out


# --------------------------------------------------------------------------------------------
# One sealed directory


def _walk(root: Path) -> tuple[list[str], list[str], list[str]]:
    """Relative paths of regular files, symbolic links and empty directories under ``root``,
    without following links."""
    files: list[str] = []
    links: list[str] = []
    empty: list[str] = []
    for top, dirs, names in os.walk(root, followlinks=False):
        rel = Path(top).relative_to(root)
        for d in dirs:
            if os.path.islink(os.path.join(top, d)):
                links.append((rel / d).as_posix())
        if not names and not dirs and Path(top) != root:
            empty.append(rel.as_posix())
        for n in names:
            target = (rel / n).as_posix()
            (links if os.path.islink(os.path.join(top, n)) else files).append(target)
    return sorted(files), sorted(links), sorted(empty)


def verify_dir(run_dir: str | Path, *, seal: Path | None = None) -> VerifyReport:
    """Check a sealed directory against its seal (``manifest.json`` inside, or ``seal``).

    Raises RunError when the directory is missing or unsealed, or the seal is not JSON.

    >>> import tempfile, lakeslice as ls
    >>> run = ls.export_run_slices("fixtures/alerts.csv", interval="1m", window="pre5_post10",
    ...                            source="parquet://fixtures/candles.parquet",
    ...                            data_root=tempfile.mkdtemp(), run_id="doc").run_dir
    >>> report = verify_dir(run)
    >>> report.ok, report.files, report.rows
    (True, 6, 91)
    >>> (run / "outputs" / "stray.parquet").write_bytes(b"x")
    1
    >>> (run / "outputs" / "empty").mkdir()
    >>> verify_dir(run).problems
    ['outputs/stray.parquet: not listed in the seal', 'outputs/empty/: empty directory']
    """
    run_dir = Path(run_dir)
    manifest: Sealed = read_seal(run_dir, seal=seal)
    seal_name = Path(seal).name if seal is not None else MANIFEST
    report = VerifyReport(run_dir, problems=_link_problems(run_dir))
    shape = manifest_problems(manifest, seal_name=seal_name)
    if shape:
        report.problems += shape
        return report  # a seal of the wrong shape names no file we can trust
    entries = [FileEntry(**f) for f in manifest["files"]]
    files, links, empty = _walk(run_dir)
    present = set(files)
    for entry in entries:
        report.problems += _check(run_dir, entry, present)
        report.files += 1
        report.rows += entry.rows
        report.bytes += entry.bytes
    listed = {e.path for e in entries} | ({seal_name} if seal is None else set())
    report.problems += [f"{p}: not listed in the seal" for p in files if p not in listed]
    report.problems += [f"{p}: symbolic link (not followed)" for p in links if p not in listed]
    report.problems += [f"{p}/: empty directory" for p in empty]
    if manifest["content_sha256"] != content_sha256(entries):
        report.problems.append(f"{seal_name}: content_sha256 does not match its files")
    report.problems += _summary_problems(run_dir, dict(manifest), entries, seal_name)
    return report


def _link_problems(run_dir: Path) -> list[str]:
    """A run may itself be a link, to a generation of the same run in the same lake (and only
    it: links inside a run are findings of :func:`verify_dir`).

    >>> _link_problems(Path("fixtures"))
    []
    """
    if not run_dir.is_symlink() or not run_dir.name.startswith("run_id="):
        return []
    resolved = Path(os.path.realpath(run_dir))
    data_root = Path(os.path.realpath(Path(os.path.abspath(run_dir)).parents[2]))  # <root>/lake/runs/run_id=X
    expected = data_root / generations_key(run_dir.name.removeprefix("run_id="))
    if resolved.parent == expected and re.fullmatch(r"g-[0-9a-f]{8}", resolved.name):
        return []
    return [f"{run_dir.name}: a symbolic link to {os.readlink(run_dir)}, not to a generation of this run"]


def _check(run_dir: Path, entry: FileEntry, present: set[str]) -> list[str]:
    """Every disagreement between one listed file and the disk."""
    path = run_dir / entry.path
    if entry.path not in present:
        kind = "a symbolic link" if path.is_symlink() else "missing"
        return [f"{entry.path}: {kind}"]
    out = []
    size = path.stat().st_size
    if size != entry.bytes:
        out.append(f"{entry.path}: {size} bytes, seal says {entry.bytes}")
    digest = sha256_file(path)
    if digest != entry.sha256:
        out.append(f"{entry.path}: sha256 {digest}, seal says {entry.sha256}")
    import pyarrow.parquet as pq  # here, not at import: 0.06 s of every export's start

    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except Exception as exc:  # an unreadable footer; the hash above already disagrees
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return [*out, f"{entry.path}: unreadable Parquet ({first})"]
    if rows != entry.rows:
        out.append(f"{entry.path}: {rows} rows, seal says {entry.rows}")
    return out


def _summary_problems(
    run_dir: Path, manifest: dict[str, Any], entries: list[FileEntry], seal_name: str
) -> list[str]:
    """The seal's totals against its own file list (and a run's coverage file)."""
    if manifest.get("kind") == "corpus_day":
        return _totals(
            seal_name,
            {"rows": manifest.get("rows"), "bytes": manifest.get("bytes")},
            {"rows": sum(e.rows for e in entries), "bytes": sum(e.bytes for e in entries)},
        )
    out = []
    slices = [e for e in entries if e.path.startswith("slices/")]
    claimed = (manifest.get("outputs") or {}).get("slices")
    if isinstance(claimed, dict):
        actual = {
            "files": len(slices),
            "rows": sum(e.rows for e in slices),
            "bytes": sum(e.bytes for e in slices),
            "mint_buckets": len({_bucket(e.path) for e in slices}),
        }
        out += _totals(f"{seal_name} outputs.slices", {k: claimed.get(k) for k in actual}, actual)
    alerts = (manifest.get("inputs") or {}).get("alerts")
    listed = {e.path: e for e in entries}
    if isinstance(alerts, dict) and alerts.get("path") in listed:
        entry = listed[alerts["path"]]
        claim = {k: alerts.get(k) for k in ("rows", "sha256")}
        out += _totals(f"{seal_name} inputs.alerts", claim, {"rows": entry.rows, "sha256": entry.sha256})
    cov = manifest.get("coverage")
    if isinstance(cov, dict) and cov.get("path") in listed:
        out += _coverage_problems(run_dir / cov["path"], cov, f"{seal_name} coverage")
    return out


def _bucket(path: str) -> str:
    return next((p for p in path.split("/") if p.startswith("mint_bucket=")), path)


def _totals(where: str, claimed: dict, actual: dict) -> list[str]:
    return [
        f"{where}.{k} says {claimed[k]!r}, the files hold {actual[k]!r}"
        for k in actual
        if claimed[k] != actual[k]
    ]


def _coverage_problems(path: Path, cov: dict, where: str) -> list[str]:
    """The coverage counts of the seal against the coverage file itself."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=["status", "kept"])
    except Exception:  # already reported as a file problem (hash, footer)
        return []
    status, kept = table.column("status").to_pylist(), table.column("kept").to_pylist()
    actual = {
        "kept_events": sum(1 for k in kept if k),
        "dropped_events": sum(1 for k in kept if not k),
        **{s: status.count(s) for s in ("complete", "partial", "insufficient")},
    }
    return _totals(where, {k: cov.get(k) for k in actual}, actual)


# --------------------------------------------------------------------------------------------
# Corpus days and whole trees


def verify_day(day: Path) -> VerifyReport:
    """A corpus day against its seal; after a crash mid-publish, the pending seal may hold."""
    seal = day_seal(day)
    candidates = [p for p in (seal, next_seal(seal)) if p.is_file()]
    if not candidates:
        return VerifyReport(day, problems=[f"{day.name}: unsealed (no {seal.name})"])
    reports = [_guarded(day, seal=p) for p in candidates]
    return next((r for r in reports if r.ok), reports[0])


def _guarded(run_dir: Path, *, seal: Path | None = None) -> VerifyReport:
    """:func:`verify_dir`, but an unsealed directory or unreadable seal is one problem of its
    own directory, not the end of the walk."""
    try:
        return verify_dir(run_dir, seal=seal)
    except LakesliceError as exc:
        return VerifyReport(run_dir, problems=[str(exc)])


def verify_root(path: str | Path) -> list[VerifyReport]:
    """Every run and every corpus day a path holds (a run, runs directory, data root or corpus).

    Under a root nothing stops at the first problem: each run or day gets its report, an
    unsealed run included. A single run directory that is unsealed raises RunError, as
    :func:`verify_dir` does. A missing path is an InputError (exit 2).
    """
    if scheme_of(path) is not None:  # an s3:// run or corpus tree
        from .read import verify_url  # read.py builds on this module

        return verify_url(str(path))
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
    days = corpus_days(path) if kind in ("root", "corpus") else []
    reports += [verify_day(day) for day in days]
    # every seal must have its day (and verify_day gives every day its seal)
    missing = "seal of a day whose directory is missing"
    return reports + [VerifyReport(s, problems=[f"{s.name}: {missing}"]) for s in _orphan_seals(path, days)]


def _orphan_seals(root: Path, days: list[Path]) -> list[Path]:
    """Day seals (and pending ``.next`` seals) under ``root`` or beside its days' seals that
    match no day directory."""
    claimed = {p for d in days for p in (day_seal(d), next_seal(day_seal(d)))}
    places = {day_seal(d).parent for d in days} | {day_seal(root / "date=0000-00-00").parent}
    places |= {p for p in root.rglob("_seals") if p.is_dir()}
    seals = {
        p
        for place in places
        if place.is_dir()
        for p in place.rglob("date=*")
        if p.is_file() and p.name.endswith((".json", ".json.next"))
    }
    return sorted(seals - claimed)
