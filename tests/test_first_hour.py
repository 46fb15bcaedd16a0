"""A researcher's first hour: demo data that looks like markets, honest help, loud empty runs,
and a CLI that knows the whole lake (ls, show, verify of a root).

CLI checks run the installed ``lakeslice`` in subprocesses; expectations come from the files
on disk (manifests read with json, hashes with hashlib) or from plain-Python references.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from support import reference as ref
from support.cli import clean_env, export_args, run_cli
from support.data import ALERTS_CSV, CANDLES_PQ, FIXTURES, REPO, SOL

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
    alerts = [{"alert_id": str(i), "mint": m, "ts_ms": t} for i, (m, t) in enumerate(alerts.iter_rows())]
    statuses = {"complete": 0, "partial": 0, "insufficient": 0}
    # the reference, mint by mint, on the candles near some alert of the mint (a slot's margin
    # around every window): the rest cannot change a status, and a million dicts are slow
    width, pre, post = 60_000, 52, 200  # the window of `make demo`
    bounds = pl.DataFrame(alerts).select(
        token_address="mint", lo=pl.col("ts_ms") - (pre + 1) * width, hi=pl.col("ts_ms") + (post + 1) * width
    )
    near = (
        candles.with_row_index()
        .join(bounds, on="token_address")
        .filter(pl.col("timestamp").dt.epoch("ms").is_between("lo", "hi"))
        .unique("index", keep="first")
        .drop("index", "lo", "hi")
    )
    by_mint = {m: rows.to_dicts() for (m,), rows in near.partition_by("token_address", as_dict=True).items()}
    for mint in {a["mint"] for a in alerts}:
        mine = [a for a in alerts if a["mint"] == mint]
        candles_near = ref.quantbot_candles(by_mint.get(mint, []))
        for c in ref.coverage_rows(candles_near, mine, width // 1000, pre, post):
            statuses[c["status"]] += 1
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


def test_strict_thresholds_follow_the_window(tmp_path):
    # pre3_post3: 3 candles before the anchor, 7 slots in all (SPEC §1)
    doc = json.loads(
        export(tmp_path, "s", "--strict-coverage", "--format", "json", window="pre3_post3").stdout
    )
    cov = doc["manifest"]["coverage"]
    assert (cov["min_required_pre"], cov["target_total"]) == (3, 7)
    for flag, value, limit in (("--min-required-pre", 4, "pre = 3"), ("--target-total", 8, "slots = 7")):
        proc = export(tmp_path, "big", "--strict-coverage", flag, value, window="pre3_post3")
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert f"{flag} {value}" in proc.stderr and "pre3_post3" in proc.stderr and limit in proc.stderr
    assert not (tmp_path / "lake/runs/run_id=big").exists()


def test_result_schema_lists_warnings(tmp_path):
    import jsonschema

    import lakeslice

    schema = lakeslice.json_schema("result")
    far = tmp_path / "far.csv"
    far.write_text(f"mint,ts_ms\n{SOL},1000000000000\n")
    doc = json.loads(export(tmp_path, "w", "--alerts", far, "--format", "json").stdout)
    assert len(doc["warnings"]) == 1
    jsonschema.validate(doc, schema)  # a result with a warning is valid
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**doc, "warnings": doc["warnings"][0]}, schema)  # a bare string is not


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


# --------------------------------------------------------------------------------------------
# Set-up: the Debian packages make test needs


def ensure_apt(tmp_path: Path, *packages: str, uid: int) -> tuple[subprocess.CompletedProcess, str]:
    """scripts/ensure-apt.sh with ``id -u`` answering ``uid`` and apt-get only recording its
    arguments (dpkg-query is the real one: it reads what this machine has installed)."""
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    (stubs / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (stubs / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "apt.log"}\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = clean_env(PATH=f"{stubs}:{os.environ['PATH']}")
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "ensure-apt.sh"), *packages],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    log = tmp_path / "apt.log"
    return proc, log.read_text() if log.exists() else ""


def test_ensure_apt_installs_only_what_is_missing(tmp_path):
    proc, apt = ensure_apt(tmp_path, "bash", "coreutils", uid=0)
    assert proc.returncode == 0 and apt == ""  # installed already: apt is not even updated
    missing = "lakeslice-no-such-package"
    proc, apt = ensure_apt(tmp_path, "bash", missing, uid=0)
    assert proc.returncode == 0
    assert apt.splitlines()[-1].endswith(f"install -y -q --no-install-recommends {missing}")
    (tmp_path / "user").mkdir()
    proc, apt = ensure_apt(tmp_path / "user", "--or", "set X=/y", missing, uid=1000)
    assert proc.returncode == 1 and apt == ""  # not root: says what to do, installs nothing
    assert proc.stderr.strip() == f"{missing} missing: run 'sudo apt-get install {missing}' or set X=/y"
