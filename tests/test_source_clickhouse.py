"""ClickHouseSource against a real server (tests/chserver.py): exact rows, values as data, errors."""

from __future__ import annotations

import tempfile
from collections import Counter

import polars as pl
import pyarrow as pa
import pytest
from chserver import ClickHouseServer
from conftest import load_candles
from support import reference as ref
from support.data import HOSTILE, quantbot_row

from lakeslice.sources.base import CANDLE_SCHEMA, CandleRequest, quantbot_ddl
from lakeslice.sources.clickhouse import ClickHouseSource, SourceConnectionError, parse_url
from lakeslice.spec import InputError, RunError

PASSWORD = "s3cret-pw"
MINTS = [
    "So11111111111111111111111111111111111111112",
    HOSTILE,
    "tab\there",
    'quo"te`back`tick',
    "ünïcødé 🚀 ミント",
    " ",
    "back\\slash\nnewline",
]
T0 = 1_700_000_040  # a minute boundary, epoch seconds


def make_rows(n_minutes: int = 240) -> list[dict]:
    """Candles of several mints, chains and intervals, with duplicate keys (ver decides)."""
    rows = []
    for m, mint in enumerate(MINTS):
        for i in range(n_minutes):
            for chain, interval in (("solana", 60), ("solana", 300), ("ethereum", 60)):
                if interval == 300 and i % 5:
                    continue
                px = 1.0 + m + i / 1000 + (0.5 if chain == "ethereum" else 0) + interval / 1e6
                rows.append(
                    quantbot_row(mint, T0 + 60 * i, chain=chain, interval=interval, px=px, vol=px * 10, ver=1)
                )
            if i % 7 == 0:  # a re-ingested duplicate with another version and other values
                rows.append(quantbot_row(mint, T0 + 60 * i, px=100.0 + m + i, vol=1000.0 + m + i, ver=2))
    return rows


def make_ranges() -> pl.DataFrame:
    """Disjoint half-open ms ranges per mint, some not on second boundaries."""
    out = []
    for m, mint in enumerate(MINTS):
        base = (T0 + 60 * (3 * m)) * 1000
        out += [
            (mint, base, base + 10 * 60_000),
            (mint, base + 30 * 60_000 + 500, base + 45 * 60_000 - 1),
            (mint, base + 100 * 60_000 - 30_000, base + 100 * 60_000 + 1),
        ]
    out.append(("mint-without-candles", T0 * 1000, (T0 + 3600) * 1000))
    frame = pl.DataFrame(out, schema=["mint", "start_ms", "end_ms"], orient="row")
    return frame.sort("mint", "start_ms")


def reference(rows, ranges: pl.DataFrame, chain="solana", interval=60, with_ver=True) -> Counter:
    spans: dict[str, list[tuple[int, int]]] = {}
    for mint, lo, hi in ranges.iter_rows():
        spans.setdefault(mint, []).append((lo, hi))
    want: Counter = Counter()
    for c in ref.quantbot_candles(rows, chain=chain, interval_s=interval):
        if any(lo <= c["ts_ms"] < hi for lo, hi in spans.get(c["mint"], ())):
            want[_key(c["mint"], c["ts_ms"], c, c["ver"] if with_ver else 0)] += 1
    return want


def _key(mint, ts_ms, r, ver):
    return (mint, ts_ms, r["open"], r["high"], r["low"], r["close"], r["volume"], ver)


def fetched(source, request) -> Counter:
    batches = list(source.fetch(request))
    for b in batches:
        assert b.schema.names == CANDLE_SCHEMA.names
        assert b.schema.field("ts_ms").type == pa.int64()
    if not batches:
        return Counter()
    table = pa.Table.from_batches(batches)
    table = table.set_column(0, "mint", table.column("mint").cast(pa.string()))
    return Counter(_key(r["mint"], r["ts_ms"], r, r["ver"]) for r in table.to_pylist())


@pytest.fixture(scope="module")
def rows():
    return make_rows()


@pytest.fixture(scope="module")
def candles(clickhouse_server, rows):
    load_candles(clickhouse_server, "lake", "ohlcv_candles", rows, with_ver=True)
    plain = [{k: v for k, v in r.items() if k != "ver"} for r in rows]
    load_candles(clickhouse_server, "lake", "no_ver", plain)
    load_candles(clickhouse_server, "lake", "other_key", rows, order_by="(chain, timestamp)", with_ver=True)
    return clickhouse_server


def source(server, table="ohlcv_candles", database="lake", **kw):
    return ClickHouseSource.from_url(server.url(database, **kw), table=table)


def test_fetch_is_exactly_the_rows_in_range(candles, rows):
    ranges = make_ranges()
    with source(candles) as src:
        got = fetched(src, CandleRequest("solana", 60, ranges))
        assert got == reference(rows, ranges)
        assert sum(got.values()) > 150 and {k[0] for k in got} == set(MINTS)
        assert {k[7] for k in got} == {1, 2}  # duplicates of both versions are all returned
        # the same source answers again (connection reuse, cached schema)
        assert fetched(src, CandleRequest("ethereum", 60, ranges)) == reference(
            rows, ranges, chain="ethereum"
        )
        assert fetched(src, CandleRequest("solana", 300, ranges)) == reference(rows, ranges, interval=300)


def test_table_without_ver_yields_zero(candles, rows):
    ranges = make_ranges()
    with source(candles, table="no_ver") as src:
        assert fetched(src, CandleRequest("solana", 60, ranges)) == reference(rows, ranges, with_ver=False)


def test_other_sorting_key_same_rows(candles, rows):
    ranges = make_ranges()
    with source(candles, table="other_key") as src:
        assert fetched(src, CandleRequest("solana", 60, ranges)) == reference(rows, ranges)


def test_hostile_mints_are_data_and_the_table_survives(candles, rows):
    ranges = pl.DataFrame({"mint": [HOSTILE], "start_ms": [T0 * 1000], "end_ms": [(T0 + 86400) * 1000]})
    with source(candles) as src:
        got = fetched(src, CandleRequest("solana", 60, ranges))
        assert got == reference(rows, ranges) and got
        assert {k[0] for k in got} == {HOSTILE}
        # hostile chain: no rows, no error
        assert fetched(src, CandleRequest("sol'; DROP TABLE ohlcv_candles; --", 60, ranges)) == {}
    client = candles.client()
    assert client.execute("EXISTS TABLE lake.ohlcv_candles") == [(1,)]
    assert client.execute("SELECT count() FROM lake.ohlcv_candles") == [(len(rows),)]


def test_mint_column_is_dictionary_over_request_mints(candles):
    ranges = make_ranges()
    with source(candles) as src:
        batch = next(iter(src.fetch(CandleRequest("solana", 60, ranges))))
    assert pa.types.is_dictionary(batch.schema.field("mint").type)
    assert set(batch.column("mint").dictionary.to_pylist()) == set(ranges["mint"].to_list())


def test_empty_request_yields_nothing(candles):
    empty = pl.DataFrame(schema={"mint": pl.String, "start_ms": pl.Int64, "end_ms": pl.Int64})
    with source(candles) as src:
        assert list(src.fetch(CandleRequest("solana", 60, empty))) == []


def test_corpus_mode_all_mints_between_bounds(candles, rows):
    lo, hi = (T0 + 600) * 1000 + 1, (T0 + 7200) * 1000
    with source(candles) as src:
        got = fetched(src, CandleRequest("solana", 60, None, start_ms=lo, end_ms=hi))
        everything = fetched(src, CandleRequest("solana", 60, None))
    spans = pl.DataFrame({"mint": MINTS, "start_ms": [lo] * len(MINTS), "end_ms": [hi] * len(MINTS)})
    assert got == reference(rows, spans)
    assert sum(everything.values()) == sum(
        1 for r in rows if r["chain"] == "solana" and r["interval_seconds"] == 60
    )


def test_many_blocks_stream(clickhouse_server):
    n_mints, per = 50, 3000
    big = [
        quantbot_row(f"m{m:03d}", T0 + 60 * i, px=float(i), vol=float(i) * 10, ver=0)
        for m in range(n_mints)
        for i in range(per)
    ]
    load_candles(clickhouse_server, "lake", "big", big)
    ranges = pl.DataFrame(
        {
            "mint": [f"m{m:03d}" for m in range(n_mints)],
            "start_ms": [T0 * 1000] * n_mints,
            "end_ms": [(T0 + 60 * per) * 1000] * n_mints,
        }
    )
    with source(clickhouse_server, table="big") as src:
        batches = list(src.fetch(CandleRequest("solana", 60, ranges)))
    assert sum(b.num_rows for b in batches) == n_mints * per
    assert len(batches) > 1


# -- URLs and credentials -----------------------------------------------------------------------


def test_parse_url():
    args = parse_url("clickhouses://us%40er:p%40ss%2Fw@db.example:9441/quant")
    assert (args["host"], args["port"], args["database"]) == ("db.example", 9441, "quant")
    assert (args["user"], args["password"], args["secure"]) == ("us@er", "p@ss/w", True)
    assert parse_url("clickhouses://h/db")["port"] == 9440
    assert parse_url("clickhouse://h/db")["port"] == 9000
    assert parse_url("clickhouse://h")["database"] == "default"
    with pytest.raises(InputError):
        parse_url("http://h/db")
    with pytest.raises(InputError) as err:
        ClickHouseSource.from_url("clickhouse://u:pw@h/bad-db")
    assert "pw" not in str(err.value).replace("bad-db", "")


def test_label_and_snapshot_have_no_secret(clickhouse_server):
    src = source(clickhouse_server, user="lake", password=PASSWORD)
    assert src.label == "clickhouse:lake.ohlcv_candles"
    snap = src.snapshot()
    assert snap["kind"] == "clickhouse" and snap["database"] == "lake"
    assert snap["table"] == "ohlcv_candles" and PASSWORD not in repr(snap)
    assert PASSWORD not in repr(src.__dict__.get("label"))


def test_password_user_can_read(candles, rows):
    ranges = make_ranges()
    with source(candles, user="lake", password=PASSWORD) as src:
        assert fetched(src, CandleRequest("solana", 60, ranges)) == reference(rows, ranges)


def test_credentials_from_environment(candles, rows, monkeypatch):
    monkeypatch.setenv("LAKESLICE_CLICKHOUSE_USER", "lake")
    monkeypatch.setenv("LAKESLICE_CLICKHOUSE_PASSWORD", PASSWORD)
    ranges = make_ranges()
    with source(candles) as src:
        assert src.user == "lake"
        assert fetched(src, CandleRequest("solana", 60, ranges)) == reference(rows, ranges)
    monkeypatch.setenv("LAKESLICE_CLICKHOUSE_PASSWORD", "wrong-" + PASSWORD)
    with source(candles) as src, pytest.raises(RunError) as err:
        list(src.fetch(CandleRequest("solana", 60, ranges)))
    assert PASSWORD not in str(err.value)


# -- errors -------------------------------------------------------------------------------------


def _run_error(src) -> str:
    with pytest.raises(RunError) as err:
        list(src.fetch(CandleRequest("solana", 60, make_ranges())))
    src.close()
    message = str(err.value)
    assert "\n" not in message and PASSWORD not in message
    return message


def test_missing_table(candles):
    msg = _run_error(source(candles, table="nope", user="lake", password=PASSWORD))
    assert f"127.0.0.1:{candles.port}" in msg and "lake.nope" in msg and "not found" in msg


def test_missing_database(candles):
    msg = _run_error(source(candles, database="nodb", user="lake", password=PASSWORD))
    assert "nodb.ohlcv_candles" in msg and "not found" in msg


def test_missing_columns(candles):
    client = candles.client()
    client.execute("DROP TABLE IF EXISTS lake.partial")
    client.execute(
        "CREATE TABLE lake.partial (token_address String, timestamp DateTime, open Float64)"
        " ENGINE = MergeTree() ORDER BY token_address"
    )
    msg = _run_error(source(candles, table="partial", user="lake", password=PASSWORD))
    assert "lake.partial" in msg and "chain" in msg and "interval_seconds" in msg


def test_wrong_password(candles):
    src = source(candles, user="lake", password="not-" + PASSWORD)
    msg = _run_error(src)
    assert "authentication" in msg and "lake.ohlcv_candles" in msg
    assert f"127.0.0.1:{candles.port}" in msg


def test_unreachable_port_is_a_connection_error():
    from chserver import free_port

    port = free_port()
    src = ClickHouseSource.from_url(f"clickhouse://lake:{PASSWORD}@127.0.0.1:{port}/lake")
    with pytest.raises(SourceConnectionError) as err:
        list(src.fetch(CandleRequest("solana", 60, make_ranges())))
    msg = str(err.value)
    assert f"127.0.0.1:{port}" in msg and "lake.ohlcv_candles" in msg and PASSWORD not in msg


N_MINTS, PER_MINT = 40, 20_000


def _numbers_table(server) -> tuple[pl.DataFrame, int]:
    """``lake.ohlcv_candles`` of 40 mints × 20,000 minutes; ranges covering all of it."""
    client = server.client()
    client.execute("CREATE DATABASE lake")
    client.execute(quantbot_ddl("lake.ohlcv_candles"))
    # Bulk rows generated server-side from fixed text (no user values involved).
    client.execute(
        f"INSERT INTO lake.ohlcv_candles SELECT concat('m', toString(number % {N_MINTS})), 'solana',"
        f" toDateTime({T0} + 60 * intDiv(number, {N_MINTS})), 60, number, number, number, number,"
        f" number FROM system.numbers LIMIT {N_MINTS * PER_MINT}"
    )
    client.disconnect()
    mints = sorted(f"m{m}" for m in range(N_MINTS))
    end = (T0 + 60 * PER_MINT) * 1000
    ranges = pl.DataFrame({"mint": mints, "start_ms": [0] * N_MINTS, "end_ms": [end] * N_MINTS})
    return ranges, PER_MINT


@pytest.mark.clickhouse
@pytest.mark.slow
def test_server_dies_mid_stream_then_recovers(tmp_path):
    """A killed server mid-stream is a SourceConnectionError; after restart the source works."""
    with ClickHouseServer(tmp_path / "ch") as server:
        ranges, per = _numbers_table(server)
        src = ClickHouseSource.from_url(server.url("lake", "lake", PASSWORD))
        stream = src.fetch(CandleRequest("solana", 60, ranges))
        first = next(stream)
        assert first.num_rows > 0
        server.kill()
        with pytest.raises(SourceConnectionError) as err:
            for _ in stream:
                pass
        assert f"127.0.0.1:{server.port}" in str(err.value) and PASSWORD not in str(err.value)
        server.start()
        total = sum(b.num_rows for b in src.fetch(CandleRequest("solana", 60, ranges)))
        assert total == N_MINTS * per
        src.close()


# -- many groups in shared queries (prepare) -------------------------------------------------


def _groups(ranges: pl.DataFrame, n: int) -> list[pl.DataFrame]:
    """The ranges split into ``n`` requests of whole mints (as bucket groups are)."""
    mints = sorted(ranges["mint"].unique().to_list())
    return [ranges.filter(pl.col("mint").is_in(mints[i::n])) for i in range(n)]


@pytest.mark.parametrize("prefetch_rows", [1, 10**9], ids=["a-query-per-group", "one-query"])
def test_prepared_groups_get_exactly_their_rows(candles, rows, prefetch_rows):
    """Each group of a shared query gets its own rows, no other's, in either chunking; a group
    prepared but fetched out of order still gets them; a request not prepared asks on its own."""
    groups = _groups(make_ranges(), 3)
    with source(candles) as src:
        src.prefetch_rows = prefetch_rows
        src.prepare([CandleRequest("solana", 60, g) for g in groups])
        assert src._routed is not None
        order = [0, 2, 1]  # out of order: group 1 waits in its spill file
        got = {i: fetched(src, CandleRequest("solana", 60, groups[i])) for i in order}
        for i, g in enumerate(groups):
            assert got[i] == reference(rows, g)
            assert sum(got[i].values()) > 20
        # handed out once: asking again runs the group's own query, same rows
        assert fetched(src, CandleRequest("solana", 60, groups[0])) == reference(rows, groups[0])


def test_prepare_skips_mixed_or_single_requests(candles):
    groups = _groups(make_ranges(), 2)
    with source(candles) as src:
        src.prepare([CandleRequest("solana", 60, groups[0])])
        assert src._routed is None  # one group: nothing to share
        src.prepare([CandleRequest("solana", 60, groups[0]), CandleRequest("solana", 300, groups[1])])
        assert src._routed is None  # two intervals: two different queries


def test_export_is_the_same_with_and_without_shared_queries(candles, tmp_path, monkeypatch):
    """Bytes of a many-group export do not depend on how the groups were fetched."""
    from lakeslice.export import export_run_slices

    alerts = pl.DataFrame(
        {"mint": MINTS, "ts": [(T0 + 60 * (40 + 7 * m)) * 1000 for m in range(len(MINTS))]}
    ).with_columns(pl.from_epoch("ts", time_unit="ms").dt.replace_time_zone("UTC"))
    monkeypatch.setattr(ClickHouseSource, "group_rows", 30)  # a group per bucket or two
    spill = tmp_path / "tmp"
    spill.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill))
    sha = {}
    for prefetch_rows in (0, 10**9, 1):
        monkeypatch.setattr(ClickHouseSource, "prefetch_rows", prefetch_rows)
        with source(candles) as src:
            res = export_run_slices(
                alerts,
                interval="1m",
                window="pre5_post20",
                source=src,
                data_root=tmp_path / str(prefetch_rows),
                run_id="r",
            )
        assert len(res.manifest["files"]) > 4
        sha[prefetch_rows] = (res.manifest["content_sha256"], res.rows_fetched)
    assert sha[0] == sha[10**9] == sha[1]
    assert sha[0][1] > 100
    assert list(spill.iterdir()) == []  # the spill went with the source


@pytest.mark.clickhouse
@pytest.mark.slow
def test_shared_query_fails_groups_ask_on_their_own(tmp_path):
    """The server dies between two shared queries: the group already spilled reads its rows,
    the next shared query fails, and every later group asks on its own (after the restart)
    and still gets all its rows."""
    import time

    from lakeslice.export import fetch_frame
    from lakeslice.sources.base import Retry

    with ClickHouseServer(tmp_path / "ch") as server:
        ranges, per = _numbers_table(server)
        groups = _groups(ranges, 4)
        src = ClickHouseSource.from_url(server.url("lake", "lake", PASSWORD))
        src.retry = Retry(retries=8, first_wait=0.5)
        src.prefetch_rows = 1  # a query per group; the next starts once the last is read
        src.prepare([CandleRequest("solana", 60, g) for g in groups])
        routed = src._routed
        assert routed is not None
        deadline = time.monotonic() + 60
        while not routed._complete[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()
        frames = [fetch_frame(src, chain="solana", interval_s=60, ranges=groups[0], buckets=("00",))]
        deadline = time.monotonic() + 60
        while routed._error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert routed._error is not None and not any(routed._complete[1:])
        server.start()
        frames += [
            fetch_frame(src, chain="solana", interval_s=60, ranges=g, buckets=("00",)) for g in groups[1:]
        ]
        for g, frame in zip(groups, frames, strict=True):
            assert frame.height == g.height * per
            assert frame["ts_ms"].n_unique() == per
            assert sorted(frame["mint"].cast(pl.String).unique()) == sorted(g["mint"])
        src.close()
