"""SQL over the QuantBot candle table, shared by the ClickHouse server and chdb.

The SQL text holds only fixed text and validated, backquoted identifiers; every user value
(mints, ranges, chain, interval, time bounds) travels as data in two request tables: external
tables on a server, session temporary tables in chdb. A subclass of :class:`SqlCandleSource`
provides the connection (``describe()`` and ``_stream(sql, data)``); everything else is here.

Server versions (tested: Debian's 18.16 and 26.x via chdb). What differs, and what we do:
- 26.x requires an alias on a joined subquery (``joined_subquery_requires_alias``); 18.16 accepts
  one: the SQL always names them.
- 18.16 has no default join strictness: the SQL always says ``ALL INNER JOIN``.
- 18.16 has no DateTime64 (nor ``toUnixTimestamp64Milli``) and no ``{name:Type}`` query
  parameters: DateTime64 SQL is only emitted for DateTime64 columns (>= 20.x servers), and
  values go as request tables on every version.
- 18.16's key analysis refuses ``DateTime >= Int64`` ("inconvertible types"): the time bounds
  used for pruning are UInt32 seconds for DateTime columns.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import polars as pl
import pyarrow as pa

from lakeslice.errors import InputError, RunError
from lakeslice.sources.base import (
    CANDLE_SCHEMA,
    HOLDINGS_SCHEMA,
    QUANTBOT_COLUMNS,
    CandleRequest,
    batch_lists,
    from_numpy,
    shareable,
)
from lakeslice.sources.routed import RoutedStream

__all__ = [
    "SqlCandleSource",
    "TableInfo",
    "REQUIRED_COLUMNS",
    "check_identifier",
    "candle_query",
    "table_info",
    "PARAMS_TABLE",
    "PARAMS_STRUCTURE",
    "RANGES_TABLE",
    "RANGES_STRUCTURE",
]

REQUIRED_COLUMNS = QUANTBOT_COLUMNS
S = TypeVar("S", bound="SqlCandleSource")
OHLCV = ("open", "high", "low", "close", "volume")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# "No bound": the DateTime64 range (1900-01-01 .. 2300-01-01), so fromUnixTimestamp64Milli never
# overflows; every DateTime and DateTime64 value lies inside it.
_TS_MIN_MS, _TS_MAX_MS = -2_208_988_800_000, 10_413_792_000_000

#: Batches from a window (ranges) request: ``mint`` arrives dictionary-encoded.
DICT_CANDLE_SCHEMA = CANDLE_SCHEMA.set(0, pa.field("mint", pa.dictionary(pa.int32(), pa.string())))

RANGES_TABLE = "_lakeslice_ranges"
PARAMS_TABLE = "_lakeslice_params"
RANGES_STRUCTURE = [
    ("token_address", "String"),
    ("mint_id", "Int32"),
    ("start_ms", "Int64"),
    ("end_ms", "Int64"),
]
#: The ranges of many groups in one query (:meth:`SqlCandleSource.prepare`): ``grp`` numbers them.
GROUPED_RANGES_STRUCTURE = [*RANGES_STRUCTURE, ("grp", "UInt32")]
PARAMS_STRUCTURE = [
    ("chain", "String"),
    ("interval_s", "UInt32"),
    ("lo_ms", "Int64"),
    ("hi_ms", "Int64"),
    ("lo_s", "UInt32"),
    ("hi_s", "UInt32"),
]


def check_identifier(name: str, what: str) -> str:
    if not isinstance(name, str) or not _IDENT_RE.match(name):
        raise InputError(f"{what} {name!r}: expected letters, digits and '_', not a leading digit")
    return name


@dataclass(frozen=True)
class TableInfo:
    """What the table looks like: timestamp type, optional ``ver`` (its type), server version."""

    timestamp_type: str
    has_ver: bool
    server_version: str = ""
    ver_type: str = ""

    @property
    def datetime64(self) -> bool:
        return self.timestamp_type.startswith("DateTime64")


def table_info(columns: dict[str, str], where: str, version: str = "") -> TableInfo:
    """Check the columns found in ``system.columns``; ``where`` names host and table for errors."""
    if not columns:
        raise RunError(f"{where}: table not found")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise RunError(f"{where}: missing required column(s) {', '.join(missing)}")
    ts_type = _strip_wrappers(columns["timestamp"])
    if not ts_type.startswith("DateTime"):
        raise RunError(f"{where}: column timestamp is {columns['timestamp']}, expected DateTime")
    ver_type = _strip_wrappers(columns.get("ver", ""))
    return TableInfo(ts_type, "ver" in columns, version, ver_type)


def _strip_wrappers(type_name: str) -> str:
    for wrapper in ("LowCardinality(", "Nullable("):
        if type_name.startswith(wrapper):
            type_name = type_name[len(wrapper) : -1]
    return type_name


def candle_query(database: str, table: str, info: TableInfo, *, windows: bool, grouped: bool = False) -> str:
    """The SELECT for a window request (``windows``) or a corpus request; ``grouped``: the
    window request of many groups at once, each row with its ranges' ``grp``.

    Reads ``RANGES_TABLE``/``PARAMS_TABLE`` (external tables on a server, temporary tables in
    chdb). The inner query filters on columns only, so the primary key prunes by mint, interval
    and the request's overall time bounds; the join then keeps exactly each mint's own ranges.
    """
    ident = f"`{check_identifier(database, 'database')}`.`{check_identifier(table, 'table')}`"
    if info.datetime64:
        ts_ms = "toUnixTimestamp64Milli(timestamp)"
        bounds = (
            f"timestamp >= fromUnixTimestamp64Milli((SELECT lo_ms FROM {PARAMS_TABLE}))"
            f" AND timestamp < fromUnixTimestamp64Milli((SELECT hi_ms FROM {PARAMS_TABLE}))"
        )
    else:
        ts_ms = "toInt64(toUInt32(timestamp)) * 1000"
        bounds = (
            f"timestamp >= (SELECT lo_s FROM {PARAMS_TABLE})"
            f" AND timestamp <= (SELECT hi_s FROM {PARAMS_TABLE})"
        )
    ver = f", {ver_expression(info.ver_type)} AS ver" if info.has_ver else ""
    key = "token_address" if windows else "token_address AS mint"
    inner = (
        f"SELECT {key}, {ts_ms} AS ts_ms, {', '.join(OHLCV)}{ver} FROM {ident}"
        f" WHERE chain IN (SELECT chain FROM {PARAMS_TABLE})"
        f" AND interval_seconds IN (SELECT interval_s FROM {PARAMS_TABLE})"
        f" AND {bounds}"
    )
    exact = f"ts_ms >= (SELECT lo_ms FROM {PARAMS_TABLE}) AND ts_ms < (SELECT hi_ms FROM {PARAMS_TABLE})"
    if not windows:
        return f"SELECT * FROM ({inner}) AS c WHERE {exact}"
    cols = (
        f"mint_id, ts_ms, {', '.join(OHLCV)}"
        + (", ver" if info.has_ver else "")
        + (", grp" if grouped else "")
    )
    inner += f" AND token_address IN (SELECT token_address FROM {RANGES_TABLE})"
    return (
        f"SELECT {cols} FROM ({inner}) AS c"
        f" ALL INNER JOIN {RANGES_TABLE} AS r USING (token_address)"
        " WHERE ts_ms >= start_ms AND ts_ms < end_ms"
    )


def ver_expression(ver_type: str) -> str:
    """``ver`` as a UInt64 in the same order as the column's own values.

    Unsigned versions (ReplacingMergeTree's UInt*, Date, DateTime) keep their values; signed
    ones flip the sign bit after a wrapping cast, mapping -2^63..2^63-1 onto 0..2^64-1 in order.
    (``toInt64`` of a UInt64 >= 2^63 would wrap to a negative: the older row would win.)

    >>> ver_expression("UInt64")
    'toUInt64(ver)'
    >>> ver_expression("Int32")
    "bitXor(toUInt64(toInt64(ver)), toUInt64('9223372036854775808'))"
    """
    if ver_type.startswith("Int"):
        return "bitXor(toUInt64(toInt64(ver)), toUInt64('9223372036854775808'))"
    return "toUInt64(ver)"


def count_query(database: str, table: str, info: TableInfo) -> str:
    """Candles per mint in the params' time bounds (corpus planning); duplicates included."""
    corpus = candle_query(database, table, info, windows=False)
    return f"SELECT mint, toInt64(count()) AS rows FROM ({corpus}) AS q GROUP BY mint"


def counts_frame(batches: list[pa.RecordBatch]) -> pl.DataFrame:
    """``mint, rows`` sorted by mint, whatever order the server sent."""
    if not batches:
        return pl.DataFrame(schema={"mint": pl.String, "rows": pl.Int64})
    frame = pl.DataFrame(pa.Table.from_batches(batches))
    return frame.select(pl.col("mint").cast(pl.String), pl.col("rows").cast(pl.Int64)).sort("mint")


def holdings_frame(batches: list[pa.RecordBatch]) -> pl.DataFrame:
    """``chain, interval_s, rows`` sorted, whatever order the server sent."""
    if not batches:
        return pl.DataFrame(schema=HOLDINGS_SCHEMA)
    frame = pl.DataFrame(pa.Table.from_batches(batches))
    return frame.select(pl.col(c).cast(t) for c, t in HOLDINGS_SCHEMA.items()).sort("chain", "interval_s")


def _chunk_requests(requests: Sequence[CandleRequest], rows: int) -> list[list[int]]:
    """Indexes of consecutive requests whose estimated rows add up to about ``rows``: one
    shared query each."""
    chunks: list[list[int]] = []
    total = rows
    for i, r in enumerate(requests):
        assert r.ranges is not None
        est = int(((r.ranges["end_ms"] - r.ranges["start_ms"]) // (r.interval_s * 1000)).sum())
        if total + est > rows and total > 0:
            chunks.append([])
            total = 0
        chunks[-1].append(i)
        total += est
    return chunks


@dataclass(frozen=True)
class RequestData:
    """A request as columns: what goes into the ranges and params tables."""

    mints: pa.Array | None  # string; position = mint_id
    ranges: dict[str, np.ndarray] | None
    params: dict[str, np.ndarray]


def request_data(request: CandleRequest) -> RequestData:
    """Columns for the ranges/params tables; the dense mint ids index ``mints``."""
    lo, hi = request.start_ms, request.end_ms
    mints = ranges = None
    if request.ranges is not None:
        frame = request.ranges.select(
            pl.col("mint").cast(pl.String),
            pl.col("start_ms").cast(pl.Int64),
            pl.col("end_ms").cast(pl.Int64),
            (pl.col("mint").cast(pl.String).rank("dense") - 1).cast(pl.Int32).alias("mint_id"),
        )
        # mint_id = position in the sorted distinct mints.
        mints = frame["mint"].unique().sort().to_arrow().cast(pa.string())
        ranges = {
            "token_address": frame["mint"].to_numpy().astype(object),
            "mint_id": frame["mint_id"].to_numpy(),
            "start_ms": frame["start_ms"].to_numpy(),
            "end_ms": frame["end_ms"].to_numpy(),
        }
        if len(frame):
            first, last = frame["start_ms"].to_numpy().min(), frame["end_ms"].to_numpy().max()
            first, last = int(first), int(last)
            lo = first if lo is None else max(lo, first)
            hi = last if hi is None else min(hi, last)
    lo = _TS_MIN_MS if lo is None else min(max(int(lo), _TS_MIN_MS), _TS_MAX_MS)
    hi = _TS_MAX_MS if hi is None else min(max(int(hi), _TS_MIN_MS), _TS_MAX_MS)
    # DateTime is whole seconds: ts*1000 >= lo <=> ts >= ceil(lo/1000),
    # ts*1000 < hi <=> ts <= ceil(hi/1000) - 1 (UInt32: 18.16 cannot prune DateTime vs Int64).
    lo_s = min(max(-(-lo // 1000), 0), 2**32 - 1)
    hi_s = min(max(-(-hi // 1000) - 1, 0), 2**32 - 1)
    params = {
        "chain": np.array([request.chain], dtype=object),
        "interval_s": np.array([request.interval_s], dtype=np.uint32),
        "lo_ms": np.array([lo], dtype=np.int64),
        "hi_ms": np.array([hi], dtype=np.int64),
        "lo_s": np.array([lo_s], dtype=np.uint32),
        "hi_s": np.array([hi_s], dtype=np.uint32),
    }
    return RequestData(mints, ranges, params)


def grouped_request_data(requests: Sequence[CandleRequest]) -> tuple[RequestData, list[pa.Array]]:
    """One request's tables for many window requests of one chain and interval: the ranges of
    request ``i`` carry ``grp = i`` and its own mint ids; and each request's dictionary."""
    parts = [request_data(r) for r in requests]
    ranges = {
        c: np.concatenate([p.ranges[c] for p in parts if p.ranges is not None]) for c, _ in RANGES_STRUCTURE
    }
    sizes = [len(p.ranges["mint_id"]) if p.ranges is not None else 0 for p in parts]
    ranges["grp"] = np.repeat(np.arange(len(parts), dtype=np.uint32), sizes)
    lo = min(int(p.params["lo_ms"][0]) for p in parts)
    hi = max(int(p.params["hi_ms"][0]) for p in parts)
    params = request_data(CandleRequest(requests[0].chain, requests[0].interval_s, None, lo, hi)).params
    mints = [p.mints if p.mints is not None else pa.nulls(0, pa.string()) for p in parts]
    return RequestData(None, ranges, params), mints


def ranges_structure(ranges: dict[str, np.ndarray]) -> list[tuple[str, str]]:
    """The ranges table's columns: with ``grp`` when it holds many groups."""
    return GROUPED_RANGES_STRUCTURE if "grp" in ranges else RANGES_STRUCTURE


def split_groups(
    batch: pa.RecordBatch, indexes: list[int], mints: list[pa.Array], has_ver: bool, *, where: str
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """``(request index, candle batch)`` for each ``grp`` of a batch of a grouped query, whose
    ``grp = g`` is request ``indexes[g]``: one sort by group, then a loop over groups, not rows.

    >>> b = pa.record_batch({"mint_id": pa.array([1, 0, 0], pa.int32()), "ts_ms": pa.array([0, 0, 60_000]),
    ...     **{c: pa.array([1.0, 2.0, 3.0]) for c in OHLCV}, "grp": pa.array([1, 0, 1], pa.uint32())})
    >>> dicts = [pa.array(["a"]), pa.array(["b", "c"])]
    >>> [(i, c.column("mint").to_pylist()) for i, c in split_groups(b, [5, 7], dicts, False, where="x")]
    [(5, ['a']), (7, ['c', 'b'])]
    """
    column = batch.column("grp")  # UInt32, no nulls; Array.to_numpy would import pandas
    grp = np.frombuffer(column.buffers()[1], dtype=np.uint32, count=len(column), offset=4 * column.offset)
    order = np.argsort(grp, kind="stable")
    grp = grp[order]
    rows = batch.drop_columns(["grp"]).take(from_numpy(order))
    starts = [0, *(np.flatnonzero(grp[1:] != grp[:-1]) + 1).tolist(), len(grp)]
    for lo, hi in zip(starts[:-1], starts[1:], strict=True):
        g = int(grp[lo])
        yield indexes[g], to_candle_batch(rows.slice(lo, hi - lo), mints[g], has_ver, where=where)


def _joined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    """One batch of several (a server's ~1,300-row blocks are too few to split one by one)."""
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def to_candle_batch(
    batch: pa.RecordBatch, mints: pa.Array | None, has_ver: bool, *, where: str = "source"
) -> pa.RecordBatch:
    """A result batch in CANDLE_SCHEMA (dictionary ``mint`` for window requests).

    Columns already of their type pass through without a copy; ``mints`` is the dictionary of
    every block (only the indices are per block). ``where`` names host and table in the error
    when a price or volume does not fit Float64.

    >>> batch = pa.record_batch({"mint_id": pa.array([1, 0], pa.int32()), "ts_ms": pa.array([60_000, 0]),
    ...     **{c: pa.array([1.0, 2.0]) for c in OHLCV}})
    >>> out = to_candle_batch(batch, pa.array(["a", "b"]), has_ver=False)
    >>> out.column("mint").to_pylist(), out.column("ver").to_pylist(), out.schema == DICT_CANDLE_SCHEMA
    (['b', 'a'], [0, 0], True)
    """
    if mints is None:
        mint = _as_type(batch.column("mint"), pa.string())
        schema = CANDLE_SCHEMA
    else:
        mint = pa.DictionaryArray.from_arrays(_as_type(batch.column("mint_id"), pa.int32()), mints)
        schema = DICT_CANDLE_SCHEMA
    ver = _as_type(batch.column("ver"), pa.uint64()) if has_ver else _zeros(batch.num_rows)
    cols = [mint, _as_type(batch.column("ts_ms"), pa.int64())]
    cols += [_as_float64(batch.column(c), c, where) for c in OHLCV]
    return pa.RecordBatch.from_arrays([*cols, ver], schema=schema)


def _as_type(values: pa.Array, type_: pa.DataType) -> pa.Array:
    return values if values.type == type_ else values.cast(type_)


_ZEROS: list[pa.Array] = [pa.Array.from_buffers(pa.uint64(), 0, [None, pa.py_buffer(b"")])]


def _zeros(n: int) -> pa.Array:
    """``n`` UInt64 zeros: a slice of one shared array (grown when a block is larger)."""
    zeros = _ZEROS[0]
    if len(zeros) < n:
        size = max(n, 2 * len(zeros))
        zeros = pa.Array.from_buffers(pa.uint64(), size, [None, pa.py_buffer(np.zeros(size, np.uint64))])
        _ZEROS[0] = zeros
    return zeros.slice(0, n)


def _as_float64(values: pa.Array, column: str, where: str) -> pa.Array:
    """Exact Float64, or one line: an integer above 2^53 would silently lose digits."""
    if values.type == pa.float64():
        return values
    try:
        return values.cast(pa.float64())
    except pa.ArrowInvalid:
        ints = pl.Series(values).cast(pl.Float64, strict=False).abs()
        big = pl.Series(values).filter(ints >= 2.0**53)
        first = big[0] if len(big) else "a value"
        raise RunError(
            f"{where}: column {column} holds {first}, above 2^53: Float64 cannot hold it exactly"
        ) from None


class SqlCandleSource:
    """What the ClickHouse server and chdb share: the same SQL over the same request tables.

    Subclasses provide ``database``, ``table``, ``where``, ``describe()``, ``_stream(sql, data)``
    and ``close()``; a source is a context manager that closes its connection.
    """

    database: str
    table: str

    @property
    def where(self) -> str:
        raise NotImplementedError

    def describe(self) -> TableInfo:
        raise NotImplementedError

    def _stream(self, sql: str, data: RequestData) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    #: Estimated candle rows per bucket group. The primary key prunes every query, so small
    #: groups cost little here and keep peak memory low (see benchmarks/README.md).
    group_rows = 400_000
    #: Estimated rows of one shared query of :meth:`prepare` (0: each group asks on its own).
    prefetch_rows = 0
    #: Rows per group when groups run in this process from the shared queries (None: as
    #: ``group_rows``): a group then costs the server nothing, and smaller groups less memory.
    shared_group_rows: int | None = None
    _routed: RoutedStream | None = None

    def _fork(self: S) -> S:
        """A copy of this source with its own connection (opened on first use)."""
        raise NotImplementedError

    def prepare(self, requests: Sequence[CandleRequest]) -> None:
        """Ask for the window requests (the bucket groups of one export, fetched next, in this
        order) in a few shared queries, read ahead on a second connection while groups run.

        A group's mints are hashed, so they are spread over the whole table: per-group queries
        read the granules around every group's mints, many of them again for the next group. A
        shared query for ``prefetch_rows`` estimated rows of consecutive groups reads each
        granule once; its rows are spilled by group (:class:`RoutedStream`). Groups not
        prepared, or whose shared query failed before it ended, ask on their own.
        """
        self._drop_routed()
        if not self.prefetch_rows or not shareable(requests):
            return
        info = self.describe()
        reader = self._fork()
        sql = candle_query(self.database, self.table, info, windows=True, grouped=True)

        def stream(chunk: list[int]) -> Iterator[tuple[int, pa.RecordBatch]]:
            data, mints = grouped_request_data([requests[i] for i in chunk])
            for batches in batch_lists(reader._stream(sql, data)):
                yield from split_groups(_joined(batches), chunk, mints, info.has_ver, where=self.where)

        keys = [r.ranges for r in requests if r.ranges is not None]
        chunks = _chunk_requests(requests, self.prefetch_rows)
        self._routed = RoutedStream(
            keys, chunks, stream, on_close=reader.close, budget_rows=self.prefetch_rows
        )

    def _drop_routed(self) -> None:
        if self._routed is not None:
            self._routed.close()
            self._routed = None

    def fetch(self, request: CandleRequest) -> Iterator[pa.RecordBatch]:
        """Stream the request's candles (a dropped server connection: SourceConnectionError):
        from the shared query of :meth:`prepare` when it holds the request, else its own."""
        routed = self._routed.take(request.ranges) if self._routed and request.ranges is not None else None
        if routed is not None:
            yield from routed
            return
        info = self.describe()
        data = request_data(request)
        if data.mints is not None and not len(data.mints):
            return
        sql = candle_query(self.database, self.table, info, windows=data.ranges is not None)
        for batch in self._stream(sql, data):
            yield to_candle_batch(batch, data.mints, info.has_ver, where=self.where)

    def holdings(self) -> pl.DataFrame:
        """``chain, interval_s, rows``: what the table holds (a full count: for error messages)."""
        self.describe()
        ident = f"`{self.database}`.`{self.table}`"
        sql = (
            "SELECT toString(chain) AS chain, toInt64(interval_seconds) AS interval_s,"
            f" toInt64(count()) AS rows FROM {ident} GROUP BY chain, interval_s"
        )
        data = request_data(CandleRequest("", 1, None))  # the request tables go unused
        return holdings_frame(list(self._stream(sql, data)))

    def mint_counts(self, *, chain: str, interval_s: int, start_ms: int, end_ms: int) -> pl.DataFrame:
        info = self.describe()
        data = request_data(CandleRequest(chain, interval_s, None, start_ms, end_ms))
        return counts_frame(list(self._stream(count_query(self.database, self.table, info), data)))
