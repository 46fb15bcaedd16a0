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


def scan_windows(run_dir: str | Path, *, verify: bool = False) -> pl.LazyFrame:
    """Event-study view: one row per (kept alert, candle in its window) with offset ``k``.

    ``k = (ts - anchor) / interval``: negative before the anchor, 0 at it.

    >>> import tempfile, lakeslice as ls
    >>> run = ls.export_run_slices("fixtures/alerts.csv", interval="1m", window="pre5_post10",
    ...                            source="parquet://fixtures/candles.parquet",
    ...                            data_root=tempfile.mkdtemp(), run_id="doc").run_dir
    >>> at_anchor = scan_windows(run).filter(pl.col("k") == 0).sort("alert_id").collect()
    >>> at_anchor["alert_id"].to_list()
    ['a1', 'a2', 'a3', 'a5', 'a6', 'a8']
    """
    run_dir, manifest = _sealed(run_dir, verify)
    width_ms = int(manifest["slice_spec"]["interval_s"]) * 1000
    alerts = (
        pl.scan_parquet(run_dir / COVERAGE)
        .filter("kept")
        .select("alert_id", "mint", "alert_ts_ms", "anchor_ts_ms", "window_start_ts_ms", "window_end_ts_ms")
    )
    candles = scan_run(run_dir).with_columns(_ts_ms=pl.col("ts").dt.epoch("ms"))
    # Joined on mint then cut to each window: fine for notebook-sized runs.
    return (
        alerts.join(candles, on="mint", how="inner")
        .filter(
            (pl.col("_ts_ms") >= pl.col("window_start_ts_ms"))
            & (pl.col("_ts_ms") < pl.col("window_end_ts_ms"))
        )
        .with_columns(k=((pl.col("_ts_ms") - pl.col("anchor_ts_ms")) // width_ms).cast(pl.Int32))
        .drop("_ts_ms", "window_start_ts_ms", "window_end_ts_ms")
        .sort("alert_id", "ts")
    )
