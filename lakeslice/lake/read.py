"""Read a sealed run back as Polars lazy frames."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..spec import RunError
from .layout import ALERTS, COVERAGE
from .manifest import read_manifest
from .verify import verify_dir

# Directory names like mint_bucket=00 would otherwise be inferred as integers.
HIVE_SCHEMA = {"mint_bucket": pl.String, "date": pl.String}


def _sealed(run_dir: str | Path, verify: bool) -> tuple[Path, dict]:
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    if verify:
        report = verify_dir(run_dir)
        if not report.ok:
            raise RunError(f"{run_dir}: does not verify: {report.problems[0]}")
    return run_dir, manifest


def _slice_paths(run_dir: Path, manifest: dict) -> list[str]:
    return [str(run_dir / f["path"]) for f in manifest["files"] if f["path"].startswith("slices/")]


def scan_run(run_dir: str | Path, *, verify: bool = False) -> pl.LazyFrame:
    """The slices of a sealed run with their ``mint_bucket``; refuses an unsealed run.

    >>> scan_run("data/lake/runs/run_id=demo").head(3).collect()  # doctest: +SKIP
    """
    run_dir, manifest = _sealed(run_dir, verify)
    paths = _slice_paths(run_dir, manifest)
    if not paths:
        from ..transforms import SLICE_SCHEMA

        return pl.LazyFrame(schema={**SLICE_SCHEMA, "mint_bucket": pl.String})
    bucket = pl.col("_path").str.extract(r"mint_bucket=([0-9a-f]{2})/", 1)
    return (
        pl.scan_parquet(paths, hive_partitioning=False, include_file_paths="_path")
        .with_columns(mint_bucket=bucket)
        .drop("_path")
    )


def scan_coverage(run_dir: str | Path) -> pl.LazyFrame:
    run_dir, _ = _sealed(run_dir, False)
    return pl.scan_parquet(run_dir / COVERAGE)


def read_alerts_of(run_dir: str | Path) -> pl.LazyFrame:
    run_dir, _ = _sealed(run_dir, False)
    return pl.scan_parquet(run_dir / ALERTS)
