"""The lake as a whole: which runs and corpus days a path holds, and one row per run.

A path given to ``show``, ``verify`` or ``ls`` is one of: a run directory (``run_id=…``, sealed
or not), a runs directory (``<data_root>/lake/runs``), a data root (holding ``lake/``), or a
corpus tree (anything holding ``date=…`` directories).

Counts mean the same everywhere: ``rows`` are candle rows of the slice files;
``files`` and ``bytes`` count every file listed in the seal (slices, coverage and the normalized
alerts), which is what ``verify`` recomputes.

>>> kind_of(Path("fixtures")), runs_dir_of(Path("data"))
('run', PosixPath('data/lake/runs'))
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import polars as pl

from ..errors import InputError, RunError
from .layout import MANIFEST
from .manifest import Manifest, read_manifest

Kind = Literal["run", "runs", "root", "corpus"]

#: Columns of :func:`list_runs`, in order.
RUNS_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "created_at": pl.String(),
    "interval": pl.String(),
    "window": pl.String(),
    "chain": pl.String(),
    "source": pl.String(),
    "alerts": pl.Int64(),
    "alerts_kept": pl.Int64(),
    "alerts_dropped": pl.Int64(),
    "rows": pl.Int64(),
    "files": pl.Int64(),
    "bytes": pl.Int64(),
    "sealed": pl.Boolean(),
    "content_sha256": pl.String(),
    "path": pl.String(),
}


def existing(path: str | Path) -> Path:
    """``path`` as a Path; InputError (exit 2) naming it when nothing is there.

    >>> existing("no/such/lake")
    Traceback (most recent call last):
    lakeslice.errors.InputError: no/such/lake: no such file or directory
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    return path


def kind_of(path: Path) -> Kind:
    """What a path given to ``show``/``verify``/``ls`` is (see the module docstring)."""
    if (path / MANIFEST).is_file() or path.name.startswith("run_id=") or not path.is_dir():
        return "run"
    if (path / "lake").is_dir():
        return "root"
    if any(path.glob("run_id=*")):
        return "runs"
    if path.name == "runs" or (path / "runs").is_dir():
        return "runs" if path.name == "runs" else "root"
    if any(path.rglob("date=*")):
        return "corpus"
    return "run"  # a directory with none of these: reported as an unsealed run


def runs_dir_of(path: Path) -> Path:
    """The runs directory of a data root, a ``lake`` directory or a runs directory."""
    if path.name == "runs":
        return path
    if (path / "runs").is_dir() and path.name == "lake":
        return path / "runs"
    return path / "lake" / "runs"


def run_dirs(path: str | Path) -> list[Path]:
    """Every ``run_id=…`` directory of a runs directory or data root, sorted by name (a link to
    a missing generation included: it is an unsealed run to report)."""
    runs = runs_dir_of(Path(path))
    return sorted(p for p in runs.glob("run_id=*") if p.is_dir() or p.is_symlink()) if runs.is_dir() else []


def corpus_days(path: str | Path) -> list[Path]:
    """Every ``date=…`` directory of a corpus tree (or of the corpus under a data root)."""
    path = Path(path)
    corpus = path / "lake" / "corpus" if (path / "lake").is_dir() else path
    if not corpus.is_dir():
        return []
    return sorted(p for p in corpus.rglob("date=*") if p.is_dir() and "_seals" not in p.parts)


def run_row(run_dir: Path) -> dict:
    """One row of :func:`list_runs`: from the manifest, or ``sealed=False`` and nulls."""
    row: dict = dict.fromkeys(RUNS_SCHEMA)
    row.update(run_id=run_dir.name.removeprefix("run_id="), sealed=False, path=str(run_dir))
    try:
        m = read_manifest(run_dir)
    except RunError:
        return row
    spec, cov, snap = m.get("slice_spec", {}), m.get("coverage", {}), m["inputs"]["source_snapshot"]
    files = m.get("files", [])
    row.update(
        run_id=m.get("run_id", row["run_id"]),
        created_at=m.get("created_at"),
        interval=spec.get("interval"),
        window=spec.get("window"),
        chain=spec.get("chain") or snap.get("chain"),
        source=source_name(snap),
        alerts=m["inputs"]["alerts"].get("rows"),
        alerts_kept=cov.get("kept_events"),
        alerts_dropped=cov.get("dropped_events"),
        rows=m["outputs"]["slices"].get("rows"),
        files=len(files),
        bytes=sum(int(f["bytes"]) for f in files),
        sealed=True,
        content_sha256=m.get("content_sha256"),
    )
    return row


def source_name(snapshot: Mapping[str, object]) -> str:
    """A short name of where a run read its candles, from its manifest's source snapshot.

    >>> source_name({"kind": "clickhouse", "host": "ch:9000", "database": "q", "table": "t"})
    'clickhouse ch:9000 q.t'
    >>> source_name({"kind": "parquet", "host": None, "database": None, "table": "candles.parquet"})
    'parquet candles.parquet'
    """
    where = ".".join(str(p) for p in (snapshot.get("database"), snapshot.get("table")) if p)
    return " ".join(str(p) for p in (snapshot.get("kind"), snapshot.get("host"), where) if p)


def list_runs(data_root: str | Path) -> pl.DataFrame:
    """One row per run under a data root (or runs directory), sealed or not, sorted by run_id.

    Columns: see :data:`RUNS_SCHEMA`. ``rows`` are slice (candle) rows; ``files`` and ``bytes``
    count every file of the seal. A missing path is an InputError.

    >>> runs = list_runs("fixtures")  # a directory that holds no lake: no runs, the same columns
    >>> runs.height, runs.columns[:4]
    (0, ['run_id', 'created_at', 'interval', 'window'])
    """
    path = existing(data_root)
    dirs = [path] if path.name.startswith("run_id=") else run_dirs(path)
    return pl.DataFrame([run_row(d) for d in dirs], schema=RUNS_SCHEMA)


__all__ = [
    "list_runs",
    "run_warnings",
    "run_dirs",
    "corpus_days",
    "kind_of",
    "existing",
    "source_name",
    "RUNS_SCHEMA",
]


def run_warnings(manifest: Manifest, *, rows_fetched: int | None = None) -> list[str]:
    """What makes a sealed run useless: no alert kept, or no candle in any kept window.

    >>> m = {"coverage": {"kept_events": 0, "dropped_events": 3, "strict": True,
    ...      "min_required_pre": 52, "target_total": 253}, "outputs": {"slices": {"rows": 0}},
    ...      "slice_spec": {"chain": "solana", "interval": "1m"}}
    >>> print(*run_warnings(m))  # doctest: +NORMALIZE_WHITESPACE
    0 of 3 alerts kept: none passes strict coverage (min_required_pre=52, target_total=253);
    the run holds no candles
    """
    cov, spec = manifest["coverage"], manifest["slice_spec"]
    kept, total = cov["kept_events"], cov["kept_events"] + cov["dropped_events"]
    if total and not kept:
        return [
            f"0 of {total} alerts kept: none passes strict coverage (min_required_pre="
            f"{cov['min_required_pre']}, target_total={cov['target_total']}); the run holds no candles"
        ]
    if kept and not manifest["outputs"]["slices"]["rows"]:
        fetched = "" if rows_fetched is None else f" (the source returned {rows_fetched:,} rows)"
        return [
            f"no candle in the window of any of the {kept} kept alerts for chain={spec.get('chain')} "
            f"interval={spec.get('interval')}{fetched}: check --chain, --interval and --source"
        ]
    return []
