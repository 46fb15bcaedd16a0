"""Global corpus export: every candle of a chain and interval, by UTC day and mint bucket.

Each day is staged, sealed and swapped in whole (lake/commit.py); its seal lives under
``corpus/_seals/`` so Parquet readers scanning ``corpus/ohlcv`` never see it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from .export import _fetch, bucket_groups
from .lake import layout
from .lake.commit import Commit
from .lake.manifest import LAKE_VERSION, content_sha256, created_at, exporter, files_section
from .lake.writer import FileEntry, write_buckets
from .progress import NoProgress, Progress
from .sources import Source, open_source
from .spec import InputError, check_compression, format_interval, parse_interval
from .transforms import (
    DEDUP_RULE,
    dedupe_candles,
    mint_bucket,
    normalize_candles,
    to_slice_columns,
)

log = logging.getLogger("lakeslice")
DAY_MS = 86_400_000


@dataclass
class CorpusResult:
    root: Path
    days: list[dict] = field(default_factory=list)
    rows_fetched: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict:
        rows = sum(d["rows"] for d in self.days)
        return {
            "corpus_dir": str(self.root),
            "days": self.days,
            "total_rows": rows,
            "total_files": sum(len(d["files"]) for d in self.days),
            "total_bytes": sum(d["bytes"] for d in self.days),
            "rows_fetched": self.rows_fetched,
            "rows_per_second": round(rows / self.seconds) if self.seconds else None,
        }


def read_mints(path: str | Path) -> list[str]:
    """Mints from a text file (one per line), or a CSV/Parquet file with a mint column."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: mints file not found")
    if path.suffix.lower() in (".csv", ".parquet"):
        frame = (
            pl.read_parquet(path)
            if path.suffix.lower() == ".parquet"
            else pl.read_csv(path, infer_schema=False)
        )
        col = next((c for c in ("mint", "token_address") if c in frame.columns), None)
        if col is None:
            raise InputError(f"{path}: missing column 'mint' (or 'token_address')")
        return frame[col].drop_nulls().cast(pl.String).unique().sort().to_list()
    lines = path.read_text("utf-8").splitlines()
    return sorted({line.strip() for line in lines if line.strip()})


def parse_day(text: str | dt.date, what: str) -> dt.date:
    if isinstance(text, dt.date):
        return text
    try:
        return dt.date.fromisoformat(str(text))
    except ValueError as exc:
        raise InputError(f"--{what} {text!r}: expected a date YYYY-MM-DD") from exc


def day_bounds(day: dt.date) -> tuple[int, int]:
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()) * 1000
    return start, start + DAY_MS


def export_corpus(
    *,
    interval: str | int,
    date_from: str | dt.date,
    date_to: str | dt.date,
    source: str | Source | None = None,
    table: str = "ohlcv_candles",
    chain: str = "solana",
    data_root: str | Path = "data",
    compression: str = "zstd",
    target_file_mb: float = 512,
    mints: list[str] | None = None,
    progress: Progress | None = None,
) -> CorpusResult:
    """Export every candle in ``[date_from, date_to)`` (UTC days) into the corpus tree.

    >>> export_corpus(interval="1m", date_from="2024-01-01", date_to="2024-01-02",  # doctest: +SKIP
    ...               source="parquet://fixtures/candles.parquet", data_root="data")
    """
    started = time.perf_counter()
    interval_s = parse_interval(interval)
    check_compression(compression)
    if not target_file_mb or target_file_mb <= 0:
        raise InputError(f"target_file_mb {target_file_mb!r}: must be > 0")
    first, last = parse_day(date_from, "from"), parse_day(date_to, "to")
    if first >= last:
        raise InputError(f"--from {first} must be before --to {last} (--to is exclusive)")
    days = [first + dt.timedelta(days=i) for i in range((last - first).days)]
    owns = not hasattr(source, "fetch")
    src: Source = open_source(source, table=table, data_root=data_root) if owns else source
    text = format_interval(interval_s)
    result = CorpusResult(layout.corpus_dir(data_root, text))
    progress = progress or NoProgress()
    progress.stage("fetching", total=len(days))
    try:
        for day in days:
            summary, fetched = _export_day(
                src,
                day,
                interval_s=interval_s,
                chain=chain,
                data_root=Path(data_root),
                compression=compression,
                target_bytes=int(target_file_mb * 1024 * 1024),
                mints=mints,
            )
            result.days.append(summary)
            result.rows_fetched += fetched
            progress.advance(done=1, rows=fetched)
    finally:
        if owns:
            src.close()
    result.seconds = time.perf_counter() - started
    return result


def _day_mints(
    src: Source, *, chain: str, interval_s: int, start: int, end: int, mints: list[str] | None
) -> pl.DataFrame:
    """Mints with candles that day and their row counts: ``mint, rows, mint_bucket``."""
    counts = src.mint_counts(chain=chain, interval_s=interval_s, start_ms=start, end_ms=end)
    if mints is not None:
        counts = counts.filter(pl.col("mint").is_in(pl.Series(mints, dtype=pl.String).implode()))
    return counts.with_columns(mint_bucket=mint_bucket("mint")).sort("mint")


def _export_day(
    src: Source,
    day: dt.date,
    *,
    interval_s: int,
    chain: str,
    data_root: Path,
    compression: str,
    target_bytes: int,
    mints: list[str] | None,
) -> tuple[dict, int]:
    start, end = day_bounds(day)
    text = format_interval(interval_s)
    final = layout.day_dir(data_root, text, day.isoformat())
    counts = _day_mints(src, chain=chain, interval_s=interval_s, start=start, end=end, mints=mints)
    files: list[FileEntry] = []
    fetched = 0
    with Commit(final, overwrite=True, work_root=layout.lake_dir(data_root)) as commit:
        for group in bucket_groups(
            counts.select("mint_bucket", "rows"), starts=getattr(src, "shard_starts", ())
        ):
            g = counts.filter(pl.col("mint_bucket").is_in(group))
            ranges = g.select("mint", start_ms=pl.lit(start), end_ms=pl.lit(end))
            frame = _fetch(src, _DaySpec(chain, interval_s), ranges, group)
            fetched += frame.height
            candles = dedupe_candles(normalize_candles(frame, interval_s=interval_s, source=src.label))
            slices = (
                to_slice_columns(
                    candles.filter(pl.col("ts_ms").is_between(start, end - 1)), interval_s=interval_s
                )
                .join(g.lazy().select("mint", "mint_bucket"), on="mint", maintain_order="left")
                .collect()
            )
            files += write_buckets(
                commit.staging, "", slices, compression=compression, target_bytes=target_bytes
            )
        seal = _day_seal(day, interval_s, chain, src, files)
        commit.seal(seal, seal_path=layout.day_seal(final))
    log.info("corpus %s: %d rows in %d files", day, seal["rows"], len(files))
    return {
        "date": day.isoformat(),
        "rows": seal["rows"],
        "bytes": seal["bytes"],
        "files": [f.path for f in files],
        "content_sha256": seal["content_sha256"],
    }, fetched


@dataclass(frozen=True)
class _DaySpec:
    """The two fields of a run spec that fetching needs."""

    chain: str
    interval_s: int


def _day_seal(day: dt.date, interval_s: int, chain: str, src: Source, files: list[FileEntry]) -> dict:
    stamp = created_at()
    return {
        "lake_version": LAKE_VERSION,
        "kind": "corpus_day",
        "dataset": "ohlcv",
        "date": day.isoformat(),
        "interval": format_interval(interval_s),
        "interval_s": interval_s,
        "chain": chain,
        "created_at": stamp,
        "exporter": exporter(),
        "source_snapshot": {**src.snapshot(), "chain": chain, "as_of": stamp},
        "dedup_rule": DEDUP_RULE,
        "files": files_section(files),
        "rows": sum(f.rows for f in files),
        "bytes": sum(f.bytes for f in files),
        "content_sha256": content_sha256(files),
    }
