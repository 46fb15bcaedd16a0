"""Issue 12 item 1: a local run is a link to an immutable generation directory.

``runs/run_id=X`` links to ``lake/.generations/runs/X/g-<token>``; an ``--overwrite`` seals a
new generation, then replaces the link in one rename, and keeps the replaced generation for
the grace period. These tests kill the export (SIGKILL) before and after each step of that swap
and check that the run is then always the old or the new export, sealed, never a dangling link;
that the grace period holds and ends; and that verify accepts the run's own link only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from support.cli import clean_env, run_cli
from support.data import ALERTS_CSV, CANDLES_PQ
from support.runs import export_fixture

import lakeslice as ls
from lakeslice.lake.commit import remove_replaced
from lakeslice.lake.layout import generations_dir, run_dir
from lakeslice.lake.store import LocalLock
from lakeslice.lake.verify import verify_root

# A child process exporting with the swap's file-system calls counted: it kills itself with
# SIGKILL before (or after) call number STEP of the seal. It prints the number of calls made.
CHILD = r"""
import json, os, signal, sys
import lakeslice as ls
import lakeslice.lake.commit as commit

root, alerts, candles, step, when = sys.argv[1:6]
step = int(step)
state = {"armed": False, "calls": 0}

def counted(fn):
    def call(*args, **kwargs):
        if not state["armed"]:
            return fn(*args, **kwargs)
        n = state["calls"]
        state["calls"] += 1
        if n == step and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        out = fn(*args, **kwargs)
        if n == step and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    return call

for name in ("rename", "replace", "symlink", "utime"):
    setattr(os, name, counted(getattr(os, name)))
commit._exchange = counted(commit._exchange)
seal = commit.LocalCommit.seal

def armed_seal(self, document):
    state["armed"] = True
    return seal(self, document)

commit.LocalCommit.seal = armed_seal
ls.export_run_slices(alerts, interval="1m", window="pre10_post20", source="parquet://" + candles,
                     data_root=root, run_id="g", overwrite=True)
print(json.dumps({"calls": state["calls"]}))
"""


def _export(root: Path, alerts: str | pl.DataFrame, *, overwrite: bool = True) -> ls.ExportResult:
    return export_fixture(alerts, root, run_id="g", overwrite=overwrite)


def _child(root: Path, alerts: Path, step: int, when: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(root), str(alerts), str(CANDLES_PQ), str(step), when],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
    )


@pytest.fixture
def two_exports(tmp_path):
    """Alerts of two different exports A and B (files), and their content_sha256."""
    full = pl.read_csv(ALERTS_CSV, infer_schema=False)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    full.write_csv(a)
    full.head(3).write_csv(b)
    sha = {
        name: _export(tmp_path / f"ref-{name}", str(p)).manifest["content_sha256"]
        for name, p in (("a", a), ("b", b))
    }
    assert sha["a"] != sha["b"]
    return {"a": a, "b": b, "sha": sha}


def _legacy(root: Path) -> None:
    """Turn the run into a plain directory, as versions before generations wrote it."""
    run = run_dir(root, "g")
    copy = run.with_name("copy")
    shutil.copytree(run, copy)
    run.unlink()
    copy.rename(run)
    shutil.rmtree(generations_dir(root, "g"))


def _state(root: Path) -> str:
    """Which export the run holds; fails unless it is one sealed, verified export."""
    run = run_dir(root, "g")
    assert run.exists(), f"{run}: missing or a dangling link"
    reports = verify_root(run)
    assert [r.problems for r in reports] == [[]]
    return json.loads((run / "manifest.json").read_text())["content_sha256"]


@pytest.mark.slow
@pytest.mark.parametrize("legacy", [False, True], ids=["link", "legacy-directory"])
def test_sigkill_at_each_step_of_the_swap_leaves_old_or_new_sealed(tmp_path, two_exports, legacy):
    sha = two_exports["sha"]
    probe = tmp_path / "probe"
    _export(probe, str(two_exports["a"]))
    if legacy:
        _legacy(probe)
    dry = _child(probe, two_exports["b"], -1, "before")
    assert dry.returncode == 0, dry.stderr
    calls = json.loads(dry.stdout)["calls"]
    # manifest rename, staging → generation, (utime of the old one), symlink, link rename/exchange
    assert calls == (4 if legacy else 5), calls
    steps = [(k, "before") for k in range(calls)] + [(calls - 1, "after")]
    seen = []
    for k, when in steps:
        root = tmp_path / f"{k}-{when}"
        _export(root, str(two_exports["a"]))
        if legacy:
            _legacy(root)
        proc = _child(root, two_exports["b"], k, when)
        assert proc.returncode == -9, (k, when, proc.stderr)
        now = _state(root)
        seen.append(now)
        assert now in (sha["a"], sha["b"]), (k, when)
        # once the link is replaced (the last call) the new export is the run
        assert now == (sha["b"] if (k, when) == (calls - 1, "after") else sha["a"]), (k, when)
        assert ls.scan_run(run_dir(root, "g")).collect().height > 0
        # the next export of the run cleans what the killed one left, then only its own is kept
        again = _export(root, str(two_exports["b"]))
        assert again.manifest["content_sha256"] == sha["b"] and _state(root) == sha["b"]
        assert [p.name for p in (root / "lake" / ".staging").iterdir()] == []
        remove_replaced(root, keep_replaced=0)
        gens = list(generations_dir(root, "g").iterdir())
        assert gens == [Path(os.path.realpath(run_dir(root, "g")))]
    assert set(seen) == {sha["a"], sha["b"]}


def test_replaced_generation_stays_readable_for_the_grace_period(tmp_path, two_exports):
    root = tmp_path / "lake-root"
    first = _export(root, str(two_exports["a"]))
    path_a = ls.run_path(root, "g")
    want_a = pl.scan_parquet(path_a / "slices", hive_partitioning=True).collect()
    assert isinstance(path_a, Path) and path_a.parent == generations_dir(root, "g")
    assert Path(os.path.realpath(first.run_dir)) == path_a
    _export(root, str(two_exports["b"]))
    _export(root, str(two_exports["a"]))  # two overwrites later, A's generation is still there
    assert ls.run_path(root, "g") != path_a
    again = pl.scan_parquet(path_a / "slices", hive_partitioning=True).collect()
    assert again.equals(want_a)
    assert [r.problems for r in verify_root(path_a)] == [[]]


def test_grace_period_counts_from_the_replacement(tmp_path, two_exports, monkeypatch):
    root = tmp_path / "lake-root"
    _export(root, str(two_exports["a"]))
    gen_a = ls.run_path(root, "g")
    _export(root, str(two_exports["b"]))
    gen_b = ls.run_path(root, "g")
    long_ago = time.time() - 3600
    os.utime(gen_a, (long_ago, long_ago))  # replaced an hour ago
    os.utime(gen_b, (long_ago, long_ago))  # sealed an hour ago, but current until the next export
    _export(root, str(two_exports["a"]))  # replaces B now: B's grace starts now
    assert not gen_a.exists() and gen_b.is_dir()
    monkeypatch.setenv("LAKESLICE_KEEP_REPLACED", "0")
    _export(root, str(two_exports["b"]))
    assert sorted(generations_dir(root, "g").iterdir()) == [ls.run_path(root, "g")]


def test_gc_command_removes_replaced_generations_and_skips_a_run_being_written(tmp_path, two_exports):
    root = tmp_path / "lake-root"
    for name in ("a", "b", "a"):
        _export(root, str(two_exports[name]))
    current = ls.run_path(root, "g")
    assert len(list(generations_dir(root, "g").iterdir())) == 3
    kept = run_cli("gc", root, "--format", "json")  # default grace: nothing is old enough
    assert kept.returncode == 0 and json.loads(kept.stdout) == {"removed": []}
    lock = LocalLock(root / "lake" / ".locks" / "runs.run_id=g.lock")
    assert lock.acquire()
    try:
        busy = run_cli("gc", root, "--keep-replaced", "0", "--format", "json")
        assert json.loads(busy.stdout) == {"removed": []}  # an export of it holds the lock
    finally:
        lock.release()
    done = run_cli("gc", root, "--keep-replaced", "0", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["removed"]) == 2
    assert sorted(generations_dir(root, "g").iterdir()) == [current]
    assert _state(root) == two_exports["sha"]["a"]
    bad = run_cli("gc", root, "--keep-replaced", "-1")
    assert bad.returncode == 2 and "--keep-replaced" in bad.stderr
    # a run whose link was removed by hand: its generations go too
    run_dir(root, "g").unlink()
    run_cli("gc", root, "--keep-replaced", "0")
    assert not generations_dir(root, "g").exists()


def test_show_json_gives_the_resolved_generation(tmp_path, two_exports):
    root = tmp_path / "lake-root"
    _export(root, str(two_exports["a"]))
    proc = run_cli("show", run_dir(root, "g"), "--format", "json")
    doc = json.loads(proc.stdout)
    assert doc["resolved_path"] == str(ls.run_path(root, "g"))
    assert doc["manifest"]["content_sha256"] == two_exports["sha"]["a"]


def test_legacy_directory_run_still_reads_and_is_overwritten(tmp_path, two_exports):
    root = tmp_path / "lake-root"
    _export(root, str(two_exports["a"]))
    _legacy(root)
    run = run_dir(root, "g")
    assert run.is_dir() and not run.is_symlink()
    assert _state(root) == two_exports["sha"]["a"] and ls.run_path(root, "g") == Path(os.path.realpath(run))
    with pytest.raises(ls.InputError, match="already sealed"):
        _export(root, str(two_exports["b"]), overwrite=False)
    _export(root, str(two_exports["b"]))
    assert run.is_symlink() and _state(root) == two_exports["sha"]["b"]


def test_verify_accepts_only_a_link_to_a_generation_of_the_same_run(tmp_path, two_exports):
    root = tmp_path / "lake-root"
    _export(root, str(two_exports["a"]))
    ls.export_run_slices(
        str(two_exports["b"]),
        interval="1m",
        window="pre10_post20",
        source=f"parquet://{CANDLES_PQ}",
        data_root=root,
        run_id="other",
    )
    run = run_dir(root, "g")
    other = ls.run_path(root, "other")
    outside = tmp_path / "outside"
    shutil.copytree(ls.run_path(root, "g"), outside)
    for target in (other, outside):
        run.unlink()
        run.symlink_to(os.path.relpath(target, run.parent))
        proc = run_cli("verify", root)
        assert proc.returncode == 1, proc.stdout
        assert (
            "run_id=g: a symbolic link to" in proc.stderr and "not to a generation of this run" in proc.stderr
        )


def test_unsealed_data_never_becomes_a_generation_link(tmp_path, two_exports):
    """A failed export (bad input) leaves the old generation linked and adds none."""
    root = tmp_path / "lake-root"
    _export(root, str(two_exports["a"]))
    before = sorted(generations_dir(root, "g").iterdir())
    bad = tmp_path / "bad.csv"
    bad.write_text("mint,ts_ms\n,1\n")
    with pytest.raises(ls.InputError):
        _export(root, str(bad))
    assert sorted(generations_dir(root, "g").iterdir()) == before
    assert _state(root) == two_exports["sha"]["a"]


def test_a_link_to_a_missing_generation_is_reported_not_skipped(tmp_path, two_exports):
    """Generations removed by hand: verify and ls report the run, an export refuses it."""
    root = tmp_path / "lake-root"
    _export(root, str(two_exports["a"]))
    shutil.rmtree(generations_dir(root, "g"))
    proc = run_cli("verify", root)
    assert proc.returncode == 1 and "run_id=g" in proc.stderr and "unsealed" in proc.stderr
    assert ls.list_runs(root).select("run_id", "sealed").rows() == [("g", False)]
    with pytest.raises(ls.InputError, match="a link to a missing generation is in the way"):
        _export(root, str(two_exports["b"]), overwrite=False)
    _export(root, str(two_exports["b"]))
    assert _state(root) == two_exports["sha"]["b"]


def test_a_bad_grace_period_is_an_input_error_and_nothing_is_sealed(tmp_path):
    from support.cli import export_args

    proc = run_cli(*export_args(tmp_path, "g"), env={"LAKESLICE_KEEP_REPLACED": "ten minutes"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "LAKESLICE_KEEP_REPLACED='ten minutes'" in proc.stderr
    assert not (tmp_path / "lake").exists() or not any((tmp_path / "lake").rglob("manifest.json"))


def test_plain_readers_through_the_link(tmp_path, two_exports):
    """Polars, DuckDB and pyarrow read a run through its link with hive keys from SPEC's layout;
    DuckDB's ``**`` does not enter a linked run (the README says so)."""
    import duckdb
    import pyarrow.dataset as ds

    root = tmp_path / "lake-root"
    run = _export(root, str(two_exports["a"])).run_dir
    want = ls.scan_run(run).collect().drop("mint_bucket").sort("mint", "ts")
    slices = run / "slices"
    polars_dir = pl.scan_parquet(slices, hive_partitioning=True).collect()
    polars_glob = pl.scan_parquet(f"{slices}/**/*.parquet", hive_partitioning=True).collect()
    with duckdb.connect() as con:
        duck = con.sql(f"SELECT * FROM read_parquet('{slices}/**/*.parquet', hive_partitioning=true)").pl()
        star = f"SELECT count(*) FROM read_parquet('{run.parent}/*/slices/**/*.parquet')"
        through_star = con.execute(star).fetchone()
        with pytest.raises(duckdb.IOException, match="No files found"):
            con.execute(f"SELECT count(*) FROM read_parquet('{run.parent}/**/*.parquet')").fetchone()
    arrow = pl.from_arrow(ds.dataset(slices, format="parquet", partitioning="hive").to_table())
    assert isinstance(arrow, pl.DataFrame)
    hive = {"interval", "window", "mint_bucket"}
    assert set(polars_dir.columns) - set(want.columns) == hive
    assert set(polars_glob.columns) - set(want.columns) == hive | {"run_id"}  # run_id=X is in the path
    assert set(duck.columns) - set(want.columns) == hive | {"run_id"}
    assert through_star == (want.height,)
    for frame in (polars_dir, polars_glob, arrow):
        assert frame.select(want.columns).sort("mint", "ts").equals(want)
    duck_ts = duck.with_columns(pl.col("ts").dt.replace_time_zone("UTC").dt.cast_time_unit("ms"))
    assert duck_ts.select(want.columns).sort("mint", "ts").equals(want)
