"""Reading a run's files back with pyarrow, independently of lakeslice's readers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq

from .reference import epoch_ms


def slice_files(run_dir: Path) -> list[Path]:
    """The run's slice files, sorted by path."""
    return sorted((run_dir / "slices").rglob("*.parquet"))


def file_rows(path: Path) -> list[dict]:
    """A slice file's rows, ``ts`` replaced by ``ts_ms`` (epoch ms)."""
    rows = pq.read_table(path).to_pylist()
    for r in rows:
        r["ts_ms"] = epoch_ms(r.pop("ts"))
    return rows


def all_run_rows(run_dir: Path) -> list[dict]:
    """Every slice row of a run, file by file."""
    return [r for f in slice_files(run_dir) for r in file_rows(f)]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def corpus_hashes(data_root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``lake/corpus`` (parts and seals), by path below it."""
    base = Path(data_root) / "lake" / "corpus"
    return {p.relative_to(base).as_posix(): sha256_of(p) for p in sorted(base.rglob("*")) if p.is_file()}


def staging_leftovers(data_root: Path) -> list[Path]:
    """Anything left in a staging area (``lake/.staging`` or any other ``.staging``)."""
    return [p for d in Path(data_root).rglob(".staging") if d.is_dir() for p in d.iterdir()]


def export_fixture(alerts, data_root, *, run_id: str, overwrite: bool = False, **options):
    """Export the fixture candles (parquet source, 1m, ``pre10_post20``) as ``run_id``."""
    import lakeslice as ls

    from .data import CANDLES_PQ

    return ls.export_run_slices(
        alerts,
        interval="1m",
        window="pre10_post20",
        source=f"parquet://{CANDLES_PQ}",
        data_root=data_root,
        run_id=run_id,
        overwrite=overwrite,
        **options,
    )
