"""Candles from embedded ClickHouse (chdb) at ``chdb://PATH`` (SPEC §2).

Same SQL as the server source (``clickhouse.candle_query``). User values travel as data: the
request's ranges and parameters are written into session temporary tables as Arrow IPC bytes
(``send_insert(..., "ArrowStream")``), never into SQL text. chdb's ``{name:Type}`` parameters
are not used for user values: they are parsed in ClickHouse's escaped text format, so a mint
containing ``\\t`` would arrive as a tab. Results stream as Arrow chunks (``send_query(...,
"Arrow")``) and become CANDLE_SCHEMA batches.

chdb limits (4.4): one data path per process at a time (open sources on another path fail until
closed), and one streaming query at a time per session: consume or close a ``fetch`` before
the next one.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import polars as pl
import pyarrow as pa

from lakeslice.errors import RunError, one_line
from lakeslice.sources.base import SourceInfo, quantbot_ddl
from lakeslice.sources.sql import (
    PARAMS_STRUCTURE,
    PARAMS_TABLE,
    RANGES_TABLE,
    RequestData,
    SqlCandleSource,
    TableInfo,
    check_identifier,
    ranges_structure,
    table_info,
)

__all__ = ["ChdbSource", "seed_chdb"]

# chdb's Arrow output is lz4-compressed by default: in-process that only costs time (~1.5x).
_ARROW_SETTINGS = " SETTINGS output_format_arrow_compression_method = 'none'"


def _open_session(path: str | Path) -> Any:
    from chdb import session

    Path(path).mkdir(parents=True, exist_ok=True)
    return session.Session(str(path))


def _arrow_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _insert_arrow(sess: Any, target: str, table: pa.Table) -> None:
    """``INSERT INTO target`` from Arrow data (``target`` is fixed or validated text)."""
    if table.num_rows == 0:
        return
    inserter = sess.send_insert(f"INSERT INTO {target}", "ArrowStream")
    inserter.append(_arrow_bytes(table))
    inserter.finish()


def _stream_batches(stream: Any) -> Iterator[pa.RecordBatch]:
    """The record batches of each Arrow chunk of a chdb streaming result, as they come."""
    while (chunk := stream.fetch()) is not None:
        data = chunk.bytes()
        if not data:
            continue
        reader = pa.ipc.open_file(data)
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            if batch.num_rows:
                yield batch


def _temp_table(sess: Any, name: str, structure: list[tuple[str, str]]) -> None:
    cols = ", ".join(f"{c} {t}" for c, t in structure)
    sess.query(f"DROP TEMPORARY TABLE IF EXISTS {name}")
    sess.query(f"CREATE TEMPORARY TABLE {name} ({cols})")


class ChdbSource(SqlCandleSource):
    """``chdb://PATH`` candles: a chdb session at PATH, opened on first use."""

    kind = "chdb"
    #: Shared queries as for the server (SqlCandleSource.prepare), on this source's session:
    #: scale 1 in-process 6.1 -> 5.2 CPU-s, peak 700 -> 617 MiB with 200 k groups.
    prefetch_rows = 4_000_000
    shared_group_rows = 200_000

    def __init__(self, path: str | Path, *, table: str = "ohlcv_candles", database: str = "default"):
        self.path = Path(path)
        self.database = check_identifier(database, "database")
        self.table = check_identifier(table, "table")
        self.label = f"chdb:{self.database}.{self.table}"
        self._session = None
        self._info: TableInfo | None = None

    @property
    def where(self) -> str:
        # The basename only: errors and manifests must not name the machine's directories.
        return f"chdb {self.path.name or 'chdb'} {self.database}.{self.table}"

    def snapshot(self) -> SourceInfo:
        return {"kind": self.kind, "host": "embedded", "database": self.database, "table": self.table}

    def _sess(self):
        if self._session is None:
            try:
                self._session = _open_session(self.path)
            except Exception as exc:
                raise RunError(f"{self.where}: cannot open: {one_line(exc)}") from exc
        return self._session

    def describe(self) -> TableInfo:
        if self._info is None:
            try:
                sess = self._sess()
                version = str(sess.query("SELECT version()", "CSV")).strip().strip('"')
                # Validated identifiers only ([A-Za-z0-9_]): safe in chdb's escaped parameters.
                found = sess.query(
                    "SELECT name, type FROM system.columns"
                    " WHERE database = {db:String} AND table = {tbl:String}",
                    "ArrowTable",
                    params={"db": self.database, "tbl": self.table},
                )
            except RunError:
                raise
            except Exception as exc:
                raise RunError(f"{self.where}: cannot read the table schema: {one_line(exc)}") from exc
            columns = dict(zip(found.column(0).to_pylist(), found.column(1).to_pylist(), strict=True))
            self._info = table_info(columns, self.where, version)
        return self._info

    def _stream(self, sql: str, data: RequestData) -> Iterator[pa.RecordBatch]:
        sess = self._sess()
        stream = None
        try:
            _temp_table(sess, PARAMS_TABLE, PARAMS_STRUCTURE)
            _insert_arrow(sess, PARAMS_TABLE, _as_arrow(data.params, PARAMS_STRUCTURE))
            if data.ranges is not None:
                structure = ranges_structure(data.ranges)
                _temp_table(sess, RANGES_TABLE, structure)
                _insert_arrow(sess, RANGES_TABLE, _as_arrow(data.ranges, structure))
            stream = sess.send_query(sql + _ARROW_SETTINGS, "Arrow")
            yield from _stream_batches(stream)
        except GeneratorExit:
            raise
        except Exception as exc:
            raise RunError(f"{self.where}: query failed: {one_line(exc)}") from exc
        finally:
            if stream is not None:
                stream.close()

    def _fork(self) -> ChdbSource:
        # One session per process (chdb opens one data path): the twin shares it and leaves
        # closing it to this source. Only the twin queries while the shared queries run.
        twin = copy.copy(self)
        twin.close = lambda: None  # type: ignore[method-assign]
        twin._routed = None
        return twin

    def close(self) -> None:
        self._drop_routed()
        if self._session is not None:
            self._session.close()
            self._session = None


_ARROW_TYPES = {"String": pa.string(), "Int32": pa.int32(), "Int64": pa.int64(), "UInt32": pa.uint32()}


def _as_arrow(columns: dict, structure: list[tuple[str, str]]) -> pa.Table:
    return pa.table({c: pa.array(columns[c], type=_ARROW_TYPES[t]) for c, t in structure})


def seed_chdb(
    path: str | Path,
    rows: pl.DataFrame | pa.Table,
    *,
    table: str = "ohlcv_candles",
    database: str = "default",
    timestamp_type: str = "DateTime",
    order_by: str = "(token_address, interval_seconds, timestamp)",
    replace: bool = True,
) -> int:
    """Create the QuantBot table in chdb at ``path`` and load ``rows`` (Arrow data, no SQL values).

    ``rows`` has the QuantBot columns (``ver`` optional); ``timestamp`` is a datetime or integer
    epoch seconds. ``timestamp_type`` and ``order_by`` are trusted DDL text, e.g. ``DateTime64(3)``.
    """
    check_identifier(database, "database")
    check_identifier(table, "table")
    data = _seed_frame(rows)
    target = f"`{database}`.`{table}`"
    sess = _open_session(path)
    try:
        sess.query(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        if replace:
            sess.query(f"DROP TABLE IF EXISTS {target}")
        ddl = quantbot_ddl(
            target, timestamp_type=timestamp_type, order_by=order_by, with_ver="ver" in data.columns
        )
        sess.query(ddl)
        _insert_arrow(sess, f"{target} ({', '.join(data.columns)})", data.to_arrow())
    finally:
        sess.close()
    return data.height


def _seed_frame(rows: pl.DataFrame | pa.Table) -> pl.DataFrame:
    frame = rows if isinstance(rows, pl.DataFrame) else cast(pl.DataFrame, pl.from_arrow(rows))
    dtype, ts = frame.schema["timestamp"], pl.col("timestamp")
    if dtype.is_integer():
        ts = pl.from_epoch(ts, time_unit="s").dt.replace_time_zone("UTC")
    elif getattr(dtype, "time_zone", None):
        ts = ts.dt.convert_time_zone("UTC")
    else:  # naive datetimes are UTC
        ts = ts.dt.replace_time_zone("UTC")
    cols = [
        pl.col("token_address").cast(pl.String),
        pl.col("chain").cast(pl.String),
        ts.cast(pl.Datetime("ms", "UTC")),
        pl.col("interval_seconds").cast(pl.UInt32),
        *(pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close", "volume")),
    ]
    if "ver" in frame.columns:
        cols.append(pl.col("ver").cast(pl.UInt64))
    return frame.select(cols)
