"""The lake on disk (SPEC §5, §6): verify against tampering, seals, and third-party readers."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from support import reference as ref
from support.cli import export_args
from support.cli import invoke as cli
from support.data import ALERTS_CSV, CANDLES_PQ
from support.runs import all_run_rows, slice_files

from lakeslice.spec import RunError


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake")
    res = cli(export_args(root, "lake"))
    assert res.exit_code == 0, res.stderr
    return root / "lake" / "runs" / "run_id=lake"


@pytest.fixture
def copy(sealed, tmp_path):
    """A private copy of the sealed run, free to tamper with."""
    dst = tmp_path / "runs" / "run_id=lake"
    shutil.copytree(sealed, dst)
    return dst


def verify(path):
    return cli(["verify", path])


def first_part(run_dir: Path) -> Path:
    return slice_files(run_dir)[0]


# --------------------------------------------------------------------------------------------
# verify


def test_verify_untouched_and_moved(copy, tmp_path):
    res = verify(copy)
    assert res.exit_code == 0, res.stderr
    assert "ok" in res.stdout
    # a run directory moved elsewhere still verifies: the manifest names nothing outside it
    moved = tmp_path / "elsewhere" / "x"
    shutil.move(copy, moved)
    assert verify(moved).exit_code == 0


def test_verify_flipped_byte(copy):
    part = first_part(copy)
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x01
    part.write_bytes(bytes(data))
    res = verify(copy)
    assert res.exit_code == 1
    assert part.relative_to(copy).as_posix() in res.stderr
    assert "Traceback" not in res.stderr


def test_verify_same_size_other_content_in_coverage(copy):
    cov = copy / "outputs" / "coverage.parquet"
    data = bytearray(cov.read_bytes())
    data[10] ^= 0xFF
    cov.write_bytes(bytes(data))
    res = verify(copy)
    assert res.exit_code == 1 and "outputs/coverage.parquet" in res.stderr


def test_verify_deleted_file(copy):
    part = first_part(copy)
    part.unlink()
    res = verify(copy)
    assert res.exit_code == 1
    assert part.relative_to(copy).as_posix() in res.stderr


def test_verify_extra_unlisted_parquet(copy):
    part = first_part(copy)
    extra = part.with_name("part-0001.parquet")
    shutil.copy(part, extra)
    res = verify(copy)
    assert res.exit_code == 1
    assert extra.relative_to(copy).as_posix() in res.stderr


def test_verify_extra_file_found_under_hidden_or_relative_parent(sealed, tmp_path, monkeypatch):
    """An unlisted file is found wherever the run directory lives (a '.'/'_' parent, '..')."""
    dst = tmp_path / ".hidden" / "_under" / "run_id=lake"
    shutil.copytree(sealed, dst)
    part = first_part(dst)
    shutil.copy(part, part.with_name("part-0001.parquet"))
    assert verify(dst).exit_code == 1
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    assert verify(Path("..") / ".hidden" / "_under" / "run_id=lake").exit_code == 1


def test_verify_edited_manifest(copy):
    m = json.loads((copy / "manifest.json").read_text())
    m["files"][-1]["rows"] += 1
    (copy / "manifest.json").write_text(json.dumps(m, sort_keys=True, indent=2) + "\n")
    assert verify(copy).exit_code == 1


def test_verify_content_sha_mismatch(copy):
    m = json.loads((copy / "manifest.json").read_text())
    m["content_sha256"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(m, sort_keys=True, indent=2) + "\n")
    res = verify(copy)
    assert res.exit_code == 1 and "content_sha256" in res.stderr


def test_verify_unsealed(copy):
    (copy / "manifest.json").unlink()
    res = verify(copy)
    assert res.exit_code == 1
    assert "unsealed" in res.stderr
    assert "Traceback" not in res.stderr


def test_verify_missing_dir(tmp_path):
    res = verify(tmp_path / "nope")
    assert res.exit_code == 2 and "Traceback" not in res.stderr  # a missing path is bad input


def test_readers_refuse_unsealed(copy):
    from lakeslice import scan_windows
    from lakeslice.lake.read import scan_coverage, scan_run

    (copy / "manifest.json").unlink()
    for fn in (scan_run, scan_windows, scan_coverage):
        with pytest.raises(RunError, match="unsealed"):
            fn(copy)


def test_scan_run_verify_flag_catches_tamper(copy):
    from lakeslice.lake.read import scan_run

    assert scan_run(copy, verify=True).collect().height > 0
    first_part(copy).write_bytes(b"garbage")
    with pytest.raises(RunError):
        scan_run(copy, verify=True)


# --------------------------------------------------------------------------------------------
# Third-party readers


def _ms(value) -> int:
    if isinstance(value, dt.datetime):
        return ref.epoch_ms(value)
    return int(value)


def _rows(records) -> list[tuple]:
    keys = ("mint", "ts", "interval_s", "open", "high", "low", "close", "volume", "source", "mint_bucket")
    return sorted(tuple(_ms(r[k]) if k == "ts" else r[k] for k in keys) for r in records)


def test_readers_agree_on_rows_and_bucket(sealed):
    slices = sealed / "slices"
    # the fixture's buckets all look numeric: the documented recipe pins them to strings
    buckets = sorted({f.parent.name.split("=")[1] for f in slice_files(sealed)})
    assert all(b.isdigit() for b in buckets), buckets

    # From the slices dir every hive key of the path must be in the schema (Polars refuses a
    # partial one); from the window dir the documented one-key recipe is enough.
    polars_rows = pl.scan_parquet(
        slices,
        hive_partitioning=True,
        hive_schema={"interval": pl.String, "window": pl.String, "mint_bucket": pl.String},
    ).collect()
    window_dir = slices / "ohlcv" / "interval=1m" / "window=pre10_post20"
    recipe = pl.scan_parquet(
        window_dir, hive_partitioning=True, hive_schema={"mint_bucket": pl.String}
    ).collect()
    assert _rows(recipe.iter_rows(named=True)) == _rows(polars_rows.iter_rows(named=True))
    assert polars_rows.schema["mint_bucket"] == pl.String
    assert polars_rows.schema["ts"] == pl.Datetime("ms", "UTC")
    p = _rows(polars_rows.iter_rows(named=True))

    con = duckdb.connect()
    rel = con.execute(
        "SELECT * FROM read_parquet(?, hive_partitioning = true, hive_types = {'mint_bucket': 'VARCHAR'})",
        [f"{slices}/**/*.parquet"],
    )
    cols = [d[0] for d in rel.description]
    d = _rows(dict(zip(cols, row, strict=True)) for row in rel.fetchall())

    part = ds.partitioning(
        pa.schema([("interval", pa.string()), ("window", pa.string()), ("mint_bucket", pa.string())]),
        flavor="hive",
    )
    table = ds.dataset(slices / "ohlcv", format="parquet", partitioning=part).to_table()
    assert pa.types.is_string(table.schema.field("mint_bucket").type)
    a = _rows(table.to_pylist())

    from lakeslice.lake.read import scan_run

    scanned = scan_run(sealed).collect()
    assert scanned.schema["mint_bucket"] == pl.String
    s = _rows(scanned.iter_rows(named=True))

    direct = sorted(
        (
            r["mint"],
            r["ts_ms"],
            r["interval_s"],
            r["open"],
            r["high"],
            r["low"],
            r["close"],
            r["volume"],
            r["source"],
            ref.bucket(r["mint"]),
        )
        for r in all_run_rows(sealed)
    )
    assert len(direct) > 100
    assert p == d == a == s == direct
    for mint, bucket in scanned.select("mint", "mint_bucket").unique().iter_rows():
        assert bucket == hashlib.sha1(mint.encode("utf-8")).hexdigest()[:2]


def test_stale_staging_of_a_dead_export_is_cleaned(tmp_path):
    """A staged directory left by a killed export is removed by the next export of that run."""
    staging = tmp_path / "lake" / ".staging"  # commit.py: lake/.staging/<runs>.<run_id=..>.<token>
    stale = staging / "runs.run_id=st.deadbeef"
    (stale / "slices").mkdir(parents=True)
    (stale / "slices" / "part-0000.parquet").write_bytes(b"half written")
    # other runs' staging is not ours to touch, also a run id that extends "st" with a dot
    others = [staging / "runs.run_id=other.cafe0001", staging / "runs.run_id=st.v2.cafe0001"]
    for other in others:
        other.mkdir()
    res = cli(export_args(tmp_path, "st"))
    assert res.exit_code == 0, res.stderr
    assert not stale.exists()
    assert all(other.exists() for other in others)
    assert verify(tmp_path / "lake" / "runs" / "run_id=st").exit_code == 0


def test_alerts_input_is_recorded(sealed):
    """The sealed alerts input holds the CSV's alerts (normalized), and the seal names both inputs."""
    import pyarrow.parquet as pq

    alerts = pq.read_table(sealed / "inputs/alerts.parquet").select(["alert_id", "mint", "ts_ms"])
    assert sorted(alerts.to_pylist(), key=lambda a: a["alert_id"]) == sorted(
        ref.alerts_csv(ALERTS_CSV), key=lambda a: a["alert_id"]
    )
    m = json.loads((sealed / "manifest.json").read_text())
    assert m["inputs"]["alerts"]["rows"] == alerts.num_rows == 8
    assert m["inputs"]["alerts"]["name"] == ALERTS_CSV.name
    assert m["inputs"]["source_snapshot"]["table"] == CANDLES_PQ.name


def test_manifest_written_last(sealed):
    """The seal is newer than every data file it lists (written after all of them)."""
    m_time = os.stat(sealed / "manifest.json").st_mtime_ns
    m = json.loads((sealed / "manifest.json").read_text())
    for f in m["files"]:
        assert os.stat(sealed / f["path"]).st_mtime_ns <= m_time


@pytest.mark.parametrize("name", ["_SUCCESS", ".part-0000.parquet.crc", "notes.txt"])
def test_verify_flags_stray_files_that_break_readers(copy, name):
    """Polars' directory scan fails on any non-Parquet file in the tree; verify says so."""
    stray = first_part(copy).parent / name
    stray.write_text("x")  # (Polars 2.1: "directory contained paths with different file extensions")
    res = verify(copy)
    assert res.exit_code == 1
    assert name in res.stderr
