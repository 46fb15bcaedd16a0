"""What every candle source provides.

A source answers a :class:`CandleRequest` (a chain, an interval and a table of disjoint
half-open time ranges per mint) with Arrow record batches in :data:`CANDLE_SCHEMA`. It may
return rows outside the ranges (the pipeline filters exactly), duplicates (the pipeline
deduplicates) and rows in any order (the pipeline sorts); it must not miss a row inside them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypedDict, TypeVar

import numpy as np
import polars as pl
import pyarrow as pa

from ..errors import InputError, retryable

log = logging.getLogger("lakeslice")
T = TypeVar("T")

#: The QuantBot ``ohlcv_candles`` columns a SQL source table must have (SPEC §2).
QUANTBOT_COLUMNS = (
    "token_address",
    "chain",
    "timestamp",
    "interval_seconds",
    "open",
    "high",
    "low",
    "close",
    "volume",
)


def quantbot_ddl(
    target: str,
    *,
    timestamp_type: str = "DateTime",
    order_by: str = "(token_address, interval_seconds, timestamp)",
    with_ver: bool = False,
) -> str:
    """``CREATE TABLE`` of the QuantBot candle table at ``target`` (ClickHouse and chdb).

    Every argument is trusted DDL text (a quoted name, a type, an ``ORDER BY``), never user data.

    >>> print(quantbot_ddl("`db`.`t`", timestamp_type="DateTime64(3)", with_ver=True))
    CREATE TABLE IF NOT EXISTS `db`.`t` (token_address String, chain String, timestamp DateTime64(3),
    interval_seconds UInt32, open Float64, high Float64, low Float64, close Float64, volume Float64,
    ver UInt64) ENGINE = MergeTree() ORDER BY (token_address, interval_seconds, timestamp)
    """
    ver = ", ver UInt64" if with_ver else ""
    return (
        f"CREATE TABLE IF NOT EXISTS {target} (token_address String, chain String,"
        f" timestamp {timestamp_type}, interval_seconds UInt32, open Float64, high Float64,"
        f" low Float64, close Float64, volume Float64{ver}) ENGINE = MergeTree() ORDER BY {order_by}"
    )


# Columns a source yields. ``ver`` is the optional version column (ReplacingMergeTree's `ver`)
# as UInt64 in the column's own order (signed types shifted by 2^63); sources without one
# yield 0. ``mint`` may also arrive dictionary-encoded.
CANDLE_SCHEMA = pa.schema(
    [
        ("mint", pa.string()),
        ("ts_ms", pa.int64()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
        ("ver", pa.uint64()),
    ]
)


#: What :meth:`Source.holdings` returns: candle rows per chain and interval (``chain`` null:
#: the source has no chain column, its rows count for any chain).
HOLDINGS_SCHEMA = {"chain": pl.String, "interval_s": pl.Int64, "rows": pl.Int64}


@dataclass(frozen=True)
class CandleRequest:
    """Candles of ``chain`` at ``interval_s`` whose timestamp lies in one of ``ranges``.

    ``ranges`` has columns ``mint`` (String), ``start_ms`` and ``end_ms`` (Int64 epoch ms,
    half-open), disjoint per mint and sorted by ``(mint, start_ms)``. ``None`` means every
    candle of the chain and interval (corpus mode uses ``start_ms``/``end_ms`` of the request).
    """

    chain: str
    interval_s: int
    ranges: pl.DataFrame | None
    start_ms: int | None = None
    end_ms: int | None = None


class SourceInfo(TypedDict):
    """What a source says about itself in a seal; never a secret (``host`` null for files)."""

    kind: str
    host: str | None
    database: str | None
    table: str


class Source(Protocol):
    """A place candles come from."""

    #: Value of the ``source`` column, e.g. ``clickhouse:db.ohlcv_candles``; never a secret.
    label: str

    def snapshot(self) -> SourceInfo:
        """``{kind, host, database, table}`` for the manifest (export adds chain, as_of); no secrets."""
        ...

    def fetch(self, request: CandleRequest) -> Iterator[pa.RecordBatch]:
        """Yield batches in :data:`CANDLE_SCHEMA` covering every requested candle."""
        ...

    def mint_counts(self, *, chain: str, interval_s: int, start_ms: int, end_ms: int) -> pl.DataFrame:
        """``mint`` (String), ``rows`` (Int64): candles per mint in ``[start_ms, end_ms)``.

        Used by corpus mode to plan bucket groups; counts may include duplicates.
        """
        ...

    def holdings(self) -> pl.DataFrame:
        """What the source holds, in :data:`HOLDINGS_SCHEMA`, sorted by chain and interval."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Retry:
    """How a dropped connection is retried: ``retries`` more tries after waits that double from
    ``first_wait`` seconds up to ``max_wait`` each (defaults: 0.5, 1, 2, 4, 8, 16: about 30 s in
    all, long enough for a server restart, never forever).

    >>> Retry(retries=4, first_wait=1, max_wait=3).waits()
    [1.0, 2.0, 3.0, 3.0]
    """

    retries: int = 6
    first_wait: float = 0.5
    max_wait: float = 30.0

    def waits(self) -> list[float]:
        return [min(float(self.first_wait) * 2**k, float(self.max_wait)) for k in range(self.retries)]


def with_retries(call: Callable[[], T], *, retry: Retry, what: str) -> T:
    """``call()``, retried after an error marked ``retryable`` (a dropped connection) as ``retry``
    says; other errors, and the last retryable one, propagate (the last one says how long it tried).
    """
    waits = retry.waits()
    for attempt, wait in enumerate([*waits, None]):
        try:
            return call()
        except Exception as exc:
            if not retryable(exc):
                raise
            if wait is None:
                if not waits:
                    raise
                raise type(exc)(f"{exc} (gave up after {len(waits)} retries over {sum(waits):g}s)") from exc
            log.info("%s: %s; retry %d of %d in %gs", what, exc, attempt + 1, len(waits), wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def nothing_to_fetch(src: Source, *, chain: str, interval_s: int) -> None:
    """After an export fetched no row at all: an input error when the source holds no candle
    of ``chain`` at ``interval_s`` (a typo such as ``--chain solanna``), naming what it holds.

    Returns quietly when the chain and interval are there (the alerts' windows just hold no
    candle), when the source holds no candle at all, or when it cannot say.
    """
    from ..spec import format_interval

    if not hasattr(src, "holdings"):
        return
    held = src.holdings()
    match = held.filter(
        (pl.col("chain").is_null() | (pl.col("chain") == chain))
        & (pl.col("interval_s").is_null() | (pl.col("interval_s") == interval_s))
    )
    if match["rows"].sum() > 0 or held["rows"].sum() == 0:
        return  # the pair is there, or the source is empty: nothing was mistyped
    where = getattr(src, "where", src.label)
    have = ", ".join(
        f"{c if c is not None else '(any chain)'} {format_interval(i) if i else '(any interval)'}"
        f" ({n:,} rows)"
        for c, i, n in held.head(20).iter_rows()
    )
    more = f" and {held.height - 20} more" if held.height > 20 else ""
    raise InputError(
        f"{where}: no candle of chain {chain!r} at interval {format_interval(interval_s)};"
        f" it holds: {have or 'nothing'}{more}"
    )


def from_numpy(values: np.ndarray) -> pa.Array:
    """A 1-d numeric array as Arrow without a copy (``pa.array`` would import pandas to check
    whether ``values`` is a pandas object).

    >>> from_numpy(np.arange(3, dtype=np.int64)).to_pylist()
    [0, 1, 2]
    """
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


#: Rows worked on at once when a stream brings small batches (a server's blocks after its join
#: hold ~1,300 rows: one conversion per block cost more than the fetch itself).
CHUNK_ROWS = 128 * 1024


def batch_lists(batches: Iterable[pa.RecordBatch], rows: int = CHUNK_ROWS) -> Iterator[list[pa.RecordBatch]]:
    """Consecutive batches in lists of at least ``rows`` rows (the last may be shorter).

    >>> b = pa.record_batch({"x": [1, 2]})
    >>> [len(c) for c in batch_lists(iter([b] * 5), rows=4)]
    [2, 2, 1]
    """
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pending
            pending, count = [], 0
    if pending:
        yield pending


def shareable(requests: Sequence[CandleRequest]) -> bool:
    """Whether one read can serve ``requests`` (a source's ``prepare``): several window
    requests of one chain and interval."""
    return (
        len(requests) >= 2
        and all(r.ranges is not None for r in requests)
        and len({(r.chain, r.interval_s) for r in requests}) == 1
    )


def take_prepared(prepared: list[pl.DataFrame | None], ranges: pl.DataFrame) -> int | None:
    """The position of the prepared request with these ``ranges``, now marked handed out
    (each is handed out once), or None.

    >>> keys = [pl.DataFrame({"k": [1]}), pl.DataFrame({"k": [2]})]
    >>> take_prepared(keys, pl.DataFrame({"k": [2]})), take_prepared(keys, pl.DataFrame({"k": [2]}))
    (1, None)
    """
    for i, key in enumerate(prepared):
        if key is not None and (key is ranges or (key.height == ranges.height and key.equals(ranges))):
            prepared[i] = None
            return i
    return None
