"""ChdbSource against real embedded ClickHouse: exact rows, DateTime64(3), values as data."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import polars as pl
import pytest
from test_source_clickhouse import HOSTILE, MINTS, T0, _groups, fetched, make_ranges, make_rows, reference

from lakeslice.sources.base import CandleRequest
from lakeslice.sources.embedded import ChdbSource, seed_chdb
from lakeslice.spec import RunError


@pytest.fixture(scope="module")
def rows():
    return make_rows()


@pytest.fixture(scope="module")
def chdb_path(tmp_path_factory, rows):
    """One chdb directory for the module (chdb opens one path per process at a time)."""
    path = tmp_path_factory.mktemp("chdb") / "store"
    frame = pl.DataFrame(rows)
    seed_chdb(path, frame, database="lake")
    seed_chdb(path, frame.drop("ver"), table="no_ver", database="lake")
    seed_chdb(path, frame, table="other_key", database="lake", order_by="(chain, timestamp)")
    return path


def source(path, table="ohlcv_candles"):
    return ChdbSource(path, table=table, database="lake")


def test_fetch_is_exactly_the_rows_in_range(chdb_path, rows):
    ranges = make_ranges()
    with source(chdb_path) as src:
        got = fetched(src, CandleRequest("solana", 60, ranges))
        assert got == reference(rows, ranges)
        assert {k[0] for k in got} == set(MINTS) and {k[7] for k in got} == {1, 2}
        assert fetched(src, CandleRequest("ethereum", 60, ranges)) == reference(
            rows, ranges, chain="ethereum"
        )
        assert fetched(src, CandleRequest("solana", 300, ranges)) == reference(rows, ranges, interval=300)


def test_no_ver_and_other_sorting_key(chdb_path, rows):
    ranges = make_ranges()
    with source(chdb_path, "no_ver") as src:
        assert fetched(src, CandleRequest("solana", 60, ranges)) == reference(rows, ranges, with_ver=False)
    with source(chdb_path, "other_key") as src:
        assert fetched(src, CandleRequest("solana", 60, ranges)) == reference(rows, ranges)


def test_hostile_mints_and_table_survives(chdb_path, rows):
    ranges = pl.DataFrame({"mint": [HOSTILE], "start_ms": [T0 * 1000], "end_ms": [(T0 + 86400) * 1000]})
    with source(chdb_path) as src:
        got = fetched(src, CandleRequest("solana", 60, ranges))
        assert got and got == reference(rows, ranges)
        assert fetched(src, CandleRequest("x'); DROP TABLE lake.ohlcv_candles; --", 60, ranges)) == {}
        everything = fetched(src, CandleRequest("solana", 60, None))
    assert sum(everything.values()) == sum(
        1 for r in rows if r["chain"] == "solana" and r["interval_seconds"] == 60
    )


def test_corpus_mode_bounds(chdb_path, rows):
    lo, hi = (T0 + 600) * 1000 + 1, (T0 + 7200) * 1000
    spans = pl.DataFrame({"mint": MINTS, "start_ms": [lo] * len(MINTS), "end_ms": [hi] * len(MINTS)})
    with source(chdb_path) as src:
        got = fetched(src, CandleRequest("solana", 60, None, start_ms=lo, end_ms=hi))
    assert got == reference(rows, spans)


def test_datetime64_milliseconds(chdb_path):
    base = datetime(2024, 3, 1, tzinfo=timezone.utc)
    base_ms = int(base.timestamp() * 1000)
    ts_ms = [base_ms + 250 * i for i in range(40)]  # four candles per second
    frame = pl.DataFrame(
        {
            "token_address": [MINTS[i % 3] for i in range(40)],
            "chain": ["solana"] * 40,
            "timestamp": pl.Series(ts_ms).cast(pl.Datetime("ms", "UTC")),
            "interval_seconds": [1] * 40,
            **{c: [float(i) for i in range(40)] for c in ("open", "high", "low", "close", "volume")},
        }
    )
    seed_chdb(chdb_path, frame, table="ms", database="lake", timestamp_type="DateTime64(3)")
    ranges = pl.DataFrame(
        {
            "mint": [MINTS[0], MINTS[0], MINTS[1]],
            "start_ms": [base_ms + 1, base_ms + 5000, base_ms],
            "end_ms": [base_ms + 2250, base_ms + 7750, base_ms + 10_000],
        }
    ).sort("mint", "start_ms")
    want = Counter()
    for i, t in enumerate(ts_ms):
        mint = MINTS[i % 3]
        spans = ranges.filter(pl.col("mint") == mint).rows()
        if any(lo <= t < hi for _, lo, hi in spans):
            want[(mint, t, *([float(i)] * 5), 0)] += 1
    with source(chdb_path, "ms") as src:
        assert src.describe().datetime64
        assert fetched(src, CandleRequest("solana", 1, ranges)) == want and want


def test_abandoned_stream_then_next_fetch(chdb_path, rows):
    ranges = make_ranges()
    with source(chdb_path) as src:
        stream = src.fetch(CandleRequest("solana", 60, ranges))
        next(stream)
        stream.close()
        assert fetched(src, CandleRequest("solana", 60, ranges)) == reference(rows, ranges)


def test_label_snapshot_and_errors_do_not_name_the_path(chdb_path):
    src = source(chdb_path)
    assert src.label == "chdb:lake.ohlcv_candles"
    assert str(chdb_path.parent) not in repr(src.snapshot())
    src.close()
    with source(chdb_path, "nope") as missing, pytest.raises(RunError) as err:
        list(missing.fetch(CandleRequest("solana", 60, make_ranges())))
    assert "lake.nope" in str(err.value) and "not found" in str(err.value)
    assert str(chdb_path.parent) not in str(err.value)


def test_missing_columns(chdb_path):
    frame = pl.DataFrame({"token_address": ["a"], "chain": ["solana"], "timestamp": [T0]})
    seed = frame.with_columns(interval_seconds=pl.lit(60), open=pl.lit(1.0), high=pl.lit(1.0))
    seed = seed.with_columns(low=pl.lit(1.0), close=pl.lit(1.0), volume=pl.lit(1.0))
    seed_chdb(chdb_path, seed, table="partial", database="lake")
    from chdb import session

    sess = session.Session(str(chdb_path))
    try:
        sess.query("ALTER TABLE lake.partial DROP COLUMN volume")
        sess.query("ALTER TABLE lake.partial DROP COLUMN chain")
    finally:
        sess.close()
    with source(chdb_path, "partial") as src, pytest.raises(RunError) as err:
        list(src.fetch(CandleRequest("solana", 60, make_ranges())))
    assert "lake.partial" in str(err.value)
    assert "chain" in str(err.value) and "volume" in str(err.value)


@pytest.mark.parametrize("prefetch_rows", [1, 10**9], ids=["a-query-per-group", "one-query"])
def test_prepared_groups_get_exactly_their_rows(chdb_path, rows, prefetch_rows):
    """Shared queries on the source's own session: each group gets its rows and no other's,
    fetched out of order too; the session still answers afterwards."""
    groups = _groups(make_ranges(), 3)
    with source(chdb_path) as src:
        src.prefetch_rows = prefetch_rows
        src.prepare([CandleRequest("solana", 60, g) for g in groups])
        assert src._routed is not None
        got = {i: fetched(src, CandleRequest("solana", 60, groups[i])) for i in (2, 0, 1)}
        for i, g in enumerate(groups):
            assert got[i] == reference(rows, g) and sum(got[i].values()) > 20
        assert fetched(src, CandleRequest("ethereum", 60, groups[0])) == reference(
            rows, groups[0], chain="ethereum"
        )
