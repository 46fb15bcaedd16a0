"""Candles from Parquet: a file, a directory of files, or a lakeslice corpus tree."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from ..errors import InputError, RunError, one_line
from ..lake import layout
from ..spec import format_interval, parse_interval
from ..transforms import OHLCV, mint_bucket, normalize_candles
from .base import CANDLE_SCHEMA, HOLDINGS_SCHEMA, CandleRequest, SourceInfo, shareable, take_prepared
from .sql import DICT_CANDLE_SCHEMA, _as_float64

_HIVE_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=")
_DAY_MS = 86_400_000


class ParquetSource:
    """``parquet://PATH``: source columns (``token_address``, ``timestamp``, ...) or slice columns.

    ``corpus=True`` points PATH at a data root; the tree of the requested interval is read,
    pruned by its ``date`` and ``mint_bucket`` partitions.
    """

    #: Estimated candle rows per bucket group: the files are read once for all groups
    #: (:meth:`prepare`), so small groups cost little and keep peak memory low.
    group_rows = 200_000
    #: Rows per batch from the streaming engine (a fetch that was not prepared).
    batch_rows = 65_536
    #: Source rows per pass of :meth:`prepare` (about 120 row groups of 128 Ki rows): a
    #: bound on what the engine holds whatever it reads ahead. Each pass writes one spill file
    #: per request, so passes much smaller than the file make many small files.
    pass_rows = 16_000_000
    #: Rows the pass's writers hold before they write, over all requests: each request's
    #: writer writes every ``spill_rows / requests`` rows (at least 1,024), so the memory of
    #: the pass does not grow with the number of groups.
    spill_rows = 1_000_000

    def __init__(self, path: str | Path, *, corpus: bool = False) -> None:
        self.path = Path(path)
        self.corpus = corpus
        self.label = "corpus:ohlcv" if corpus else f"parquet:{self.path.name}"
        self._store = None
        self._spill: _Spill | None = None
        if corpus:
            from ..lake.store import open_store

            self._store = open_store(path)
            self.path = Path(self._store.root.rsplit("/", 1)[-1] or "corpus")

    def snapshot(self) -> SourceInfo:
        kind = "corpus" if self.corpus else "parquet"
        return {"kind": kind, "host": None, "database": None, "table": self.path.name}

    def close(self) -> None:
        self._drop_spill()

    def _root(self, interval_s: int) -> Path:
        if not self.path.exists():
            raise InputError(f"{self.path}: candle source not found")
        return self.path

    def _corpus_scan(self, request: CandleRequest) -> pl.LazyFrame:
        """The listed files of the sealed corpus days (and buckets) the request needs."""
        from ..lake.read import corpus_days, corpus_files
        from ..transforms import SLICE_SCHEMA

        store = self._store
        assert store is not None  # corpus sources have one
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
        """Stream the request's candles: from the one-pass spill when :meth:`prepare` read it,
        else straight from the files, batch by batch. For a window request ``mint`` arrives
        dictionary-encoded over the request's sorted mints (as from the SQL sources)."""
        spilled = self._take_spill(request)
        mints = _request_mints(request.ranges)
        with self._reading(request.interval_s):
            if spilled is None:
                for frame in self._candles(request).collect_batches(
                    maintain_order=False, chunk_size=self.batch_rows
                ):
                    yield from self._as_candles(frame.to_arrow(), mints).to_batches()
                return
            try:
                for path in spilled:  # none: the group has no row
                    with pa.memory_map(str(path)) as source:
                        table = pa.ipc.open_file(source).read_all()
                    # batch_rows at most, whatever batches the sink wrote: progress moves within a group
                    yield from self._as_candles(table, mints).to_batches(max_chunksize=self.batch_rows)
            finally:
                for path in spilled:
                    path.unlink(missing_ok=True)

    def prepare(self, requests: Sequence[CandleRequest]) -> None:
        """Read the files once for all ``requests`` (the bucket groups of one export, fetched
        next) and split the rows that matter by request into spill files.

        Bucket groups are sets of hashed mints, so every group touches nearly every row group of
        a file sorted by mint: reading per group would decode the whole file once per group.
        One streaming pass (in slices of ``pass_rows`` source rows) decodes it once and the
        engine's partitioned sink writes each request's rows to its own file, with no Python
        between the decode and the files; each :meth:`fetch` of a prepared request then reads
        its own rows back. Memory stays bounded by the engine's read-ahead, ``spill_rows``
        and a group.
        """
        self._drop_spill()
        if not shareable(requests):
            return
        first = requests[0]
        ranges = [r.ranges for r in requests if r.ranges is not None]
        tagged = pl.concat(
            [
                r.select("mint", "start_ms", "end_ms").with_columns(_request=pl.lit(i, pl.UInt32))
                for i, r in enumerate(ranges)
            ]
        )
        spill = Path(tempfile.mkdtemp(prefix="lakeslice-spill-"))
        # removed by close(), or when the source is collected or the interpreter exits
        self._spill = _Spill(spill, list(ranges), weakref.finalize(self, shutil.rmtree, spill, True))
        try:
            with self._reading(first.interval_s):
                request = CandleRequest(first.chain, first.interval_s, tagged)
                total = self._pruned(request).select(pl.len()).collect().item()
                flush = max(1024, self.spill_rows // len(requests))
                # passes over consecutive row slices, each drained before the next: what the
                # engine holds grows with a pass, not with the files
                for n, offset in enumerate(range(0, max(total, 1), self.pass_rows)):
                    query = self._candles(request, rows=(offset, self.pass_rows))
                    # the engine splits the rows by request and writes them in its own threads
                    where = pl.PartitionBy(spill / f"{n:06d}", key="_request", include_key=False)
                    query.sink_ipc(where, maintain_order=False, mkdir=True, record_batch_size=flush)
        except BaseException:
            self._drop_spill()
            raise

    def _take_spill(self, request: CandleRequest) -> list[Path] | None:
        """The spill files of a prepared request (each is read once), or None."""
        if self._spill is None or request.ranges is None:
            return None
        return self._spill.take(request.ranges)

    def _drop_spill(self) -> None:
        if self._spill is not None:
            self._spill.remove()
            self._spill = None

    def _pruned(self, request: CandleRequest) -> pl.LazyFrame:
        if self.corpus:
            return self._corpus_scan(request)
        lf, keys = self.scan(request.interval_s)
        return _prune(lf, keys, request)

    def _candles(self, request: CandleRequest, *, rows: tuple[int, int] | None = None) -> pl.LazyFrame:
        """The request's candles in CANDLE_SCHEMA columns; for a window request ``_mint_id``
        (the mint's position among the request's sorted mints, per ``_request`` when the ranges
        carry that tag) in place of ``mint``. Integer price/volume columns also come raw, as
        ``_raw_<name>``, for the exactness check."""
        lf = self._pruned(request)
        if rows is not None:
            lf = lf.slice(*rows)
        names = lf.collect_schema()
        wide = [c for c in OHLCV if c in names and names[c].is_integer()]
        lf = lf.with_columns(pl.col(c).alias(f"_raw_{c}") for c in wide)
        raw = [f"_raw_{c}" for c in wide]
        candles = normalize_candles(lf, chain=request.chain, interval_s=request.interval_s, keep=raw)
        if request.ranges is None:
            in_range = (pl.col("ts_ms") >= request.start_ms) & (pl.col("ts_ms") < request.end_ms)
            return candles.filter(in_range).select(*CANDLE_SCHEMA.names, *raw)
        tag = [c for c in request.ranges.columns if c == "_request"]
        rank = pl.col("mint").rank("dense")
        # computed here, not in the query: a window expression would keep the engine from
        # streaming the scan
        ranges = request.ranges.with_columns(
            _mint_id=((rank.over(tag) if tag else rank) - 1).cast(pl.Int32)
        ).lazy()
        candles = candles.filter(pl.col("mint").is_in(request.ranges["mint"].unique().implode()))
        candles = candles.join(ranges, on="mint").filter(
            (pl.col("ts_ms") >= pl.col("start_ms")) & (pl.col("ts_ms") < pl.col("end_ms"))
        )
        return candles.select("_mint_id", *CANDLE_SCHEMA.names[1:], *raw, *tag)

    def _as_candles(self, table: pa.Table, mints: pa.Array | None) -> pa.Table:
        """Rows of :meth:`_candles` in CANDLE_SCHEMA (``mint`` over the dictionary ``mints``
        for a window request).

        An integer price or volume must fit Float64 exactly: the same check (and the same one
        line, naming the file and column) as the SQL sources.
        """
        where = str(self._store.root if self._store is not None else self.path)
        if mints is None:
            schema, columns = CANDLE_SCHEMA, [_typed(table.column("mint"), pa.string())]
        else:
            schema = DICT_CANDLE_SCHEMA
            ids = _typed(table.column("_mint_id"), pa.int32())
            columns = [
                pa.chunked_array(
                    [pa.DictionaryArray.from_arrays(c, mints) for c in ids.chunks], schema[0].type
                )
            ]
        for field in list(CANDLE_SCHEMA)[1:]:
            if f"_raw_{field.name}" in table.column_names:
                columns.append(_as_float64(table.column(f"_raw_{field.name}"), field.name, where))
            else:
                columns.append(_typed(table.column(field.name), field.type))
        return pa.table(columns, schema=schema)

    @contextlib.contextmanager
    def _reading(self, interval_s: int) -> Iterator[None]:
        """Turn a corrupt or foreign file into one line naming the source."""
        try:
            yield
        except (pl.exceptions.PolarsError, OSError) as exc:
            where = self._store.root if self._store is not None else self.path
            raise RunError(f"{where}: cannot read candles ({one_line(exc)})") from exc


@dataclass
class _Spill:
    """The spill files of prepared requests: ``dir/<pass>/_request=<i>/*.ipc`` (Arrow IPC files,
    as the engine's partitioned sink names them) hold the rows of ``ranges[i]``."""

    dir: Path
    ranges: list[pl.DataFrame | None]
    remove: weakref.finalize

    def take(self, ranges: pl.DataFrame) -> list[Path] | None:
        """The files of the prepared request with these ranges; they are handed out once."""
        i = take_prepared(self.ranges, ranges)
        return None if i is None else sorted(self.dir.glob(f"*/_request={i}/*.ipc"))


def _request_mints(ranges: pl.DataFrame | None) -> pa.Array | None:
    """The dictionary of a window request's ``mint``: its sorted distinct mints (position = id).

    >>> m = _request_mints(pl.DataFrame({"mint": ["b", "a", "b"]}))
    >>> m.to_pylist(), m.type
    (['a', 'b'], DataType(string))
    """
    if ranges is None:
        return None
    mints = ranges["mint"].cast(pl.String).unique().sort().rechunk().to_arrow()
    # 64-bit offsets to 32-bit by NumPy (already loaded with Polars): an Arrow cast would load
    # pyarrow.compute, ~0.1 s of the run for this one small array
    validity, offsets, data = mints.buffers()
    wide = np.frombuffer(offsets, dtype=np.int64)[mints.offset : mints.offset + len(mints) + 1]
    if len(mints) and wide[-1] >= 2**31:
        return mints.cast(pa.string())  # > 2 GiB of mint text: leave it to Arrow
    narrow = pa.py_buffer(wide.astype(np.int32))
    return pa.Array.from_buffers(pa.string(), len(mints), [validity, narrow, data], mints.null_count)


def _typed(values: pa.ChunkedArray, to: pa.DataType) -> pa.ChunkedArray:
    """``values`` as type ``to``, cast only when it differs (a cast loads pyarrow.compute)."""
    return values if values.type == to else values.cast(to)


def _hidden(path: Path, root: Path) -> bool:
    return any(p.startswith((".", "_")) for p in path.relative_to(root).parts)


def _prune(lf: pl.LazyFrame, keys: set[str], request: CandleRequest) -> pl.LazyFrame:
    """Partition pruning on corpus-style trees: only the buckets and days asked for."""
    if request.ranges is None:
        if "date" in keys and request.start_ms is not None and request.end_ms is not None:
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
