"""Issue 5: the global corpus by UTC day, against the real ClickHouse server fixture.

Everything runs through the real CLI (``lakeslice corpus|verify|show|export`` in subprocesses,
run side by side where independent) except the Python API test. Expectations are plain Python
over the inserted rows: the day is ``[D 00:00, D+1 00:00)`` UTC, ``--to`` is exclusive, and one
row per (mint, ts) is kept by the documented rule (greatest ver, then volume, close, high, low,
open). Nothing here calls lakeslice.transforms.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from conftest import load_candles
from support import reference as ref
from support.cli import EPOCH, export_args, ok, run_chains, run_cli
from support.data import HOSTILE, OHLCV, SLICE_COLUMNS, quantbot_row, typed_shape_problems
from support.runs import corpus_hashes

import lakeslice
from lakeslice.lake.manifest import DaySeal

DB = "corpus"
D0 = dt.date(2023, 12, 31)  # before --from
D1, D4 = dt.date(2024, 1, 1), dt.date(2024, 1, 4)  # --from D1 --to D4: days D1, D2, D3
DAYS = [D1 + dt.timedelta(days=i) for i in range(3)]
TAB = "tab\tmint"
UNI = "Ünïcødé-мята-🚀"
# 40 mints: enough that bucket names include letters (a tree whose buckets all look numeric is
# read as Int by Polars/pyarrow inference; see README). Asserted in test_readers_agree.
MINTS = [f"C{i:02d}{'m' * 38}{i * 31}" for i in range(37)] + [HOSTILE, TAB, UNI]
# minute-of-day offsets: midnight, 00:01, 00:59, mid-day, 23:58, 23:59
OFFSETS = [0, 1, 59, 6 * 60 + 7, 12 * 60, 23 * 60 + 58, 23 * 60 + 59]
PATH_RE = re.compile(
    r"^chain=solana/interval=1m/date=(\d{4}-\d{2}-\d{2})/mint_bucket=([0-9a-f]{2})/part-(\d{4})\.parquet$"
)


def epoch(day: dt.date, minute: int = 0) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()) + 60 * minute


def make_rows(seed: int = 5) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for m, mint in enumerate(MINTS):
        for day in [D0, *DAYS, D4]:
            for off in OFFSETS + rng.sample(range(2, 23 * 60), 5):
                if rng.random() < 0.1 and off not in (0, 23 * 60 + 59):
                    continue
                ts = epoch(day, off)
                px, vol = round(m + rng.random(), 6), round(rng.uniform(1, 100), 3)
                rows.append(quantbot_row(mint, ts, px=px, vol=vol))
                r = rng.random()
                if r < 0.15 or off == 0 and m % 3 == 0:  # newer version, less volume: wins
                    rows.append(quantbot_row(mint, ts, px=px + 5, vol=vol / 2, ver=2))
                elif r < 0.25:  # exact duplicate
                    rows.append(quantbot_row(mint, ts, px=px, vol=vol))
                elif r < 0.35:  # same version, more volume: wins
                    rows.append(quantbot_row(mint, ts, px=px + 1, vol=vol + 1))
                if off in (0, 23 * 60 + 59) or r > 0.9:  # other chain / interval, same key
                    rows.append(quantbot_row(mint, ts, chain="ethereum", px=999.0, vol=1e9, ver=9))
                    rows.append(quantbot_row(mint, ts, interval=300, px=888.0, vol=1e9, ver=9))
    return rows


def expected(rows, days=DAYS, mints=None) -> list[tuple]:
    """Sorted (mint, ts_ms, 60, o, h, l, c, v) of the days, deduplicated by the reference."""
    spans = [(epoch(d) * 1000, (epoch(d) + 86400) * 1000) for d in days]
    candles = [
        c
        for c in ref.quantbot_candles(rows)
        if (mints is None or c["mint"] in mints) and any(lo <= c["ts_ms"] < hi for lo, hi in spans)
    ]
    return [(c["mint"], c["ts_ms"], 60, *(c[k] for k in OHLCV)) for c in ref.dedupe(candles)]


def day_of(ts_ms: int) -> str:
    return dt.datetime.fromtimestamp(ts_ms // 1000, dt.timezone.utc).date().isoformat()


# ------------------------------------------------------------------------------------------
# CLI


def corpus_args(url, root, *extra, date_from=D1, date_to=D4):
    return [
        "corpus",
        "--interval",
        "1m",
        "--from",
        date_from,
        "--to",
        date_to,
        "--source",
        url,
        "--data-root",
        root,
        "--format",
        "json",
        *extra,
    ]


def tree(root: Path) -> Path:
    return root / "lake" / "corpus" / "ohlcv"


def seal_path(root: Path, day) -> Path:
    return root / "lake" / "corpus" / "_seals" / "ohlcv" / "chain=solana" / "interval=1m" / f"date={day}.json"


def read_tree(root: Path, label: str) -> list[tuple]:
    """Every row of the corpus tree, after checking each file's place, order and columns."""
    rows = []
    for f in sorted(tree(root).rglob("*.parquet")):
        rel = f.relative_to(tree(root)).as_posix()
        m = PATH_RE.match(rel)
        assert m, rel
        table = pq.read_table(f)
        assert table.column_names == SLICE_COLUMNS, rel
        assert table.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
        frame = pl.from_arrow(table).with_columns(pl.col("ts").dt.epoch("ms"))
        assert set(frame["source"]) == {label}
        got = [tuple(r[:-1]) for r in frame.rows()]
        assert got == sorted(got), f"{rel}: not sorted by (mint, ts)"
        assert {day_of(r[1]) for r in got} == {m.group(1)}, rel
        assert {ref.bucket(r[0]) for r in got} == {m.group(2)}, rel
        rows += got
    return sorted(rows)


# ------------------------------------------------------------------------------------------
# Fixture: load, then run every CLI call of the module in two phases


ALERT_T = {  # alert times, windows pre10_post20 all inside [D1, D4)
    "c1": (MINTS[0], epoch(DAYS[1], 5) * 1000 + 123),  # window crosses D1 -> D2 midnight
    "c2": (HOSTILE, epoch(DAYS[2], 23 * 60 + 39) * 1000),  # window ends exactly at D4 00:00
    "c3": (UNI, epoch(DAYS[0], 12 * 60) * 1000 + 59_999),
    "c4": (MINTS[5], epoch(DAYS[0], 10) * 1000),  # starts at D1 00:00
    "c5": (TAB, epoch(DAYS[1], 6 * 60) * 1000),
}
MINTS_SUBSET = [HOSTILE, MINTS[3], UNI]


@pytest.fixture(scope="module")
def world(tmp_path_factory, clickhouse_server):
    base = tmp_path_factory.mktemp("corpus")
    rows = make_rows()
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    load_candles(clickhouse_server, DB, "ohlcv_candles", shuffled, with_ver=True)
    load_candles(clickhouse_server, DB, "mutable", shuffled, with_ver=True)
    url = clickhouse_server.url(DB)
    main, mut, sub = base / "main", base / "mut", base / "sub"
    alerts = base / "alerts.parquet"
    pl.DataFrame([{"alert_id": k, "mint": m, "ts_ms": t} for k, (m, t) in ALERT_T.items()]).write_parquet(
        alerts
    )
    (base / "mints.txt").write_text("\n".join(MINTS_SUBSET) + "\n", "utf-8")

    def run(run_id: str, source: str) -> list[str]:
        return export_args(base / "runs", run_id, alerts=alerts, source=source, extra=["--format", "json"])

    procs = run_chains(
        [
            [("main", corpus_args(url, main))],
            [("mut_full", corpus_args(url, mut, "--table", "mutable"))],
            [("mints", corpus_args(url, sub, "--mints", base / "mints.txt"))],
            [("run_ch", run("from_ch", url))],
        ],
        cwd=base,
    )
    ok(procs["main"]), ok(procs["mut_full"])
    hashes = {"main": corpus_hashes(main), "mut_full": corpus_hashes(mut)}

    tampered, unsealed = base / "tampered", base / "unsealed"
    shutil.copytree(main, tampered)
    shutil.copytree(main, unsealed)
    victim = sorted(tree(tampered).rglob("*.parquet"))[len(hashes["main"]) // 3]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    seal_path(unsealed, DAYS[1]).unlink()

    new_rows = mutated(rows)

    def mutate():
        hashes["mut_same"] = corpus_hashes(mut)
        load_candles(clickhouse_server, DB, "mutable", new_rows, with_ver=True)

    d2 = ("--table", "mutable")
    procs |= run_chains(
        [
            [("verify", ["verify", tree(main)]), ("show", ["show", tree(main)])],
            [("verify_tampered", ["verify", tree(tampered)])],
            [("verify_unsealed", ["verify", tree(unsealed)]), ("show_unsealed", ["show", tree(unsealed)])],
            [("run_corpus", run("from_corpus", f"corpus://{main}"))],
            [
                ("mut_same", corpus_args(url, mut, *d2, date_from=DAYS[1], date_to=DAYS[2])),
                mutate,
                ("mut_changed", corpus_args(url, mut, *d2, date_from=DAYS[1], date_to=DAYS[2])),
            ],
        ],
        cwd=base,
    )
    return {
        "base": base,
        "rows": rows,
        "new_rows": new_rows,
        "procs": procs,
        "hashes": hashes,
        "url": url,
        "main": main,
        "mut": mut,
        "sub": sub,
        "victim": victim,
        "label": f"clickhouse:{DB}.ohlcv_candles",
    }


def mutated(rows):
    """D2 changed: every mint of some buckets gone (their directories must go), one mint's
    candles re-versioned with new values, one new mint."""
    lo, hi = epoch(DAYS[1]), epoch(DAYS[2])
    gone_buckets = sorted({ref.bucket(m) for m in MINTS})[:3]
    out = []
    for r in rows:
        in_d2 = lo <= r["timestamp"] < hi
        if in_d2 and ref.bucket(r["token_address"]) in gone_buckets:
            continue
        out.append(r)
        if in_d2 and r["token_address"] == MINTS[7] and r["chain"] == "solana":
            out.append({**r, "ver": 50, "open": 4242.0})
    out.append(quantbot_row("BrandNewMint" + "z" * 32, lo + 3600, px=7.0, vol=7.0))
    return out


# ------------------------------------------------------------------------------------------
# Tests


def test_fixture_has_the_edges():
    ts = {r["timestamp"] for r in make_rows() if r["chain"] == "solana"}
    assert epoch(D1) in ts and epoch(D4) in ts and epoch(D0, 23 * 60 + 59) in ts
    assert epoch(DAYS[1]) in ts and epoch(DAYS[2], 23 * 60 + 59) in ts
    assert any(c.isalpha() for c in "".join(ref.bucket(m) for m in MINTS))


def test_multi_day_corpus_equals_source_row_by_row(world):
    res = json.loads(ok(world["procs"]["main"]).stdout)
    want = expected(world["rows"])
    assert [d["date"] for d in res["days"]] == [d.isoformat() for d in DAYS]
    assert res["total_rows"] == len(want)
    got = read_tree(world["main"], world["label"])
    assert got == want
    # the edges: midnight at --from, 23:59 of the last day in; D4 00:00 and D0 23:59 out
    times = {r[1] for r in got}
    assert epoch(D1) * 1000 in times and epoch(DAYS[2], 23 * 60 + 59) * 1000 in times
    assert epoch(DAYS[1]) * 1000 in times and epoch(DAYS[0], 23 * 60 + 59) * 1000 in times
    assert epoch(D4) * 1000 not in times and epoch(D0, 23 * 60 + 59) * 1000 not in times
    assert {HOSTILE, TAB, UNI} <= {r[0] for r in got}
    per_day = {d["date"]: d["rows"] for d in res["days"]}
    assert per_day == {d.isoformat(): sum(day_of(r[1]) == d.isoformat() for r in want) for d in DAYS}


def test_seals_outside_the_data_tree(world):
    main = world["main"]
    assert [p for p in tree(main).rglob("*") if p.is_file() and p.suffix != ".parquet"] == []
    for day in DAYS:
        seal = json.loads(seal_path(main, day).read_text("utf-8"))
        day_dir = tree(main) / "chain=solana" / "interval=1m" / f"date={day}"
        listed = sorted(f["path"] for f in seal["files"])
        on_disk = sorted(p.relative_to(day_dir).as_posix() for p in day_dir.rglob("*.parquet"))
        assert listed == on_disk and listed
        assert seal["rows"] == sum(f["rows"] for f in seal["files"])
        assert seal["rows"] == sum(pq.ParquetFile(day_dir / p).metadata.num_rows for p in listed)
        assert seal["source_snapshot"]["kind"] == "clickhouse"
        assert seal["source_snapshot"]["table"] == "ohlcv_candles"
        assert seal["content_sha256"] and seal["date"] == day.isoformat()
        assert typed_shape_problems(seal, DaySeal) == []  # the typed seal is the seal on disk


def test_verify_and_show(world):
    p = world["procs"]
    assert p["verify"].returncode == 0, p["verify"].stdout + p["verify"].stderr
    assert p["show"].returncode == 0, p["show"].stderr
    for day in DAYS:
        assert day.isoformat() in p["show"].stdout


def test_verify_fails_after_tampering_one_file(world):
    proc = world["procs"]["verify_tampered"]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert world["victim"].name in proc.stdout + proc.stderr


def test_verify_reports_a_day_without_seal_as_unsealed(world):
    proc = world["procs"]["verify_unsealed"]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "unsealed" in out and DAYS[1].isoformat() in out
    show = world["procs"]["show_unsealed"]
    assert show.returncode == 0, show.stderr
    assert "unsealed" in show.stdout and all(d.isoformat() in show.stdout for d in DAYS)


def test_rerun_of_one_day_is_byte_identical(world):
    ok(world["procs"]["mut_same"])
    assert world["hashes"]["mut_same"] == world["hashes"]["mut_full"]


def test_changed_day_is_replaced_whole(world):
    res = json.loads(ok(world["procs"]["mut_changed"]).stdout)
    mut, d2 = world["mut"], DAYS[1].isoformat()
    assert [d["date"] for d in res["days"]] == [d2]
    got = read_tree(mut, f"clickhouse:{DB}.mutable")
    assert got == expected(world["new_rows"])
    assert any(r[3] == 4242.0 for r in got)
    day_dir = tree(mut) / "chain=solana" / "interval=1m" / f"date={d2}"
    seal = json.loads(seal_path(mut, d2).read_text("utf-8"))
    on_disk = sorted(p.relative_to(day_dir).as_posix() for p in day_dir.rglob("*") if p.is_file())
    assert on_disk == sorted(f["path"] for f in seal["files"])  # nothing old left behind
    gone = sorted({ref.bucket(m) for m in MINTS})[:3]
    assert not any((day_dir / f"mint_bucket={b}").exists() for b in gone)
    before, after = world["hashes"]["mut_full"], corpus_hashes(mut)
    others = {k: v for k, v in before.items() if f"date={d2}" not in k}
    assert others == {k: v for k, v in after.items() if f"date={d2}" not in k}
    assert not (mut / "lake" / ".staging").exists() or not any((mut / "lake" / ".staging").iterdir())
    ok(run_cli("verify", tree(mut), cwd=world["base"]))


def test_readers_agree(world):
    """Polars, DuckDB and pyarrow open the tree with hive partitioning and no schema hints.

    The fixture has 40 mints, so bucket names include letters (asserted): every reader infers
    mint_bucket as text. (A tree whose buckets all look numeric would be read as integers by
    Polars' and pyarrow's inference; the README documents the string hive schema for that.)"""
    root = tree(world["main"])
    want = {}
    for r in expected(world["rows"]):
        key = (day_of(r[1]), ref.bucket(r[0]))
        want[key] = want.get(key, 0) + 1
    assert any(not b.isdigit() for _, b in want)

    polars_counts = pl.scan_parquet(root).group_by("date", "mint_bucket").len().collect()
    by_polars = {(str(d), str(b)): n for d, b, n in polars_counts.iter_rows()}
    con = duckdb.connect()
    by_duckdb = {
        (str(d), str(b)): n
        for d, b, n in con.execute(
            "SELECT date, mint_bucket, count(*) FROM read_parquet(?, hive_partitioning=true) GROUP BY ALL",
            [f"{root}/**/*.parquet"],
        ).fetchall()
    }
    table = ds.dataset(root, partitioning="hive").to_table(columns=["date", "mint_bucket"])
    by_arrow = {}
    for d, b in zip(table["date"].to_pylist(), table["mint_bucket"].to_pylist(), strict=True):
        by_arrow[(str(d), str(b))] = by_arrow.get((str(d), str(b)), 0) + 1
    assert by_polars == want
    assert by_duckdb == want
    assert by_arrow == want
    total = sum(want.values())
    assert pl.scan_parquet(root).select(pl.len()).collect().item() == total
    assert ds.dataset(root, partitioning="hive").count_rows() == total


def test_mints_file_restricts(world):
    res = json.loads(ok(world["procs"]["mints"]).stdout)
    want = expected(world["rows"], mints=set(MINTS_SUBSET))
    assert res["total_rows"] == len(want)
    assert read_tree(world["sub"], world["label"]) == want
    assert {r[0] for r in want} == set(MINTS_SUBSET)  # the hostile mint (tab-free) survives the file


def test_run_export_from_corpus_equals_clickhouse_run(world):
    ch = json.loads(ok(world["procs"]["run_ch"]).stdout)
    co = json.loads(ok(world["procs"]["run_corpus"]).stdout)

    def slices(res):
        files = sorted((Path(res["run_dir"]) / "slices").rglob("*.parquet"))
        return pl.concat([pl.read_parquet(f) for f in files])

    a, b = slices(ch), slices(co)
    assert a.drop("source").equals(b.drop("source")) and a.height > 0
    assert set(a["source"]) == {world["label"]} and set(b["source"]) == {"corpus:ohlcv"}
    cov = [(Path(r["run_dir"]) / "outputs" / "coverage.parquet").read_bytes() for r in (ch, co)]
    assert cov[0] == cov[1]
    assert pl.read_parquet(Path(co["run_dir"]) / "outputs" / "coverage.parquet")["available_total"].sum() > 0
    assert [(f["path"], f["rows"]) for f in ch["manifest"]["files"]] == [
        (f["path"], f["rows"]) for f in co["manifest"]["files"]
    ]
    # the window that ends exactly at D4 00:00 holds the 23:59 candle of the last day
    c2 = pl.read_parquet(Path(co["run_dir"]) / "outputs" / "coverage.parquet").filter(
        pl.col("alert_id") == "c2"
    )
    assert c2["last_ts_ms"].item() == epoch(DAYS[2], 23 * 60 + 59) * 1000


def test_python_api_export_corpus(world, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    res = lakeslice.export_corpus(
        interval="1m", date_from=D1.isoformat(), date_to=D4, source=world["url"], data_root=tmp_path
    )
    assert [d["date"] for d in res.days] == [d.isoformat() for d in DAYS]
    assert res.to_json()["total_rows"] == len(expected(world["rows"]))
    cli_days = json.loads(world["procs"]["main"].stdout)["days"]
    assert [d["content_sha256"] for d in res.days] == [d["content_sha256"] for d in cli_days]
    assert corpus_hashes(tmp_path) == world["hashes"]["main"]  # same bytes, seals included
