"""Run export in three stages: plan → run each bucket group → seal.

- :func:`plan_run` validates the options, normalizes the alerts and computes windows, merged
  ranges and bucket groups: a :class:`RunPlan` of plain, picklable data.
- :func:`run_group` fetches one bucket group, transforms it and writes its part files through
  the store; it returns a :class:`GroupResult` (files, coverage rows, rows fetched). Apart
  from the files it writes it is pure, and running it twice writes the same keys and bytes.
- :func:`seal` writes the coverage and the normalized alerts, then the manifest, and publishes.

:func:`export_run_slices` is ``plan → executor.map(run_group) → seal``; the executor
(lakeslice/executor.py) decides where groups run, never what they write.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import polars as pl
import pyarrow as pa

from .alerts import normalize_alerts, read_alerts
from .errors import RunError
from .executor import Executor, LocalExecutor, open_executor
from .lake import layout
from .lake.catalog import run_warnings
from .lake.commit import Commit, open_commit
from .lake.manifest import (
    LAKE_VERSION,
    FileEntry,
    Manifest,
    SourceSnapshot,
    content_sha256,
    created_at,
    exporter,
    files_section,
)
from .lake.store import Store, open_store
from .lake.writer import FileSink, Target, write_buckets, write_file
from .options import ExportOptions, RunSpec
from .portable import PortableStore, portable_source
from .progress import NoProgress, Progress
from .signals import deferred
from .sources import CANDLE_SCHEMA, CandleRequest, Source, open_source
from .sources.base import Retry, SourceInfo, batch_lists, nothing_to_fetch, with_retries
from .spec import Window, check_run_id
from .transforms import (
    COVERAGE_COLUMNS,
    COVERAGE_SCHEMA,
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

R = TypeVar("R")

#: Estimated candle rows per bucket group: bounds peak memory, never changes the output.
GROUP_ROWS = 1_000_000


@dataclass
class ExportResult:
    """A sealed run: its directory (a Path, or a URL on object storage), its manifest, rows
    fetched and seconds taken."""

    run_dir: Path | str
    manifest: Manifest
    rows_fetched: int = 0
    seconds: float = 0.0

    @property
    def manifest_path(self) -> Path | str:
        return _under(self.run_dir, layout.MANIFEST)

    @property
    def coverage_path(self) -> Path | str:
        return _under(self.run_dir, layout.COVERAGE)

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
            "warnings": self.warnings,
            "manifest": m,
        }

    @property
    def warnings(self) -> list[str]:
        """Why this run, though sealed, is likely useless (no alert kept, no candle): loud, not fatal."""
        return run_warnings(self.manifest, rows_fetched=self.rows_fetched)


def _under(base: Path | str, rel: str) -> Path | str:
    """``base/rel`` for a local path or a URL."""
    return base / rel if isinstance(base, Path) else f"{base.rstrip('/')}/{rel}"


def run_location(store: Store, key: str) -> Path | str:
    """How a result names a directory: a Path on a local root, a URL on object storage."""
    return Path(store.url(key)) if store.local else store.url(key)


def slices_prefix(spec: RunSpec) -> str:
    """Where the run's slice files live, relative to the run directory."""
    return layout.slices_prefix(spec.interval_text, spec.window.name)


def new_run_id() -> str:
    """UTC time plus a short random suffix."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{secrets.token_hex(3)}"


# --------------------------------------------------------------------------------------------
# The stages' data


@dataclass(frozen=True)
class GroupTask:
    """One bucket group to fetch, transform and write: plain data, picklable.

    ``target`` is the key prefix of the directory being staged, ``prefix`` where the bucket
    directories go inside it. Run exports carry ``spec`` and the group's alert ``windows``
    (coverage, strict mode); corpus days carry ``day``, the ``[start_ms, end_ms)`` kept.
    """

    buckets: tuple[str, ...]
    ranges: pl.DataFrame
    target: str
    prefix: str
    chain: str
    interval_s: int
    compression: str
    target_bytes: int
    spec: RunSpec | None = None
    windows: pl.DataFrame | None = None
    day: tuple[int, int] | None = None

    def request(self) -> CandleRequest:
        """What the group asks its source for."""
        return CandleRequest(chain=self.chain, interval_s=self.interval_s, ranges=self.ranges)


@dataclass(frozen=True)
class GroupResult:
    """What one group wrote: its files (manifest entries), coverage rows and rows fetched."""

    files: tuple[FileEntry, ...]
    coverage: pl.DataFrame | None
    rows_fetched: int


@dataclass(frozen=True)
class RunPlan:
    """Everything an export decides before it fetches: plain data, picklable.

    ``windows`` are the alerts' windows with their ``mint_bucket``; ``ranges`` the merged
    ranges per mint; ``groups`` the bucket groups, in order.
    """

    run_id: str
    spec: RunSpec
    alerts: pl.DataFrame
    alerts_name: str
    windows: pl.DataFrame
    ranges: pl.DataFrame
    groups: tuple[tuple[str, ...], ...]
    source_label: str
    source_snapshot: SourceInfo

    @property
    def key(self) -> str:
        """The run directory's key under the data root."""
        return layout.run_key(self.run_id)

    def tasks(self, target: str) -> list[GroupTask]:
        """The group tasks, writing under the staged directory ``target``."""
        return [self.task(group, target) for group in self.groups]

    def task(self, group: tuple[str, ...], target: str) -> GroupTask:
        in_group = pl.col("mint_bucket").is_in(list(group))
        spec = self.spec
        return GroupTask(
            buckets=group,
            ranges=self.ranges.filter(in_group).sort("mint", "start_ms").select("mint", "start_ms", "end_ms"),
            target=target,
            prefix=slices_prefix(spec),
            chain=spec.chain,
            interval_s=spec.interval_s,
            compression=spec.compression,
            target_bytes=spec.target_bytes,
            spec=spec,
            windows=self.windows.filter(in_group),
        )


# --------------------------------------------------------------------------------------------
# The three stages


def export_run_slices(
    alerts: str | Path | pl.DataFrame,
    *,
    interval: str | int,
    window: str | Window,
    source: str | Source | None = ExportOptions.source,
    table: str = ExportOptions.table,
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
    executor: Executor | str | Any | None = ExportOptions.executor,
    source_shards: str | None = ExportOptions.source_shards,
) -> ExportResult:
    """Export the slices around ``alerts`` into a sealed run under ``data_root``.

    Options are those of :class:`lakeslice.options.ExportOptions` (the CLI's flags);
    ``data_root`` is a directory or ``s3://bucket/prefix``. ``executor`` runs the bucket
    groups: ``"local"`` (this process's threads), ``"dask://HOST:PORT"``, a
    ``dask.distributed.Client`` or an :class:`~lakeslice.executor.Executor`.

    >>> import tempfile
    >>> res = export_run_slices("fixtures/alerts.csv", interval="1m", window="pre5_post10",
    ...                         source="parquet://fixtures/candles.parquet",
    ...                         data_root=tempfile.mkdtemp(), run_id="doc")
    >>> res.run_dir.name, res.manifest["outputs"]["slices"]["rows"], res.manifest["coverage"]["partial"]
    ('run_id=doc', 75, 7)
    """
    started = time.perf_counter()
    progress = progress or NoProgress()
    progress.stage("planning")
    options = ExportOptions(
        interval=interval,
        window=window if isinstance(window, str) else window.name,
        run_id=run_id,
        data_root=str(data_root),
        chain=chain,
        compression=compression,
        target_file_mb=target_file_mb,
        strict_coverage=strict_coverage,
        min_required_pre=min_required_pre,
        target_total=target_total,
        overwrite=overwrite,
    )
    store = open_store(data_root)
    with executing(executor, source, table=table, data_root=data_root, shards=source_shards) as (runner, src):
        plan = plan_run(alerts, options, source=src, group_rows=_group_rows(src, runner))
        tracker = GroupProgress(progress, groups=len(plan.groups))
        manifest, results = staged_run(
            store,
            plan.key,
            overwrite=options.overwrite,
            tasks=plan.tasks,
            finish=partial(_announced, progress, partial(seal, plan, source=src)),
            source=src,
            executor=runner,
            progress=tracker,
        )
        fetched = sum(r.rows_fetched for r in results)
    seconds = time.perf_counter() - started
    log.info(
        "run %s: fetched %d rows, wrote %d rows in %.2fs",
        plan.run_id,
        fetched,
        manifest["outputs"]["slices"]["rows"],
        seconds,
    )
    return ExportResult(run_location(store, plan.key), manifest, rows_fetched=fetched, seconds=seconds)


def use_source(
    source: str | Source | None,
    *,
    table: str,
    data_root: str | Path,
    shards: str | None = None,
    executor: Executor | None = None,
) -> tuple[Source, bool]:
    """The source to read and whether this call opened it (and must close it).

    The tasks of a remote executor (``executor.remote``) get a portable source instead
    (:func:`lakeslice.portable.portable_source`): opened where they run.
    """
    if getattr(executor, "remote", False):
        return portable_source(source, table=table, data_root=data_root, shards=shards), False
    if source is None or isinstance(source, str):
        return open_source(source, table=table, data_root=data_root, shards=shards), True
    return source, False


@contextmanager
def executing(
    executor: Executor | str | Any | None,
    source: str | Source | None,
    *,
    table: str,
    data_root: str | Path,
    shards: str | None = None,
) -> Iterator[tuple[Executor, Source]]:
    """The executor ``executor`` names and the source its tasks read; closes what it opened."""
    runner = open_executor(executor)
    try:
        src, owns_source = use_source(
            source, table=table, data_root=data_root, shards=shards, executor=runner
        )
        try:
            yield runner, src
        finally:
            if owns_source:
                src.close()
    finally:
        if runner is not executor:
            runner.close()


def plan_run(
    alerts: str | Path | pl.DataFrame,
    options: ExportOptions,
    *,
    source: Source,
    group_rows: int | None = None,
) -> RunPlan:
    """Stage 1: validated options, normalized alerts, windows, merged ranges, bucket groups.

    The ``source`` is asked only for its label, snapshot and preferred group size (unless
    ``group_rows`` says it).

    >>> src = open_source("parquet://fixtures/candles.parquet")
    >>> plan = plan_run("fixtures/alerts.csv", ExportOptions(interval="1m", window="pre5_post10",
    ...                 run_id="doc"), source=src)
    >>> plan.key, len(plan.groups), plan.alerts.height
    ('lake/runs/run_id=doc', 1, 8)
    """
    spec = options.resolve()
    run_id = check_run_id(options.run_id) if options.run_id is not None else new_run_id()
    alerts_df, alerts_name = _load_alerts(alerts)
    windows = (
        alert_windows(alerts_df, interval=spec.interval_s, window=spec.window)
        .with_columns(mint_bucket=mint_bucket("mint"))
        .collect()
    )
    buckets = windows.select("mint", "mint_bucket").unique()
    ranges = merge_windows(windows).join(buckets.lazy(), on="mint").collect()
    groups = bucket_groups(
        range_rows(ranges, spec.interval_s),
        group_rows if group_rows is not None else getattr(source, "group_rows", None),
        starts=getattr(source, "shard_starts", ()),
    )
    return RunPlan(
        run_id=run_id,
        spec=spec,
        alerts=alerts_df,
        alerts_name=alerts_name,
        windows=windows,
        ranges=ranges,
        groups=tuple(tuple(g) for g in groups),
        source_label=source.label,
        source_snapshot=source.snapshot(),
    )


def _group_rows(source: Source, executor: Executor) -> int | None:
    """Rows per group when the groups run in this process from a source's shared queries
    (``shared_group_rows``): a group then costs the source nothing, so groups are smaller and
    memory lower. Otherwise (remote executors) the source's own ``group_rows``."""
    if getattr(executor, "remote", False):
        return None
    return getattr(source, "shared_group_rows", None)


def staged_run(
    store: Store,
    key: str,
    *,
    overwrite: bool,
    tasks: Callable[[str], list[GroupTask]],
    finish: Callable[[list[GroupResult], Commit], R],
    source: Source,
    executor: Executor | None,
    progress: GroupProgress,
    seal_key: str | None = None,
) -> tuple[R, list[GroupResult]]:
    """Open the commit of ``key``, run the ``tasks`` writing under it, ``finish`` (seal) it."""
    with open_commit(store, key, overwrite=overwrite, seal_key=seal_key) as commit:
        results = run_groups(
            tasks(commit.target.prefix), source=source, store=store, executor=executor, progress=progress
        )
        return finish(results, commit), results


def _announced(
    progress: Progress,
    finish: Callable[[list[GroupResult], Commit], R],
    results: list[GroupResult],
    commit: Commit,
) -> R:
    progress.stage("sealing")
    return finish(results, commit)


class GroupProgress:
    """The stages of the groups' work, told to a :class:`~lakeslice.progress.Progress`.

    Groups overlap (one is fetched while the one before is written), so the stages are those of
    the run as a whole: ``fetching`` (total: the groups; rows advance as batches arrive, a unit
    when a group's fetch ends) until the last group is fetched, then ``writing`` (total: the
    groups still writing; a unit per group whose files are written). Calls come from the group
    threads.

    >>> class Log:
    ...     def stage(self, name, *, total=None): print("stage", name, total)
    ...     def advance(self, *, done=0, rows=0): print("advance", done, rows)
    >>> g = GroupProgress(Log(), groups=2)
    stage fetching 2
    >>> g.rows(10); g.fetched(); g.written(); g.fetched(); g.written()
    advance 0 10
    advance 1 0
    advance 1 0
    stage writing 1
    advance 1 0
    """

    def __init__(self, progress: Progress, *, groups: int) -> None:
        self.progress = progress
        self.groups = groups
        self._fetched = 0
        self._written = 0
        self._lock = threading.Lock()
        progress.stage("fetching", total=groups)

    def rows(self, n: int) -> None:
        self.progress.advance(rows=n)

    def fetched(self) -> None:
        with self._lock:
            self._fetched += 1
            self.progress.advance(done=1)
            if self._fetched == self.groups:
                self.progress.stage("writing", total=self.groups - self._written)

    def written(self) -> None:
        with self._lock:
            self._written += 1
            if self._fetched == self.groups:
                self.progress.advance(done=1)

    def stage(self, name: str, *, total: int | None = None) -> None:
        self.progress.stage(name, total=total)


def run_groups(
    tasks: list[GroupTask],
    *,
    source: Source,
    store: Store,
    executor: Executor | None,
    progress: GroupProgress,
) -> list[GroupResult]:
    """Stage 2 over every task, in task order; the first failing group stops the run.

    In this process, a source that can read once for all groups (``prepare``, the Parquet
    source) does so first, and the groups report rows as their batches arrive. A remote
    executor's groups report when their result comes back.
    """
    executor = executor or LocalExecutor()
    remote = getattr(executor, "remote", False)
    if remote:
        store = PortableStore.of(store)  # workers open the data root from their own environment
    elif hasattr(source, "prepare"):
        source.prepare([task.request() for task in tasks])
    work = partial(run_group, source=source, store=store, progress=None if remote else progress)
    results = []
    for result in executor.map(work, tasks):
        if remote:
            progress.rows(result.rows_fetched)
            progress.fetched()
            progress.written()
        results.append(result)
    return results


def run_group(
    task: GroupTask, *, source: Source, store: Store, progress: GroupProgress | None = None
) -> GroupResult:
    """Stage 2 for one bucket group: fetch, transform, write its part files through ``store``.

    >>> import tempfile
    >>> from lakeslice.lake.store import LocalStore
    >>> src = open_source("parquet://fixtures/candles.parquet")
    >>> plan = plan_run("fixtures/alerts.csv", ExportOptions(interval="1m", window="pre5_post10"),
    ...                 source=src)
    >>> res = run_group(plan.tasks("staged")[0], source=src, store=LocalStore(tempfile.mkdtemp()))
    >>> len(res.files), res.coverage.height, res.rows_fetched, res.files[0].path
    (4, 8, 93, 'slices/ohlcv/interval=1m/window=pre5_post10/mint_bucket=24/part-0000.parquet')
    """
    names = task.windows["mint"].unique().sort() if task.windows is not None else None
    with _fetching(source):
        frame = fetch_frame(
            source,
            chain=task.chain,
            interval_s=task.interval_s,
            ranges=task.ranges,
            buckets=task.buckets,
            convert=partial(_mint_ids, names) if names is not None else None,
            on_rows=progress.rows if progress is not None else None,
        )
    if progress is not None:
        progress.fetched()
    coverage, prepare = None, None
    if task.windows is not None and task.spec is not None and names is not None:
        coverage, slices = _group_outputs(frame, task.windows, names, task.spec, source.label)
        prepare = partial(_named, names)
    else:
        slices = _day_slices(frame, task, source.label)
    with FileSink(Target(store, task.target)) as sink:
        write_buckets(
            sink,
            task.prefix,
            slices,
            compression=task.compression,
            target_bytes=task.target_bytes,
            prepare=prepare,
        )
        files = sink.entries()
    if progress is not None:
        progress.written()
    return GroupResult(tuple(files), coverage, frame.height)


def seal(
    plan: RunPlan, results: list[GroupResult], commit: Commit, *, source: Source | None = None
) -> Manifest:
    """Stage 3: coverage and normalized alerts, then the manifest, written last; publish.

    With the ``source``, a run that fetched no row at all first asks it whether the chain and
    interval exist there (a typo is an input error naming what the source holds).
    """
    spec = plan.spec
    coverages = [r.coverage for r in results if r.coverage is not None]
    coverage_df = pl.concat(coverages).sort("alert_id") if coverages else pl.DataFrame(schema=COVERAGE_SCHEMA)
    if source is not None and sum(r.rows_fetched for r in results) == 0:
        # a mistyped chain or interval: say so rather than seal nothing
        nothing_to_fetch(source, chain=spec.chain, interval_s=spec.interval_s)
    files = [f for r in results for f in r.files]  # in task order: deterministic
    files.append(write_file(commit.target, layout.COVERAGE, coverage_df, compression=spec.compression))
    alerts_entry = write_file(commit.target, layout.ALERTS, plan.alerts, compression=spec.compression)
    manifest = _manifest(plan, alerts_entry, files, coverage_df)
    with deferred():  # a stop signal waits for the seal: sealed whole or not at all
        commit.seal(manifest)
    return manifest


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


_SOURCE_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def _fetching(source: Source) -> threading.Lock:
    """One fetch at a time per source object: a source holds one connection."""
    with _LOCKS_LOCK:
        lock = _SOURCE_LOCKS.get(source)
        if lock is None:
            lock = _SOURCE_LOCKS[source] = threading.Lock()
        return lock


def _named(names: pl.Series, part: pl.DataFrame) -> pl.DataFrame:
    """A bucket's rows with the mint strings in place of their ids."""
    return part.with_columns(mint=names.gather(part["mint"]))


def fetch_frame(
    src: Source,
    *,
    chain: str,
    interval_s: int,
    ranges: pl.DataFrame,
    buckets: tuple[str, ...],
    convert: Callable[[list[pa.RecordBatch]], pl.DataFrame] | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> pl.DataFrame:
    """All batches of one bucket group as one frame; a dropped connection retries the group.

    Batches become frames ``CHUNK_ROWS`` rows at a time, through ``convert`` when given (the
    run export turns mints into integer ids there, so a group's mint strings are never
    materialized); ``on_rows`` hears each batch's row count as it arrives.
    """
    request = CandleRequest(chain=chain, interval_s=interval_s, ranges=ranges)
    to_frame = convert or _frame_of

    def fetch_all() -> pl.DataFrame:
        frames: list[pl.DataFrame] = []
        for chunk in batch_lists(_counted(src.fetch(request), on_rows)):
            frames.append(to_frame(chunk))
        if not frames:
            return to_frame([_no_candles()])
        return pl.concat(frames, rechunk=False)

    return with_retries(
        fetch_all,
        retry=getattr(src, "retry", Retry()),
        what=f"buckets {buckets[0]}..{buckets[-1]}",
    )


def _counted(
    batches: Iterator[pa.RecordBatch], on_rows: Callable[[int], None] | None
) -> Iterator[pa.RecordBatch]:
    """``batches``, telling ``on_rows`` each one's row count as it arrives."""
    for batch in batches:
        if on_rows is not None:
            on_rows(batch.num_rows)
        yield batch


def _no_candles() -> pa.RecordBatch:
    """An empty batch of candles (``Schema.empty_table`` and ``from_pylist`` import pandas)."""
    return pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in CANDLE_SCHEMA], schema=CANDLE_SCHEMA)


def _frame_of(batches: list[pa.RecordBatch]) -> pl.DataFrame:
    """One frame; ``mint`` as Polars Categorical when the source sent a dictionary."""
    table = pa.Table.from_batches(batches or [_no_candles()])
    return cast(pl.DataFrame, pl.from_arrow(table))  # a Table gives a DataFrame


def _mint_ids(names: pl.Series, batches: list[pa.RecordBatch]) -> pl.DataFrame:
    """Batches as one frame, ``mint`` as its position in the sorted ``names`` (UInt32): integer
    order is string order. A dictionary-encoded mint maps its dictionary (the few distinct
    mints), then gathers by the indices: no string per row."""
    table = pa.Table.from_batches(batches)
    ids_of = pl.Enum(names)
    if pa.types.is_dictionary(table.schema.field("mint").type):
        mint = table.unify_dictionaries().column("mint").combine_chunks()
        codes = _column(mint.dictionary).cast(pl.String).cast(ids_of).to_physical().cast(pl.UInt32)
        ids = codes.gather(_column(mint.indices).cast(pl.UInt32))
    else:
        ids = _column(table.column("mint")).cast(pl.String).cast(ids_of).to_physical().cast(pl.UInt32)
    rest = cast(pl.DataFrame, pl.from_arrow(table.drop_columns(["mint"])))
    return rest.insert_column(0, ids.alias("mint"))


def _column(values: pa.Array | pa.ChunkedArray) -> pl.Series:
    """One Arrow column as a Series, through a table: ``pl.Series(array)`` loads
    pyarrow.compute (~0.1 s of a run) where ``pl.from_arrow(table)`` does not."""
    return cast(pl.DataFrame, pl.from_arrow(pa.table({"v": values})))["v"]


def _day_slices(frame: pl.DataFrame, task: GroupTask, label: str) -> pl.DataFrame:
    """A corpus day's rows of the group: deduplicated, inside the day, with their bucket."""
    assert task.day is not None
    start, end = task.day
    candles = dedupe_candles(normalize_candles(frame, interval_s=task.interval_s, source=label))
    return (
        to_slice_columns(
            candles.filter(pl.col("ts_ms").is_between(start, end - 1)), interval_s=task.interval_s
        )
        .with_columns(mint_bucket=mint_bucket("mint"))
        .collect()
    )


def _group_outputs(
    frame: pl.DataFrame, windows: pl.DataFrame, names: pl.Series, spec: RunSpec, label: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Coverage of the group's alerts and its slice rows (mint ids, bucket codes).

    Inside, a mint is its rank among the group's sorted mints ``names`` (UInt32; ``frame``
    arrives with these ids): sorting, as-of joins and windows work on integers, and integer
    order is the mints' string order.
    """
    ids = pl.DataFrame({"mint": names, "_id": pl.int_range(names.len(), dtype=pl.UInt32, eager=True)})
    by_id = windows.join(ids, on="mint").with_columns(mint="_id").drop("_id")
    # one label for every row: added when written, not carried through sorts and joins
    deduped = dedupe_candles(normalize_candles(frame, interval_s=spec.interval_s).drop("source"))
    candles = restrict_to_ranges(deduped, merge_windows(by_id)).collect()
    cov_lazy = coverage_of(
        candles.lazy(),
        by_id.lazy().drop("mint_bucket"),
        expected_total=spec.window.slots,
        strict=spec.strict,
        min_required_pre=spec.min_required_pre,
        target_total=spec.target_total,
    )
    # the string mint back, by alert_id, in the column's own place
    cov_lazy = cov_lazy.drop("mint").join(windows.lazy().select("alert_id", "mint"), on="alert_id")
    cov = cov_lazy.select(COVERAGE_COLUMNS).sort("alert_id").collect()
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
    return cov, slices


# --------------------------------------------------------------------------------------------
# Manifest


def _manifest(
    plan: RunPlan, alerts_entry: FileEntry, files: list[FileEntry], coverage_df: pl.DataFrame
) -> Manifest:
    spec, run_id = plan.spec, plan.run_id
    stamp = created_at()
    slices = [f for f in files if f.path.startswith(layout.SLICES)]
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
                "name": plan.alerts_name,
            },
            "source_snapshot": SourceSnapshot(**plan.source_snapshot, chain=spec.chain, as_of=stamp),
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
                "mint_buckets": len({layout.hive_value(f.path, "mint_bucket") for f in slices}),
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


__all__ = [
    "export_run_slices",
    "plan_run",
    "run_group",
    "seal",
    "RunPlan",
    "GroupTask",
    "GroupResult",
    "ExportResult",
    "RunSpec",
    "bucket_groups",
    "RunError",
]
