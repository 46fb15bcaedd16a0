"""Issue 4: the same candles through ClickHouse (server), chdb and Parquet give the same run.

Every export goes through the real CLI (``lakeslice export`` in a subprocess): the server is the
session fixture of conftest.py, chdb runs in the CLI's own process (chdb 4.4 opens one data path
per process, so this module never opens chdb in the pytest process: seeding happens in a
subprocess too), the Parquet source reads a file written here.

Expectations are computed here, in plain Python over the inserted rows (``expected_*``), from the
SPEC text and the documented dedup rule (docs/design.md): greatest ``ver``, then greatest volume,
close, high, low, open. Nothing here calls lakeslice.transforms.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import load_candles
from support import reference as ref
from support.cli import run_chains, run_cli
from support.data import COVERAGE_COLUMNS, HOSTILE, OHLCV, SLICE_COLUMNS, quantbot_row

from lakeslice import verify_dir

T0 = 1_704_067_200  # 2024-01-01T00:00:00Z, epoch seconds
MIN_MS = 60_000
TAB = "tab\tmint\t2"
UNI = "Ünïcødé-мята-🚀-ミント"
PLAIN = [f"Mint{i}{'x' * 30}{i * 7919}" for i in range(6)]
MINTS = [*PLAIN, HOSTILE, TAB, UNI]
MINUTES = 180
PRE, POST = 10, 20
WINDOW = f"pre{PRE}_post{POST}"
DB = "agree"


# ------------------------------------------------------------------------------------------
# Data, in plain Python


def make_rows() -> list[dict]:
    """1m candles with gaps, duplicates (value, ``ver`` and exact), other chains and intervals."""
    rng = random.Random(20240101)
    rows = []
    for m, mint in enumerate(MINTS):
        for i in range(MINUTES):
            gap = rng.random() < 0.1
            if m == 3 and i == 70:
                # Slot 70 empty, slot 65 holds a second candle off the minute: a09's window has
                # as many candles as slots, yet is partial (SPEC §4 counts slots, not candles).
                rows.append(quantbot_row(mint, T0 + 60 * 65 + 30, px=50.0, vol=5.0))
                continue
            if gap and m != 3:
                continue
            ts = T0 + 60 * i
            px = round(1 + m + rng.random(), 6)
            vol = round(rng.uniform(1, 1000), 3)
            rows.append(quantbot_row(mint, ts, px=px, vol=vol))
            r = rng.random()
            if r < 0.10:  # re-ingested with more volume: wins on volume (same ver)
                rows.append(quantbot_row(mint, ts, px=px + 3, vol=vol + 5))
            elif r < 0.16:  # newer version with LESS volume: wins on ver
                rows.append(quantbot_row(mint, ts, px=px + 7, vol=vol / 2, ver=2))
            elif r < 0.22:  # exact duplicate
                rows.append(quantbot_row(mint, ts, px=px, vol=vol))
            elif r < 0.26:  # an older version with more volume: loses
                rows.append(quantbot_row(mint, ts, px=px + 11, vol=vol * 3, ver=0))
            if i % 9 == 0:  # other chain / other interval at the same key, huge volume
                rows.append(quantbot_row(mint, ts, chain="ethereum", px=999.0, vol=1e9, ver=9))
                rows.append(quantbot_row(mint, ts, interval=300, px=888.0, vol=1e9, ver=9))
    return rows


def make_alerts() -> list[dict]:
    t0 = T0 * 1000
    p = PLAIN
    return [
        {"alert_id": "a01", "mint": p[0], "ts_ms": t0 + 30 * MIN_MS},  # on the boundary
        {"alert_id": "a02", "mint": p[0], "ts_ms": t0 + 35 * MIN_MS + 17_123},  # overlaps a01
        {"alert_id": "a03", "mint": p[1], "ts_ms": t0 + 2 * MIN_MS},  # starts before the data
        {"alert_id": "a04", "mint": p[2], "ts_ms": t0 + 175 * MIN_MS + 59_999},  # past the end
        {"alert_id": "a05", "mint": HOSTILE, "ts_ms": t0 + 60 * MIN_MS + 1},
        {"alert_id": "a06", "mint": TAB, "ts_ms": t0 + 90 * MIN_MS},
        {"alert_id": "a07", "mint": UNI, "ts_ms": t0 + 100 * MIN_MS + 59_999},
        {"alert_id": "a08", "mint": "NoSuchMint" + "1" * 34, "ts_ms": t0 + 10 * MIN_MS},
        {"alert_id": "a09", "mint": p[3], "ts_ms": t0 + 61 * MIN_MS},
        {"alert_id": "a10", "mint": p[3], "ts_ms": t0 + 92 * MIN_MS},  # touches a09's window
        {"alert_id": "a11", "mint": p[4], "ts_ms": t0 - 100 * MIN_MS},  # before all data
        {"alert_id": "a12", "mint": p[5], "ts_ms": t0 + 120 * MIN_MS + 30_000},
    ]


def expected_coverage(rows, alerts, *, strict=False, min_pre=52, target_total=5000) -> list[dict]:
    """The reference's coverage rows (SPEC §4) of the solana 1m candles."""
    candles = ref.quantbot_candles(rows)
    return ref.coverage_rows(
        candles, alerts, 60, PRE, POST, strict=strict, min_required_pre=min_pre, target_total=target_total
    )


def expected_slices(rows, alerts, *, keep=None) -> list[tuple]:
    """Sorted (mint, ts_ms, interval_s, o, h, l, c, v) of the union of (kept) windows."""
    kept = [a for a in alerts if keep is None or a["alert_id"] in keep]
    got = ref.slice_rows(ref.quantbot_candles(rows), kept, 60, PRE, POST)
    return [(c["mint"], c["ts_ms"], 60, *(c[k] for k in OHLCV)) for c in got]


def expected_fetched(rows, alerts) -> int:
    """Raw in-window rows of the chain and interval, duplicates included (SPEC §3: exact fetch)."""
    wins = [(a["mint"], *ref.window(a["ts_ms"], 60, PRE, POST)[1:]) for a in alerts]
    candles = ref.quantbot_candles(rows)
    return sum(1 for c in candles if any(m == c["mint"] and s <= c["ts_ms"] < e for m, s, e in wins))


# ------------------------------------------------------------------------------------------
# CLI and reading runs


def read_slices(run_dir: Path) -> tuple[list[tuple], set[str]]:
    """Slice rows (without ``source``) in file order, after checking each file; and the sources."""
    files = sorted((run_dir / "slices").rglob("*.parquet"))
    rows, sources = [], set()
    for f in files:
        table = pq.read_table(f)
        assert table.column_names == SLICE_COLUMNS, f
        assert table.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
        assert table.schema.field("interval_s").type == pa.int32()
        frame = pl.from_arrow(table).with_columns(pl.col("ts").dt.epoch("ms"))
        got = [tuple(r[:-1]) for r in frame.rows()]
        assert got == sorted(got), f"{f}: not sorted by (mint, ts)"
        b = f.parent.name.removeprefix("mint_bucket=")
        assert {ref.bucket(r[0]) for r in got} == {b}, f
        rows += got
        sources |= set(frame["source"].to_list())
    return sorted(rows), sources


def read_coverage(run_dir: Path) -> list[dict]:
    frame = pl.read_parquet(run_dir / "outputs" / "coverage.parquet")
    assert frame.columns == COVERAGE_COLUMNS
    return frame.to_dicts()


def seed_chdb_subprocess(parquet: Path, *targets: tuple[Path, str, str]) -> None:
    """Seed chdb tables (path, table, timestamp type) in ONE child process, one path after the
    other (chdb 4.4: one data path per process at a time; never in the pytest process)."""
    code = (
        "import sys, json, polars as pl\n"
        "from lakeslice.sources.embedded import seed_chdb\n"
        "rows = pl.read_parquet(sys.argv[1])\n"
        "for path, table, ts in json.loads(sys.argv[2]):\n"
        "    seed_chdb(path, rows, table=table, timestamp_type=ts)\n"
    )
    spec = json.dumps([[str(p), t, ts] for p, t, ts in targets])
    proc = subprocess.run(
        [sys.executable, "-c", code, str(parquet), spec], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


def chdb_count(path: Path, table: str) -> int:
    code = (
        "import sys\nfrom chdb import session\ns = session.Session(sys.argv[1])\n"
        "print(str(s.query(f'SELECT count() FROM default.{sys.argv[2]}', 'CSV')).strip())\n"
        "s.close()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path), table], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip())


def write_candles_parquet(rows, path: Path) -> None:
    pq.write_table(
        pa.table(
            {
                "token_address": pa.array([r["token_address"] for r in rows], pa.string()),
                "chain": pa.array([r["chain"] for r in rows], pa.string()),
                "timestamp": pa.array([r["timestamp"] for r in rows], pa.int64()).cast(
                    pa.timestamp("s", tz="UTC")
                ),
                "interval_seconds": pa.array([r["interval_seconds"] for r in rows], pa.uint32()),
                **{c: pa.array([r[c] for r in rows], pa.float64()) for c in OHLCV},
                "ver": pa.array([r["ver"] for r in rows], pa.uint64()),
            }
        ),
        path,
    )


# ------------------------------------------------------------------------------------------
# Fixtures: load once; every export of the module runs once, concurrently


@pytest.fixture(scope="module")
def world(tmp_path_factory, clickhouse_server):
    root = tmp_path_factory.mktemp("agree")
    rows, alerts = make_rows(), make_alerts()
    # Shuffled, so arrival order differs between sources (and from the generation order).
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    parquet = root / "candles.parquet"
    write_candles_parquet(shuffled, parquet)
    alerts_path = root / "alerts.parquet"
    pl.DataFrame(alerts).write_parquet(alerts_path)

    load_candles(clickhouse_server, DB, "ohlcv_candles", shuffled, with_ver=True)
    load_candles(
        clickhouse_server,
        DB,
        "other_key",
        list(reversed(shuffled)),
        with_ver=True,
        order_by="(chain, timestamp)",
    )
    # chdb at <default_root>/chdb: named by chdb:// and also the default source of that root.
    default_root = root / "default_root"
    chdb, chdb_ms = default_root / "chdb", root / "chdb_ms"
    seed_chdb_subprocess(
        parquet, (chdb, "ohlcv_candles", "DateTime"), (chdb_ms, "candles_ms", "DateTime64(3)")
    )

    sources = {
        "clickhouse": (clickhouse_server.url(DB), f"clickhouse:{DB}.ohlcv_candles"),
        "chdb": (f"chdb://{chdb}", "chdb:default.ohlcv_candles"),
        "parquet": (f"parquet://{parquet}", "parquet:candles.parquet"),
    }
    data_root = root / "data"
    common = ["export", "--alerts", alerts_path, "--interval", "1m", "--window", WINDOW, "--format", "json"]
    strict = ["--strict-coverage", "--min-required-pre", STRICT_PRE, "--target-total", STRICT_TOTAL]

    def job(name, *extra, root=data_root):
        return (name, [*common, "--data-root", root, "--run-id", name, *extra])

    chains = [
        [job("clickhouse", "--source", sources["clickhouse"][0])],
        [job("parquet", "--source", sources["parquet"][0])],
        [job("other_key", "--source", sources["clickhouse"][0], "--table", "other_key")],
        [job("strict_clickhouse", "--source", sources["clickhouse"][0], *strict)],
        [job("strict_parquet", "--source", sources["parquet"][0], *strict)],
        [job("chdb_ms", "--source", f"chdb://{chdb_ms}", "--table", "candles_ms")],
        [job("missing_default", root=root / "nothing_here")],
        [
            job("chdb", "--source", sources["chdb"][0]),
            job("strict_chdb", "--source", sources["chdb"][0], *strict),
            job("default", root=default_root),
        ],
    ]
    procs = run_chains(chains, cwd=root)
    return {
        "root": root,
        "rows": rows,
        "alerts": alerts,
        "alerts_path": alerts_path,
        "parquet": parquet,
        "chdb": chdb,
        "default_root": default_root,
        "sources": sources,
        "procs": procs,
        "data_root": data_root,
        "server": clickhouse_server,
    }


def result(world, name) -> dict:
    proc = world["procs"][name]
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return json.loads(proc.stdout)


STRICT_PRE, STRICT_TOTAL = 8, 25
BASE = ["clickhouse", "chdb", "parquet"]


# ------------------------------------------------------------------------------------------
# Tests


def test_reference_data_is_interesting():
    """The fixture really has what the other tests rely on."""
    rows, alerts = make_rows(), make_alerts()
    solana = [r for r in rows if r["chain"] == "solana" and r["interval_seconds"] == 60]
    keys = [(r["token_address"], r["timestamp"]) for r in solana]
    assert len(keys) > len(set(keys))  # duplicates
    assert any(r["ver"] == 2 for r in solana) and any(r["ver"] == 0 for r in solana)
    cov = expected_coverage(rows, alerts)
    assert {c["status"] for c in cov} == {"complete", "partial", "insufficient"}
    # a window as many candles as slots but not every slot filled: counting candles is wrong
    assert any(c["available_total"] == c["expected_total"] and c["status"] == "partial" for c in cov)
    assert expected_fetched(rows, alerts) > len(expected_slices(rows, alerts))


def check_run(world, name, label, *, keep=None, strict=False):
    res = result(world, name)
    run_dir = Path(res["run_dir"])
    slices, sources = read_slices(run_dir)
    assert slices == expected_slices(world["rows"], world["alerts"], keep=keep)
    assert sources == {label}
    kw = {"strict": True, "min_pre": STRICT_PRE, "target_total": STRICT_TOTAL} if strict else {}
    assert read_coverage(run_dir) == expected_coverage(world["rows"], world["alerts"], **kw)
    report = verify_dir(run_dir)
    assert report.ok, report.problems
    return res, slices


@pytest.mark.parametrize("name", BASE)
def test_each_source_equals_the_reference(world, name):
    _, slices = check_run(world, name, world["sources"][name][1])
    # the hostile, tab and non-ASCII mints came back as themselves
    assert {HOSTILE, TAB, UNI} <= {r[0] for r in slices}


def test_three_sources_agree_except_source_column(world):
    results = {n: result(world, n) for n in BASE}
    runs = {n: Path(r["run_dir"]) for n, r in results.items()}
    frames = {
        n: pl.concat([pl.read_parquet(f) for f in sorted((d / "slices").rglob("*.parquet"))])
        for n, d in runs.items()
    }
    base = frames["clickhouse"].drop("source")
    for n, f in frames.items():
        assert f.drop("source").equals(base), n
    covs = {n: (d / "outputs" / "coverage.parquet").read_bytes() for n, d in runs.items()}
    assert len(set(covs.values())) == 1  # byte-identical coverage files
    layouts = {n: [(f["path"], f["rows"]) for f in r["manifest"]["files"]] for n, r in results.items()}
    assert layouts["clickhouse"] == layouts["chdb"] == layouts["parquet"]
    assert len({json.dumps(r["manifest"]["coverage"]) for r in results.values()}) == 1


def test_cli_verify_exits_0(world):
    proc = run_cli("verify", result(world, "clickhouse")["run_dir"], cwd=world["root"])
    assert proc.returncode == 0, (proc.stdout, proc.stderr)


@pytest.mark.parametrize("name", [*BASE, "other_key", "chdb_ms", "strict_clickhouse"])
def test_rows_fetched_is_exact(world, name):
    """SPEC §3: only the rows needed are fetched: in-window rows of the chain and interval,
    duplicates included; nothing outside the windows, no other chain or interval."""
    assert result(world, name)["rows_fetched"] == expected_fetched(world["rows"], world["alerts"])


def test_hostile_mint_table_still_exists(world):
    result(world, "clickhouse")
    client = world["server"].client()
    try:
        ((count,),) = client.execute(f"SELECT count() FROM `{DB}`.`ohlcv_candles`")
        names = [r[0] for r in client.execute(f"SHOW TABLES FROM `{DB}`")]
    finally:
        client.disconnect()
    assert count == len(world["rows"])
    assert "ohlcv_candles" in names
    result(world, "default")  # the last chdb job: the path is free again
    assert chdb_count(world["chdb"], "ohlcv_candles") == len(world["rows"])


def test_clickhouse_table_with_other_sorting_key(world):
    check_run(world, "other_key", f"clickhouse:{DB}.other_key")


def test_chdb_datetime64_timestamps(world):
    check_run(world, "chdb_ms", "chdb:default.candles_ms")


@pytest.mark.parametrize("name", BASE)
def test_strict_coverage(world, name):
    cov = expected_coverage(
        world["rows"], world["alerts"], strict=True, min_pre=STRICT_PRE, target_total=STRICT_TOTAL
    )
    kept = {c["alert_id"] for c in cov if c["kept"]}
    assert 0 < len(kept) < len(cov)
    res, _ = check_run(world, f"strict_{name}", world["sources"][name][1], keep=kept, strict=True)
    assert res["kept_events"] == len(kept) and res["dropped_events"] == len(cov) - len(kept)
    assert res["manifest"]["coverage"]["strict"] is True


def test_default_source_is_data_root_chdb(world):
    res, _ = check_run(world, "default", "chdb:default.ohlcv_candles")
    assert res["manifest"]["inputs"]["source_snapshot"]["kind"] == "chdb"


def test_missing_default_source_is_a_clear_exit_2(world):
    proc = world["procs"]["missing_default"]
    empty_root = world["root"] / "nothing_here"
    assert proc.returncode == 2, proc.stderr
    err = json.loads(proc.stdout)["error"]
    assert err["code"] == "input_error" and "chdb" in err["message"]
    assert str(empty_root / "chdb") in err["message"]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "chdb" in lines[0] and "Traceback" not in proc.stderr
    assert not (empty_root / "lake" / "runs" / "run_id=missing_default").exists()
