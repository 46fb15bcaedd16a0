"""Issue 11: a ClickHouse cluster of two shards (tests/chcluster.py) as the candle source.

The candles are inserted once through a ``Distributed`` table whose sharding key is the mint's
bucket, so ClickHouse itself places every mint: shard 0 holds buckets 00-7f, shard 1 80-ff.
The same rows go into the session's single server (tests/chserver.py) under the same database
and table name: the unsharded reference. Expectations (buckets, rows) are computed here in
plain Python with hashlib; exports are compared byte for byte.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from chcluster import BUCKET_SQL, ClickHouseCluster
from hypothesis import given, settings
from hypothesis import strategies as st

from lakeslice import export_run_slices, verify_dir
from lakeslice.errors import InputError
from lakeslice.export import bucket_groups
from lakeslice.sources import CandleRequest, open_source
from lakeslice.sources.base import QUANTBOT_COLUMNS
from lakeslice.sources.sharded import parse_shards

DB = "shardlake"  # the logical table: Distributed on the cluster, MergeTree on the single server
LOCAL_DB = "shardlocal"  # each shard's own part
TABLE = "ohlcv_candles"
T0 = 1_704_067_200
MIN_MS = 60_000
WINDOW = "pre10_post20"
PASSWORD = "s3cret-pw"  # tests/chserver.py's user "lake"
HOSTILE = ["O'Brien\\'); DROP TABLE ohlcv_candles; --", "tab\tmint", "Ünïcødé-мята-🚀", 'q"uo`te']
MINTS = [f"Mint{i:02d}{'k' * 30}{i * 7919}" for i in range(36)] + HOSTILE
LAKESLICE = str(Path(sys.executable).with_name("lakeslice"))


def bucket(mint: str) -> str:
    return hashlib.sha1(mint.encode()).hexdigest()[:2]


def make_rows() -> list[tuple]:
    """1m candles with gaps, ``ver`` duplicates, and another interval that must not count."""
    rng = random.Random(11)
    rows = []
    for m, mint in enumerate(MINTS):
        for i in range(150):
            if rng.random() < 0.1:
                continue
            px = round(1 + m + rng.random(), 6)
            ts = T0 + 60 * i
            rows.append((mint, "solana", ts, 60, px, px + 1, px - 0.5, px + 0.25, float(i), 1))
            if rng.random() < 0.15:  # a newer version wins
                rows.append((mint, "solana", ts, 60, px + 9, px + 10, px, px + 9, 1.0, 2))
            if i % 10 == 0:
                rows.append((mint, "solana", ts, 300, 999.0, 999.0, 999.0, 999.0, 1e9, 9))
    return rows


def make_alerts() -> pl.DataFrame:
    rng = random.Random(5)
    mints = [m for m in MINTS for _ in range(2)] + ["NoSuchMint" + "x" * 34]
    ts = [T0 * 1000 + rng.randrange(0, 150 * MIN_MS) for _ in mints]
    return pl.DataFrame({"mint": mints, "ts_ms": ts})


def expected_rows(rows, alerts: pl.DataFrame) -> int:
    """Distinct (mint, minute) candles in the union of each mint's windows, in plain Python."""
    wins: dict[str, list[tuple[int, int]]] = {}
    for mint, ts in alerts.iter_rows():
        anchor = ts // MIN_MS * MIN_MS
        wins.setdefault(mint, []).append((anchor - 10 * MIN_MS, anchor + 21 * MIN_MS))
    keys = {(r[0], r[2] * 1000) for r in rows if r[3] == 60}
    return sum(any(lo <= t < hi for lo, hi in wins.get(m, ())) for m, t in keys)


DDL = (
    "CREATE TABLE `{db}`.`{table}` (token_address String, chain String, timestamp DateTime,"
    " interval_seconds UInt32, open Float64, high Float64, low Float64, close Float64,"
    " volume Float64, ver UInt64) ENGINE = {engine}"
)
MERGE_TREE = "MergeTree() ORDER BY (token_address, interval_seconds, timestamp)"


def _insert(client, db: str, rows, **kwargs) -> None:
    columns = [list(col) for col in zip(*rows, strict=True)]
    cols = ", ".join((*QUANTBOT_COLUMNS, "ver"))
    client.execute(f"INSERT INTO `{db}`.`{TABLE}` ({cols}) VALUES", columns, columnar=True, **kwargs)


@pytest.fixture(scope="module")
def cluster():
    with ClickHouseCluster(2) as cl:
        for server in cl.shards:
            client = server.client()
            client.execute(f"CREATE DATABASE {LOCAL_DB}")
            client.execute(DDL.format(db=LOCAL_DB, table=TABLE, engine=MERGE_TREE))
        head = cl.shards[0].client()
        head.execute(f"CREATE DATABASE {DB}")
        engine = f"Distributed(lake_cluster, {LOCAL_DB}, {TABLE}, {cl.sharding_key()})"
        head.execute(DDL.format(db=DB, table=TABLE, engine=engine))
        # ClickHouse places every row by the sharding key; synchronously, so it is there now.
        _insert(head, DB, make_rows(), settings={"insert_distributed_sync": 1})
        yield cl


@pytest.fixture(scope="module")
def single(clickhouse_server):
    client = clickhouse_server.client()
    client.execute(f"DROP DATABASE IF EXISTS {DB}")
    client.execute(f"CREATE DATABASE {DB}")
    client.execute(DDL.format(db=DB, table=TABLE, engine=MERGE_TREE))
    _insert(client, DB, make_rows())
    return clickhouse_server


@pytest.fixture(scope="module")
def alerts(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("alerts") / "alerts.parquet"
    make_alerts().write_parquet(path)
    return path


def files_of(run_dir: Path) -> dict[str, bytes]:
    """Every data file of a run (not the manifest), by relative path."""
    return {
        p.relative_to(run_dir).as_posix(): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def export(alerts: Path, root: Path, source: str, **kwargs):
    return export_run_slices(
        alerts, interval="1m", window=WINDOW, source=source, data_root=root, run_id="r", **kwargs
    )


@pytest.fixture(scope="module")
def unsharded(single, alerts, tmp_path_factory):
    return export(alerts, tmp_path_factory.mktemp("single"), single.url(DB))


# ------------------------------------------------------------------------------------------
# The cluster itself


def test_clickhouse_places_mints_by_bucket(cluster):
    """Each shard holds exactly the mints of its bucket range; ClickHouse's SHA1 = ours."""
    for (lo, hi), server in zip(cluster.bucket_ranges(), cluster.shards, strict=True):
        got = server.client().execute(
            f"SELECT DISTINCT token_address, {BUCKET_SQL} FROM {LOCAL_DB}.{TABLE} ORDER BY token_address"
        )
        want = sorted(m for m in MINTS if lo <= bucket(m) <= hi)
        assert [m for m, _ in got] == want and want  # never empty: both shards are exercised
        assert all(b == bucket(m) for m, b in got)


# ------------------------------------------------------------------------------------------
# Through the Distributed table


def test_distributed_export_equals_unsharded(cluster, unsharded, alerts, tmp_path):
    """External tables reach both shards: same files, same content_sha256 as one server."""
    run = export(alerts, tmp_path, cluster.shards[0].url(DB))
    assert files_of(run.run_dir) == files_of(unsharded.run_dir)
    assert run.manifest["content_sha256"] == unsharded.manifest["content_sha256"]
    assert run.manifest["files"] == unsharded.manifest["files"]
    rows = run.manifest["outputs"]["slices"]["rows"]
    assert rows == expected_rows(make_rows(), make_alerts()) and rows > 0
    buckets = {p.split("mint_bucket=")[1][:2] for p in files_of(run.run_dir) if "mint_bucket=" in p}
    assert min(buckets) < "80" <= max(buckets)  # rows from both shards
    assert verify_dir(run.run_dir).ok


# ------------------------------------------------------------------------------------------
# Shard by shard (--source-shards)


def test_source_shards_export_equals_unsharded(cluster, unsharded, alerts, tmp_path):
    """Each group read from its shard's local table; the Distributed table is never asked.

    ``source`` names the logical table on a port nobody listens on: the export succeeds only
    because every row comes from the shards, and records the logical table all the same.
    """
    dead = f"clickhouse://127.0.0.1:{_dead_port()}/{DB}"
    shards = ",".join(
        f"{lo}-{hi}=clickhouse://lake:{PASSWORD}@127.0.0.1:{s.port}/{LOCAL_DB}"
        for (lo, hi), s in zip(cluster.bucket_ranges(), cluster.shards, strict=True)
    )
    run = export(alerts, tmp_path, dead, source_shards=shards)
    assert files_of(run.run_dir) == files_of(unsharded.run_dir)
    assert run.manifest["content_sha256"] == unsharded.manifest["content_sha256"]
    snap = run.manifest["inputs"]["source_snapshot"]
    assert [s["buckets"] for s in snap["shards"]] == ["00-7f", "80-ff"]
    assert [s["host"] for s in snap["shards"]] == [f"127.0.0.1:{s.port}" for s in cluster.shards]
    assert (snap["database"], snap["table"]) == (DB, TABLE)
    assert PASSWORD not in (run.run_dir / "manifest.json").read_text()


def test_source_shards_name_what_they_hold_on_a_mistyped_chain(cluster, alerts, tmp_path):
    """No row for ``--chain solanna``: exit 2 naming what the shards hold, nothing sealed."""
    shards = ",".join(
        f"{lo}-{hi}=clickhouse://lake:{PASSWORD}@127.0.0.1:{s.port}/{LOCAL_DB}"
        for (lo, hi), s in zip(cluster.bucket_ranges(), cluster.shards, strict=True)
    )
    proc = subprocess.run(
        [LAKESLICE, "export", "--alerts", str(alerts), "--interval", "1m", "--window", WINDOW,
         "--data-root", str(tmp_path), "--source-shards", shards, "--chain", "solanna"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "solanna" in proc.stderr and "solana 1m" in proc.stderr
    assert PASSWORD not in proc.stderr + proc.stdout
    assert not list((tmp_path / "lake" / "runs").glob("run_id=*/manifest.json"))


def test_source_shards_on_dask_equals_unsharded(cluster, unsharded, alerts, tmp_path):
    """Each Dask task reads its group from the shard holding it: the same bytes again."""
    from daskcluster import dask_url, local_cluster

    dask = local_cluster(2)
    try:
        run = export(
            alerts,
            tmp_path,
            cluster.shards[0].url(DB),
            source_shards=cluster.source_shards(LOCAL_DB),
            executor=dask_url(dask),
        )
    finally:
        dask.close()
    assert files_of(run.run_dir) == files_of(unsharded.run_dir)
    assert run.manifest["content_sha256"] == unsharded.manifest["content_sha256"]


def _read(shards: str, request: CandleRequest) -> pl.DataFrame:
    src = open_source(None, table=TABLE, shards=shards)
    try:
        batches = list(src.fetch(request))
    finally:
        src.close()
    frame = pl.concat([pl.from_arrow(b) for b in batches]) if batches else pl.DataFrame()
    return frame.with_columns(pl.col("mint").cast(pl.String)) if batches else frame


def test_shards_answer_only_for_their_buckets(cluster):
    """Routing follows the map: the right map finds every row once, a swapped one none."""
    n = len(MINTS)
    ranges = pl.DataFrame(
        {"mint": sorted(MINTS), "start_ms": [T0 * 1000] * n, "end_ms": [(T0 + 9000) * 1000] * n}
    )
    request = CandleRequest("solana", 60, ranges)
    a, b = (s.url(LOCAL_DB) for s in cluster.shards)
    got = _read(f"00-7f={a},80-ff={b}", request)
    want = sorted((r[0], r[2] * 1000, r[9]) for r in make_rows() if r[3] == 60)
    assert sorted(got.select("mint", "ts_ms", "ver").iter_rows()) == want
    assert _read(f"00-7f={b},80-ff={a}", request).height == 0


def test_sharded_mint_counts_equal_unsharded(cluster, single):
    """Corpus planning counts: every mint once, from its own shard."""
    a, b = (s.url(LOCAL_DB) for s in cluster.shards)
    kw = dict(chain="solana", interval_s=60, start_ms=T0 * 1000, end_ms=(T0 + 3600) * 1000)
    src = open_source(None, table=TABLE, shards=f"00-7f={a},80-ff={b}")
    try:
        got = src.mint_counts(**kw)
    finally:
        src.close()
    want: dict[str, int] = {}
    for r in make_rows():
        if r[3] == 60 and r[2] < T0 + 3600:
            want[r[0]] = want.get(r[0], 0) + 1
    assert dict(got.iter_rows()) == want
    assert got["mint"].to_list() == sorted(want)


# ------------------------------------------------------------------------------------------
# The shard map and the grouping (no server)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("00-7f=clickhouse://a/db", "no shard holds buckets 80-ff"),
        ("00-7f=clickhouse://a/db,70-ff=clickhouse://b/db", "buckets 70-7f are in two shards"),
        ("01-ff=clickhouse://a/db", "no shard holds buckets 00-00"),
        ("00-7f=clickhouse://a/db,90-ff=clickhouse://b/db", "no shard holds buckets 80-8f"),
        ("7f-00=clickhouse://a/db", "bad entry"),
        ("clickhouse://a/db", "expected RANGE=URL"),
        ("00-ff=", "bad entry"),
    ],
)
def test_bad_shard_maps_are_input_errors(text, message):
    with pytest.raises(InputError, match=message):
        parse_shards(text)


def test_shard_map_keeps_commas_inside_urls_and_hides_passwords():
    shards = parse_shards("80-FF=clickhouse://u:p,w@b/db?x=1,2 , 00-7F=clickhouse://a/db")
    assert [(s.first, s.last, s.url) for s in shards] == [
        ("00", "7f", "clickhouse://a/db"),
        ("80", "ff", "clickhouse://u:p,w@b/db?x=1,2"),
    ]
    with pytest.raises(InputError) as info:
        parse_shards("00-7f=clickhouse://u:hunter2@a/db")
    assert "hunter2" not in str(info.value)


buckets_st = st.sets(st.integers(0, 255), min_size=1).map(lambda s: [f"{b:02x}" for b in sorted(s)])


@settings(max_examples=200, deadline=None)
@given(
    buckets=buckets_st,
    rows=st.lists(st.integers(0, 50), min_size=256, max_size=256),
    starts=st.sets(st.integers(1, 255)).map(lambda s: ["00", *(f"{b:02x}" for b in sorted(s))]),
    group_rows=st.integers(1, 200),
)
def test_groups_never_straddle_a_shard(buckets, rows, starts, group_rows):
    """Every bucket once, in order; a group lies in one shard; within a shard, the usual cut."""
    est = pl.DataFrame({"mint_bucket": buckets, "rows": [rows[int(b, 16)] for b in buckets]})
    groups = bucket_groups(est, group_rows, starts=starts)
    assert [b for g in groups for b in g] == buckets
    shard_of = {b: sum(b >= s for s in starts) for b in buckets}
    assert all(len({shard_of[b] for b in g}) == 1 for g in groups)
    for shard in set(shard_of.values()):
        mine = [b for b in buckets if shard_of[b] == shard]
        sub = est.filter(pl.col("mint_bucket").is_in(mine))
        assert [g for g in groups if shard_of[g[0]] == shard] == bucket_groups(sub, group_rows)


def test_cli_bad_shard_map_is_one_line_exit_2(alerts, tmp_path):
    proc = subprocess.run(
        [LAKESLICE, "export", "--alerts", str(alerts), "--interval", "1m", "--window", WINDOW,
         "--data-root", str(tmp_path), "--source-shards", "00-7f=clickhouse://u:hunter2@a/db"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "80-ff" in proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout
    assert not (tmp_path / "lake" / "runs").exists()


def _dead_port() -> int:
    from chserver import free_port

    return free_port()
