"""A researcher's first hour: demo data that looks like markets, honest help, loud empty runs,
progress with its total, and a CLI that knows the whole lake (ls, show, verify of a root).

CLI checks run the installed ``lakeslice`` in subprocesses; expectations come from the files
on disk (manifests read with json, hashes with hashlib) or from plain-Python references.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import pty
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from support.cli import LAKESLICE, clean_env, export_args, run_cli
from support.data import ALERTS_CSV, CANDLES_PQ, FIXTURES, SOL

from lakeslice.options import ExportOptions
from lakeslice.synthetic import BASE_TS, synthetic_candles


def run(*args: object, env: dict[str, str | None] | None = None, input: str | None = None):  # noqa: A002
    """``lakeslice ARGS`` in a subprocess, in an 80-column terminal's width."""
    return run_cli(*args, env={"COLUMNS": "80", **(env or {})}, input=input, timeout=300)


def export(root: Path, run_id: str, *extra: object, window: str = "pre10_post20"):
    return run(*export_args(root, run_id, window=window, extra=extra))


def one_line(text: str) -> str:
    return " ".join(text.split())


def load_make_demo():
    spec = importlib.util.spec_from_file_location("make_demo", FIXTURES / "make_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------
# Demo data


def test_synthetic_prices_are_per_mint_walks_without_jumps():
    c = synthetic_candles(mints=12, candles_per_mint=3000, gap_fraction=0.02, gap_length=40, seed=5)
    rows = sorted(c.select("token_address", "timestamp", "open", "high", "low", "close").iter_rows())
    worst = 0.0
    for prev, cur in zip(rows, rows[1:], strict=False):  # plain Python over a small frame
        mint, _, o, h, lo, cl = cur
        assert 0 < lo <= min(o, cl) and h >= max(o, cl), cur
        if prev[0] == mint:
            worst = max(worst, abs(math.log(o / prev[5])))
    # a 40-candle outage at 1 % a candle is ~0.06; the old wrap-around jumped by log(148) = 5
    assert worst < 0.5, worst
    firsts = {r[0]: r[5] for r in reversed(rows)}
    assert len({round(math.log10(p)) for p in firsts.values()}) > 1  # mints have their own price level


def test_synthetic_gaps_listing_duplicates_and_determinism():
    kw = dict(mints=8, candles_per_mint=4000, gap_fraction=0.03, gap_length=30, late_listing=0.5)
    a = synthetic_candles(**kw, duplicate_fraction=0.01)
    assert a.equals(synthetic_candles(**kw, duplicate_fraction=0.01))
    assert not a.equals(synthetic_candles(**kw, duplicate_fraction=0.01, seed=8))
    ts = a.select("token_address", ts=pl.col("timestamp").dt.epoch("s"))
    dups = ts.height - ts.unique().height
    assert 0 < dups <= 0.011 * ts.height
    per_mint: dict[str, list[int]] = {}
    for mint, t in ts.unique().sort("token_address", "ts").iter_rows():
        per_mint.setdefault(mint, []).append((t - BASE_TS) // 60)
    long_gaps = sum(1 for s in per_mint.values() for x, y in zip(s, s[1:], strict=False) if y - x > 10)
    assert long_gaps >= 8  # outages, not only single missing candles
    assert len({s[0] for s in per_mint.values()}) > 4  # listed at different times


def test_demo_alerts_cover_every_status():
    demo = load_make_demo()
    candles, alerts = demo.demo_frames()
    present = set(
        candles.select("token_address", ts=pl.col("timestamp").dt.epoch("s") * 1000).unique().iter_rows()
    )
    statuses = {"complete": 0, "partial": 0, "insufficient": 0}
    width, pre, post = 60_000, 52, 200  # the window of `make demo`
    for mint, ts_ms in alerts.iter_rows():
        anchor = ts_ms // width * width
        have = sum((mint, anchor + k * width) in present for k in range(-pre, post + 1))
        statuses["complete" if have == pre + 1 + post else "partial" if have else "insufficient"] += 1
    assert statuses["complete"] > statuses["partial"] > 0 and statuses["insufficient"] > 0, statuses


# --------------------------------------------------------------------------------------------
# Help


def test_export_help_shows_every_default_and_help_line():
    proc = run("export", "--help")
    assert proc.returncode == 0, proc.stderr
    text = one_line(proc.stdout)
    for name in ExportOptions.__dataclass_fields__:
        assert one_line(ExportOptions.help(name)) in text, name
        default = ExportOptions.default(name)
        if isinstance(default, bool):
            flag = name.replace("_", "-")
            assert f"[default: {flag if default else 'no-' + flag}]" in text.replace("- ", "-"), name
        elif default is not None:
            assert f"[default: {default}]" in text, name
    assert "chdb://<data_root>/chdb" in text
    assert "…" not in proc.stdout


@pytest.mark.parametrize("command", ["export", "corpus", "verify", "show", "ls"])
def test_every_option_has_help(command):
    from typer.main import get_command

    from lakeslice.cli import app

    cmd = get_command(app).commands[command]
    for param in cmd.params:
        assert getattr(param, "help", None), f"{command} {param.name}"
    proc = run(command, "--help")
    assert proc.returncode == 0 and "--verbose" in proc.stdout and "--help" in proc.stdout


def test_verbose_after_the_command_and_python_m(tmp_path):
    quiet = export(tmp_path, "q")
    loud = export(tmp_path, "l", "-v")
    assert quiet.returncode == 0 and loud.returncode == 0, loud.stderr
    assert "fetched" not in quiet.stderr
    assert re.search(r"lakeslice: run l: fetched \d+ rows", loud.stderr), loud.stderr
    proc = subprocess.run([sys.executable, "-m", "lakeslice", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("lakeslice ")
    usage = subprocess.run([sys.executable, "-m", "lakeslice", "ls", "-h"], capture_output=True, text=True)
    assert usage.returncode == 0 and "Usage: lakeslice ls" in usage.stdout


def test_shell_completion():
    script = run("--show-completion", "bash")
    assert script.returncode == 0 and "_LAKESLICE_COMPLETE=complete_bash" in script.stdout
    env = {"_LAKESLICE_COMPLETE": "complete_bash", "COMP_WORDS": "lakeslice ver", "COMP_CWORD": "1"}
    assert run(env=env).stdout.split() == ["verify"]


def test_config_schema_carries_the_defaults_of_export_options():
    import lakeslice

    props = lakeslice.json_schema("config")["properties"]
    assert set(props) == set(ExportOptions.__dataclass_fields__) | {"alerts", "format"}
    for name in ExportOptions.__dataclass_fields__:
        assert props[name].get("default") == ExportOptions.default(name), name
        assert props[name]["description"] == ExportOptions.help(name), name


def test_config_supplies_defaults_and_flags_win(tmp_path):
    config = {
        "alerts": str(ALERTS_CSV),
        "interval": "1m",
        "window": "pre10_post20",
        "source": f"parquet://{CANDLES_PQ}",
        "data_root": str(tmp_path),
        "chain": "nosuch",
        "format": "json",
    }
    proc = run("export", "--config", "-", "--run-id", "c", "--chain", "solana", input=json.dumps(config))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # format came from the config
    assert doc["manifest"]["slice_spec"]["chain"] == "solana"  # the flag beat the config
    assert doc["total_rows"] > 0 and doc["warnings"] == []
    bad = run("export", "--config", "-", input=json.dumps({**config, "chain": 5}))
    assert bad.returncode == 2 and set(json.loads(bad.stdout)) == {"error"}


# --------------------------------------------------------------------------------------------
# Runs that keep nothing


def test_empty_runs_are_loud(tmp_path):
    fine = export(tmp_path, "fine", "--format", "json")
    assert fine.returncode == 0 and json.loads(fine.stdout)["warnings"] == []
    assert "warning" not in fine.stderr
    # a chain the source does not hold is an input error naming what it holds
    typo = export(tmp_path, "nochain", "--chain", "solanna", "--format", "json")
    assert typo.returncode == 2, typo.stderr
    assert "solanna" in typo.stderr and "solana 1m" in typo.stderr
    assert not (tmp_path / "lake/runs/run_id=nochain/manifest.json").exists()
    # alerts whose windows hold no candle: sealed, but loud
    far = tmp_path / "far.csv"
    far.write_text(f"mint,ts_ms\n{SOL},1000000000000\n{SOL},1000000600000\n")
    empty = export(tmp_path, "empty", "--alerts", far, "--format", "json")
    doc = json.loads(empty.stdout)
    assert empty.returncode == 0 and doc["total_rows"] == 0 and doc["kept_events"] == 2
    assert len(doc["warnings"]) == 1 and "chain=solana" in doc["warnings"][0]
    assert "lakeslice: warning:" in empty.stderr
    strict = export(tmp_path, "strict", "--alerts", far, "--strict-coverage")
    assert strict.returncode == 0
    assert "0 of 2 alerts kept" in one_line(strict.stderr)
    assert "warning" in strict.stderr
    # the human summary names the source it read
    assert f"parquet://{CANDLES_PQ}" in strict.stdout.replace("\n", "").replace(" ", "").replace("│", "")


def test_result_schema_lists_warnings(tmp_path):
    import jsonschema

    import lakeslice

    doc = json.loads(export(tmp_path, "w", "--format", "json").stdout)
    jsonschema.validate(doc, lakeslice.json_schema("result"))
    assert lakeslice.json_schema("result")["oneOf"][0]["properties"]["warnings"]["type"] == "array"


# --------------------------------------------------------------------------------------------
# The lake as a whole


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """A data root with two sealed runs, one unsealed run and one corpus day."""
    root = tmp_path_factory.mktemp("lake") / "data"
    assert export(root, "a").returncode == 0
    assert export(root, "b", "--strict-coverage", window="pre3_post3").returncode == 0
    assert export(root, "c").returncode == 0
    (root / "lake/runs/run_id=c/manifest.json").unlink()
    corpus = run(
        "corpus",
        "--interval",
        "1m",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-02",
        "--source",
        f"parquet://{CANDLES_PQ}",
        "--data-root",
        root,
    )
    assert corpus.returncode == 0, corpus.stderr
    return root


def manifest(root: Path, run_id: str) -> dict:
    return json.loads((root / f"lake/runs/run_id={run_id}/manifest.json").read_text())


def sealed_counts(m: dict) -> tuple[int, int, int]:
    return len(m["files"]), sum(f["rows"] for f in m["files"]), sum(f["bytes"] for f in m["files"])


def test_list_runs_matches_the_manifests(lake):
    import lakeslice

    runs = lakeslice.list_runs(lake)
    assert runs["run_id"].to_list() == ["a", "b", "c"]
    assert runs["sealed"].to_list() == [True, True, False]
    for row in runs.filter("sealed").iter_rows(named=True):
        m = manifest(lake, row["run_id"])
        assert row["window"] == m["slice_spec"]["window"] and row["interval"] == "1m"
        assert row["alerts_kept"] == m["coverage"]["kept_events"]
        assert row["alerts_dropped"] == m["coverage"]["dropped_events"]
        assert row["rows"] == m["outputs"]["slices"]["rows"]
        assert (row["files"], row["bytes"]) == sealed_counts(m)[::2]
        assert row["content_sha256"] == m["content_sha256"]
    assert lakeslice.list_runs(lake / "lake" / "runs").equals(runs)


def test_ls_and_show_of_a_root_list_the_runs_with_whole_hashes(lake):
    for args in (["ls", lake], ["ls", lake / "lake/runs"], ["show", lake], ["show", lake / "lake/runs"]):
        proc = run(*args)
        assert proc.returncode == 0, proc.stderr
        assert "unsealed" not in proc.stdout.split("corpus")[0] or args[0] == "show"
        for run_id in ("a", "b"):
            assert manifest(lake, run_id)["content_sha256"] in proc.stdout, args
        assert "…" not in proc.stdout
    shown = json.loads(run("show", lake, "--format", "json").stdout)
    listed = json.loads(run("ls", lake, "--format", "json").stdout)
    assert shown["runs"] == listed["runs"] and [r["run_id"] for r in listed["runs"]] == ["a", "b", "c"]
    assert [d["date"] for d in shown["corpus_days"]] == ["2024-01-01"]


def test_show_run_json_and_counts_agree_with_verify(lake):
    run_dir = lake / "lake/runs/run_id=a"
    shown = json.loads(run("show", run_dir, "--format", "json").stdout)
    m = manifest(lake, "a")
    assert shown["manifest"] == m
    files, rows, size = sealed_counts(m)
    assert shown["sealed"] == {"files": files, "rows": rows, "bytes": size}
    verified = json.loads(run("verify", run_dir, "--format", "json").stdout)
    (checked,) = verified["checked"]
    assert (checked["files"], checked["rows"], checked["bytes"]) == (files, rows, size)
    table = one_line(run("show", run_dir).stdout.replace("│", " "))
    assert f"sealed files / rows / bytes {files} / {rows:,} / {size:,}" in table
    assert f"content_sha256 {m['content_sha256']}" in table
    assert f"{files} sealed files, {rows:,} rows, {size:,} bytes" in run("verify", run_dir).stdout


def test_verify_root_lists_every_problem(lake, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(lake, root)
    ok = json.loads(run("verify", lake, "--format", "json").stdout)
    assert ok["summary"] == {"runs": 3, "days": 1, "ok": 3, "failed": 1, "problems": 1}
    # two tampered files in run a: both reported, and the unsealed run c too
    parts = sorted((root / "lake/runs/run_id=a").rglob("part-*.parquet"))[:2]
    for part in parts:
        part.write_bytes(part.read_bytes() + b"x")
    proc = run("verify", root)
    assert proc.returncode == 1
    for part in parts:
        assert part.relative_to(root / "lake/runs/run_id=a").as_posix() in proc.stderr
    assert "run_id=c" in proc.stderr and "unsealed" in proc.stderr
    # each tampered part: its size, its hash and its footer (2 x 3), and the unsealed run
    assert "verified 3 runs and 1 corpus days: 2 ok, 2 failed, 7 problems" in one_line(proc.stdout)
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", ["verify", "show", "ls"])
def test_missing_path_is_exit_2(command, tmp_path):
    proc = run(command, tmp_path / "nope")
    assert proc.returncode == 2 and "nope: no such file or directory" in proc.stderr
    proc = run(command, tmp_path / "nope", "--format", "json")
    assert proc.returncode == 2 and json.loads(proc.stdout)["error"]["code"]


# --------------------------------------------------------------------------------------------
# Progress


def pty_transcript(args: list[str], env: dict) -> str:
    """Run a command with stderr on a pseudo-terminal; what it drew there, as text."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            proc.kill()
            raise AssertionError("no output from the pty in 120 s")
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode("utf-8", "replace"))


def expected_groups(mints: list[str], slots: int) -> int:
    """Bucket groups of a Parquet export: buckets in order, a new group each ``group_rows``
    estimated rows."""
    from lakeslice.sources.parquet import ParquetSource

    per_bucket: dict[str, int] = {}
    for m in mints:
        b = hashlib.sha1(m.encode()).hexdigest()[:2]
        per_bucket[b] = per_bucket.get(b, 0) + slots
    before, groups = 0, set()
    for b in sorted(per_bucket):
        groups.add(before // ParquetSource.group_rows)
        before += per_bucket[b]
    return len(groups)


@pytest.mark.slow
def test_progress_shows_stage_and_total_before_the_first_group_ends(tmp_path):
    mints = [f"mint{i:04d}" for i in range(500)]
    alerts = tmp_path / "alerts.csv"
    pl.DataFrame({"mint": mints, "ts_ms": [BASE_TS * 1000 + 3_600_000] * len(mints)}).write_csv(alerts)
    total = expected_groups(mints, 5001)
    assert total >= 2
    env = clean_env(COLUMNS="150", TERM="xterm")
    text = pty_transcript(
        [
            str(LAKESLICE),
            "export",
            "--alerts",
            str(alerts),
            "--interval",
            "1m",
            "--window",
            "pre52_post4948",
            "--source",
            f"parquet://{CANDLES_PQ}",
            "--data-root",
            str(tmp_path / "d"),
            "--run-id",
            "p",
        ],
        env,
    )
    frames = [f for f in re.split(r"[\r\n]", text) if f.strip()]
    fetching = [f for f in frames if f.startswith("fetching")]
    assert fetching, frames[:5]
    assert f" 0/{total} " in fetching[0]  # the total at once, before any group is done
    assert all(f"/{total} " in f for f in fetching)
    assert "?" not in text
    stages = [f.split()[0] for f in frames if f.split()[0] in ("planning", "fetching", "writing", "sealing")]
    order = list(dict.fromkeys(stages))
    assert order[0] == "planning" and "fetching" in order and order[-1] == "sealing", order


def test_a_missing_optional_package_names_its_extra(tmp_path):
    (tmp_path / "chdb").mkdir()
    code = (
        "import sys; sys.modules['chdb'] = None; from lakeslice.cli import main; "
        f"sys.argv = ['lakeslice', 'export', '--alerts', {str(ALERTS_CSV)!r}, '--interval', '1m', "
        f"'--window', 'pre1_post1', '--data-root', {str(tmp_path)!r}]; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), timeout=120
    )
    assert proc.returncode == 1, proc.stderr
    assert "pip install 'lakeslice[chdb]'" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
