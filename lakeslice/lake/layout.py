"""Where things go in a lake (SPEC §5). Paths only; nothing here touches the disk."""

from __future__ import annotations

from pathlib import Path

MANIFEST = "manifest.json"
COVERAGE = "outputs/coverage.parquet"
ALERTS = "inputs/alerts.parquet"
DAY_SEAL = "_SEAL.json"  # corpus: '_' prefix, so Parquet readers skip it


def runs_dir(data_root: str | Path) -> Path:
    return Path(data_root) / "lake" / "runs"


def run_dir(data_root: str | Path, run_id: str) -> Path:
    return runs_dir(data_root) / f"run_id={run_id}"


def slices_prefix(interval: str, window: str) -> str:
    """Relative to the run directory."""
    return f"slices/ohlcv/interval={interval}/window={window}"


def corpus_dir(data_root: str | Path, interval: str) -> Path:
    return Path(data_root) / "lake" / "corpus" / "ohlcv" / f"interval={interval}"


def bucket_dir(bucket: str) -> str:
    return f"mint_bucket={bucket}"


def part_name(index: int) -> str:
    return f"part-{index:04d}.parquet"
