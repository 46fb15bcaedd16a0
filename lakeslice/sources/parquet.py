"""Candles from Parquet: a file, a directory of files, or a lakeslice corpus tree."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa

from ..errors import InputError, RunError, one_line
from ..lake.layout import corpus_dir
from ..spec import format_interval
from ..transforms import mint_bucket, normalize_candles
from .base import CANDLE_SCHEMA, CandleRequest, SourceInfo

_HIVE_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=")


class ParquetSource:
    """``parquet://PATH``: source columns (``token_address``, ``timestamp``, ...) or slice columns.

    ``corpus=True`` points PATH at a data root; the tree of the requested interval is read,
    pruned by its ``date`` and ``mint_bucket`` partitions.
    """

    def __init__(self, path: str | Path, *, corpus: bool = False) -> None:
        self.path = Path(path)
        self.corpus = corpus
        self.label = "corpus:ohlcv" if corpus else f"parquet:{self.path.name}"

    def snapshot(self) -> SourceInfo:
        kind = "corpus" if self.corpus else "parquet"
        return {"kind": kind, "host": None, "database": None, "table": self.path.name}

    def close(self) -> None:
        pass

    def _root(self, interval_s: int) -> Path:
        root = corpus_dir(self.path, format_interval(interval_s)) if self.corpus else self.path
        if not root.exists():
            raise InputError(f"{root}: candle source not found")
        return root

    def scan(self, interval_s: int) -> tuple[pl.LazyFrame, set[str]]:
        """The raw scan and the hive keys its directory names carry."""
        root = self._root(interval_s)
        if root.is_file():
            return pl.scan_parquet(root), set()
        files = sorted(p for p in root.rglob("*.parquet") if not _hidden(p, root))
        if not files:
            raise InputError(f"{root}: no Parquet files")
        # Polars parses every key=value segment of the paths it is given, the root's own too
        # (corpus://: .../interval=1m/date=.../mint_bucket=...): the schema must name them all.
        keys = {m.group(1) for part in files[0].parts if (m := _HIVE_KEY.match(part))}
        schema = {k: pl.String for k in keys}
        lf = pl.scan_parquet(
            [str(f) for f in files], hive_partitioning=bool(keys), hive_schema=schema or None
        )
        return lf, keys

    def mint_counts(self, *, chain: str, interval_s: int, start_ms: int, end_ms: int) -> pl.DataFrame:
        request = CandleRequest(chain, interval_s, None, start_ms, end_ms)
        with self._reading(interval_s):
            lf, keys = self.scan(interval_s)
            candles = normalize_candles(_prune(lf, keys, request), chain=chain, interval_s=interval_s)
            return (
                candles.filter(pl.col("ts_ms").is_between(start_ms, end_ms - 1))
                .group_by("mint")
                .agg(rows=pl.len().cast(pl.Int64))
                .sort("mint")
                .collect()
            )

    def fetch(self, request: CandleRequest) -> Iterator[pa.RecordBatch]:
        with self._reading(request.interval_s):
            table = self._fetch_table(request)
        yield from table.cast(CANDLE_SCHEMA).to_batches()

    def _fetch_table(self, request: CandleRequest) -> pa.Table:
        lf, keys = self.scan(request.interval_s)
        lf = _prune(lf, keys, request)
        candles = normalize_candles(lf, chain=request.chain, interval_s=request.interval_s)
        if request.ranges is not None:
            ranges = request.ranges.lazy()
            candles = candles.filter(pl.col("mint").is_in(request.ranges["mint"].unique().implode()))
            candles = candles.join(ranges, on="mint").filter(
                (pl.col("ts_ms") >= pl.col("start_ms")) & (pl.col("ts_ms") < pl.col("end_ms"))
            )
        else:
            candles = candles.filter(
                (pl.col("ts_ms") >= request.start_ms) & (pl.col("ts_ms") < request.end_ms)
            )
        return candles.select(CANDLE_SCHEMA.names).collect().to_arrow()

    @contextlib.contextmanager
    def _reading(self, interval_s: int):
        """Turn a corrupt or foreign file into one line naming the source."""
        try:
            yield
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise RunError(f"{self._root(interval_s)}: cannot read candles ({one_line(exc)})") from exc


def _hidden(path: Path, root: Path) -> bool:
    return any(p.startswith((".", "_")) for p in path.relative_to(root).parts)


def _prune(lf: pl.LazyFrame, keys: set[str], request: CandleRequest) -> pl.LazyFrame:
    """Partition pruning on corpus-style trees: only the buckets and days asked for."""
    if request.ranges is None:
        if "date" in keys:
            lo, hi = _day(request.start_ms), _day(request.end_ms - 1)
            lf = lf.filter(pl.col("date").is_between(lo, hi))
        return lf
    if "mint_bucket" in keys:
        buckets = request.ranges.select(mint_bucket("mint")).to_series().unique()
        lf = lf.filter(pl.col("mint_bucket").is_in(buckets.implode()))
    if "date" in keys:
        days = (
            request.ranges.select(
                pl.date_ranges(
                    pl.col("start_ms").cast(pl.Datetime("ms")).dt.date(),
                    (pl.col("end_ms") - 1).cast(pl.Datetime("ms")).dt.date(),
                ).alias("d")
            )
            .explode("d")
            .select(pl.col("d").dt.strftime("%Y-%m-%d"))
            .to_series()
            .unique()
        )
        lf = lf.filter(pl.col("date").is_in(days.implode()))
    return lf


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc).strftime("%Y-%m-%d")
