"""The data path: the Parquet source reads its files once for all bucket groups, progress
within a group and by stage, and exact Float64 prices from integer Parquet columns."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support import reference as ref
from support.cli import EPOCH, run_cli
from support.runs import all_run_rows

from lakeslice.export import export_run_slices, plan_run
from lakeslice.options import ExportOptions
from lakeslice.progress import STAGES
from lakeslice.sources.parquet import ParquetSource
from lakeslice.synthetic import synthetic_alerts, synthetic_candles

INTERVAL_S = 60
PRE, POST = 20, 40
WINDOW = f"pre{PRE}_post{POST}"
SHAPE = {"mints": 30, "candles_per_mint": 400, "interval_s": INTERVAL_S}


@pytest.fixture(scope="module")
def sorted_source(tmp_path_factory) -> tuple[Path, Path, pl.DataFrame, pl.DataFrame]:
    """A source file sorted by mint and time in many small row groups, alerts on its mints."""
    d = tmp_path_factory.mktemp("engine")
    candles = synthetic_candles(**SHAPE, duplicate_fraction=0.02).sort("token_address", "timestamp")
    alerts = synthetic_alerts(alerts=40, **SHAPE).unique(["mint", "ts_ms"], maintain_order=True)
    candles.write_parquet(d / "candles.parquet", row_group_size=1000)
    alerts.write_parquet(d / "alerts.parquet")
    return d / "candles.parquet", d / "alerts.parquet", candles, alerts


@pytest.fixture
def small_groups(monkeypatch):
    """Groups of about 400 candles, batches of 100 rows and passes of 1,500 source rows:
    several groups from the small source, several batches per group, several passes that
    start inside row groups."""
    monkeypatch.setattr(ParquetSource, "group_rows", 400)
    monkeypatch.setattr(ParquetSource, "batch_rows", 100)
    monkeypatch.setattr(ParquetSource, "pass_rows", 1_500)


def _reference_rows(candles: pl.DataFrame, alerts: pl.DataFrame) -> list[tuple]:
    rows = ref.quantbot_candles(candles.to_dicts(), interval_s=INTERVAL_S)
    wanted = [{"alert_id": "", "mint": a["mint"], "ts_ms": a["ts_ms"]} for a in alerts.to_dicts()]
    return [
        (c["mint"], c["ts_ms"], *(c[k] for k in ref.OHLCV))
        for c in ref.slice_rows(rows, wanted, INTERVAL_S, PRE, POST)
    ]


def _lake_rows(run_dir: Path) -> list[tuple]:
    return [
        (r["mint"], r["ts_ms"], *(r[k] for k in ref.OHLCV))
        for r in sorted(all_run_rows(run_dir), key=lambda r: (r["mint"], r["ts_ms"]))
    ]


def test_prepared_source_reads_the_file_once(sorted_source, small_groups, tmp_path):
    """After prepare, every group's rows come from the one pass: the file can be gone."""
    path, alerts, _, _ = sorted_source
    plan = plan_run(alerts, ExportOptions(interval="1m", window=WINDOW), source=ParquetSource(path))
    requests = [t.request() for t in plan.tasks("x")]
    assert len(requests) >= 4

    direct = ParquetSource(path)
    expected = [_fetched(direct, r) for r in requests]

    moved = tmp_path / "elsewhere.parquet"
    src = ParquetSource(path)
    src.prepare(requests)
    shutil.move(path, moved)
    try:
        got = [_fetched(src, r) for r in requests]
        spill = src._spill.dir
        src.close()
    finally:
        shutil.move(moved, path)
    assert got == expected and sum(len(g) for g in got) > 1000
    assert not spill.exists()  # the spill files go with the source

    forgotten = ParquetSource(path)
    forgotten.prepare(requests)
    spill = forgotten._spill.dir
    assert spill.exists()
    del forgotten  # never closed: collected, its spill goes too
    assert not spill.exists()


def test_prepared_requests_get_exactly_their_rows(sorted_source, small_groups, monkeypatch):
    """Requests of the one pass, each against a brute-force selection of the source rows: a
    request with no row in the file fetches nothing, a mint's rows from two passes arrive
    whole, each request's rows are handed out once (a second fetch reads
    the file), and its spill files are gone once read; files written in several batches
    read back whole."""
    from lakeslice.sources.base import CandleRequest

    path, _, candles, _ = sorted_source
    mints = sorted(set(candles["token_address"]))
    first = int(candles["timestamp"].min().replace(tzinfo=dt.timezone.utc).timestamp() * 1000)
    minute = 60_000

    def request(rows: list[tuple[str, int, int]]) -> CandleRequest:
        ranges = pl.DataFrame(rows, schema=["mint", "start_ms", "end_ms"], orient="row")
        return CandleRequest("solana", INTERVAL_S, ranges.sort("mint", "start_ms"))

    # a mint whose rows straddle the end of the first pass
    straddle = candles["token_address"][ParquetSource.pass_rows]
    assert candles["token_address"][ParquetSource.pass_rows - 1] == straddle
    requests = [
        # two ranges of that mint: its rows come from two passes
        request(
            [(straddle, first, first + 150 * minute), (straddle, first + 200 * minute, first + 390 * minute)]
        ),
        request([(m, first, first + 400 * minute) for m in mints[5:16]]),  # whole passes
        request([("no-such-mint", first, first + 400 * minute)]),  # nothing in the file
        request([(mints[-1], first - 50 * minute, first + 3 * minute)]),  # starts before the data
    ]
    monkeypatch.setattr(ParquetSource, "spill_rows", 1)  # written 1,024 rows at a time
    src = ParquetSource(path)
    src.prepare(requests)
    spill = src._spill.dir
    assert len({p.parent.parent for p in spill.rglob("_request=0/*.ipc")}) == 2  # two passes
    batches = [pa.ipc.open_file(pa.memory_map(str(p))).num_record_batches for p in spill.rglob("*.ipc")]
    assert max(batches) > 1
    got = [_fetched(src, r) for r in requests]
    assert not list(spill.rglob("*.ipc"))  # each request's files are deleted once read
    again = _fetched(src, requests[1])  # handed out once: now read from the file
    src.close()

    source = candles.with_columns(
        ts_ms=pl.col("timestamp").dt.replace_time_zone("UTC").dt.timestamp("ms")
    ).rows(named=True)
    for req, rows in zip(requests, got, strict=True):
        wanted = sorted(
            (c["token_address"], c["ts_ms"], *(float(c[k]) for k in ref.OHLCV), 0)
            for c in source
            for m, lo, hi in req.ranges.rows()
            if c["token_address"] == m and lo <= c["ts_ms"] < hi
        )
        assert rows == wanted
    assert [len(g) for g in got][2] == 0 and all(got[i] for i in (0, 1, 3))
    assert again == got[1]


def _fetched(src: ParquetSource, request) -> list[tuple]:
    frames = [pl.from_arrow(b) for b in src.fetch(request)]
    return sorted(pl.concat(frames).rows()) if frames else []


def test_export_from_many_groups_equals_the_reference(sorted_source, small_groups, tmp_path):
    path, alerts, candles, alerts_df = sorted_source
    res = export_run_slices(
        alerts, interval="1m", window=WINDOW, source=f"parquet://{path}", data_root=tmp_path, run_id="g"
    )
    assert _lake_rows(res.run_dir) == _reference_rows(candles, alerts_df)


def test_group_size_does_not_change_a_byte(sorted_source, tmp_path, monkeypatch):
    """One group (no prepared pass) and many groups (spilled in one pass or in several passes
    over row slices, each request's rows written at once or 1,024 rows at a time) seal the
    same content."""
    path, alerts, _, _ = sorted_source
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    hashes = []
    for rows, passes, spill in (
        (10**9, 10**9, 10**9),
        (400, 10**9, 10**9),
        (400, 10**9, 1),
        (400, 1_500, 10**9),
        (400, 999, 1),
    ):
        monkeypatch.setattr(ParquetSource, "group_rows", rows)
        monkeypatch.setattr(ParquetSource, "pass_rows", passes)
        monkeypatch.setattr(ParquetSource, "spill_rows", spill)
        res = export_run_slices(
            alerts,
            interval="1m",
            window=WINDOW,
            source=f"parquet://{path}",
            data_root=tmp_path / f"{rows}-{passes}-{spill}",
        )
        hashes.append(res.manifest["content_sha256"])
    assert len(set(hashes)) == 1


class Recorder:
    """A Progress that writes down every call, with the thread-safety the protocol asks for."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def stage(self, name: str, *, total: int | None = None) -> None:
        self.calls.append(("stage", name, total))

    def advance(self, *, done: int = 0, rows: int = 0) -> None:
        self.calls.append(("advance", done, rows))


def test_progress_names_every_stage_and_advances_within_a_group(sorted_source, small_groups, tmp_path):
    path, alerts, _, _ = sorted_source
    progress = Recorder()
    res = export_run_slices(
        alerts,
        interval="1m",
        window=WINDOW,
        source=f"parquet://{path}",
        data_root=tmp_path,
        progress=progress,
    )
    calls = progress.calls
    stages = [c[1] for c in calls if c[0] == "stage"]
    assert stages == list(STAGES)
    fetching = next(i for i, c in enumerate(calls) if c[:2] == ("stage", "fetching"))
    total = calls[fetching][2]
    assert total is not None and total >= 4
    first_advance = next(i for i, c in enumerate(calls) if c[0] == "advance")
    assert first_advance > fetching  # the total is known before anything advances
    # rows arrive batch by batch: several advances before the first group is done
    first_done = next(i for i, c in enumerate(calls) if c[0] == "advance" and c[1])
    assert sum(1 for c in calls[fetching:first_done] if c[0] == "advance" and c[2] > 0) >= 2
    writing = next(i for i, c in enumerate(calls) if c[:2] == ("stage", "writing"))
    fetch_calls = [c for c in calls[fetching:writing] if c[0] == "advance"]
    assert sum(c[1] for c in fetch_calls) == total
    assert sum(c[2] for c in fetch_calls) == res.rows_fetched > 0
    sealing = calls.index(("stage", "sealing", None))
    write_calls = [c for c in calls[writing:sealing] if c[0] == "advance"]
    assert 1 <= calls[writing][2] == sum(c[1] for c in write_calls) <= total


def _integer_prices(path: Path, volume: list[int]) -> None:
    """A source file whose ``volume`` is UInt64: one mint, one candle a minute."""
    n = len(volume)
    start = dt.datetime(2024, 1, 1)
    pl.DataFrame(
        {
            "token_address": ["M"] * n,
            "chain": ["solana"] * n,
            "timestamp": [start + dt.timedelta(minutes=i) for i in range(n)],
            "interval_seconds": pl.Series([60] * n, dtype=pl.UInt32),
            "open": [1.0] * n,
            "high": [1.0] * n,
            "low": [1.0] * n,
            "close": [1.0] * n,
            "volume": pl.Series(volume, dtype=pl.UInt64),
        }
    ).write_parquet(path)


def _one_alert(path: Path) -> None:
    pl.DataFrame({"mint": ["M"], "ts_ms": [ref.epoch_ms(dt.datetime(2024, 1, 1, 0, 5))]}).write_parquet(path)


def test_uint64_volume_above_2_53_fails_naming_file_and_column(tmp_path):
    """Float64 cannot hold 2^53 + 1: one line naming the file and the column, exit 1."""
    _integer_prices(tmp_path / "big.parquet", [10, 2**53 + 1, 12, 13, 14, 15, 16, 17, 18, 19])
    _one_alert(tmp_path / "alerts.parquet")
    proc = run_cli(
        "export", "--alerts", tmp_path / "alerts.parquet", "--interval", "1m", "--window", "pre5_post3",
        "--source", f"parquet://{tmp_path / 'big.parquet'}", "--data-root", tmp_path / "d",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "big.parquet" in lines[0] and "column volume" in lines[0], lines[0]
    assert str(2**53 + 1) in lines[0] and "2^53" in lines[0]
    assert not list((tmp_path / "d").glob("lake/runs/run_id=*/manifest.json"))


def test_uint64_above_2_53_fails_in_the_one_pass_too(tmp_path, monkeypatch):
    """Several groups (the prepared pass): the same one line, and nothing sealed."""
    from lakeslice.errors import RunError

    monkeypatch.setattr(ParquetSource, "group_rows", 1)
    n = 10
    start = dt.datetime(2024, 1, 1)
    mints = ["M", "N"]  # buckets c6 and b5: two groups
    pl.DataFrame(
        {
            "token_address": [m for m in mints for _ in range(n)],
            "chain": "solana",
            "timestamp": [start + dt.timedelta(minutes=i) for _ in mints for i in range(n)],
            "interval_seconds": pl.Series([60] * 2 * n, dtype=pl.UInt32),
            **{c: [1.0] * 2 * n for c in ("open", "high", "low", "close")},
            "volume": pl.Series([1] * (2 * n - 1) + [2**60], dtype=pl.UInt64),
        }
    ).write_parquet(tmp_path / "two.parquet")
    t = ref.epoch_ms(dt.datetime(2024, 1, 1, 0, 5))
    alerts = pl.DataFrame({"mint": mints, "ts_ms": [t, t]})
    with pytest.raises(RunError) as err:
        export_run_slices(
            alerts, interval="1m", window="pre5_post5", source=f"parquet://{tmp_path / 'two.parquet'}",
            data_root=tmp_path / "d",
        )  # fmt: skip
    message = str(err.value)
    assert "two.parquet" in message and "column volume" in message and str(2**60) in message
    assert "\n" not in message
    assert not list((tmp_path / "d").glob("lake/runs/run_id=*/manifest.json"))


def test_uint64_volume_up_to_2_53_is_exact(tmp_path):
    volumes = [2**53, 2**53 - 1, 3, 4, 5, 6, 7, 8, 9, 10]
    _integer_prices(tmp_path / "ok.parquet", volumes)
    _one_alert(tmp_path / "alerts.parquet")
    res = export_run_slices(
        tmp_path / "alerts.parquet",
        interval="1m",
        window="pre5_post3",
        source=f"parquet://{tmp_path / 'ok.parquet'}",
        data_root=tmp_path / "d",
    )
    got = [r["volume"] for r in sorted(all_run_rows(res.run_dir), key=lambda r: r["ts_ms"])]
    assert got == [float(v) for v in volumes[:9]] and got[0] == 2**53


_candle_rows = st.lists(
    st.tuples(st.integers(0, 4), st.integers(-40, 40), st.integers(0, 59)), min_size=0, max_size=60
)
_alert_rows = st.lists(st.tuples(st.integers(0, 5), st.integers(-45, 45)), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(candle_rows=_candle_rows, alert_rows=_alert_rows)
# a complete window whose first slot is also the slot of the previous mint's last candle
@example(candle_rows=[(0, 2, 0)] + [(1, k, 0) for k in range(2, 10)], alert_rows=[(1, 5)])
@example(candle_rows=[(0, -40, 0), (2, 40, 0)], alert_rows=[(1, 0), (3, 40), (0, -45)])  # none
def test_coverage_on_packed_keys_equals_the_reference(candle_rows, alert_rows):
    """Mints as integer ids (the export's path: one packed key): every count, first/last and
    status as the brute-force reference, with mints lacking candles, windows before the first
    candle and after the last, and candles off the interval grid (a second in a minute)."""
    from lakeslice.transforms import alert_windows, coverage_of, dedupe_candles, normalize_candles

    pre, post = 3, 4
    candles = [
        {
            "mint": m,
            "ts_ms": slot * 60_000 + sec * 1000,
            "ver": 0,
            "source": "x",
            **dict.fromkeys(ref.OHLCV, 1.0),
        }
        for m, slot, sec in candle_rows
    ]
    alerts = [
        {"alert_id": f"a{i:02d}", "mint": m, "ts_ms": t * 60_000 + 7} for i, (m, t) in enumerate(alert_rows)
    ]
    schema = {"mint": pl.UInt32, "ts_ms": pl.Int64, "ver": pl.UInt64, "source": pl.String}
    frame = pl.DataFrame(candles, schema={**schema, **dict.fromkeys(ref.OHLCV, pl.Float64)})
    deduped = dedupe_candles(normalize_candles(frame, interval_s=60)).collect()
    windows = alert_windows(
        pl.DataFrame(alerts, schema_overrides={"mint": pl.UInt32}), interval=60, window=f"pre{pre}_post{post}"
    )
    got = coverage_of(deduped.lazy(), windows, expected_total=pre + 1 + post).collect().to_dicts()
    expected = ref.coverage_rows(candles, alerts, 60, pre, post)
    assert got == [{**r, "mint": str(r["mint"])} for r in expected]  # the coverage file's mint is text
