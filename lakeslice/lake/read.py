"""Read a sealed run back as Polars lazy frames."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..spec import RunError
from ..transforms import SLICE_SCHEMA
from .layout import COVERAGE
from .manifest import Manifest, read_manifest
from .verify import verify_dir


def _sealed(run_dir: str | Path, verify: bool) -> tuple[Path, Manifest]:
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    if verify:
        report = verify_dir(run_dir)
        if not report.ok:
            raise RunError(f"{run_dir}: does not verify: {report.problems[0]}")
    return run_dir, manifest


def _slice_paths(run_dir: Path, manifest: Manifest) -> list[str]:
    return [str(run_dir / f["path"]) for f in manifest["files"] if f["path"].startswith("slices/")]


def scan_run(run_dir: str | Path, *, verify: bool = False) -> pl.LazyFrame:
    """The slices of a sealed run with their ``mint_bucket``; refuses an unsealed run.

    >>> import tempfile, lakeslice as ls
    >>> run = ls.export_run_slices("fixtures/alerts.csv", interval="1m", window="pre5_post10",
    ...                            source="parquet://fixtures/candles.parquet",
    ...                            data_root=tempfile.mkdtemp(), run_id="doc").run_dir
    >>> scan_run(run).select(pl.len(), pl.col("mint").n_unique()).collect().row(0)
    (75, 4)
    """
    run_dir, manifest = _sealed(run_dir, verify)
    paths = _slice_paths(run_dir, manifest)
    if not paths:
        return pl.LazyFrame(schema={**SLICE_SCHEMA, "mint_bucket": pl.String})
    bucket = pl.col("_path").str.extract(r"mint_bucket=([0-9a-f]{2})/", 1)
    return (
        pl.scan_parquet(paths, hive_partitioning=False, include_file_paths="_path")
        .with_columns(mint_bucket=bucket)
        .drop("_path")
    )


def scan_coverage(run_dir: str | Path) -> pl.LazyFrame:
    """One coverage row per alert of a sealed run (SPEC §4); refuses an unsealed run.

    >>> import tempfile, lakeslice as ls
    >>> run = ls.export_run_slices("fixtures/alerts.csv", interval="1m", window="pre5_post10",
    ...                            source="parquet://fixtures/candles.parquet",
    ...                            data_root=tempfile.mkdtemp(), run_id="doc").run_dir
    >>> scan_coverage(run).group_by("status").len().sort("status").collect().rows()
    [('insufficient', 1), ('partial', 7)]
    """
    run_dir, _ = _sealed(run_dir, False)
    return pl.scan_parquet(run_dir / COVERAGE)
