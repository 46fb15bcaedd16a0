"""The command line and its machine contract (SPEC §8)."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest
from support.cli import export_args, run_cli
from support.cli import invoke as cli
from support.data import ALERTS_CSV, CANDLES_PQ, RESULT_KEYS

from lakeslice import __version__


def test_version_via_entry_point():
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"lakeslice {__version__}"


@pytest.mark.parametrize("command", [[], ["export"], ["corpus"], ["verify"], ["show"]])
def test_help(command):
    res = cli([*command, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage" in res.stdout
    if command == ["export"]:
        for opt in (
            "--alerts",
            "--interval",
            "--window",
            "--run-id",
            "--data-root",
            "--chain",
            "--compression",
            "--target-file-mb",
            "--strict-coverage",
            "--min-required-pre",
            "--target-total",
            "--format",
            "--source",
            "--table",
            "--overwrite",
            "--config",
        ):
            assert opt in res.stdout, opt


def test_format_json_is_one_object(tmp_path):
    res = cli(export_args(tmp_path, "j", extra=["--format", "json"]))
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)  # raises if anything but one JSON document is on stdout
    assert isinstance(doc, dict)
    assert RESULT_KEYS <= set(doc)
    assert doc["manifest"]["run_id"] == "j"
    assert doc["total_files"] == doc["manifest"]["outputs"]["slices"]["files"]
    assert doc["kept_events"] + doc["dropped_events"] == 8


def test_format_json_matches_shipped_schema(tmp_path):
    import importlib.resources

    import jsonschema

    schema = json.loads(
        importlib.resources.files("lakeslice").joinpath("schemas/result.schema.json").read_text()
    )
    ok = cli(export_args(tmp_path, "s", extra=["--format", "json"]))
    assert ok.exit_code == 0, ok.stderr
    jsonschema.validate(json.loads(ok.stdout), schema)
    assert "error" not in json.loads(ok.stdout)
    bad = cli(export_args(tmp_path, "s2", window="nope", extra=["--format", "json"]))
    assert bad.exit_code == 2, bad.stderr
    jsonschema.validate(json.loads(bad.stdout), schema)
    assert json.loads(bad.stdout)["error"]["code"] == "input_error"


def test_config_stdin_with_flags_overriding(tmp_path):
    config = {
        "alerts": str(ALERTS_CSV),
        "source": f"parquet://{CANDLES_PQ}",
        "interval": "1m",
        "window": "pre1_post1",
        "data_root": str(tmp_path),
        "run_id": "cfg",
        "format": "json",
        "strict_coverage": True,
        "min_required_pre": 0,
        "target_total": 1,
        "compression": "snappy",
    }
    res = cli(
        ["export", "--config", "-", "--window", "pre3_post4", "--min-required-pre", "2"],
        input=json.dumps(config),
    )
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    m = doc["manifest"]
    assert m["slice_spec"]["window"] == "pre3_post4"  # the flag wins over the config
    assert m["coverage"]["strict"] is True  # config applies where no flag is given
    assert m["coverage"]["min_required_pre"] == 2
    assert m["coverage"]["target_total"] == 1
    assert m["outputs"]["slices"].get("compression", "snappy") == "snappy"
    part = next((tmp_path / "lake/runs/run_id=cfg/slices").rglob("*.parquet"))
    assert pq.ParquetFile(part).metadata.row_group(0).column(0).compression == "SNAPPY"


def test_config_file_and_unknown_key(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(
            {
                "alerts": str(ALERTS_CSV),
                "interval": "1m",
                "window": "pre1_post1",
                "source": f"parquet://{CANDLES_PQ}",
                "data_root": str(tmp_path),
                "run_id": "f",
            }
        )
    )
    assert cli(["export", "--config", cfg]).exit_code == 0
    cfg.write_text(json.dumps({"alerts": str(ALERTS_CSV), "windw": "pre1_post1"}))
    res = cli(["export", "--config", cfg])
    assert res.exit_code == 2 and "windw" in res.stderr
    res = cli(["export", "--config", "-"], input="[1, 2]")
    assert res.exit_code == 2 and "JSON object" in res.stderr
    res = cli(["export", "--config", "-"], input="{not json")
    assert res.exit_code == 2 and "Traceback" not in res.stderr


BAD = {
    "bad window": ["--window", "pre10-post20"],
    "interval 0": ["--interval", "0"],
    "unknown compression": ["--compression", "lz5"],
    "run_id with slash": ["--run-id", "a/b"],
    "run_id dotdot": ["--run-id", ".."],
    "missing alerts": ["--alerts", "/nonexistent/alerts.csv"],
    "target_file_mb 0": ["--target-file-mb", "0"],
    "negative target_file_mb": ["--target-file-mb", "-1"],
    "unknown source scheme": ["--source", "ftp://x/y"],
}


def _bad_args(tmp_path, override):
    args = export_args(tmp_path, "bad")
    args = [str(a) for a in args]
    for flag, value in zip(override[::2], override[1::2], strict=True):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


@pytest.mark.parametrize("case", list(BAD))
def test_errors_exit_2_one_line(tmp_path, case):
    res = cli(_bad_args(tmp_path, BAD[case]))
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("lakeslice: error:")
    assert "Traceback" not in res.output
    assert res.stdout == ""
    assert not (tmp_path / "lake" / "runs" / "run_id=bad").exists()


@pytest.mark.parametrize("case", list(BAD))
def test_errors_json_mode(tmp_path, case):
    res = cli([*_bad_args(tmp_path, BAD[case]), "--format", "json"])
    assert res.exit_code == 2
    doc = json.loads(res.stdout)
    assert set(doc) == {"error"}
    assert set(doc["error"]) == {"code", "message"}
    assert doc["error"]["code"] == "input_error"
    assert doc["error"]["message"] and "\n" not in doc["error"]["message"]
    assert len(res.stderr.strip().splitlines()) == 1


def test_error_json_mode_from_config(tmp_path):
    """format=json given in the config applies to errors found while merging options, too."""
    res = cli(["export", "--config", "-"], input=json.dumps({"format": "json", "interval": "1m"}))
    assert res.exit_code == 2
    doc = json.loads(res.stdout)
    assert doc["error"]["code"] == "input_error" and "alerts" in doc["error"]["message"]


def test_missing_required_option(tmp_path):
    res = cli(["export", "--alerts", ALERTS_CSV, "--interval", "1m"])
    assert res.exit_code == 2
    assert "--window" in res.stderr


def test_runtime_failure_exit_1_json(tmp_path):
    """A failure while running (not bad input) exits 1 and still speaks JSON."""
    bad_source = tmp_path / "broken.parquet"
    bad_source.write_bytes(b"PAR1 this is not parquet PAR1")
    res = cli(export_args(tmp_path, "rt", source=bad_source, extra=["--format", "json"]))
    assert res.exit_code == 1, res.stderr
    doc = json.loads(res.stdout)
    assert set(doc) == {"error"} and doc["error"]["code"] == "runtime_error"
    assert "Traceback" not in res.stderr


def test_show_prints_summary_and_histogram(tmp_path):
    assert cli(export_args(tmp_path, "sh")).exit_code == 0
    run_dir = tmp_path / "lake/runs/run_id=sh"
    res = cli(["show", run_dir])
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    assert "run sh" in out
    assert "pre10_post20" in out and "1m" in out
    assert "available_total" in out
    m = json.loads((run_dir / "manifest.json").read_text())
    assert f"{m['outputs']['slices']['rows']:,}" in out
    # histogram: one line per non-empty bin "lo–hi  bars  count", counts add up to the alerts
    bins = re.findall(r"^\s+(-?\d+)–(-?\d+)\s+█+\s+(\d+)\s*$", out, flags=re.M)
    assert bins, out
    assert sum(int(n) for _, _, n in bins) == 8
    totals = pq.read_table(run_dir / "outputs/coverage.parquet").column("available_total").to_pylist()
    for lo, hi, n in bins:
        assert sum(1 for t in totals if int(lo) <= t <= int(hi)) == int(n)


def test_show_unsealed_exit_1(tmp_path):
    assert cli(export_args(tmp_path, "u")).exit_code == 0
    run_dir = tmp_path / "lake/runs/run_id=u"
    (run_dir / "manifest.json").unlink()
    res = cli(["show", run_dir])
    assert res.exit_code == 1 and "unsealed" in res.stderr


def test_table_output_goes_to_stdout_logs_to_stderr(tmp_path):
    res = cli(["-v", *map(str, export_args(tmp_path, "t"))])
    assert res.exit_code == 0, res.stderr
    assert "content_sha256" in res.stdout and "content_sha256" not in res.stderr


def test_env_source(tmp_path):
    args = [a for a in map(str, export_args(tmp_path, "env")) if not a.startswith("parquet://")]
    args.remove("--source")
    res = cli([*args, "--format", "json"], env={"LAKESLICE_SOURCE": f"parquet://{CANDLES_PQ}"})
    assert res.exit_code == 0, res.stderr
    snapshot = json.loads(res.stdout)["manifest"]["inputs"]["source_snapshot"]
    assert snapshot["kind"] == "parquet"


def test_runs_use_jemalloc_unless_the_environment_names_a_pool(monkeypatch):
    """Exports allocate Arrow memory from jemalloc (mimalloc kept freed memory mapped); a pool
    named in ARROW_DEFAULT_MEMORY_POOL is left alone."""
    import pyarrow as pa

    from lakeslice.cli import _use_jemalloc

    before = pa.default_memory_pool()
    try:
        pa.set_memory_pool(pa.system_memory_pool())
        monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
        _use_jemalloc()
        assert pa.default_memory_pool().backend_name == "system"
        monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL")
        _use_jemalloc()
        assert pa.default_memory_pool().backend_name == "jemalloc"
    finally:
        pa.set_memory_pool(before)
