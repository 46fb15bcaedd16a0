"""ClickHouse blocks read into Arrow by lakeslice/sources/native.py, against a real server.

- Every column type the decoder reads itself (and a few it hands to the driver) gives the same
  values as the driver's own row-by-row result of the same query, over many blocks.
- A ``clickhouse://`` export in a real process never imports pandas, and writes the same data
  as the Parquet-source export of the same candles (only the ``source`` column differs).
- ``--password-file`` authenticates a password-protected user; an unreadable file is one line.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import load_candles
from support.cli import clean_env, run_cli
from support.data import ALERTS_CSV, CANDLES_PQ, HOSTILE

from lakeslice.sources.native import arrow_blocks, send_tables, stream_batches

DB = "native"

# name, type, SQL expression of row number ``number`` (ClickHouse 18.16 and later)
COLUMNS = [
    ("i8", "Int8", "toInt8(number % 256 - 128)"),
    ("i16", "Int16", "toInt16(number * 7 % 65536 - 32768)"),
    ("i32", "Int32", "toInt32(number * 7919 % 4294967296 - 2147483648)"),
    ("i64", "Int64", "toInt64(number * 1000000007) - toInt64(9000000000000000000)"),
    ("u8", "UInt8", "toUInt8(number % 256)"),
    ("u16", "UInt16", "toUInt16(number % 65536)"),
    ("u32", "UInt32", "toUInt32(number * 7919 % 4294967296)"),
    ("u64", "UInt64", "toUInt64(18446744073709551615) - number"),
    ("f32", "Float32", "toFloat32(number / 3)"),
    ("f64", "Float64", "if(number % 1000 = 7, nan, number / 7 - 1e6)"),
    ("s", "String", "if(number % 5 = 0, '', concat('m', toString(number), '-ünï🚀'))"),
    ("ns", "Nullable(String)", "if(number % 3 = 0, NULL, toString(number))"),
    ("ni", "Nullable(Int64)", "if(number % 4 = 0, NULL, toInt64(number) - 5)"),
    ("nf", "Nullable(Float64)", "if(number % 6 = 0, NULL, number * 0.25)"),
    ("d", "Decimal(12, 2)", "toDecimal64(number / 100, 2) - toDecimal64(700, 2)"),
    ("d9", "Decimal(9, 3)", "toDecimal32(number / 1000, 3) - toDecimal32(70, 3)"),
    ("d38", "Decimal(38, 4)", "toDecimal128(number, 4) * toDecimal128(-12345678901234, 0)"),
    ("ts", "DateTime", "toDateTime(1700000000 + number)"),  # the driver's reader
]
ROWS = 150_000  # several blocks of at most max_block_size rows


def arrow_result(client, sql: str, settings: dict) -> pl.DataFrame:
    with client.disconnect_on_error(sql, settings):
        arrow_blocks(client.connection)
        client.connection.send_query(sql)
        send_tables(client.connection, [])
    batches = list(stream_batches(client))
    assert len(batches) > 3
    return pl.concat([pl.from_arrow(b) for b in batches])  # type: ignore[misc]


@pytest.mark.parametrize("compression", [False, "lz4", "zstd"])
def test_decoded_columns_equal_the_drivers_rows(clickhouse_server, compression):
    select = ", ".join(f"CAST({expr} AS {typ}) AS {name}" for name, typ, expr in COLUMNS)
    sql = f"SELECT {select} FROM system.numbers LIMIT {ROWS}"
    client = clickhouse_server.client(compression=compression)
    try:
        frame = arrow_result(client, f"{sql}", {"max_block_size": 40_000})
        rows, types = client.execute(sql, with_column_types=True)  # the driver's own row path
    finally:
        client.disconnect()
    assert [t for _, t in types] == [t for _, t, _ in COLUMNS]
    assert frame.columns == [n for n, _, _ in COLUMNS] and frame.height == ROWS == len(rows)
    for i, (name, typ, _) in enumerate(COLUMNS):
        got = frame[name].to_list()
        want = [r[i] for r in rows]
        if typ == "Float64":
            assert [math.isnan(g) for g in got] == [math.isnan(w) for w in want], name
            got = [g for g in got if not math.isnan(g)]
            want = [w for w in want if not math.isnan(w)]
        if typ == "DateTime":
            got = [int(g.timestamp()) for g in got]
            want = [int(w.timestamp()) for w in want]
        assert got == want, name
    assert frame["ns"].null_count() == ROWS // 3 and frame["i64"].dtype == pl.Int64


def test_a_result_without_rows_yields_no_batch(clickhouse_server):
    client = clickhouse_server.client()
    try:
        sql = "SELECT toInt64(number) AS n FROM system.numbers LIMIT 0"
        with client.disconnect_on_error(sql, None):
            arrow_blocks(client.connection)
            client.connection.send_query(sql)
            send_tables(client.connection, [])
        assert list(stream_batches(client)) == []
        # the next query reads its blocks the driver's way again
        assert client.execute("SELECT 1 + 1") == [(2,)]
    finally:
        client.disconnect()


def _export_argv(source: str, data_root: Path, *extra: str) -> list[str]:
    return [
        "export",
        "--alerts",
        str(ALERTS_CSV),
        "--interval",
        "1m",
        "--window",
        "pre5_post30",
        "--source",
        source,
        "--data-root",
        str(data_root),
        "--run-id",
        "r",
        "--format",
        "json",
        *extra,
    ]


def _slices(manifest: dict, run_dir: Path) -> dict[str, pl.DataFrame]:
    return {
        f["path"]: pl.read_parquet(run_dir / f["path"]).drop("source")
        for f in manifest["files"]
        if f["path"].startswith("slices/")
    }


#: ``python -m lakeslice ARGS`` with bucket groups of ~30 rows: the export runs its groups
#: from shared queries (``SqlCandleSource.prepare``), the path a large export takes.
SMALL_GROUPS = (
    "import runpy, sys; from lakeslice.sources.clickhouse import ClickHouseSource;"
    " ClickHouseSource.group_rows = 30; sys.argv[0] = 'lakeslice';"
    " runpy.run_module('lakeslice', run_name='__main__', alter_sys=True)"
)


def test_clickhouse_export_imports_no_pandas_and_equals_the_parquet_export(clickhouse_server, tmp_path):
    """In many groups and shared queries, like a large export."""
    load_candles(clickhouse_server, DB, "ohlcv_candles", pl.read_parquet(CANDLES_PQ))
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            SMALL_GROUPS,
            *_export_argv(clickhouse_server.url(DB), tmp_path / "ch"),
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert {"clickhouse_driver", "polars", "pyarrow"} <= imported  # the export did run the driver
    assert "pandas" not in imported
    ch = json.loads(proc.stdout)["manifest"]
    pq = run_cli(*_export_argv(f"parquet://{CANDLES_PQ}", tmp_path / "pq"))
    assert pq.returncode == 0, pq.stderr
    pq_manifest = json.loads(pq.stdout)["manifest"]
    # Same files, same rows; coverage and alerts byte-identical; slices equal but for `source`.
    assert [(f["path"], f["rows"]) for f in ch["files"]] == [
        (f["path"], f["rows"]) for f in pq_manifest["files"]
    ]
    sha = {f["path"]: f["sha256"] for f in pq_manifest["files"]}
    assert all(f["sha256"] == sha[f["path"]] for f in ch["files"] if not f["path"].startswith("slices/"))
    ch_slices = _slices(ch, tmp_path / "ch" / "lake" / "runs" / "run_id=r")
    pq_slices = _slices(pq_manifest, tmp_path / "pq" / "lake" / "runs" / "run_id=r")
    assert ch_slices.keys() == pq_slices.keys() and ch["outputs"]["slices"]["rows"] > 0
    for path, frame in ch_slices.items():
        assert frame.equals(pq_slices[path]), path


PASSWORD = "s3cret-pw"  # tests/chserver.py's user "lake"


def test_password_file_flag_authenticates_and_a_bad_file_is_one_line(clickhouse_server, tmp_path):
    if not hasattr(clickhouse_server, "proc"):
        pytest.skip("an external server has its own users")
    load_candles(clickhouse_server, DB, "ohlcv_candles", pl.read_parquet(CANDLES_PQ))
    url = clickhouse_server.url(DB, "lake")  # a user, no password in the URL
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\nsecond line is not the password\n")
    ok = run_cli(*_export_argv(url, tmp_path / "ok", "--password-file", str(secret)))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["manifest"]["outputs"]["slices"]["rows"] > 0
    # without it the same user is refused (the flag did the work)
    refused = run_cli(*_export_argv(url, tmp_path / "no"))
    assert refused.returncode == 1 and "lake" in refused.stderr and len(refused.stderr.splitlines()) == 1
    # a wrong password from the file: refused, and the password never printed
    wrong = tmp_path / "wrong"
    wrong.write_text(f"not-{HOSTILE}\n")
    bad = run_cli(*_export_argv(url, tmp_path / "bad", "--password-file", str(wrong)))
    assert bad.returncode == 1 and "authentication failed" in bad.stderr
    assert f"not-{HOSTILE}" not in bad.stderr + bad.stdout
    for path in (tmp_path / "missing", tmp_path):  # absent; a directory
        proc = run_cli(*_export_argv(url, tmp_path / "x", "--password-file", str(path)))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"lakeslice: error: --password-file {path}: cannot read (")
        assert json.loads(proc.stdout)["error"]["code"] == "input_error"
