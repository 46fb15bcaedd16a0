"""Run export end to end (SPEC §3–§7): golden run vs a brute-force reference, determinism,
strict coverage, part splitting, overwrite and the event-study view.

Expectations are computed here in plain Python over lists of rows read with pyarrow; nothing
in this file calls lakeslice.transforms to know what the answer should be.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import reference as ref
from support.cli import export_args, run_cli
from support.cli import invoke as cli
from support.data import (
    ALERTS_CSV,
    CANDLES_PQ,
    COVERAGE_COLUMNS,
    OHLCV,
    REPO,
    RESULT_KEYS,
    SLICE_COLUMNS,
    quantbot_row,
    typed_shape_problems,
)
from support.runs import all_run_rows, file_rows, sha256_of, slice_files, staging_leftovers

from lakeslice.lake.manifest import Manifest

LABEL = "parquet:candles.parquet"


def project(rows, keys=("mint", "ts_ms", "interval_s", *OHLCV, "source")):
    return [tuple(r[k] for k in keys) for r in rows]


def expected_slices(candles: list[dict], coverage: list[dict]) -> list[dict]:
    """The reference's slice rows of the kept alerts, with their ``interval_s``."""
    kept = [
        {"alert_id": c["alert_id"], "mint": c["mint"], "ts_ms": c["alert_ts_ms"]}
        for c in coverage
        if c["kept"]
    ]
    return [{**c, "interval_s": 60} for c in ref.slice_rows(candles, kept, 60, PRE, POST)]


# --------------------------------------------------------------------------------------------
# Golden run through the installed entry point


PRE, POST = 10, 20


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden") / "data-root"
    proc = run_cli(*export_args(root, "golden", extra=["--format", "json"]), cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    run_dir = root / "lake" / "runs" / "run_id=golden"
    return {"root": root, "run_dir": run_dir, "stdout": proc.stdout}


def strict_coverage(reference: dict, min_pre: int, target: int) -> list[dict]:
    """The reference's coverage of the golden inputs in strict mode."""
    candles, alerts = reference["candles"], reference["alerts"]
    return ref.coverage_rows(
        candles, alerts, 60, PRE, POST, strict=True, min_required_pre=min_pre, target_total=target
    )


@pytest.fixture(scope="module")
def reference():
    raw = pq.read_table(CANDLES_PQ).to_pylist()
    candles = ref.dedupe(ref.quantbot_candles(raw, label=LABEL))
    alerts = ref.alerts_csv(ALERTS_CSV)
    cov = ref.coverage_rows(candles, alerts, 60, PRE, POST)
    return {"candles": candles, "alerts": alerts, "coverage": cov, "slices": expected_slices(candles, cov)}


def test_golden_layout_is_exact(golden, reference):
    run_dir = golden["run_dir"]
    buckets = sorted({ref.bucket(r["mint"]) for r in reference["slices"]})
    assert len(buckets) == 4  # 3 mints + the hostile one; the unknown mint has no directory
    expected = {
        "manifest.json",
        "inputs/alerts.parquet",
        "outputs/coverage.parquet",
        *(f"slices/ohlcv/interval=1m/window=pre10_post20/mint_bucket={b}/part-0000.parquet" for b in buckets),
    }
    found = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    assert found == expected
    # nothing left in the staging area after a successful seal
    assert staging_leftovers(golden["root"]) == []


def test_golden_slice_rows_match_reference(golden, reference):
    want_all = reference["slices"]
    # the fixture's duplicates matter: some chosen rows are the re-ingested (greater volume) ones
    raw = pq.read_table(CANDLES_PQ).to_pylist()
    seen: dict[tuple, int] = {}
    for r in raw:
        if r["chain"] == "solana" and r["interval_seconds"] == 60:
            k = (r["token_address"], ref.epoch_ms(r["timestamp"]))
            seen[k] = seen.get(k, 0) + 1
    dup_keys = {k for k, n in seen.items() if n > 1}
    assert dup_keys & {(r["mint"], r["ts_ms"]) for r in want_all}, "fixture no longer tests dedup"

    for f in slice_files(golden["run_dir"]):
        bucket = f.parent.name.removeprefix("mint_bucket=")
        rows = file_rows(f)
        want = [r for r in want_all if ref.bucket(r["mint"]) == bucket]
        assert project(rows) == project(want), f
        keys = [(r["mint"], r["ts_ms"]) for r in rows]
        assert keys == sorted(set(keys)), f"{f}: not strictly sorted by (mint, ts)"
    assert project(sorted(all_run_rows(golden["run_dir"]), key=lambda r: (r["mint"], r["ts_ms"]))) == project(
        want_all
    )
    assert {r["source"] for r in want_all} == {LABEL}


def test_golden_slice_file_schema(golden):
    for f in slice_files(golden["run_dir"]):
        schema = pq.read_schema(f)
        assert schema.names == SLICE_COLUMNS
        assert schema.field("ts").type == pa.timestamp("ms", tz="UTC")
        assert schema.field("interval_s").type == pa.int32()
        for c in OHLCV:
            assert schema.field(c).type == pa.float64()
        for c in ("mint", "source"):
            t = schema.field(c).type
            assert pa.types.is_string(t) or pa.types.is_large_string(t), (c, t)
        # the Parquet logical types, whatever Arrow type a reader maps them to
        pschema = pq.ParquetFile(f).schema
        ts_col = pschema.column(1)
        assert ts_col.physical_type == "INT64"
        assert ts_col.logical_type.type == "TIMESTAMP"
        lt = json.loads(ts_col.logical_type.to_json())
        assert lt["isAdjustedToUTC"] is True and lt["timeUnit"] == "milliseconds"
        assert pschema.column(2).physical_type == "INT32"
        assert pschema.column(0).logical_type.type == "STRING"


def test_golden_coverage_matches_reference(golden, reference):
    path = golden["run_dir"] / "outputs" / "coverage.parquet"
    table = pq.read_table(path)
    assert table.schema.names == COVERAGE_COLUMNS
    assert table.schema.field("kept").type == pa.bool_()
    for c in COVERAGE_COLUMNS[2:13]:
        assert pa.types.is_integer(table.schema.field(c).type), c
    assert table.to_pylist() == reference["coverage"]
    statuses = {r["status"] for r in reference["coverage"]}
    assert {"partial", "insufficient"} <= statuses  # the fixture exercises the statuses


def test_golden_manifest(golden, reference):
    run_dir = golden["run_dir"]
    raw = (run_dir / "manifest.json").read_bytes()
    m = json.loads(raw.decode("utf-8"))
    assert raw == (json.dumps(m, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
    text = raw.decode("utf-8")
    for leak in (str(golden["root"]), str(golden["root"].parent), str(REPO), str(run_dir)):
        assert leak not in text
    assert m["lake_version"] == "v1"
    assert typed_shape_problems(m, Manifest) == []  # the typed manifest is the manifest on disk
    assert m["run_id"] == "golden"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", m["created_at"])
    assert m["exporter"]["name"] == "lakeslice"
    assert m["exporter"]["version"]
    assert m["slice_spec"] == {
        **m["slice_spec"],
        "dataset": "ohlcv",
        "interval": "1m",
        "interval_s": 60,
        "window": "pre10_post20",
        "pre": 10,
        "post": 20,
        "anchor_rule": "floor_to_interval(ts, interval)",
    }
    snap = m["inputs"]["source_snapshot"]
    assert {"kind", "host", "database", "table", "chain", "as_of"} <= set(snap)
    assert snap["chain"] == "solana"
    alerts = m["inputs"]["alerts"]
    assert alerts["rows"] == 8
    assert alerts["sha256"] == sha256_of(run_dir / alerts["path"])

    files = m["files"]
    paths = [f["path"] for f in files]
    assert paths == sorted(paths)
    on_disk = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*.parquet"))
    assert sorted(paths) == on_disk
    for f in files:
        assert not f["path"].startswith("/") and ".." not in f["path"].split("/")
        assert "\\" not in f["path"]
        p = run_dir / f["path"]
        assert f["bytes"] == p.stat().st_size
        assert f["sha256"] == sha256_of(p)
        assert f["rows"] == pq.ParquetFile(p).metadata.num_rows
    lines = sorted(f"{f['path']} {f['sha256']}\n" for f in files)
    assert m["content_sha256"] == hashlib.sha256("".join(lines).encode()).hexdigest()

    slices = [f for f in files if f["path"].startswith("slices/")]
    out = m["outputs"]["slices"]
    assert out["files"] == len(slices) == 4
    assert out["rows"] == sum(f["rows"] for f in slices) == len(reference["slices"])
    assert out["bytes"] == sum(f["bytes"] for f in slices)
    assert out["mint_buckets"] == 4

    cov = m["coverage"]
    ref_cov = reference["coverage"]
    assert cov["path"] == "outputs/coverage.parquet"
    assert cov["strict"] is False
    assert cov["kept_events"] == 8 and cov["dropped_events"] == 0
    for status in ("complete", "partial", "insufficient"):
        assert cov[status] == sum(1 for r in ref_cov if r["status"] == status)


def test_golden_json_result(golden):
    out = golden["stdout"]
    result = json.loads(out)  # exactly one JSON document on stdout
    assert out.count("\n") == 1 and out.endswith("\n")
    assert RESULT_KEYS <= set(result)
    run_dir = golden["run_dir"]
    assert Path(result["run_dir"]).resolve() == run_dir.resolve()
    assert Path(result["manifest_path"]).resolve() == (run_dir / "manifest.json").resolve()
    assert Path(result["coverage_path"]).resolve() == (run_dir / "outputs/coverage.parquet").resolve()
    m = json.loads((run_dir / "manifest.json").read_text("utf-8"))
    assert result["manifest"] == m
    assert result["total_rows"] == m["outputs"]["slices"]["rows"]
    assert result["total_files"] == 4
    assert result["total_bytes"] == m["outputs"]["slices"]["bytes"]
    assert (result["kept_events"], result["dropped_events"]) == (8, 0)


# --------------------------------------------------------------------------------------------
# Determinism: two processes, two data roots, thread counts differ


def _synthetic_inputs(tmp: Path, *, mints=20, per_mint=3000, alerts=150, dup=0.1):
    from lakeslice.synthetic import synthetic_alerts, synthetic_candles

    src = tmp / "candles.parquet"
    # seed 7 everywhere: synthetic_alerts draws its mints with the default seed
    synthetic_candles(mints=mints, candles_per_mint=per_mint, duplicate_fraction=dup, seed=7).sample(
        fraction=1.0, shuffle=True, seed=3
    ).write_parquet(src)
    al = tmp / "alerts.parquet"
    synthetic_alerts(alerts=alerts, mints=mints, candles_per_mint=per_mint).write_parquet(al)
    return src, al


@pytest.mark.slow
def test_determinism_across_processes_threads_and_roots(tmp_path):
    src, al = _synthetic_inputs(tmp_path)
    runs = []
    for name, threads in (("a", "1"), ("b", None)):
        root = tmp_path / f"root-{name}"
        args = export_args(
            root,
            "det",
            window="pre52_post200",
            alerts=al,
            source=src,
            extra=["--target-file-mb", "0.05", "--format", "json"],
        )
        proc = run_cli(*args, env={"POLARS_MAX_THREADS": threads}, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        runs.append(root / "lake" / "runs" / "run_id=det")
    a, b = runs
    files_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    assert "manifest.json" in files_a
    assert sum(1 for f in files_a if "/part-0001" in f) > 0  # several parts per bucket
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    m = json.loads((a / "manifest.json").read_text())
    assert m["created_at"] == "2023-11-14T22:13:20Z"


# --------------------------------------------------------------------------------------------
# Strict coverage


@pytest.mark.parametrize("min_pre,target", [(8, 29), (9, 27), (0, 17)])
def test_strict_coverage(tmp_path, reference, min_pre, target):
    res = cli(
        [
            *export_args(
                tmp_path,
                "strict",
                extra=[
                    "--strict-coverage",
                    "--min-required-pre",
                    min_pre,
                    "--target-total",
                    target,
                    "--format",
                    "json",
                ],
            )
        ]
    )
    assert res.exit_code == 0, res.stderr
    run_dir = tmp_path / "lake" / "runs" / "run_id=strict"
    cov_ref = strict_coverage(reference, min_pre, target)
    kept = [c for c in cov_ref if c["kept"]]
    assert 0 < len(kept) < len(cov_ref)  # the parameters really split the alerts
    assert pq.read_table(run_dir / "outputs/coverage.parquet").to_pylist() == cov_ref

    want = expected_slices(reference["candles"], cov_ref)
    got = sorted(all_run_rows(run_dir), key=lambda r: (r["mint"], r["ts_ms"]))
    assert project(got) == project(want)
    # a dropped alert's candles are absent unless a kept alert's window covers them
    kept_windows = [(c["mint"], c["window_start_ts_ms"], c["window_end_ts_ms"]) for c in kept]
    for r in got:
        assert any(m == r["mint"] and s <= r["ts_ms"] < e for m, s, e in kept_windows)
    # files only for buckets that hold kept rows
    assert {f.parent.name[-2:] for f in slice_files(run_dir)} == {ref.bucket(r["mint"]) for r in want}

    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["coverage"]["strict"] is True
    assert m["coverage"]["min_required_pre"] == min_pre
    assert m["coverage"]["target_total"] == target
    assert m["coverage"]["kept_events"] == len(kept)
    assert m["coverage"]["dropped_events"] == len(cov_ref) - len(kept)
    assert m["outputs"]["slices"]["rows"] == len(want)
    result = json.loads(res.stdout)
    assert (result["kept_events"], result["dropped_events"]) == (len(kept), len(cov_ref) - len(kept))


def test_strict_overlap_of_kept_and_dropped_alert(tmp_path, reference):
    """a1 (dropped) and a2 (kept) overlap: only the overlap and a2's own candles remain."""
    res = cli(
        export_args(
            tmp_path, "ov", extra=["--strict-coverage", "--min-required-pre", 8, "--target-total", 29]
        )
    )
    assert res.exit_code == 0, res.stderr
    cov = {
        c["alert_id"]: c
        for c in pq.read_table(tmp_path / "lake/runs/run_id=ov/outputs/coverage.parquet").to_pylist()
    }
    a1, a2 = cov["a1"], cov["a2"]
    assert not a1["kept"] and a2["kept"] and a1["mint"] == a2["mint"]
    assert a1["window_start_ts_ms"] < a2["window_start_ts_ms"] < a1["window_end_ts_ms"]
    ts = {r["ts_ms"] for r in all_run_rows(tmp_path / "lake/runs/run_id=ov") if r["mint"] == a1["mint"]}
    mint_ts = [c["ts_ms"] for c in reference["candles"] if c["mint"] == a1["mint"]]
    only_a1 = {t for t in mint_ts if a1["window_start_ts_ms"] <= t < a2["window_start_ts_ms"]}
    overlap = {t for t in mint_ts if a2["window_start_ts_ms"] <= t < a1["window_end_ts_ms"]}
    assert only_a1 and overlap
    assert not ts & only_a1
    assert overlap <= ts


# --------------------------------------------------------------------------------------------
# Part splitting


def test_part_splitting_continues_order(tmp_path):
    src, al = _synthetic_inputs(tmp_path, mints=6, per_mint=3000, alerts=24, dup=0.0)
    target_mb = 0.01
    small = cli(
        export_args(
            tmp_path / "d",
            "small",
            window="pre100_post400",
            alerts=al,
            source=src,
            extra=["--target-file-mb", target_mb],
        )
    )
    big = cli(export_args(tmp_path / "d", "big", window="pre100_post400", alerts=al, source=src))
    assert small.exit_code == 0 and big.exit_code == 0, small.stderr + big.stderr
    small_dir = tmp_path / "d/lake/runs/run_id=small"
    big_dir = tmp_path / "d/lake/runs/run_id=big"
    target = target_mb * 1024 * 1024
    bucket_dirs = sorted({f.parent for f in slice_files(small_dir)})
    assert len(bucket_dirs) >= 3
    max_parts = 0
    for bdir in bucket_dirs:
        parts = sorted(bdir.glob("*.parquet"))
        names = [p.name for p in parts]
        assert names == [f"part-{i:04d}.parquet" for i in range(len(parts))]
        max_parts = max(max_parts, len(parts))
        rows = [r for p in parts for r in file_rows(p)]
        keys = [(r["mint"], r["ts_ms"]) for r in rows]
        assert keys == sorted(set(keys)), f"{bdir}: parts do not continue (mint, ts) order"
        whole = big_dir / bdir.relative_to(small_dir) / "part-0000.parquet"
        assert not (whole.parent / "part-0001.parquet").exists()
        assert project(rows) == project(file_rows(whole))  # same rows, same order, split
        sizes = [p.stat().st_size for p in parts]
        if len(parts) > 1:
            # roughly bounded: near the target, never wildly above or below it
            assert max(sizes) <= 1.5 * target, sizes
            assert min(sizes) >= target / 4, sizes
            assert len(parts) <= 2 * (whole.stat().st_size // target + 1)
        else:
            assert sizes[0] <= target
    assert max_parts >= 3
    m = json.loads((small_dir / "manifest.json").read_text())
    assert m["outputs"]["slices"]["rows"] == sum(
        pq.ParquetFile(f).metadata.num_rows for f in slice_files(big_dir)
    )


# --------------------------------------------------------------------------------------------
# Overwrite


def test_overwrite_refused_then_replaces_whole(tmp_path):
    run_dir = tmp_path / "lake/runs/run_id=ow"
    first = cli(export_args(tmp_path, "ow"))
    assert first.exit_code == 0, first.stderr
    before = {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}

    again = cli(export_args(tmp_path, "ow", window="pre2_post3"))
    assert again.exit_code == 2
    assert "overwrite" in again.stderr and "Traceback" not in again.stderr
    after = {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert after == before
    assert cli(["verify", run_dir]).exit_code == 0

    new = cli(export_args(tmp_path, "ow", window="pre2_post3", extra=["--overwrite"]))
    assert new.exit_code == 0, new.stderr
    files = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    assert not any("window=pre10_post20" in f for f in files)
    assert any("window=pre2_post3" in f for f in files)
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["slice_spec"]["window"] == "pre2_post3"
    assert files == {"manifest.json", *(f["path"] for f in m["files"])}
    assert cli(["verify", run_dir]).exit_code == 0
    runs = tmp_path / "lake/runs"
    assert sorted(p.name for p in runs.iterdir() if not p.name.startswith(".")) == ["run_id=ow"]
    assert staging_leftovers(tmp_path) == []


def test_failed_export_leaves_nothing(tmp_path):
    res = cli(export_args(tmp_path, "bad", window="pre1_postX"))
    assert res.exit_code == 2
    runs = tmp_path / "lake/runs"
    assert not (runs / "run_id=bad").exists()
    assert staging_leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------
# The event-study view


def test_scan_windows_offsets(golden, reference):
    from lakeslice import scan_windows

    got = scan_windows(golden["run_dir"]).collect()
    assert {"alert_id", "mint", "ts", "k"} <= set(got.columns)
    got_rows = sorted(
        (r["alert_id"], r["ts"].astimezone(dt.timezone.utc), r["k"]) for r in got.iter_rows(named=True)
    )
    want = []
    for c in reference["coverage"]:
        if not c["kept"]:
            continue
        for mint, ts in ((x["mint"], x["ts_ms"]) for x in reference["candles"]):
            if mint == c["mint"] and c["window_start_ts_ms"] <= ts < c["window_end_ts_ms"]:
                k = (ts - c["anchor_ts_ms"]) // 60_000
                assert (ts - c["anchor_ts_ms"]) % 60_000 == 0
                want.append((c["alert_id"], ref.EPOCH + dt.timedelta(milliseconds=ts), k))
    assert got_rows == sorted(want)
    assert len(got_rows) == len(set((a, t) for a, t, _ in got_rows))
    # alerts with overlapping windows both see the shared candles
    assert {"a1", "a2"} <= {a for a, _, _ in got_rows}
    ks = [k for _, _, k in got_rows]
    assert min(ks) == -PRE and max(ks) == POST


def test_scan_windows_only_kept_alerts(tmp_path, reference):
    from lakeslice import scan_windows

    res = cli(
        export_args(
            tmp_path, "sw", extra=["--strict-coverage", "--min-required-pre", 9, "--target-total", 27]
        )
    )
    assert res.exit_code == 0, res.stderr
    got = scan_windows(tmp_path / "lake/runs/run_id=sw").collect()
    cov = strict_coverage(reference, 9, 27)
    kept = {c["alert_id"] for c in cov if c["kept"]}
    assert set(got["alert_id"].to_list()) == kept
    counts = got.group_by("alert_id").len()
    assert dict(counts.iter_rows()) == {c["alert_id"]: c["available_total"] for c in cov if c["kept"]}


def test_api_export_frame_matches_cli(tmp_path, golden):
    """The Python API on a Polars frame writes the same data files as the CLI on the CSV."""
    from lakeslice.export import export_run_slices

    alerts = pl.read_csv(ALERTS_CSV, infer_schema=False)
    res = export_run_slices(
        alerts,
        interval="1m",
        window="pre10_post20",
        source=f"parquet://{CANDLES_PQ}",
        data_root=tmp_path,
        run_id="golden",
    )
    for f in res.manifest["files"]:
        assert (res.run_dir / f["path"]).read_bytes() == (golden["run_dir"] / f["path"]).read_bytes()
    shutil.rmtree(res.run_dir)


def test_bucket_grouping_never_changes_the_files(tmp_path, monkeypatch):
    """Bucket groups bound memory only: one bucket per group gives the same bytes."""
    import lakeslice.export as export_mod
    from lakeslice.sources.parquet import ParquetSource

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    src, al = _synthetic_inputs(tmp_path, mints=12, per_mint=1500, alerts=60)
    dirs = []
    for name, rows in (("one", 10**9), ("many", 1)):
        monkeypatch.setattr(ParquetSource, "group_rows", rows)
        res = export_mod.export_run_slices(
            al,
            interval="1m",
            window="pre30_post60",
            source=f"parquet://{src}",
            data_root=tmp_path / name,
            run_id="g",
            target_file_mb=0.02,
        )
        dirs.append(res.run_dir)
    a, b = dirs
    rel = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert rel == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    for r in rel:
        assert (a / r).read_bytes() == (b / r).read_bytes(), r


def test_no_candles_at_all(tmp_path):
    """Alerts whose mints have no candles: a sealed, verifiable run with no slice files."""
    alerts = tmp_path / "a.csv"
    alerts.write_text("alert_id,mint,ts_ms\nz1,Nobody111,1704067800000\nz2,Nobody222,1704067800000\n")
    res = cli(export_args(tmp_path, "empty", alerts=alerts, extra=["--format", "json"]))
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert (doc["total_rows"], doc["total_files"], doc["total_bytes"]) == (0, 0, 0)
    run_dir = tmp_path / "lake/runs/run_id=empty"
    assert not (run_dir / "slices").exists() or not list((run_dir / "slices").rglob("*.parquet"))
    cov = pq.read_table(run_dir / "outputs/coverage.parquet").to_pylist()
    assert [c["status"] for c in cov] == ["insufficient", "insufficient"]
    assert all(c["first_ts_ms"] is None and c["last_ts_ms"] is None for c in cov)
    assert doc["manifest"]["coverage"]["insufficient"] == 2
    assert cli(["verify", run_dir]).exit_code == 0
    from lakeslice.lake.read import scan_run

    assert scan_run(run_dir).collect().height == 0


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_unsealed_thing_at_run_id_needs_overwrite(tmp_path, kind):
    """Something that is not a sealed run at run_id=X (lakeslice never leaves one: it stages
    elsewhere) is refused without --overwrite, replaced with it, and nothing stays in .staging."""
    run_dir = tmp_path / "lake/runs/run_id=left"
    if kind == "dir":
        (run_dir / "slices").mkdir(parents=True)
        (run_dir / "slices" / "junk.parquet").write_bytes(b"junk")
    else:
        run_dir.parent.mkdir(parents=True)
        run_dir.write_bytes(b"junk")
    res = cli(export_args(tmp_path, "left"))
    assert res.exit_code == 2, res.stderr
    assert "run_id=left" in res.stderr and "--overwrite" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert (run_dir / "slices" / "junk.parquet").exists() if kind == "dir" else run_dir.is_file()
    res = cli(export_args(tmp_path, "left", extra=["--overwrite"]))
    assert res.exit_code == 0, res.stderr
    assert not (run_dir / "slices" / "junk.parquet").exists()
    assert cli(["verify", run_dir]).exit_code == 0
    assert list((tmp_path / "lake" / ".staging").iterdir()) == []


def test_interval_in_seconds_is_normalized(tmp_path):
    args = [str(a) for a in export_args(tmp_path, "sec", window="pre0_post0")]
    args[args.index("1m")] = "60"
    res = cli(args)
    assert res.exit_code == 0, res.stderr
    run_dir = tmp_path / "lake/runs/run_id=sec"
    assert [p.name for p in (run_dir / "slices/ohlcv").iterdir()] == ["interval=1m"]
    m = json.loads((run_dir / "manifest.json").read_text())
    assert (m["slice_spec"]["interval"], m["slice_spec"]["interval_s"]) == ("1m", 60)
    # pre0_post0: exactly the anchor candle of each alert that has one
    cov = pq.read_table(run_dir / "outputs/coverage.parquet").to_pylist()
    assert all(c["expected_total"] == 1 for c in cov)
    assert m["outputs"]["slices"]["rows"] == len(
        {(c["mint"], c["anchor_ts_ms"]) for c in cov if c["available_total"]}
    )


def test_status_counts_slots_end_to_end(tmp_path):
    """One empty slot and a second (off-grid) candle in another: as many candles as slots, yet
    ``partial`` (SPEC §4 counts slots), through the command and against the reference."""
    t0 = 1_704_067_200
    rows = [quantbot_row("m", t0 + 60 * i, px=float(i)) for i in range(10) if i != 4]
    rows.append(quantbot_row("m", t0 + 60 * 6 + 30, px=99.0))
    src = tmp_path / "candles.parquet"
    pl.DataFrame(rows).with_columns(timestamp=pl.from_epoch("timestamp")).write_parquet(src)
    alerts = tmp_path / "alerts.csv"
    alerts.write_text(f"alert_id,mint,ts_ms\nx,m,{(t0 + 5 * 60) * 1000}\n")
    res = cli(export_args(tmp_path, "slots", window="pre5_post4", alerts=alerts, source=src))
    assert res.exit_code == 0, res.stderr
    got = pq.read_table(tmp_path / "lake/runs/run_id=slots/outputs/coverage.parquet").to_pylist()
    candles = ref.quantbot_candles(rows, label="parquet:candles.parquet")
    want = ref.coverage_rows(candles, ref.alerts_csv(alerts), 60, 5, 4)
    assert got == want
    assert (want[0]["available_total"], want[0]["expected_total"], want[0]["status"]) == (10, 10, "partial")
