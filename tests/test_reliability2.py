"""Reliability, round 2 (issue 12 items 5-8 and its weak spots; issue 15's empty fetch).

Real servers (the session ClickHouse 18.16, dedicated ones that get stopped, chdb), real CLI
processes and real signals; expectations computed independently in plain Python.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
import signal
import struct
import subprocess
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.cli import popen_cli, run_cli
from support.data import OHLCV
from test_reliability import PASSWORD, assert_one_line_failure, manifests_under, run_dir

from lakeslice import coverage, export_run_slices, scan_run, slice_windows
from lakeslice.sources.base import quantbot_ddl
from lakeslice.sources.embedded import seed_chdb
from lakeslice.transforms import dedupe_candles, normalize_candles

T0 = 1_704_067_200  # 2024-01-01, epoch seconds


def candle(mint, ts_s, *, chain="solana", close=1.0, volume=1.0, ver=None, interval=60) -> dict:
    row = {
        "token_address": mint,
        "chain": chain,
        "timestamp": ts_s,
        "interval_seconds": interval,
        "open": 1.0,
        "high": 1.0,
        "low": 1.0,
        "close": close,
        "volume": volume,
    }
    if ver is not None:
        row["ver"] = ver
    return row


def write_alerts(path: Path, rows: list[tuple[str, object]], column: str = "ts_ms") -> Path:
    path.write_text(f"mint,{column}\n" + "".join(f"{m},{t}\n" for m, t in rows))
    return path


def export_argv(alerts, source, data, *extra, run_id="r", window="pre2_post2", interval="1m"):
    return [
        "export",
        "--alerts",
        alerts,
        "--interval",
        interval,
        "--window",
        window,
        "--source",
        source,
        "--data-root",
        data,
        "--run-id",
        run_id,
        *extra,
    ]


# --------------------------------------------------------------------------------------------
# Item 5: UInt64 versions >= 2^63 compare without wrapping, on every source kind

VERSIONS = [0, 7, 2**63 - 1, 2**63, 2**63 + 5, 2**64 - 1]


def _version_rows() -> tuple[list[dict], dict[str, float]]:
    # one key per pair of versions, in both insertion orders; close = the row's version rank
    rows, expected = [], {}
    for i, (a, b) in enumerate(itertools.permutations(range(len(VERSIONS)), 2)):
        mint = f"v{i:02d}"
        for rank in (a, b):
            # the loser has the larger volume: only the version may decide
            rows.append(candle(mint, T0, close=float(rank), volume=100.0 - rank, ver=VERSIONS[rank]))
        expected[mint] = float(max(a, b, key=lambda r: VERSIONS[r]))
    return rows, expected


@pytest.mark.parametrize("kind", ["clickhouse", "chdb", "parquet"])
def test_uint64_versions_above_2_63_pick_the_greatest(kind, clickhouse_server, tmp_path):
    rows, expected = _version_rows()
    if kind == "clickhouse":
        from conftest import load_candles

        load_candles(clickhouse_server, "rel2", "versions", rows, with_ver=True)
        source = clickhouse_server.url("rel2")
    elif kind == "chdb":
        seed_chdb(
            tmp_path / "chdb", pl.DataFrame(rows, schema_overrides={"ver": pl.UInt64}), table="versions"
        )
        source = f"chdb://{tmp_path / 'chdb'}"
    else:
        frame = pl.DataFrame(rows, schema_overrides={"ver": pl.UInt64})
        frame = frame.with_columns(pl.from_epoch("timestamp", time_unit="s"))
        frame.write_parquet(tmp_path / "c.parquet")
        source = f"parquet://{tmp_path / 'c.parquet'}"
    alerts = pl.DataFrame({"mint": sorted(expected), "ts_ms": [T0 * 1000] * len(expected)})
    res = export_run_slices(
        alerts,
        interval="1m",
        window="pre0_post0",
        source=source,
        table="versions",
        data_root=tmp_path / "data",
        run_id="v",
    )
    got = dict(scan_run(res.run_dir).select("mint", "close").collect().iter_rows())
    assert got == expected


# --------------------------------------------------------------------------------------------
# Item 8: -0.0 / 0.0 and NaN payloads: the pick does not depend on row order

FLOATS = [0.0, -0.0, 1.0, math.inf, -math.inf]
NANS = [0x7FF8000000000000, 0x7FF8000000000001, 0x7FF0000000000002, 0xFFF8000000000000, 0xFFF0000000000003]


def _f(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def _bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", x))[0]


def _value_key(x: float) -> tuple:
    # the rule's "greatest value" as Polars orders floats: NaN above everything, -0.0 == 0.0
    return (1, 0.0) if math.isnan(x) else (0, x + 0.0)


def _total_key(x: float) -> int:
    b = _bits(x)
    return b ^ (2**63 - 1) if b < 0 else b


def _best(rows: list[dict]) -> dict:
    floats = ("volume", "close", "high", "low", "open")
    return max(
        rows,
        key=lambda r: (
            r["ver"],
            *(_value_key(r[c]) for c in floats),
            *(_total_key(r[c]) for c in floats),
        ),
    )


float_values = st.sampled_from(FLOATS + [_f(b) for b in NANS])


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.fixed_dictionaries({c: float_values for c in OHLCV} | {"ver": st.integers(0, 1)}),
        min_size=2,
        max_size=6,
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_dedup_of_signed_zeros_and_nan_payloads_ignores_row_order(rows, seed):
    expected = _best(rows)
    rng = random.Random(seed)
    picks = set()
    for _ in range(4):
        order = rows[:]
        rng.shuffle(order)
        frame = pl.DataFrame(
            [{"mint": "m", "ts_ms": 0, **r} for r in order],
            schema={"mint": pl.String, "ts_ms": pl.Int64, **{c: pl.Float64 for c in OHLCV}, "ver": pl.Int64},
        )
        out = dedupe_candles(normalize_candles(frame, source="s")).collect()
        assert out.height == 1
        picks.add(tuple(_bits(out[c][0]) for c in OHLCV))
    assert picks == {tuple(_bits(expected[c]) for c in OHLCV)}


# --------------------------------------------------------------------------------------------
# Item 7: slice_windows / coverage take chain= and filter as the export does


def _two_chains() -> tuple[pl.DataFrame, pl.DataFrame]:
    base = T0 * 1000
    candles = pl.DataFrame(
        {
            "mint": ["m", "m", "m", "e"],
            "chain": ["solana", "ethereum", "solana", "ethereum"],
            "ts_ms": [base, base, base + 60_000, base],
            "open": 1.0,
            "high": 1.0,
            "low": 1.0,
            "close": [1.0, 99.0, 2.0, 5.0],
            # the ethereum row has more volume: it would win a dedup that ignores the chain
            "volume": [1.0, 1000.0, 1.0, 1.0],
        }
    )
    alerts = pl.DataFrame({"alert_id": ["a", "b"], "mint": ["m", "e"], "ts_ms": [base, base]})
    return candles, alerts


def test_slice_windows_and_coverage_keep_only_the_chain_asked():
    candles, alerts = _two_chains()
    sol = slice_windows(candles, alerts, interval="1m", window="pre0_post1").collect()
    assert sol.select("mint", "close").rows() == [("m", 1.0), ("m", 2.0)]
    eth = slice_windows(candles, alerts, interval="1m", window="pre0_post1", chain="ethereum").collect()
    assert eth.select("mint", "close").rows() == [("e", 5.0), ("m", 99.0)]
    cov = coverage(candles, alerts, interval="1m", window="pre0_post1").collect()
    assert dict(cov.select("alert_id", "available_total").iter_rows()) == {"a": 2, "b": 0}
    cov = coverage(candles, alerts, interval="1m", window="pre0_post1", chain="ethereum").collect()
    assert dict(cov.select("alert_id", "available_total").iter_rows()) == {"a": 1, "b": 1}


# --------------------------------------------------------------------------------------------
# Item 6: alert times outside 1900-01-01 .. 2262-04-10 are input errors, on every input path


@pytest.mark.parametrize(
    "column, value",
    [
        ("ts_ms", 2**63 - 1000),  # window end would wrap past Int64
        ("ts_ms", -(2**63) + 5),
        ("ts_ms", 9_223_286_400_000),  # 2262-04-11, the first instant outside
        ("ts", "2300-01-01T00:00:00Z"),
        ("ts", "1899-12-31T23:59:59Z"),
        ("timestamp", "9.2e18"),
        ("timestamp", "1e17"),
    ],
)
def test_alert_times_outside_the_supported_range_exit_2(tmp_path, column, value):
    alerts = write_alerts(tmp_path / "a.csv", [("m", value)], column)
    candles = tmp_path / "c.parquet"
    pl.DataFrame([candle("m", T0)]).with_columns(pl.from_epoch("timestamp", time_unit="s")).write_parquet(
        candles
    )
    proc = run_cli(*export_argv(alerts, f"parquet://{candles}", tmp_path / "data"))
    assert_one_line_failure(proc, 2, "a.csv", repr(column), "1900-01-01", "2262-04-10")
    assert manifests_under(tmp_path) == []


def test_alert_times_at_the_range_edges_are_accepted(tmp_path):
    lo, hi = -2_208_988_800_000, 9_223_286_399_999
    alerts = pl.DataFrame({"mint": ["m", "m"], "ts_ms": [lo, hi]})
    candles = pl.DataFrame([candle("m", T0)])
    cov = coverage(candles, alerts, interval="1m", window="pre2_post2").collect()
    assert (cov["window_end_ts_ms"] > cov["window_start_ts_ms"]).all()
    assert cov["alert_ts_ms"].sort().to_list() == [lo, hi]


# --------------------------------------------------------------------------------------------
# Bad options that reached internals are input errors naming the option


@pytest.mark.parametrize(
    "extra, needles",
    [
        ({"window": "pre99999999999999999999_post0"}, ["window", "pre99999999999999999999_post0"]),
        ({"window": "pre2147483647_post0", "interval": "2147483647"}, ["window", "Int64"]),
        ({"interval": "99999999999s"}, ["interval", "99999999999s"]),
        ({"interval": "3000000000"}, ["interval", "2147483647"]),
        ({"target": "1e-300"}, ["target-file-mb", "1e-300"]),
        ({"target": "inf"}, ["target-file-mb", "inf"]),
        ({"run_id": "r" * 240}, ["run_id", "240 characters"]),
        ({"source": "clickhouse://[::1/db"}, ["source", "malformed URL", "IPv6"]),
        ({"source": "clickhouse://u:pw@[::1]:99999/db"}, ["source", "malformed URL"]),
        ({"source": "clickhouse://127.0.0.1/db?receive_timeout=0"}, ["receive_timeout"]),
        ({"source": "clickhouse://127.0.0.1/db?retries=1000"}, ["retries"]),
        (
            {"source": "clickhouse://127.0.0.1/db?recieve_timeout=5"},
            ["unknown URL option", "recieve_timeout"],
        ),
    ],
)
def test_bad_options_are_input_errors_naming_the_option(tmp_path, extra, needles):
    alerts = write_alerts(tmp_path / "a.csv", [("m", T0 * 1000)])
    candles = tmp_path / "c.parquet"
    pl.DataFrame([candle("m", T0)]).with_columns(pl.from_epoch("timestamp", time_unit="s")).write_parquet(
        candles
    )
    argv = export_argv(
        alerts,
        extra.get("source", f"parquet://{candles}"),
        tmp_path / "data",
        "--target-file-mb",
        extra.get("target", "512"),
        run_id=extra.get("run_id", "r"),
        window=extra.get("window", "pre2_post2"),
        interval=extra.get("interval", "1m"),
    )
    assert_one_line_failure(run_cli(*argv), 2, *needles)
    assert manifests_under(tmp_path) == []


# --------------------------------------------------------------------------------------------
# UInt64 prices above 2^53: one line naming host, table and column


def _rel2_table(server, table: str, rows: list[list], **types: str) -> None:
    """(Re)create ``rel2.<table>``: the QuantBot table with the column types ``types`` names
    (``ver`` adds the version column), then insert ``rows``."""
    ddl = quantbot_ddl(f"rel2.{table}", order_by="(token_address, timestamp)", with_ver="ver" in types)
    for column, type_ in types.items():
        ddl = re.sub(rf"\b{column} \w+", f"{column} {type_}", ddl)
    client = server.client()
    try:
        client.execute("CREATE DATABASE IF NOT EXISTS rel2")
        client.execute(f"DROP TABLE IF EXISTS rel2.{table}")
        client.execute(ddl)
        client.execute(f"INSERT INTO rel2.{table} VALUES", rows)
    finally:
        client.disconnect()


def test_uint64_price_above_2_53_names_host_table_column(clickhouse_server, tmp_path):
    _rel2_table(
        clickhouse_server, "wide", [["m", "solana", T0, 60, 1.0, 1.0, 1.0, 1.0, 2**53 + 1]], volume="UInt64"
    )
    alerts = write_alerts(tmp_path / "a.csv", [("m", T0 * 1000)])
    argv = export_argv(alerts, clickhouse_server.url("rel2"), tmp_path / "data", "--table", "wide")
    proc = run_cli(*argv)
    line = assert_one_line_failure(
        proc, 1, f"{clickhouse_server.host}:{clickhouse_server.port}", "rel2.wide", "volume", str(2**53 + 1)
    )
    assert "ArrowInvalid" not in line
    assert manifests_under(tmp_path) == []


# --------------------------------------------------------------------------------------------
# A server that stops answering, a server that restarts, and stop signals (real processes)

SILENT_ROWS = [candle(f"m{i}", T0 + 60 * k) for i in range(3) for k in range(5)]


def _loaded(server) -> str:
    from conftest import load_candles

    load_candles(server, "default", "c", SILENT_ROWS)
    return server.url("default")


def _alerts(tmp_path: Path) -> Path:
    return write_alerts(tmp_path / "a.csv", [(f"m{i}", (T0 + 120) * 1000) for i in range(3)])


def test_a_server_that_stops_answering_times_out_naming_the_timeout(dedicated_server, tmp_path):
    server = dedicated_server
    url = _loaded(server) + "?connect_timeout=1&receive_timeout=2"
    argv = export_argv(_alerts(tmp_path), url, tmp_path / "data", "--table", "c")
    server.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        proc = run_cli(*argv, timeout=90)
        elapsed = time.monotonic() - started
    finally:
        server.proc.send_signal(signal.SIGCONT)
    assert_one_line_failure(
        proc, 1, f"127.0.0.1:{server.port}", "default.c", "timed out", "receive_timeout=2s"
    )
    assert elapsed < 30, elapsed  # one timeout, not retries of it
    assert manifests_under(tmp_path) == []


def test_retries_back_off_long_enough_to_ride_out_a_server_restart(dedicated_server, tmp_path):
    server = dedicated_server
    url = _loaded(server) + "?retries=6&retry_wait=0.5"
    data = tmp_path / "data"
    server.stop()
    proc = popen_cli("-v", *export_argv(_alerts(tmp_path), url, data, "--table", "c", "--format", "json"))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not any("retry 2 of 6" in line for line in lines) and time.monotonic() < deadline:
        time.sleep(0.05)  # the export has met the dead server twice
    assert proc.poll() is None, lines
    server.start()
    out = proc.stdout.read()
    proc.wait(timeout=120)
    reader.join(10)
    assert proc.returncode == 0, lines
    assert json.loads(out)["total_rows"] == 3 * 5
    assert scan_run(run_dir(data, "r")).collect().height == 15


def _staging_entries(data: Path) -> list[Path]:
    staging = data / "lake" / ".staging"
    return sorted(staging.iterdir()) if staging.is_dir() else []


@pytest.mark.parametrize(
    "sig, fmt",
    [(signal.SIGINT, "table"), (signal.SIGINT, "json"), (signal.SIGTERM, "table"), (signal.SIGHUP, "json")],
)
def test_stop_signals_exit_130_with_one_line_and_no_run(dedicated_server, tmp_path, sig, fmt):
    server = dedicated_server
    url = _loaded(server) + "?receive_timeout=120"
    data = tmp_path / "data"
    argv = export_argv(_alerts(tmp_path), url, data, "--table", "c", "--format", fmt)
    server.proc.send_signal(signal.SIGSTOP)  # the export hangs in its fetch
    try:
        proc = popen_cli(*argv)
        deadline = time.monotonic() + 30
        while not _staging_entries(data) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(1.0)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        started = time.monotonic()
        out, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - started
    finally:
        server.proc.send_signal(signal.SIGCONT)
    done = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    name = signal.Signals(sig).name
    assert_one_line_failure(done, 130, f"interrupted by {name} before sealing; staging removed")
    assert elapsed < 15, elapsed  # not held by the blocked fetch
    if fmt == "json":
        assert json.loads(out)["error"]["code"] == "interrupted"
    else:
        assert out == ""
    assert manifests_under(tmp_path) == []
    assert _staging_entries(data) == []
    assert not run_dir(data, "r").exists()


# --------------------------------------------------------------------------------------------
# verify trusts nothing: paths stay inside, links and empty dirs are findings, every problem


@pytest.fixture
def lake(tmp_path) -> dict:
    """Three days of hourly candles for five mints (Parquet), a sealed run cut from them, and
    the corpus of those days."""
    from lakeslice import export_corpus

    rows = [
        candle(f"m{i}", T0 + 3600 * h, close=float(h), interval=3600) for i in range(5) for h in range(72)
    ]
    src = tmp_path / "candles.parquet"
    pl.DataFrame(rows).with_columns(pl.from_epoch("timestamp", time_unit="s")).write_parquet(src)
    alerts = pl.DataFrame({"mint": [f"m{i}" for i in range(5)], "ts_ms": [(T0 + 3600 * 30) * 1000] * 5})
    data = tmp_path / "data"
    res = export_run_slices(
        alerts, interval="1h", window="pre3_post3", source=f"parquet://{src}", data_root=data, run_id="r"
    )
    export_corpus(
        interval="1h", date_from="2024-01-01", date_to="2024-01-04", source=f"parquet://{src}", data_root=data
    )
    days = sorted(
        p for p in (data / "lake" / "corpus").rglob("date=*") if p.is_dir() and "_seals" not in p.parts
    )
    assert len(days) == 3
    return {"run": res.run_dir, "data": data, "days": days, "outside": tmp_path / "outside"}


def _reseal(run: Path, edit) -> None:
    """Edit the manifest and recompute its content_sha256, as a careful forger would."""
    from lakeslice.lake.manifest import content_sha256, dumps
    from lakeslice.lake.writer import FileEntry

    manifest = json.loads((run / "manifest.json").read_text())
    edit(manifest)
    if isinstance(manifest.get("files"), list):
        try:
            manifest["content_sha256"] = content_sha256(FileEntry(**f) for f in manifest["files"])
        except TypeError:
            pass
    (run / "manifest.json").write_bytes(dumps(manifest))


def _verify(path: Path) -> subprocess.CompletedProcess:
    return run_cli("verify", path)


def _first_part(manifest_files: list[dict]) -> dict:
    return next(f for f in manifest_files if f["path"].startswith("slices/"))


@pytest.mark.parametrize("how", ["dotdot", "absolute"])
def test_seal_paths_leaving_the_run_are_refused_by_verify_and_scan_run(lake, how):
    run, outside = lake["run"], lake["outside"]
    outside.mkdir()

    def move_out(m):
        entry = _first_part(m["files"])
        target = outside / "part.parquet"
        (run / entry["path"]).rename(target)
        # ".." climbs from where the run's files really are (a run is a link to its generation)
        entry["path"] = os.path.relpath(target, run.resolve()) if how == "dotdot" else str(target)
        assert entry["path"].startswith("../") or how != "dotdot"
        assert (run / entry["path"]).resolve() == target.resolve()
        m["files"].sort(key=lambda f: f["path"])

    _reseal(run, move_out)
    proc = _verify(run)
    assert proc.returncode == 1
    assert ("goes outside" if how == "dotdot" else "absolute path") in proc.stderr
    with pytest.raises(Exception, match="does not verify") as err:
        scan_run(run).collect()
    assert "outside" in str(err.value) or "absolute" in str(err.value)


def test_symlinks_and_empty_directories_are_findings(lake):
    run = lake["run"]
    manifest = json.loads((run / "manifest.json").read_text())
    part = run / _first_part(manifest["files"])["path"]
    copy = lake["outside"]
    copy.mkdir()
    (copy / "p.parquet").write_bytes(part.read_bytes())
    part.unlink()
    part.symlink_to(copy / "p.parquet")  # same bytes: only the link itself is wrong
    (run / "slices" / "ohlcv" / "interval=1h" / "window=pre3_post3" / "mint_bucket=zz").mkdir()
    proc = _verify(run)
    assert proc.returncode == 1
    assert "symbolic link" in proc.stderr and "mint_bucket=zz/: empty directory" in proc.stderr


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda m: m.update(files="oops"), "'files' is str"),
        (lambda m: m.update(files=[1, 2]), "files[0]: expected an object"),
        (lambda m: m["files"][0].update(rows="many"), "files[0] rows 'many'"),
        (lambda m: m["files"][0].pop("sha256"), "files[0]"),
    ],
)
def test_a_seal_of_the_wrong_shape_is_one_clear_line(lake, edit, needle):
    _reseal(lake["run"], edit)
    proc = _verify(lake["run"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert needle in proc.stderr
    assert "AttributeError" not in proc.stderr and "TypeError" not in proc.stderr


@pytest.mark.parametrize(
    "edit, needle",
    [
        (
            lambda m: m["outputs"]["slices"].update(rows=m["outputs"]["slices"]["rows"] + 1),
            "outputs.slices.rows",
        ),
        (lambda m: m["outputs"]["slices"].update(files=99), "outputs.slices.files says 99"),
        (lambda m: m["coverage"].update(kept_events=0), "coverage.kept_events says 0"),
        (lambda m: m["coverage"].update(complete=3, partial=2), "coverage.complete says 3"),
        (lambda m: m["inputs"]["alerts"].update(rows=7), "inputs.alerts.rows says 7"),
    ],
)
def test_verify_checks_the_summary_counts(lake, edit, needle):
    _reseal(lake["run"], edit)
    proc = _verify(lake["run"])
    assert proc.returncode == 1 and needle in proc.stderr


def test_verify_lists_every_problem(lake):
    run = lake["run"]
    manifest = json.loads((run / "manifest.json").read_text())
    parts = [f["path"] for f in manifest["files"] if f["path"].startswith("slices/")]
    assert len(parts) >= 2
    (run / parts[0]).unlink()
    with open(run / parts[1], "ab") as fh:
        fh.write(b"x")
    (run / "stray.txt").write_text("?")
    proc = _verify(run)
    assert proc.returncode == 1
    for needle in (f"{parts[0]}: missing", f"{parts[1]}: ", "bytes, seal says", "stray.txt: not listed"):
        assert needle in proc.stderr, proc.stderr


def test_one_bad_day_seal_does_not_stop_the_other_days(lake):
    from lakeslice.lake.layout import day_seal

    bad = lake["days"][1]
    day_seal(bad).write_text("{not json")
    proc = _verify(lake["data"] / "lake" / "corpus")
    assert proc.returncode == 1
    assert "unreadable manifest" in proc.stderr and "Traceback" not in proc.stderr
    for day in (lake["days"][0], lake["days"][2]):
        assert f"ok {day}" in proc.stdout, proc.stdout


def test_every_seal_has_its_day_and_every_day_its_seal(lake):
    import shutil

    from lakeslice.lake.layout import day_seal

    gone, unsealed = lake["days"][0], lake["days"][2]
    shutil.rmtree(gone)
    day_seal(unsealed).unlink()
    for root in (lake["data"], lake["data"] / "lake" / "corpus", lake["days"][1].parent):
        proc = _verify(root)
        assert proc.returncode == 1, (root, proc.stdout, proc.stderr)
        assert f"{day_seal(gone).name}: seal of a day whose directory is missing" in proc.stderr
        assert f"{unsealed.name}: unsealed" in proc.stderr
        assert f"ok {lake['days'][1]}" in proc.stdout


# --------------------------------------------------------------------------------------------
# Issue 15: an export that fetched nothing because the chain or interval is not there


HELD = [candle("m", T0 + 60 * k) for k in range(4)] + [
    candle("m", T0, chain="ethereum", interval=300),
    candle("n", T0, chain="ethereum", interval=300),
]


def _held_source(kind: str, server, tmp_path: Path) -> str:
    frame = pl.DataFrame(HELD).with_columns(pl.from_epoch("timestamp", time_unit="s"))
    if kind == "clickhouse":
        from conftest import load_candles

        load_candles(server, "rel2", "held", HELD)
        return server.url("rel2")
    if kind == "chdb":
        seed_chdb(tmp_path / "chdb", frame, table="held")
        return f"chdb://{tmp_path / 'chdb'}"
    frame.write_parquet(tmp_path / "c.parquet")
    return f"parquet://{tmp_path / 'c.parquet'}"


@pytest.mark.parametrize("kind", ["clickhouse", "chdb", "parquet"])
def test_a_chain_the_source_does_not_hold_is_exit_2_listing_what_it_holds(kind, clickhouse_server, tmp_path):
    source = _held_source(kind, clickhouse_server, tmp_path)
    alerts = write_alerts(tmp_path / "a.csv", [("m", (T0 + 60) * 1000)])
    argv = export_argv(alerts, source, tmp_path / "data", "--table", "held", "--chain", "solanna")
    assert_one_line_failure(
        run_cli(*argv), 2, "'solanna'", "1m", "solana 1m (4 rows)", "ethereum 5m (2 rows)"
    )
    argv = export_argv(alerts, source, tmp_path / "data", "--table", "held", interval="1h")
    assert_one_line_failure(run_cli(*argv), 2, "'solana'", "1h", "solana 1m (4 rows)")
    assert manifests_under(tmp_path / "data") == []


def test_windows_that_miss_the_candles_of_a_held_chain_still_seal(tmp_path):
    source = _held_source("parquet", None, tmp_path)
    alerts = write_alerts(tmp_path / "a.csv", [("m", (T0 + 86_400) * 1000)])  # a day later
    proc = run_cli(*export_argv(alerts, source, tmp_path / "data", "--format", "json"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["manifest"]["coverage"]["insufficient"] == 1


def test_corpus_source_names_its_chains_and_intervals(tmp_path):
    from lakeslice import export_corpus
    from lakeslice.sources import open_source

    _held_source("parquet", None, tmp_path)
    for chain, interval in (("solana", "1m"), ("ethereum", "5m")):
        export_corpus(
            interval=interval,
            date_from="2024-01-01",
            date_to="2024-01-02",
            chain=chain,
            source=f"parquet://{tmp_path / 'c.parquet'}",
            data_root=tmp_path / "root",
        )
    held = open_source(f"corpus://{tmp_path / 'root'}").holdings()
    assert ("solana", 60, 4) in held.rows()
    assert held.filter(interval_s=300)["rows"].to_list() == [2]


def test_password_file_from_the_environment_authenticates(clickhouse_server, tmp_path):
    from conftest import load_candles

    if not hasattr(clickhouse_server, "proc"):
        pytest.skip("an external server has its own users")
    load_candles(clickhouse_server, "rel2", "pwfile", HELD)
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    alerts = write_alerts(tmp_path / "a.csv", [("m", (T0 + 60) * 1000)])
    argv = export_argv(alerts, clickhouse_server.url("rel2", "lake"), tmp_path / "data", "--table", "pwfile")
    ok = run_cli(*argv, env={"LAKESLICE_CLICKHOUSE_PASSWORD_FILE": str(secret)})
    assert ok.returncode == 0, ok.stderr
    missing = run_cli(*argv, env={"LAKESLICE_CLICKHOUSE_PASSWORD_FILE": str(tmp_path / "nope")})
    assert_one_line_failure(missing, 2, "LAKESLICE_CLICKHOUSE_PASSWORD_FILE", "nope")


def test_a_signal_during_the_seal_waits_for_it_and_then_stops():
    import os

    from lakeslice import signals

    saved = {s: signal.getsignal(s) for s in signals.STOP_SIGNALS}
    try:
        signals.install()
        steps = []
        with pytest.raises(signals.Interrupted) as err:
            with signals.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # the handler has run: it must not have raised here
                steps.append("sealed")
        assert steps == ["sealed"] and err.value.sealed
        assert "SIGTERM while sealing; the seal completed first" in str(err.value)
        signals.install()
        with pytest.raises(signals.Interrupted) as err:
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(1)
        assert not err.value.sealed
        os.kill(os.getpid(), signal.SIGINT)  # a second signal while stopping is ignored
        time.sleep(0.05)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


SIGNED = [-(2**63), -5, -1, 0, 7, 2**63 - 1]


@pytest.mark.parametrize("kind", ["clickhouse", "parquet"])
def test_signed_versions_pick_the_greatest(kind, clickhouse_server, tmp_path):
    rows, expected = [], {}
    for i, (a, b) in enumerate(itertools.permutations(range(len(SIGNED)), 2)):
        for rank in (a, b):
            rows.append(candle(f"s{i:02d}", T0, close=float(rank), volume=100.0 - rank, ver=SIGNED[rank]))
        expected[f"s{i:02d}"] = float(max(a, b))
    frame = pl.DataFrame(rows, schema_overrides={"ver": pl.Int64})
    if kind == "clickhouse":
        _rel2_table(clickhouse_server, "signed", [list(r.values()) for r in rows], ver="Int64")
        source = clickhouse_server.url("rel2")
    else:
        frame.with_columns(pl.from_epoch("timestamp", time_unit="s")).write_parquet(tmp_path / "s.parquet")
        source = f"parquet://{tmp_path / 's.parquet'}"
    alerts = pl.DataFrame({"mint": sorted(expected), "ts_ms": [T0 * 1000] * len(expected)})
    res = export_run_slices(
        alerts, interval="1m", window="pre0_post0", source=source, table="signed", data_root=tmp_path / "d"
    )
    assert dict(scan_run(res.run_dir).select("mint", "close").collect().iter_rows()) == expected


# --------------------------------------------------------------------------------------------
# What is identical across source kinds (the README's claim, exactly)


def test_what_is_identical_across_source_kinds(tmp_path):
    """Same candle rows through chdb://, parquet:// and corpus://: alerts and coverage files are
    byte-identical, slice rows equal but for ``source``, which names the kind."""
    from support.data import ALERTS_CSV, CANDLES_PQ

    from lakeslice import export_corpus

    candles = pl.read_parquet(CANDLES_PQ)
    seed_chdb(tmp_path / "chdb", candles)
    export_corpus(interval="1m", date_from="2024-01-01", date_to="2024-01-02",
                  source=f"parquet://{CANDLES_PQ}", data_root=tmp_path / "corpus")  # fmt: skip
    sources = {
        "chdb": f"chdb://{tmp_path / 'chdb'}",
        "parquet": f"parquet://{CANDLES_PQ}",
        "corpus": f"corpus://{tmp_path / 'corpus'}",
    }
    runs = {
        kind: export_run_slices(str(ALERTS_CSV), interval="1m", window="pre20_post40", source=src,
                                data_root=tmp_path / kind, run_id="same").run_dir
        for kind, src in sources.items()
    }  # fmt: skip
    for rel in ("inputs/alerts.parquet", "outputs/coverage.parquet"):
        assert len({(run / rel).read_bytes() for run in runs.values()}) == 1, rel
    slices = {kind: scan_run(run).collect() for kind, run in runs.items()}
    assert slices["parquet"].height > 0
    for kind, frame in slices.items():
        assert frame.drop("source").equals(slices["parquet"].drop("source")), kind
        assert frame["source"].unique().to_list() == [frame["source"][0]]
    names = {kind: frame["source"][0] for kind, frame in slices.items()}
    assert len(set(names.values())) == 3 and all(n.startswith(f"{k}:") for k, n in names.items()), names
