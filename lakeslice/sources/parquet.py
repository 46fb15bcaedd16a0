"""Candles from Parquet: a file, a directory of files, or a lakeslice corpus tree."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa

from ..errors import InputError, RunError, one_line
from ..lake import layout
from ..spec import format_interval, parse_interval
from ..transforms import mint_bucket, normalize_candles
from .base import CANDLE_SCHEMA, HOLDINGS_SCHEMA, CandleRequest, SourceInfo

_HIVE_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=")
_DAY_MS = 86_400_000


class ParquetSource:
    """``parquet://PATH``: source columns (``token_address``, ``timestamp``, ...) or slice columns.

    ``corpus=True`` points PATH at a data root; the tree of the requested interval is read,
    pruned by its ``date`` and ``mint_bucket`` partitions.
    """

    def __init__(self, path: str | Path, *, corpus: bool = False) -> None:
        self.path = Path(path)
        self.corpus = corpus
        self.label = "corpus:ohlcv" if corpus else f"parquet:{self.path.name}"
        self._store = None
        if corpus:
            from ..lake.store import open_store

            self._store = open_store(path)
            self.path = Path(self._store.root.rsplit("/", 1)[-1] or "corpus")

    def snapshot(self) -> SourceInfo:
        kind = "corpus" if self.corpus else "parquet"
        return {"kind": kind, "host": None, "database": None, "table": self.path.name}

    def close(self) -> None:
        pass

    def _root(self, interval_s: int) -> Path:
        if not self.path.exists():
            raise InputError(f"{self.path}: candle source not found")
        return self.path

    def _corpus_scan(self, request: CandleRequest) -> pl.LazyFrame:
        """The listed files of the sealed corpus days (and buckets) the request needs."""
        from ..lake.read import corpus_days, corpus_files
        from ..transforms import SLICE_SCHEMA

        store = self._store
        text = format_interval(request.interval_s)
        available = list(corpus_days(store, request.chain, text))
        if not available:
            raise InputError(f"{store.root}: no sealed corpus days of chain={request.chain} interval={text}")
        if request.ranges is None:
            files = corpus_files(
                store, chain=request.chain, interval=text, start_ms=request.start_ms, end_ms=request.end_ms
            )
        else:
            buckets = set(request.ranges.select(mint_bucket("mint")).to_series().to_list())
            days = needed_days(request.ranges, available)
            files = corpus_files(store, chain=request.chain, interval=text, days=days, buckets=buckets)
        if not files:
            return pl.LazyFrame(schema=SLICE_SCHEMA)
        return pl.scan_parquet(
            [store.url(f.key) for f in files],
            hive_partitioning=False,
            storage_options=store.storage_options,
        )

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

    def holdings(self) -> pl.DataFrame:
        """``chain, interval_s, rows`` (null chain or interval: the files do not say)."""
        if self.corpus:
            return self._corpus_holdings()
        with self._reading(0):
            lf, _ = self.scan(0)
            names = lf.collect_schema()
            chain = pl.col("chain").cast(pl.String) if "chain" in names else pl.lit(None, pl.String)
            col = next((c for c in ("interval_seconds", "interval_s") if c in names), None)
            interval = pl.col(col).cast(pl.Int64) if col else pl.lit(None, pl.Int64)
            return (
                lf.group_by(chain.alias("chain"), interval.alias("interval_s"))
                .agg(rows=pl.len().cast(pl.Int64))
                .sort("chain", "interval_s")
                .collect()
            )

    def _corpus_holdings(self) -> pl.DataFrame:
        """Per chain and interval of the corpus: the rows its sealed days hold (from the day
        seals; days of an older corpus without a ``chain=`` level are solana)."""
        assert self._store is not None
        rows: dict[tuple[str, int], int] = {}
        for key in self._store.list(f"{layout.LAKE}/corpus/_seals/ohlcv/"):
            if not key.endswith(".json"):
                continue
            levels = layout.hive_values(key.removesuffix(".json"))
            if "interval" not in levels:
                continue
            seal = json.loads(self._store.get(key))
            at = (levels.get("chain", "solana"), parse_interval(levels["interval"]))
            rows[at] = rows.get(at, 0) + int(seal.get("rows", 0))
        data = [(c, i, n) for (c, i), n in sorted(rows.items())]
        return pl.DataFrame(data, schema=HOLDINGS_SCHEMA, orient="row")

    def mint_counts(self, *, chain: str, interval_s: int, start_ms: int, end_ms: int) -> pl.DataFrame:
        request = CandleRequest(chain, interval_s, None, start_ms, end_ms)
        with self._reading(interval_s):
            candles = normalize_candles(self._pruned(request), chain=chain, interval_s=interval_s)
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

    def _pruned(self, request: CandleRequest) -> pl.LazyFrame:
        if self.corpus:
            return self._corpus_scan(request)
        lf, keys = self.scan(request.interval_s)
        return _prune(lf, keys, request)

    def _fetch_table(self, request: CandleRequest) -> pa.Table:
        lf = self._pruned(request)
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
            where = self._store.root if self._store is not None else self.path
            raise RunError(f"{where}: cannot read candles ({one_line(exc)})") from exc


def _hidden(path: Path, root: Path) -> bool:
    return any(p.startswith((".", "_")) for p in path.relative_to(root).parts)


def _prune(lf: pl.LazyFrame, keys: set[str], request: CandleRequest) -> pl.LazyFrame:
    """Partition pruning on corpus-style trees: only the buckets and days asked for."""
    if request.ranges is None:
        if "date" in keys:
            lo, hi = _day(request.start_ms), _day(request.end_ms - 1)
            lf = lf.filter(pl.col("date").is_between(pl.lit(lo), pl.lit(hi)))
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


def needed_days(ranges: pl.DataFrame, available: list[str]) -> list[str]:
    """The ``available`` days (``YYYY-MM-DD``) that some range ``[start_ms, end_ms)`` touches.

    Integer day numbers throughout: a range reaching past the dates Polars or Python represent
    still selects the days it touches.

    >>> r = pl.DataFrame({"start_ms": [86_400_000], "end_ms": [2**62]})
    >>> needed_days(r, ["1970-01-01", "1970-01-02", "9999-12-31"])
    ['1970-01-02', '9999-12-31']
    """
    from ..lake.read import day_number

    if not available or ranges.is_empty():
        return []
    spans = (
        ranges.select(first=pl.col("start_ms") // _DAY_MS, last=(pl.col("end_ms") - 1) // _DAY_MS)
        .sort("first")
        .with_columns(reach=pl.col("last").cum_max())
    )
    days = pl.DataFrame({"day": available, "n": [day_number(d) for d in available]}).sort("n")
    hit = days.join_asof(spans, left_on="n", right_on="first", strategy="backward")
    return hit.filter(pl.col("reach") >= pl.col("n"))["day"].to_list()


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc).strftime("%Y-%m-%d")
