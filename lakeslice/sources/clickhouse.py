"""Candles from a ClickHouse server over the native protocol (SPEC §2).

The SQL and the request tables are shared with chdb (``sources/sql.py``); here the request
tables travel as native-protocol external tables, and results stream one ClickHouse block ->
one Arrow record batch through lakeslice's own column decoder (``sources/native.py``): no
Python object per row, and no pandas (the driver's NumPy path imports it).

The mint string is not sent back per row: the ranges table carries a dense ``mint_id`` and the
server returns it; batches rebuild ``mint`` as a dictionary array over the request's mints.

18.16 puts a stack trace in exception text, and refuses a login with codes 192/193 where 26.x
says 516: messages are cut to their first sentence; all three codes mean "auth refused".
A ``Distributed`` table works as it is: the server forwards a query's external tables to every
shard (18.16 and later), so the ``IN (SELECT … FROM _lakeslice_ranges)`` filter runs on the
shards; no ``GLOBAL IN`` is needed, which would send the ranges twice.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa

from lakeslice.errors import InputError, RunError, one_line, redact, split_credentials
from lakeslice.sources.base import Retry, SourceInfo
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

__all__ = ["ClickHouseSource", "SourceConnectionError", "parse_url"]

_AUTH_CODES = {192, 193, 516}  # UNKNOWN_USER, WRONG_PASSWORD (18.16); AUTHENTICATION_FAILED
_UNKNOWN_DB_TABLE = {60, 81}


class SourceConnectionError(RunError):
    """The connection failed or dropped (possibly mid-stream): the caller may retry."""

    code = "source_connection_error"
    retryable = True


#: URL query options: name -> (parser, default). Timeouts in seconds; see sources/base.Retry.
URL_OPTIONS = {
    "connect_timeout": 10.0,
    "receive_timeout": 300.0,
    "retries": 6,
    "retry_wait": 0.5,
    "compression": "",
    "verify": "1",
}


def parse_url(url: str) -> dict:
    """``clickhouse[s]://[user[:password]@]host[:port]/database[?option=value&...]``.

    Options: ``connect_timeout`` and ``receive_timeout`` (seconds, default 10 and 300),
    ``retries`` (default 6) and ``retry_wait`` (first wait in seconds, doubling, default 0.5)
    for a dropped connection, ``compression`` (``lz4``, ``zstd``), ``verify=0`` (TLS).

    >>> parse_url("clickhouse://h/db?receive_timeout=5")["send_receive_timeout"]
    5.0
    """
    cred = split_credentials(url)  # a password may hold "/" or "@": split it off first
    shown = cred.location
    try:
        parts = urlsplit(cred.location)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:  # e.g. "Invalid IPv6 URL", a port out of range
        raise InputError(f"source {shown!r}: malformed URL ({exc})") from None
    if parts.scheme not in ("clickhouse", "clickhouses"):
        raise InputError(f"source {shown!r}: expected clickhouse:// or clickhouses://")
    secure = parts.scheme == "clickhouses"
    if not host:
        raise InputError(f"source {shown!r}: missing host")
    database = unquote(parts.path.lstrip("/")) or "default"
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = sorted(set(query) - set(URL_OPTIONS))
    if unknown:
        raise InputError(
            f"source {shown!r}: unknown URL option {unknown[0]!r} (known: {', '.join(URL_OPTIONS)})"
        )
    opts = {k: query.get(k, str(v)) for k, v in URL_OPTIONS.items()}
    return {
        "host": host,
        "port": port or (9440 if secure else 9000),
        "database": database,
        "user": cred.user,
        "password": cred.password,
        "secure": secure,
        "verify": opts["verify"].lower() not in ("0", "false", "no"),
        "compression": opts["compression"] or False,
        "connect_timeout": _seconds(opts, "connect_timeout", shown),
        "send_receive_timeout": _seconds(opts, "receive_timeout", shown),
        "retry": Retry(
            retries=_count(opts, "retries", shown), first_wait=_seconds(opts, "retry_wait", shown, zero=True)
        ),
    }


def _seconds(opts: dict, name: str, shown: str, *, zero: bool = False) -> float:
    try:
        value = float(opts[name])
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and (value >= 0 if zero else value > 0) and value <= 86_400):
        raise InputError(
            f"source {shown!r}: URL option {name}={opts[name]!r}: expected seconds, 0 < s <= 86400"
        )
    return value


def _count(opts: dict, name: str, shown: str) -> int:
    text = opts[name]
    if not text.isdigit() or int(text) > 20:
        raise InputError(f"source {shown!r}: URL option {name}={text!r}: expected 0 to 20")
    return int(text)


class ClickHouseSource(SqlCandleSource):
    """``clickhouse://`` candles; one native connection, opened on first use."""

    kind = "clickhouse"
    #: One shared query per ~4 M estimated rows (see SqlCandleSource.prepare): the server
    #: holds that many rows while it sorts them by group.
    prefetch_rows = 4_000_000

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
        retry: Retry | None = None,
    ):
        self.host, self.port = host, int(port)
        self.database = check_identifier(database, "database")
        self.table = check_identifier(table, "table")
        self.user = user or os.environ.get("LAKESLICE_CLICKHOUSE_USER") or "default"
        self._password = password if password is not None else _password_from_environment()
        self._client_kwargs = dict(
            secure=secure,
            verify=verify,
            compression=compression,
            connect_timeout=connect_timeout,
            send_receive_timeout=send_receive_timeout,
        )
        self.retry = retry or Retry()
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
            # The driver builds a table of every date at import (0.2 s) unless told to build it
            # lazily; candle queries read no date column.
            os.environ.setdefault("CLICKHOUSE_DRIVER_LASY_DATE_LUT", "lazy")
            from clickhouse_driver import Client

            self._client = Client(
                self.host,
                port=self.port,
                user=self.user,
                password=self._password,
                database="default",  # the target database may not exist: we report that ourselves
                client_name="lakeslice",
                **self._client_kwargs,
            )
        return self._client

    def describe(self) -> TableInfo:
        """Server version and the table's schema (cached); RunError when unusable."""
        if self._info is None:
            target = {"db": self.database, "tbl": self.table}
            ext = [
                {
                    "name": "_lakeslice_target",
                    "structure": [("db", "String"), ("tbl", "String")],
                    "data": [target],
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
        from .native import arrow_blocks, send_tables, stream_batches  # imports the driver: after _connect

        tables = [(PARAMS_TABLE, PARAMS_STRUCTURE, data.params)]
        if data.ranges is not None:
            tables.append((RANGES_TABLE, ranges_structure(data.ranges), data.ranges))
        finished = False
        try:
            client = self._connect()
            with client.disconnect_on_error(sql, None):
                arrow_blocks(client.connection)
                client.connection.send_query(sql)
                send_tables(client.connection, tables)
            yield from stream_batches(client)
            finished = True
        except GeneratorExit:
            raise
        except Exception as exc:
            raise self._error(exc, "query failed") from exc
        finally:
            if not finished and self._client is not None:
                # Abandoned or broken stream: drop the connection rather than drain it.
                self._client.disconnect()

    def _fork(self) -> ClickHouseSource:
        twin = copy.copy(self)
        twin._client, twin._routed = None, None
        return twin

    def close(self) -> None:
        self._drop_routed()
        if self._client is not None:
            self._client.disconnect()
            self._client = None

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
        if isinstance(exc, (errors.SocketTimeoutError, TimeoutError)):
            return RunError(f"{self.where}: timed out: {self._timeouts(exc)}")
        dropped = (errors.NetworkError, errors.UnexpectedPacketFromServerError)
        if isinstance(exc, (*dropped, EOFError, OSError)):
            text = text or type(exc).__name__
            return SourceConnectionError(f"{self.where}: connection failed or dropped: {text}")
        return RunError(f"{self.where}: {what}: {type(exc).__name__}: {text}")

    def _timeouts(self, exc: BaseException) -> str:
        """Which timeout ran out, and how to change it: a server that stops answering."""
        kw = self._client_kwargs
        receive = f"receive_timeout={kw['send_receive_timeout']:g}s"
        if isinstance(exc, TimeoutError):  # raised by the socket while a query streams
            said = f"no answer within {receive}"
        else:  # the driver's SocketTimeoutError: while connecting or saying hello
            said = f"no answer while connecting (connect_timeout={kw['connect_timeout']:g}s, {receive})"
        return said + "; change with the URL options ?connect_timeout=SECONDS&receive_timeout=SECONDS"


def _password_from_environment() -> str:
    """``LAKESLICE_CLICKHOUSE_PASSWORD``, else the first line of the file named by
    ``LAKESLICE_CLICKHOUSE_PASSWORD_FILE`` (or ``--password-file``): neither shows in the
    process list, unlike a URL."""
    if "LAKESLICE_CLICKHOUSE_PASSWORD" in os.environ:
        return os.environ["LAKESLICE_CLICKHOUSE_PASSWORD"]
    path = os.environ.get("LAKESLICE_CLICKHOUSE_PASSWORD_FILE")
    if not path:
        return ""
    return read_password_file(path, what=f"LAKESLICE_CLICKHOUSE_PASSWORD_FILE={path}")


def read_password_file(path: str, *, what: str) -> str:
    """The first line of ``path``; InputError naming ``what`` and the file, never its content.

    >>> read_password_file("/nonexistent/pw", what="--password-file /nonexistent/pw")
    Traceback (most recent call last):
    ...
    lakeslice.errors.InputError: --password-file /nonexistent/pw: cannot read (No such file or directory)
    """
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__
        raise InputError(f"{what}: cannot read ({why})") from None
    return text.splitlines()[0] if text else ""
