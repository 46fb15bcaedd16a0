"""Shared fixtures. ClickHouse first: a real server, never a mock, never a silent skip."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from chserver import ClickHouseServer, find_server_binary  # noqa: E402

from lakeslice.sources.base import QUANTBOT_COLUMNS, quantbot_ddl  # noqa: E402


class ExternalServer:
    """A server given by ``LAKESLICE_TEST_CLICKHOUSE_URL``: same surface, no stop/start."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 9000
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else ""

    def url(self, database="default", user=None, password=None):
        if user is None and self.user:
            user, password = self.user, self.password
        cred = f"{user}:{password}@" if user and password is not None else (f"{user}@" if user else "")
        return f"clickhouse://{cred}{self.host}:{self.port}/{database}"

    def client(self, **kwargs):
        from clickhouse_driver import Client

        kwargs.setdefault("user", self.user or "default")
        kwargs.setdefault("password", self.password)
        return Client(self.host, port=self.port, **kwargs)

    def stop(self):
        pytest.skip("LAKESLICE_TEST_CLICKHOUSE_URL server cannot be stopped by the tests")

    start = kill = stop


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Every test that needs the server (directly or through a fixture) is marked ``clickhouse``."""
    for item in items:
        if {"clickhouse_server", "dedicated_server"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.clickhouse)


@pytest.fixture(scope="session")
def clickhouse_server():
    """One ClickHouse server for the session (or the one in LAKESLICE_TEST_CLICKHOUSE_URL)."""
    url = os.environ.get("LAKESLICE_TEST_CLICKHOUSE_URL")
    if url:
        yield ExternalServer(url)
        return
    yield from _local_server()


@pytest.fixture
def dedicated_server():
    """A server of the test's own, free to kill (an external server cannot be)."""
    if os.environ.get("LAKESLICE_TEST_CLICKHOUSE_URL") and find_server_binary() is None:
        pytest.skip("LAKESLICE_TEST_CLICKHOUSE_URL is set and no local clickhouse-server to kill")
    yield from _local_server()


def _local_server():
    if find_server_binary() is None:
        pytest.fail(
            "clickhouse-server is not installed: run `make clickhouse` (or set "
            "LAKESLICE_TEST_CLICKHOUSE_URL=clickhouse://host:port/db)",
            pytrace=False,
        )
    server = ClickHouseServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def _epoch(value, scale: int) -> int:
    """Raw DateTime/DateTime64 ticks: ints are epoch seconds; naive datetimes are UTC."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return round(value.timestamp() * scale)
    return int(value) * scale


def load_candles(
    server,
    database: str,
    table: str,
    rows: Iterable[Mapping] | object,
    *,
    timestamp_type: str = "DateTime",
    order_by: str = "(token_address, interval_seconds, timestamp)",
    with_ver: bool = False,
) -> int:
    """(Re)create the QuantBot table ``database.table`` and insert ``rows`` as data.

    ``rows``: dicts (or a Polars/Arrow frame) with the QuantBot columns (+ ``ver``);
    ``timestamp`` is epoch seconds or a datetime. Only trusted test text goes into the DDL.
    """
    if hasattr(rows, "to_pylist"):
        rows = rows.to_pylist()
    elif hasattr(rows, "to_dicts"):
        rows = rows.to_dicts()
    rows = list(rows)
    cols = QUANTBOT_COLUMNS + (("ver",) if with_ver else ())
    scale = 1000 if timestamp_type.startswith("DateTime64") else 1
    data = [[r[c] for r in rows] for c in cols]
    data[2] = [_epoch(v, scale) for v in data[2]]
    data[3] = [int(v) for v in data[3]]
    client = server.client()
    try:
        client.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        client.execute(f"DROP TABLE IF EXISTS `{database}`.`{table}`")
        target = f"`{database}`.`{table}`"
        client.execute(
            quantbot_ddl(target, timestamp_type=timestamp_type, order_by=order_by, with_ver=with_ver)
        )
        if rows:
            client.execute(
                f"INSERT INTO `{database}`.`{table}` ({', '.join(cols)}) VALUES",
                data,
                columnar=True,
            )
    finally:
        client.disconnect()
    return len(rows)


@pytest.fixture
def candle_loader(clickhouse_server):
    """``load(database, table, rows, **kw)`` bound to the session server."""

    def load(database, table, rows, **kwargs):
        return load_candles(clickhouse_server, database, table, rows, **kwargs)

    return load


@pytest.fixture(scope="session")
def s3_server():
    """One SeaweedFS S3 server for the session, on free loopback ports, with a key pair."""
    from s3server import s3_fixture

    yield from s3_fixture()
