"""Candles from a ClickHouse server over the native protocol (SPEC §2).

Every user value (mints, ranges, chain, interval, time bounds) travels as DATA in native-protocol
external tables; the SQL text holds only fixed text and validated, backquoted identifiers.
Results stream one ClickHouse block -> one Arrow record batch through the driver's NumPy/Arrow
column readers (``query_arrow_stream``): no Python object per row.

The mint string is not sent back per row: the ranges table carries a dense ``mint_id`` and the
server returns it; batches rebuild ``mint`` as a dictionary array over the request's mints.

Server versions (tested: Debian's 18.16 and 26.x via chdb). What differs, and what we do:
- 26.x requires an alias on a joined subquery (``joined_subquery_requires_alias``); 18.16 accepts
  one: the SQL always names them.
- 18.16 has no default join strictness: the SQL always says ``ALL INNER JOIN``.
- 18.16 has no DateTime64 (nor ``toUnixTimestamp64Milli``) and no ``{name:Type}`` query
  parameters: DateTime64 SQL is only emitted for DateTime64 columns (>= 20.x servers), and
  values go as external tables on every version.
- 18.16's key analysis refuses ``DateTime >= Int64`` ("inconvertible types"): the time bounds
  used for pruning are UInt32 seconds for DateTime columns.
- A ``Distributed`` table works as it is: the server forwards a query's external tables to
  every shard (18.16 and later), so the ``IN (SELECT … FROM _lakeslice_ranges)`` filter runs on
  the shards and the scalar bounds arrive as constants; no ``GLOBAL IN`` is needed, which would
  send the ranges twice. The join on the ranges then runs on the server that was asked.
- 18.16 puts a stack trace in exception text, and refuses a login with codes 192/193 where 26.x
  says 516: messages are cut to their first sentence; all three codes mean "auth refused".
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import polars as pl
import pyarrow as pa

from lakeslice.errors import InputError, RunError, one_line, redact, split_credentials
from lakeslice.sources.base import CANDLE_SCHEMA, QUANTBOT_COLUMNS, CandleRequest, SourceInfo

__all__ = [
    "ClickHouseSource",
    "SourceConnectionError",
    "TableInfo",
    "REQUIRED_COLUMNS",
    "check_identifier",
    "candle_query",
]

REQUIRED_COLUMNS = QUANTBOT_COLUMNS
OHLCV = ("open", "high", "low", "close", "volume")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_AUTH_CODES = {192, 193, 516}  # UNKNOWN_USER, WRONG_PASSWORD (18.16); AUTHENTICATION_FAILED
_UNKNOWN_DB_TABLE = {60, 81}
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
PARAMS_STRUCTURE = [
    ("chain", "String"),
    ("interval_s", "UInt32"),
    ("lo_ms", "Int64"),
    ("hi_ms", "Int64"),
    ("lo_s", "UInt32"),
    ("hi_s", "UInt32"),
]


class SourceConnectionError(RunError):
    """The connection failed or dropped (possibly mid-stream): the caller may retry."""

    code = "source_connection_error"
    retryable = True


def check_identifier(name: str, what: str) -> str:
    if not isinstance(name, str) or not _IDENT_RE.match(name):
        raise InputError(f"{what} {name!r}: expected letters, digits and '_', not a leading digit")
    return name


@dataclass(frozen=True)
class TableInfo:
    """What the table looks like: timestamp type, optional ``ver``, server version."""

    timestamp_type: str
    has_ver: bool
    server_version: str = ""

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
    return TableInfo(ts_type, "ver" in columns, version)


def _strip_wrappers(type_name: str) -> str:
    for wrapper in ("LowCardinality(", "Nullable("):
        if type_name.startswith(wrapper):
            type_name = type_name[len(wrapper) : -1]
    return type_name


def candle_query(database: str, table: str, info: TableInfo, *, windows: bool) -> str:
    """The SELECT for a window request (``windows``) or a corpus request.

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
    ver = ", toInt64(ver) AS ver" if info.has_ver else ""
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
    cols = f"mint_id, ts_ms, {', '.join(OHLCV)}" + (", ver" if info.has_ver else "")
    inner += f" AND token_address IN (SELECT token_address FROM {RANGES_TABLE})"
    return (
        f"SELECT {cols} FROM ({inner}) AS c"
        f" ALL INNER JOIN {RANGES_TABLE} AS r USING (token_address)"
        " WHERE ts_ms >= start_ms AND ts_ms < end_ms"
    )


def count_query(database: str, table: str, info: TableInfo) -> str:
    """Candles per mint in the params' time bounds (corpus planning); duplicates included."""
    corpus = candle_query(database, table, info, windows=False)
    return f"SELECT mint, toInt64(count()) AS rows FROM ({corpus}) AS q GROUP BY mint"


def counts_frame(batches: list[pa.RecordBatch]) -> pl.DataFrame:
    """``mint, rows`` sorted by mint, whatever order the server sent."""
    if not batches:
        return pl.DataFrame(schema={"mint": pl.String, "rows": pl.Int64})
    frame = pl.from_arrow(pa.Table.from_batches(batches))
    return frame.select(pl.col("mint").cast(pl.String), pl.col("rows").cast(pl.Int64)).sort("mint")


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
            first, last = int(frame["start_ms"].min()), int(frame["end_ms"].max())
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


def to_candle_batch(batch: pa.RecordBatch, mints: pa.Array | None, has_ver: bool) -> pa.RecordBatch:
    """A result batch in CANDLE_SCHEMA (dictionary ``mint`` for window requests)."""
    n = batch.num_rows
    if mints is None:
        mint = batch.column("mint").cast(pa.string())
        schema = CANDLE_SCHEMA
    else:
        ids = batch.column("mint_id").cast(pa.int32())
        mint = pa.DictionaryArray.from_arrays(ids, mints)
        schema = DICT_CANDLE_SCHEMA
    ver = batch.column("ver") if has_ver else pa.array(np.zeros(n, dtype=np.int64))
    cols = [mint, batch.column("ts_ms").cast(pa.int64())]
    cols += [batch.column(c).cast(pa.float64()) for c in OHLCV]
    return pa.RecordBatch.from_arrays([*cols, ver.cast(pa.int64())], schema=schema)


class _Columns(dict):
    """External-table data in the shape the driver's NumPy path reads: ``data[col].values``."""

    class _Col:
        __slots__ = ("values",)

        def __init__(self, values):
            self.values = values

    def __init__(self, columns: dict[str, np.ndarray]):
        super().__init__({k: self._Col(v) for k, v in columns.items()})


def parse_url(url: str) -> dict:
    """``clickhouse[s]://[user[:password]@]host[:port]/database[?compression=lz4&verify=0]``.

    The credentials are split off first (:func:`lakeslice.errors.split_credentials`), so a
    password may hold ``/`` or ``@``; messages show the URL without them.

    >>> p = parse_url("clickhouse://lake:p/w@d@127.0.0.1/quant")
    >>> p["user"], p["password"], p["host"], p["port"], p["database"]
    ('lake', 'p/w@d', '127.0.0.1', 9000, 'quant')
    """
    cred = split_credentials(url)
    shown = cred.location
    parts = urlsplit(cred.location)
    if parts.scheme not in ("clickhouse", "clickhouses"):
        raise InputError(f"source {shown!r}: expected clickhouse:// or clickhouses://")
    secure = parts.scheme == "clickhouses"
    try:
        port = parts.port
    except ValueError:
        raise InputError(f"source {shown!r}: bad port") from None
    if not parts.hostname:
        raise InputError(f"source {shown!r}: missing host")
    database = unquote(parts.path.lstrip("/")) or "default"
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return {
        "host": parts.hostname,
        "port": port or (9440 if secure else 9000),
        "database": database,
        "user": cred.user,
        "password": cred.password,
        "secure": secure,
        "verify": query.get("verify", "1").lower() not in ("0", "false", "no"),
        "compression": query.get("compression") or False,
    }


class SqlCandleSource:
    """What the ClickHouse server and chdb share: the same SQL over the same request tables.

    Subclasses provide ``database``, ``table``, ``describe()`` and ``_stream(sql, data)``.
    """

    #: Estimated candle rows per bucket group. The primary key prunes every query, so small
    #: groups cost little here and keep peak memory low (see benchmarks/README.md).
    group_rows = 400_000

    def fetch(self, request: CandleRequest) -> Iterator[pa.RecordBatch]:
        """Stream the request's candles (a dropped server connection: SourceConnectionError)."""
        info = self.describe()
        data = request_data(request)
        if data.ranges is not None and not len(data.mints):
            return
        sql = candle_query(self.database, self.table, info, windows=data.ranges is not None)
        for batch in self._stream(sql, data):
            yield to_candle_batch(batch, data.mints, info.has_ver)

    def mint_counts(self, *, chain: str, interval_s: int, start_ms: int, end_ms: int) -> pl.DataFrame:
        info = self.describe()
        data = request_data(CandleRequest(chain, interval_s, None, start_ms, end_ms))
        return counts_frame(list(self._stream(count_query(self.database, self.table, info), data)))


class ClickHouseSource(SqlCandleSource):
    """``clickhouse://`` candles; one native connection, opened on first use."""

    kind = "clickhouse"

    def __init__(
        self,
        host: str,
        database: str = "default",
        *,
        port: int = 9000,
        table: str = "ohlcv_candles",
        user: str | None = None,
        password: str | None = None,
        secure: bool = False,
        verify: bool = True,
        compression: str | bool = False,
        connect_timeout: float = 10,
        send_receive_timeout: float = 300,
    ):
        self.host, self.port = host, int(port)
        self.database = check_identifier(database, "database")
        self.table = check_identifier(table, "table")
        self.user = user or os.environ.get("LAKESLICE_CLICKHOUSE_USER") or "default"
        if password is None:
            password = os.environ.get("LAKESLICE_CLICKHOUSE_PASSWORD", "")
        self._password = password
        self._client_kwargs = dict(
            secure=secure,
            verify=verify,
            compression=compression,
            connect_timeout=connect_timeout,
            send_receive_timeout=send_receive_timeout,
        )
        self._client = None
        self._info: TableInfo | None = None
        self.label = f"clickhouse:{self.database}.{self.table}"

    @classmethod
    def from_url(cls, url: str, *, table: str = "ohlcv_candles") -> ClickHouseSource:
        args = parse_url(url)
        return cls(args.pop("host"), args.pop("database"), table=table, **args)

    @property
    def where(self) -> str:
        return f"ClickHouse {self.host}:{self.port} {self.database}.{self.table}"

    def snapshot(self) -> SourceInfo:
        return {
            "kind": self.kind,
            "host": f"{self.host}:{self.port}",
            "database": self.database,
            "table": self.table,
        }

    def _connect(self):
        if self._client is None:
            from clickhouse_driver import Client

            self._client = Client(
                self.host,
                port=self.port,
                user=self.user,
                password=self._password,
                database="default",  # the target database may not exist: we report that ourselves
                client_name="lakeslice",
                settings={"use_numpy": True},
                **self._client_kwargs,
            )
        return self._client

    def describe(self) -> TableInfo:
        """Server version and the table's schema (cached); RunError when unusable."""
        if self._info is None:
            target = {
                "db": np.array([self.database], dtype=object),
                "tbl": np.array([self.table], dtype=object),
            }
            ext = [
                {
                    "name": "_lakeslice_target",
                    "structure": [("db", "String"), ("tbl", "String")],
                    "data": _Columns(target),
                }
            ]
            try:
                client = self._connect()
                version = str(client.execute("SELECT version()")[0][0])
                rows = client.execute(
                    "SELECT name, type FROM system.columns"
                    " WHERE database IN (SELECT db FROM _lakeslice_target)"
                    " AND table IN (SELECT tbl FROM _lakeslice_target)",
                    external_tables=ext,
                    columnar=True,
                )
            except Exception as exc:
                raise self._error(exc, "cannot read the table schema") from exc
            columns = dict(zip(rows[0], rows[1], strict=True)) if rows else {}
            self._info = table_info(columns, self.where, version)
        return self._info

    def _stream(self, sql: str, data: RequestData) -> Iterator[pa.RecordBatch]:
        ext = [{"name": PARAMS_TABLE, "structure": PARAMS_STRUCTURE, "data": _Columns(data.params)}]
        if data.ranges is not None:
            ext.append({"name": RANGES_TABLE, "structure": RANGES_STRUCTURE, "data": _Columns(data.ranges)})
        finished = False
        try:
            reader = self._connect().query_arrow_stream(
                sql, external_tables=ext, settings={"use_numpy": True}, field_metadata=False
            )
            for batch in reader:
                if batch.num_rows:
                    yield batch
            finished = True
        except GeneratorExit:
            raise
        except Exception as exc:
            raise self._error(exc, "query failed") from exc
        finally:
            if not finished and self._client is not None:
                # Abandoned or broken stream: drop the connection rather than drain it.
                self._client.disconnect()

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client = None

    def __enter__(self) -> ClickHouseSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- errors -------------------------------------------------------------------------------

    def _error(self, exc: BaseException, what: str) -> RunError:
        from clickhouse_driver import errors

        code = getattr(exc, "code", None)
        text = redact(one_line(exc).rstrip(". "), secrets=[self._password])
        if isinstance(exc, errors.ServerException):
            if code in _AUTH_CODES:
                user = self.user
                return RunError(f"{self.where}: authentication failed for user {user!r}: {text}")
            if code in _UNKNOWN_DB_TABLE:
                return RunError(f"{self.where}: table not found: {text}")
            return RunError(f"{self.where}: {what}: {text}")
        dropped = (errors.NetworkError, errors.SocketTimeoutError, errors.UnexpectedPacketFromServerError)
        if isinstance(exc, (*dropped, EOFError, OSError)):
            text = text or type(exc).__name__
            return SourceConnectionError(f"{self.where}: connection failed or dropped: {text}")
        return RunError(f"{self.where}: {what}: {type(exc).__name__}: {text}")
