"""Global corpus export: every candle of a chain and interval, by UTC day and mint bucket.

The same three stages as a run export (export.py): each day is planned (mints with candles
that day, bucket groups), its groups run through :func:`lakeslice.export.run_group` on the
executor, and the day is sealed and published whole (lake/commit.py). The day's seal lives
under ``corpus/_seals/`` so Parquet readers scanning ``corpus/ohlcv`` never see it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypedDict

import polars as pl

from .errors import InputError
from .executor import Executor
from .export import GroupProgress, GroupResult, GroupTask, bucket_groups, executing, staged_run
from .lake import layout
from .lake.commit import Commit
from .lake.manifest import (
    LAKE_VERSION,
    FileEntry,
    RestrictedDaySeal,
    SourceSnapshot,
    content_sha256,
    created_at,
    exporter,
    files_section,
)
from .lake.store import Store, open_store
from .options import _target_bytes
from .progress import NoProgress, Progress
from .signals import deferred
from .sources import Source
from .spec import check_compression, format_interval, parse_interval
from .transforms import DEDUP_RULE, mint_bucket

log = logging.getLogger("lakeslice")
DAY_MS = 86_400_000


class DaySummary(TypedDict):
    """One exported day in the ``--format json`` result."""

    date: str
    rows: int
    bytes: int
    files: list[str]
    content_sha256: str


@dataclass
class CorpusResult:
    """What ``export_corpus`` did: the days it sealed, rows fetched, seconds."""

    root: Path | str
    days: list[DaySummary] = field(default_factory=list)
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
    """Mints from a text file (one per line, taken as written), or a CSV/Parquet mint column.

    Mints are data: nothing is stripped. An empty line or an empty/null mint is an input error
    naming its row, as in an alerts file.
    """
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
        values = frame[col].cast(pl.String)
    else:
        try:
            values = pl.Series(col := "mint", path.read_text("utf-8").splitlines(), dtype=pl.String)
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    bad = (values.is_null() | (values == "")).arg_true()
    if bad.len():
        raise InputError(f"{path}: row {bad[0] + 1}: empty {col}")
    if values.is_empty():
        raise InputError(f"{path}: no mints")
    return values.unique().sort().to_list()


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


@dataclass(frozen=True)
class DayPlan:
    """One corpus day: where it goes, its mints and bucket groups (plain data)."""

    day: dt.date
    chain: str
    interval_s: int
    key: str
    seal_key: str
    counts: pl.DataFrame
    groups: tuple[tuple[str, ...], ...]
    compression: str
    target_bytes: int
    mints: tuple[str, ...] | None

    def tasks(self, target: str) -> list[GroupTask]:
        start, end = day_bounds(self.day)
        return [
            GroupTask(
                buckets=group,
                ranges=self.counts.filter(pl.col("mint_bucket").is_in(list(group))).select(
                    "mint", start_ms=pl.lit(start), end_ms=pl.lit(end)
                ),
                target=target,
                prefix="",
                chain=self.chain,
                interval_s=self.interval_s,
                compression=self.compression,
                target_bytes=self.target_bytes,
                day=(start, end),
            )
            for group in self.groups
        ]


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
    executor: Executor | str | Any | None = None,
    source_shards: str | None = None,
) -> CorpusResult:
    """Export every candle in ``[date_from, date_to)`` (UTC days) into the corpus tree.

    With ``mints`` only those mints are exported, into days that hold no complete export:
    a restricted export never replaces a complete day (InputError), and its seal records the
    restriction.

    >>> import tempfile
    >>> res = export_corpus(interval="1m", date_from="2024-01-01", date_to="2024-01-02",
    ...                     source="parquet://fixtures/candles.parquet", data_root=tempfile.mkdtemp())
    >>> [(d["date"], d["rows"], len(d["files"])) for d in res.days]
    [('2024-01-01', 743, 4)]
    """
    started = time.perf_counter()
    progress = progress or NoProgress()
    progress.stage("planning")
    interval_s = parse_interval(interval)
    check_compression(compression)
    target_bytes = _target_bytes(target_file_mb)
    if not chain:
        raise InputError("--chain: must not be empty")
    first, last = parse_day(date_from, "from"), parse_day(date_to, "to")
    if first >= last:
        raise InputError(f"--from {first} must be before --to {last} (--to is exclusive)")
    days = [first + dt.timedelta(days=i) for i in range((last - first).days)]
    store = open_store(data_root)
    restricted = tuple(sorted(set(mints))) if mints is not None else None
    if restricted is not None:
        _refuse_complete_days(store, chain, interval_s, days)
    text = format_interval(interval_s)
    root = store.url(layout.corpus_key(chain, text))
    result = CorpusResult(Path(root) if store.local else root)
    with executing(executor, source, table=table, data_root=data_root, shards=source_shards) as (runner, src):
        plans = [
            plan_day(
                src,
                day,
                chain=chain,
                interval_s=interval_s,
                compression=compression,
                target_bytes=target_bytes,
                mints=restricted,
            )
            for day in days
        ]
        tracker = GroupProgress(progress, groups=sum(len(p.groups) for p in plans))
        for plan in plans:
            summary, results = staged_run(
                store,
                plan.key,
                overwrite=True,
                seal_key=plan.seal_key,
                tasks=plan.tasks,
                finish=partial(seal_day, plan, source=src),
                source=src,
                executor=runner,
                progress=tracker,
            )
            result.days.append(summary)
            result.rows_fetched += sum(r.rows_fetched for r in results)
    result.seconds = time.perf_counter() - started
    return result


def _refuse_complete_days(store: Store, chain: str, interval_s: int, days: list[dt.date]) -> None:
    """A restricted (``--mints``) export never replaces a day sealed by a complete export."""
    import json

    text = format_interval(interval_s)
    for day in days:
        key = layout.day_seal_key(chain, text, day.isoformat())
        try:
            seal = json.loads(store.get(key))
        except FileNotFoundError:
            continue
        except ValueError:
            seal = {}
        if not seal.get("mints"):
            raise InputError(
                f"{store.url(key)}: day {day} holds a complete export; a --mints export never "
                "replaces it (export the restricted mints into another --data-root)"
            )


def plan_day(
    src: Source,
    day: dt.date,
    *,
    chain: str,
    interval_s: int,
    compression: str,
    target_bytes: int,
    mints: tuple[str, ...] | None,
) -> DayPlan:
    """Stage 1 of a day: its mints with candles (from the source) and their bucket groups."""
    start, end = day_bounds(day)
    counts = src.mint_counts(chain=chain, interval_s=interval_s, start_ms=start, end_ms=end)
    if mints is not None:
        counts = counts.filter(pl.col("mint").is_in(pl.Series(mints, dtype=pl.String).implode()))
    counts = counts.with_columns(mint_bucket=mint_bucket("mint")).sort("mint")
    text = format_interval(interval_s)
    return DayPlan(
        day=day,
        chain=chain,
        interval_s=interval_s,
        key=layout.day_key(chain, text, day.isoformat()),
        seal_key=layout.day_seal_key(chain, text, day.isoformat()),
        counts=counts,
        groups=tuple(
            tuple(g)
            for g in bucket_groups(
                counts.select("mint_bucket", "rows"), starts=getattr(src, "shard_starts", ())
            )
        ),
        compression=compression,
        target_bytes=target_bytes,
        mints=mints,
    )


def seal_day(plan: DayPlan, results: list[GroupResult], commit: Commit, *, source: Source) -> DaySummary:
    """Stage 3 of a day: its seal, written after its files; the day is published whole."""
    files = [f for r in results for f in r.files]
    seal = _day_seal(plan, source, files)
    with deferred():  # a stop signal waits for the seal's renames
        commit.seal(seal)
    log.info("corpus %s: %d rows in %d files", plan.day, seal["rows"], len(files))
    return {
        "date": plan.day.isoformat(),
        "rows": seal["rows"],
        "bytes": seal["bytes"],
        "files": [f.path for f in files],
        "content_sha256": seal["content_sha256"],
    }


def _day_seal(plan: DayPlan, src: Source, files: list[FileEntry]) -> RestrictedDaySeal:
    stamp = created_at()
    seal: RestrictedDaySeal = {
        "lake_version": LAKE_VERSION,
        "kind": "corpus_day",
        "dataset": "ohlcv",
        "date": plan.day.isoformat(),
        "interval": format_interval(plan.interval_s),
        "interval_s": plan.interval_s,
        "chain": plan.chain,
        "created_at": stamp,
        "exporter": exporter(),
        "source_snapshot": SourceSnapshot(**src.snapshot(), chain=plan.chain, as_of=stamp),
        "dedup_rule": DEDUP_RULE,
        "files": files_section(files),
        "rows": sum(f.rows for f in files),
        "bytes": sum(f.bytes for f in files),
        "content_sha256": content_sha256(files),
    }
    if plan.mints is not None:
        listing = "".join(f"{m}\n" for m in plan.mints).encode("utf-8")
        seal["mints"] = {
            "restricted": True,
            "count": len(plan.mints),
            "sha256": hashlib.sha256(listing).hexdigest(),
        }
    return seal
