"""Where things go in a lake (SPEC §5). Paths only; nothing here touches the disk."""

from __future__ import annotations

from pathlib import Path

MANIFEST = "manifest.json"
COVERAGE = "outputs/coverage.parquet"
ALERTS = "inputs/alerts.parquet"


def lake_dir(data_root: str | Path) -> Path:
    """Holds runs/, corpus/ and the hidden .staging/ and .locks/ work areas."""
    return Path(data_root) / "lake"


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


def day_dir(data_root: str | Path, interval: str, day: str) -> Path:
    return corpus_dir(data_root, interval) / f"date={day}"


def day_seal(day_path: str | Path) -> Path:
    """Seal of a corpus day, outside the data tree: Polars trips over any non-Parquet file in
    a directory it scans, so ``corpus/ohlcv/interval=I/date=D`` is sealed by
    ``corpus/_seals/ohlcv/interval=I/date=D.json``."""
    day_path = Path(day_path)
    interval_dir = day_path.parent
    dataset_dir = interval_dir.parent
    corpus = dataset_dir.parent
    return corpus / "_seals" / dataset_dir.name / interval_dir.name / f"{day_path.name}.json"
