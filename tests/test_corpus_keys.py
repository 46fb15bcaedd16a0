"""Issue 12 items 2, 9, 10 and issue 15: the corpus keyed by chain, restricted exports, mints
files read as data, windows past the dates Polars represents, date= trees as sources.

Small Parquet sources written here; expectations are plain Python over their rows.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from support.runs import corpus_hashes
from typer.testing import CliRunner

import lakeslice as ls
from lakeslice.cli import app

DAY0 = 1_704_067_200  # 2024-01-01T00:00:00Z
OHLCV = ("open", "high", "low", "close", "volume")


def cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args], env={"SOURCE_DATE_EPOCH": "1700000000"})
    return res


def source_rows(mints, *, chain="solana", interval=60, days=2, px=1.0, per_day=30) -> list[dict]:
    rows = []
    for m, mint in enumerate(mints):
        for d in range(days):
            for i in range(per_day):
                ts = DAY0 + d * 86400 + i * 37 * interval % 86400 // interval * interval
                rows.append(
                    {
                        "token_address": mint,
                        "chain": chain,
                        "timestamp": ts,
                        "interval_seconds": interval,
                        "open": px + m,
                        "high": px + m + 1,
                        "low": px + m - 1,
                        "close": px + m + 0.5,
                        "volume": float(i + 1),
                    }
                )
    return rows


def write_source(path: Path, rows: list[dict]) -> Path:
    frame = pl.DataFrame(rows).with_columns(
        pl.from_epoch("timestamp", time_unit="s"), pl.col("interval_seconds").cast(pl.UInt32)
    )
    frame.write_parquet(path)
    return path


def corpus(root, src, *extra, date_from="2024-01-01", date_to="2024-01-03"):
    return cli(
        "corpus", "--interval", "1m", "--from", date_from, "--to", date_to,
        "--source", src, "--data-root", root, "--format", "json", *extra,
    )  # fmt: skip


def test_chains_live_side_by_side(tmp_path):
    """An ethereum export into the same root never touches the solana days; seals say the chain."""
    rows = source_rows(["MintA", "MintB"]) + source_rows(["MintA", "MintB"], chain="ethereum", px=900.0)
    src = f"parquet://{write_source(tmp_path / 'src.parquet', rows)}"
    root = tmp_path / "root"
    assert corpus(root, src).exit_code == 0
    before = corpus_hashes(root)
    res = corpus(root, src, "--chain", "ethereum")
    assert res.exit_code == 0, res.stderr
    after = corpus_hashes(root)
    assert {k: v for k, v in after.items() if "chain=solana" in k} == before
    assert any("chain=ethereum" in k for k in after)
    for chain, px in (("solana", 1.0), ("ethereum", 900.0)):
        seal = json.loads(
            (root / f"lake/corpus/_seals/ohlcv/chain={chain}/interval=1m/date=2024-01-01.json").read_text()
        )
        assert seal["chain"] == chain and "mints" not in seal
        got = ls.scan_corpus(root, chain=chain, interval="1m").collect()
        assert set(got["open"].to_list()) == {px, px + 1}
        assert got.height == sum(1 for r in rows if r["chain"] == chain)
    # a solana run export from the corpus reads solana candles only
    alerts = tmp_path / "alerts.csv"
    alerts.write_text(f"alert_id,mint,ts_ms\na1,MintA,{(DAY0 + 3600) * 1000}\n")
    out = cli(
        "export", "--alerts", alerts, "--interval", "1m", "--window", "pre100_post100",
        "--source", f"corpus://{root}", "--data-root", tmp_path / "runs", "--run-id", "x", "--format", "json",
    )  # fmt: skip
    assert out.exit_code == 0, out.stderr
    slices = ls.scan_run(json.loads(out.stdout)["run_dir"]).collect()
    assert slices.height > 0 and set(slices["open"].to_list()) == {1.0}


def test_mints_export_never_replaces_a_complete_day(tmp_path):
    rows = source_rows(["MintA", "MintB", "MintC"])
    src = f"parquet://{write_source(tmp_path / 'src.parquet', rows)}"
    mints = tmp_path / "mints.txt"
    mints.write_text("MintB\n")
    root = tmp_path / "root"
    assert corpus(root, src).exit_code == 0
    before = corpus_hashes(root)
    res = corpus(root, src, "--mints", mints)
    assert res.exit_code == 2, res.stderr
    assert "complete" in res.stderr and "2024-01-01" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert corpus_hashes(root) == before  # nothing written, not even the first day
    # into a root without complete days: written, and the seal records the restriction
    sub = tmp_path / "sub"
    res = corpus(sub, src, "--mints", mints)
    assert res.exit_code == 0, res.stderr
    seal = json.loads(
        (sub / "lake/corpus/_seals/ohlcv/chain=solana/interval=1m/date=2024-01-01.json").read_text()
    )
    assert seal["mints"]["restricted"] is True and seal["mints"]["count"] == 1
    assert seal["mints"]["sha256"] == hashlib.sha256(b"MintB\n").hexdigest()
    assert set(ls.scan_corpus(sub, interval="1m").collect()["mint"]) == {"MintB"}
    # a complete export may replace a restricted day
    assert corpus(sub, src).exit_code == 0
    assert set(ls.scan_corpus(sub, interval="1m").collect()["mint"]) == {"MintA", "MintB", "MintC"}


def test_mints_file_is_data_not_stripped(tmp_path):
    """A mint with surrounding spaces is a different mint: the text file keeps it as written."""
    spaced = "  MintA "
    rows = source_rows(["MintA", spaced, "MintC"])
    src = f"parquet://{write_source(tmp_path / 'src.parquet', rows)}"
    mints = tmp_path / "mints.txt"
    mints.write_text(f"{spaced}\nMintC\n")
    res = corpus(tmp_path / "root", src, "--mints", mints)
    assert res.exit_code == 0, res.stderr
    got = ls.scan_corpus(tmp_path / "root", interval="1m").collect()
    assert set(got["mint"]) == {spaced, "MintC"}
    assert got.height == sum(1 for r in rows if r["token_address"] in (spaced, "MintC"))
    bad = tmp_path / "bad.txt"
    bad.write_text("MintA\n\nMintC\n")
    res = corpus(tmp_path / "other", src, "--mints", bad)
    assert res.exit_code == 2 and "row 2" in res.stderr and "empty" in res.stderr


def test_legacy_corpus_without_chain_reads_as_solana(tmp_path):
    rows = source_rows(["MintA", "MintB"])
    src = f"parquet://{write_source(tmp_path / 'src.parquet', rows)}"
    root = tmp_path / "root"
    assert corpus(root, src).exit_code == 0
    want = ls.scan_corpus(root, interval="1m").collect().sort("mint", "ts")
    corpus_dir = root / "lake/corpus"
    for top in ("ohlcv", "_seals/ohlcv"):  # the layout before chain=: interval= right below ohlcv
        shutil.move(corpus_dir / top / "chain=solana" / "interval=1m", corpus_dir / top / "interval=1m")
        (corpus_dir / top / "chain=solana").rmdir()
    got = ls.scan_corpus(root, chain="solana", interval="1m").collect().sort("mint", "ts")
    assert got.equals(want) and got.height == len(rows)
    assert ls.scan_corpus(root, chain="ethereum", interval="1m").collect().height == 0
    assert cli("verify", root / "lake/corpus/ohlcv").exit_code == 0


def test_corpus_source_window_past_representable_dates(tmp_path):
    """A window reaching past the dates Polars represents: corpus:// answers as parquet:// does."""
    rows = source_rows(["MintA", "MintB"], interval=86400, days=1, per_day=1)
    rows += [dict(r, timestamp=r["timestamp"] + 86400 * k) for r in rows for k in (1, 2)]
    pq_src = write_source(tmp_path / "src.parquet", rows)
    root = tmp_path / "root"
    res = cli(
        "corpus", "--interval", "1d", "--from", "2024-01-01", "--to", "2024-01-04",
        "--source", f"parquet://{pq_src}", "--data-root", root,
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    alerts = tmp_path / "alerts.csv"
    alerts.write_text(f"alert_id,mint,ts_ms\na1,MintA,{(DAY0 + 60) * 1000}\n")
    out = {}
    for name, src in (("pq", f"parquet://{pq_src}"), ("corpus", f"corpus://{root}")):
        res = cli(
            "export", "--alerts", alerts, "--interval", "1d", "--window", "pre1_post100000000",
            "--source", src, "--data-root", tmp_path / name, "--run-id", "far", "--format", "json",
        )  # fmt: skip
        assert res.exit_code == 0, res.stderr
        out[name] = json.loads(res.stdout)
    assert out["corpus"]["total_rows"] == out["pq"]["total_rows"] == 3
    assert out["corpus"]["manifest"]["content_sha256"] != ""


@pytest.mark.parametrize("form", ["corpus", "tree"])
def test_corpus_from_a_date_partitioned_tree(tmp_path, form):
    """Issue 15: `corpus --source corpus://ROOT` (or a parquet:// tree of date= folders) works."""
    rows = source_rows(["MintA", "MintB"])
    src = f"parquet://{write_source(tmp_path / 'src.parquet', rows)}"
    first = tmp_path / "first"
    assert corpus(first, src).exit_code == 0
    again = (
        f"corpus://{first}"
        if form == "corpus"
        else f"parquet://{first}/lake/corpus/ohlcv/chain=solana/interval=1m"
    )
    res = corpus(tmp_path / "second", again)
    assert res.exit_code == 0, res.stderr
    a = ls.scan_corpus(first, interval="1m").collect().drop("source").sort("mint", "ts")
    b = ls.scan_corpus(tmp_path / "second", interval="1m").collect().drop("source").sort("mint", "ts")
    assert a.equals(b) and a.height == len(rows)


def test_unsealed_day_is_refused_not_skipped(tmp_path):
    """A day without its seal (being re-exported) makes readers of it fail, never answer less."""
    rows = source_rows(["MintA", "MintB"], days=3)
    src = f"parquet://{write_source(tmp_path / 'src.parquet', rows)}"
    root = tmp_path / "root"
    assert corpus(root, src, date_to="2024-01-04").exit_code == 0
    (root / "lake/corpus/_seals/ohlcv/chain=solana/interval=1m/date=2024-01-02.json").unlink()
    with pytest.raises(ls.RunError, match="date=2024-01-02: unsealed"):
        ls.scan_corpus(root, interval="1m")
    day1 = ls.scan_corpus(root, interval="1m", start="2024-01-01", end="2024-01-02").collect()
    assert day1.height == len(rows) // 3 and set(day1["date"]) == {"2024-01-01"}
    alerts = tmp_path / "alerts.csv"
    alerts.write_text(f"alert_id,mint,ts_ms\na1,MintA,{(DAY0 + 86400 + 60) * 1000}\n")
    res = cli(
        "export", "--alerts", alerts, "--interval", "1m", "--window", "pre5_post5",
        "--source", f"corpus://{root}", "--data-root", tmp_path / "runs", "--run-id", "x",
    )  # fmt: skip
    assert res.exit_code == 1 and "unsealed" in res.stderr, res.stderr


def test_day_sealed_only_by_its_pending_seal_is_read(tmp_path):
    """A crash between the day's swap and its seal's rename leaves date=D.json.next: readers take it."""
    rows = source_rows(["MintA"], days=1)
    src = f"parquet://{write_source(tmp_path / 'src.parquet', rows)}"
    root = tmp_path / "root"
    assert corpus(root, src, date_to="2024-01-02").exit_code == 0
    seal = root / "lake/corpus/_seals/ohlcv/chain=solana/interval=1m/date=2024-01-01.json"
    seal.rename(seal.with_name(seal.name + ".next"))
    assert ls.scan_corpus(root, interval="1m").collect().height == len(rows)
    assert cli("verify", root / "lake/corpus/ohlcv").exit_code == 0
