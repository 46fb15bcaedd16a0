"""Run export: alerts → windows → candles by bucket group → slices + coverage → sealed run."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import polars as pl
import pyarrow as pa

from .alerts import normalize_alerts, read_alerts
from .lake import layout
from .lake.commit import Commit
from .lake.manifest import (
    LAKE_VERSION,
    content_sha256,
    created_at,
    exporter,
    files_section,
)
from .lake.writer import FileEntry, FileSink, write_buckets, write_file
from .options import ExportOptions, RunSpec
from .progress import NoProgress, Progress
from .sources import CandleRequest, Source, open_source, retryable
from .spec import RunError, Window, check_run_id
from .transforms import (
    COVERAGE_COLUMNS,
    DEDUP_RULE,
    alert_windows,
    coverage_of,
    dedupe_candles,
    merge_windows,
    mint_bucket,
    normalize_candles,
    restrict_to_ranges,
    to_slice_columns,
)

log = logging.getLogger("lakeslice")

#: Estimated candle rows per bucket group: bounds peak memory, never changes the output.
GROUP_ROWS = 1_000_000
FETCH_ATTEMPTS = 3


@dataclass
class ExportResult:
    run_dir: Path
    manifest: dict
    rows_fetched: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def manifest_path(self) -> Path:
        return self.run_dir / layout.MANIFEST

    @property
    def coverage_path(self) -> Path:
        return self.run_dir / layout.COVERAGE

    def to_json(self) -> dict:
        """The machine contract of SPEC §8."""
        m = self.manifest
        slices = m["outputs"]["slices"]
        return {
            "run_dir": str(self.run_dir),
            "manifest_path": str(self.manifest_path),
            "coverage_path": str(self.coverage_path),
            "total_rows": slices["rows"],
            "total_files": slices["files"],
            "total_bytes": slices["bytes"],
            "kept_events": m["coverage"]["kept_events"],
            "dropped_events": m["coverage"]["dropped_events"],
            "rows_fetched": self.rows_fetched,
            "manifest": m,
        }


def slices_prefix(spec: RunSpec) -> str:
    """Where the run's slice files live, relative to the run directory."""
    return layout.slices_prefix(spec.interval_text, spec.window.name)


def new_run_id() -> str:
    """UTC time plus a short random suffix."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{secrets.token_hex(3)}"


def export_run_slices(
    alerts: str | Path | pl.DataFrame,
    *,
    interval: str | int,
    window: str | Window,
    source: str | Source | None = ExportOptions.source,
    table: str = ExportOptions.table,
    source_shards: str | None = ExportOptions.source_shards,
    data_root: str | Path = ExportOptions.data_root,
    run_id: str | None = ExportOptions.run_id,
    chain: str = ExportOptions.chain,
    compression: str = ExportOptions.compression,
    target_file_mb: float = ExportOptions.target_file_mb,
    strict_coverage: bool = ExportOptions.strict_coverage,
    min_required_pre: int | None = ExportOptions.min_required_pre,
    target_total: int | None = ExportOptions.target_total,
    overwrite: bool = ExportOptions.overwrite,
    progress: Progress | None = None,
) -> ExportResult:
    """Export the slices around ``alerts`` into a sealed run under ``data_root``.

    Options are those of :class:`lakeslice.options.ExportOptions` (the CLI's flags).

    >>> res = export_run_slices("fixtures/alerts.csv", interval="1m",  # doctest: +SKIP
    ...                         window="pre5_post10", source="parquet://fixtures/candles.parquet")
    """
    started = time.perf_counter()
    progress = progress or NoProgress()
    progress.stage("planning")
    spec = ExportOptions(
        interval=interval,
        window=window if isinstance(window, str) else window.name,
        chain=chain,
        compression=compression,
        target_file_mb=target_file_mb,
        strict_coverage=strict_coverage,
        min_required_pre=min_required_pre,
        target_total=target_total,
    ).resolve()
    run_id = check_run_id(run_id) if run_id is not None else new_run_id()
    alerts_df, alerts_name = _load_alerts(alerts)
    final = layout.run_dir(data_root, run_id)

    owns_source = not hasattr(source, "fetch")
    src: Source = (
        open_source(source, table=table, data_root=data_root, shards=source_shards) if owns_source else source
    )
    try:
        with Commit(final, overwrite=overwrite, work_root=layout.lake_dir(data_root)) as commit:
            files, coverage_df, fetched = _write_data(commit.staging, alerts_df, src, spec, progress)
            progress.stage("sealing")
            alerts_entry = write_file(commit.staging, layout.ALERTS, alerts_df, compression=spec.compression)
            manifest = _manifest(run_id, spec, src, alerts_name, alerts_entry, files, coverage_df)
            commit.seal(manifest)
    finally:
        if owns_source:
            src.close()
    seconds = time.perf_counter() - started
    log.info(
        "run %s: fetched %d rows, wrote %d rows in %.2fs",
        run_id,
        fetched,
        manifest["outputs"]["slices"]["rows"],
        seconds,
    )
    return ExportResult(final, manifest, rows_fetched=fetched, seconds=seconds)


def _load_alerts(alerts: str | Path | pl.DataFrame) -> tuple[pl.DataFrame, str]:
    if isinstance(alerts, pl.LazyFrame):
        alerts = alerts.collect()
    if isinstance(alerts, pl.DataFrame):
        return normalize_alerts(alerts), "<frame>"
    return read_alerts(alerts), Path(alerts).name


# --------------------------------------------------------------------------------------------
# Data


def range_rows(ranges: pl.DataFrame, interval_s: int) -> pl.DataFrame:
    """Estimated candle rows per mint of the merged ranges: ``mint_bucket, rows``."""
    width_ms = interval_s * 1000
    return ranges.select("mint_bucket", rows=(pl.col("end_ms") - pl.col("start_ms")) // width_ms)


def bucket_groups(
    estimates: pl.DataFrame, group_rows: int | None = None, *, starts: Sequence[str] = ()
) -> list[list[str]]:
    """Consecutive buckets whose estimated rows (``mint_bucket, rows``) add up to ~group_rows.

    Depends only on the estimates, so the grouping is the same on every run; and each bucket
    lies in exactly one group, so the grouping never changes the files written. A group never
    spans one of ``starts`` (first buckets of the source's shards): one group, one shard.

    >>> est = pl.DataFrame({"mint_bucket": ["00", "01", "02"], "rows": [5, 5, 5]})
    >>> bucket_groups(est, 10), bucket_groups(est, 10, starts=["00", "02"])
    ([['00', '01'], ['02']], [['00', '01'], ['02']])
    >>> bucket_groups(est, 10, starts=["00", "01"])
    [['00'], ['01', '02']]
    """
    group_rows = GROUP_ROWS if group_rows is None else group_rows  # read now: tests vary it
    per_bucket = estimates.group_by("mint_bucket").agg(pl.col("rows").sum()).sort("mint_bucket")
    shard = pl.sum_horizontal(pl.lit(0), *[pl.col("mint_bucket") >= s for s in starts])
    # group number = rows before this bucket in its shard // group_rows (no Python loop over rows)
    before = (pl.col("rows").cum_sum() - pl.col("rows")).over("_shard")
    grouped = per_bucket.with_columns(_shard=shard).with_columns(group=before // max(group_rows, 1))
    return [
        g["mint_bucket"].to_list()
        for g in grouped.partition_by("_shard", "group", maintain_order=True, include_key=False)
    ]


def _write_data(
    staging: Path,
    alerts: pl.DataFrame,
    src: Source,
    spec: RunSpec,
    progress: Progress,
) -> tuple[list[FileEntry], pl.DataFrame, int]:
    windows = (
        alert_windows(alerts, interval=spec.interval_s, window=spec.window)
        .with_columns(mint_bucket=mint_bucket("mint"))
        .collect()
    )
    buckets = windows.select("mint", "mint_bucket").unique()
    ranges = merge_windows(windows).join(buckets.lazy(), on="mint").collect()
    groups = bucket_groups(
        range_rows(ranges, spec.interval_s),
        getattr(src, "group_rows", None),
        starts=getattr(src, "shard_starts", ()),
    )
    progress.stage("fetching", total=len(groups))

    def request(group: list[str]) -> pl.DataFrame:
        g_ranges = ranges.filter(pl.col("mint_bucket").is_in(group)).sort("mint", "start_ms")
        frame = _fetch(src, spec, g_ranges.select("mint", "start_ms", "end_ms"), group)
        progress.advance(rows=frame.height)
        return frame

    files: list[Future] = []
    coverages: list[pl.DataFrame] = []
    fetched = 0
    with FileSink(staging) as sink:
        for group, frame in prefetched(groups, request):
            g_windows = windows.filter(pl.col("mint_bucket").is_in(group))
            fetched += frame.height
            cov, slices, names = _group_outputs(frame, g_windows, spec, src.label)
            coverages.append(cov)
            files += write_buckets(
                sink,
                slices_prefix(spec),
                slices,
                compression=spec.compression,
                target_bytes=spec.target_bytes,
                prepare=partial(_named, names),
            )
            progress.advance(done=1)
        coverage_df = pl.concat(coverages).sort("alert_id") if coverages else _empty_coverage()
    entries = [e for f in files for e in f.result()]  # in submission order: deterministic
    entries.append(write_file(staging, layout.COVERAGE, coverage_df, compression=spec.compression))
    return entries, coverage_df, fetched


def _named(names: pl.Series, part: pl.DataFrame) -> pl.DataFrame:
    """A bucket's rows with the mint strings in place of their ids."""
    return part.with_columns(mint=names.gather(part["mint"]))


def prefetched(groups: list[list[str]], fetch: Callable[[list[str]], pl.DataFrame]):
    """Yield ``(group, fetch(group))`` in order, fetching the next group while the caller works.

    One fetch runs ahead at most, so at most two groups are in memory. The order of the output
    never depends on which finishes first.
    """
    if not groups:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lakeslice-fetch") as pool:
        pending = pool.submit(fetch, groups[0])
        for i, group in enumerate(groups):
            frame = pending.result()
            if i + 1 < len(groups):
                pending = pool.submit(fetch, groups[i + 1])
            yield group, frame


def _empty_coverage() -> pl.DataFrame:
    from .transforms import COVERAGE_SCHEMA

    return pl.DataFrame(schema=COVERAGE_SCHEMA)


def _fetch(src: Source, spec: RunSpec, ranges: pl.DataFrame, group: list[str]) -> pl.DataFrame:
    """All batches of one bucket group; a dropped connection retries the whole group."""
    request = CandleRequest(chain=spec.chain, interval_s=spec.interval_s, ranges=ranges)
    for attempt in range(1, FETCH_ATTEMPTS + 1):
        try:
            return _frame_of(list(src.fetch(request)))
        except Exception as exc:
            if not retryable(exc) or attempt == FETCH_ATTEMPTS:
                raise
            log.info("buckets %s..%s: %s; retry %d", group[0], group[-1], exc, attempt)
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def _frame_of(batches: list[pa.RecordBatch]) -> pl.DataFrame:
    """One frame; ``mint`` as Polars Categorical when the source sent a dictionary."""
    from .sources import CANDLE_SCHEMA

    if not batches:
        return pl.from_arrow(CANDLE_SCHEMA.empty_table())
    return pl.from_arrow(pa.Table.from_batches(batches))


def _group_outputs(
    frame: pl.DataFrame, windows: pl.DataFrame, spec: RunSpec, label: str
) -> tuple[pl.DataFrame, pl.DataFrame, pl.Series]:
    """Coverage of the group's alerts, its slice rows (mint ids, bucket codes) and mint names.

    Inside, a mint is its rank among the group's sorted mints (UInt32): sorting, as-of joins and
    windows work on integers, and integer order is the mints' string order.
    """
    names = windows["mint"].unique().sort()  # position = id
    ids = pl.DataFrame({"mint": names, "_id": pl.int_range(names.len(), dtype=pl.UInt32, eager=True)})
    by_id = windows.join(ids, on="mint").with_columns(mint="_id").drop("_id")
    frame = frame.with_columns(
        pl.col("mint").cast(pl.String).cast(pl.Enum(names)).to_physical().cast(pl.UInt32)
    )
    # one label for every row: added when written, not carried through sorts and joins
    candles = dedupe_candles(normalize_candles(frame, interval_s=spec.interval_s).drop("source"))
    candles = restrict_to_ranges(candles, merge_windows(by_id)).collect()
    cov = coverage_of(
        candles.lazy(),
        by_id.lazy().drop("mint_bucket"),
        expected_total=spec.window.slots,
        strict=spec.strict,
        min_required_pre=spec.min_required_pre,
        target_total=spec.target_total,
    )
    # the string mint back, by alert_id, in the column's own place
    cov = cov.drop("mint").join(windows.lazy().select("alert_id", "mint"), on="alert_id")
    cov = cov.select(COVERAGE_COLUMNS).sort("alert_id").collect()
    kept = candles.lazy()
    if spec.strict:
        kept_windows = by_id.join(cov.filter("kept").select("alert_id"), on="alert_id")
        kept = restrict_to_ranges(kept, merge_windows(kept_windows))
    bucket_of = (
        windows.select("mint", "mint_bucket")
        .unique()
        .sort("mint")["mint_bucket"]
        .str.to_integer(base=16)
        .cast(pl.UInt8)
    )
    slices = (
        to_slice_columns(kept, interval_s=spec.interval_s, source=label)
        .with_columns(mint_bucket=pl.col("mint").map_batches(bucket_of.gather, pl.UInt8, is_elementwise=True))
        .collect()
    )
    # ids stay integers through the bucket split; each bucket gets its strings when written
    return cov, slices, names


# --------------------------------------------------------------------------------------------
# Manifest


def _manifest(
    run_id: str,
    spec: RunSpec,
    src: Source,
    alerts_name: str,
    alerts_entry: FileEntry,
    files: list[FileEntry],
    coverage_df: pl.DataFrame,
) -> dict:
    stamp = created_at()
    slices = [f for f in files if f.path.startswith("slices/")]
    status = coverage_df["status"].value_counts()
    counts = dict(zip(status["status"].to_list(), status["count"].to_list(), strict=True))
    kept = int(coverage_df["kept"].sum())
    all_files = [*files, alerts_entry]
    return {
        "lake_version": LAKE_VERSION,
        "run_id": run_id,
        "created_at": stamp,
        "exporter": exporter(),
        "inputs": {
            "alerts": {
                "path": alerts_entry.path,
                "sha256": alerts_entry.sha256,
                "rows": alerts_entry.rows,
                "name": alerts_name,
            },
            "source_snapshot": {**src.snapshot(), "chain": spec.chain, "as_of": stamp},
        },
        "slice_spec": {
            "dataset": "ohlcv",
            "interval": spec.interval_text,
            "interval_s": spec.interval_s,
            "window": spec.window.name,
            "pre": spec.window.pre,
            "post": spec.window.post,
            "anchor_rule": "floor_to_interval(ts, interval)",
            "dedup_rule": DEDUP_RULE,
            "chain": spec.chain,
        },
        "outputs": {
            "slices": {
                "path": slices_prefix(spec),
                "mint_buckets": len({f.path.split("/")[4] for f in slices}),
                "files": len(slices),
                "rows": sum(f.rows for f in slices),
                "bytes": sum(f.bytes for f in slices),
                "compression": spec.compression,
                "target_file_mb": round(spec.target_bytes / 1024 / 1024, 6),
            },
        },
        "files": files_section(all_files),
        "coverage": {
            "path": layout.COVERAGE,
            "strict": spec.strict,
            "min_required_pre": spec.min_required_pre,
            "target_total": spec.target_total,
            "kept_events": kept,
            "dropped_events": coverage_df.height - kept,
            "complete": counts.get("complete", 0),
            "partial": counts.get("partial", 0),
            "insufficient": counts.get("insufficient", 0),
        },
        "content_sha256": content_sha256(all_files),
    }


__all__ = ["export_run_slices", "ExportResult", "RunSpec", "bucket_groups", "RunError"]
