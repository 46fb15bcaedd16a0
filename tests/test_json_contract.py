"""SPEC §8 machine contract: ``--config FILE|-`` in, ``--format json`` out, through the real CLI.

The TypeScript wrapper of the original tool reads stdout as exactly one JSON object and nothing
else; logs and progress go to stderr. Every output here is validated against the JSON Schemas
shipped in the package (``lakeslice.json_schema``). The Parquet source keeps these fast; the
source kinds themselves are covered by test_sources_agree.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from chserver import free_port
from support.cli import export_args, one_json_object, run_chains
from support.data import ALERTS_CSV, CANDLES_PQ

import lakeslice

ALERTS = ALERTS_CSV
SOURCE = f"parquet://{CANDLES_PQ}"


@pytest.fixture(scope="module")
def result_validator():
    schema = lakeslice.json_schema("result")
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def config_validator():
    schema = lakeslice.json_schema("config")
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def base_args(data_root, run_id, *extra):
    return export_args(data_root, run_id, window="pre5_post10", extra=extra)


def config(root, **overrides):
    cfg = {
        "alerts": str(ALERTS),
        "interval": "1m",
        "window": "pre5_post10",
        "source": SOURCE,
        "data_root": str(root / "cfg_root"),
        "run_id": "cfg",
        "chain": "solana",
        "compression": "snappy",
        "target_file_mb": 64,
        "strict_coverage": False,
        "min_required_pre": 3,
        "target_total": 8,
        "format": "json",
        "table": "ohlcv_candles",
        "overwrite": False,
    }
    cfg.update(overrides)
    return cfg


WRONG_TYPES = {
    "int-as-string": {"min_required_pre": "52"},
    "bool-as-string": {"strict_coverage": "yes"},
}
PORT = free_port()  # nothing listens there
DOWN_URL = f"clickhouse://lake:hunter2-secret@127.0.0.1:{PORT}/quantbot"


def jobs(base: Path) -> list[list[tuple[str, list, str | None]]]:
    """Every CLI call of the module: chains of (name, args, stdin); each job has its own root."""
    r = lambda name: base / name  # noqa: E731
    bad_window = base_args(r("bad_window"), "bad", "--format", "json")
    bad_window[bad_window.index("pre5_post10")] = "pre5"
    down = base_args(r("down"), "down", "--format", "json")
    down[down.index(SOURCE)] = DOWN_URL
    cfg_file = base / "cfg.json"
    cfg_file.write_text(json.dumps(config(r("file"), interval=60, run_id="file")), "utf-8")
    over = json.dumps(config(r("over_cfg"), window="pre5_post10", run_id="from_config", compression="snappy"))
    chains = [
        [
            ("ok", ["-v", *base_args(r("ok"), "ok", "--format", "json")], None),
            ("sealed", base_args(r("ok"), "ok", "--format", "json"), None),
        ],
        [("bad_window", bad_window, None)],
        [("bad_run_id", base_args(r("bad_run_id"), "../escape", "--format", "json"), None)],
        [("down", down, None)],
        [("stdin", ["export", "--config", "-"], json.dumps(config(r("stdin"))))],
        [("file", ["export", "--config", cfg_file], None)],
        [
            (
                "over",
                [
                    "export",
                    "--config",
                    "-",
                    "--window",
                    "pre3_post4",
                    "--run-id",
                    "from_flag",
                    "--data-root",
                    r("over_flag"),
                    "--compression",
                    "zstd",
                ],
                over,
            )
        ],
        [
            (
                "over_table",
                [
                    "export",
                    "--config",
                    "-",
                    "--format",
                    "table",
                    "--run-id",
                    "tabled",
                    "--data-root",
                    r("over_table"),
                ],
                over,
            )
        ],
        [
            (
                "unknown_flag",
                ["export", "--config", "-", "--format", "json"],
                json.dumps(config(r("unknown_flag"), bogus_key=1)),
            )
        ],
        [("unknown_cfg", ["export", "--config", "-"], json.dumps(config(r("unknown_cfg"), bogus_key=1)))],
        [("not_json", ["export", "--config", "-", "--format", "json"], "{not json")],
        *[
            [(f"type_{k}", ["export", "--config", "-"], json.dumps(config(r(f"type_{k}"), **v)))]
            for k, v in WRONG_TYPES.items()
        ],
    ]
    return chains


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """All CLI calls, run concurrently once (chains in order): name -> CompletedProcess."""
    base = tmp_path_factory.mktemp("contract")
    done: dict = run_chains(jobs(base), cwd=base)
    done["_base"] = base
    return done


def assert_error(proc, validator, *, status, code=None, absent=()):
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    obj = one_json_object(proc.stdout)
    validator.validate(obj)
    assert set(obj) == {"error"} and set(obj["error"]) >= {"code", "message"}
    assert obj["error"]["message"] and "\n" not in obj["error"]["message"]
    if code:
        assert obj["error"]["code"] == code
    assert proc.stderr.strip() and "Traceback" not in proc.stderr, proc.stderr
    for secret in absent:
        assert secret not in proc.stdout and secret not in proc.stderr
    return obj["error"]


def success(proc, validator) -> dict:
    assert proc.returncode == 0, proc.stderr
    obj = one_json_object(proc.stdout)
    validator.validate(obj)
    return obj


# ------------------------------------------------------------------------------------------
# Success


def test_success_is_one_schema_valid_object(runs, result_validator):
    obj = success(runs["ok"], result_validator)  # run with -v: info logs on, all on stderr
    assert "lakeslice" in runs["ok"].stderr
    run_dir = Path(obj["run_dir"])
    assert run_dir == runs["_base"] / "ok" / "lake" / "runs" / "run_id=ok"
    assert Path(obj["manifest_path"]) == run_dir / "manifest.json"
    assert Path(obj["coverage_path"]).is_file()
    on_disk = json.loads(Path(obj["manifest_path"]).read_text("utf-8"))
    assert obj["manifest"] == on_disk
    slices = [f for f in on_disk["files"] if f["path"].startswith("slices/")]
    assert obj["total_rows"] == sum(f["rows"] for f in slices) > 0
    assert obj["total_files"] == len(slices)
    assert obj["total_bytes"] == sum(f["bytes"] for f in slices)
    assert obj["kept_events"] + obj["dropped_events"] == 8  # fixtures/alerts.csv
    assert isinstance(obj["rows_fetched"], int) and obj["rows_fetched"] >= obj["total_rows"]


# ------------------------------------------------------------------------------------------
# Failure


def test_bad_input_is_a_json_error_exit_2(runs, result_validator):
    err = assert_error(runs["bad_window"], result_validator, status=2, code="input_error")
    assert "pre5" in err["message"]
    assert not (runs["_base"] / "bad_window" / "lake" / "runs" / "run_id=bad").exists()


def test_bad_run_id_is_a_json_error_exit_2(runs, result_validator):
    assert_error(runs["bad_run_id"], result_validator, status=2, code="input_error")
    assert not (runs["_base"] / "bad_run_id" / "lake" / "escape").exists()


def test_sealed_run_refused_as_json_error(runs, result_validator):
    err = assert_error(runs["sealed"], result_validator, status=2)
    assert "overwrite" in err["message"]


def test_unreachable_server_is_a_json_error_exit_1_without_password(runs, result_validator):
    """Errors are one line on stderr: no driver traceback, no password."""
    err = assert_error(runs["down"], result_validator, status=1, absent=("hunter2-secret",))
    assert "127.0.0.1" in err["message"]
    assert not (runs["_base"] / "down" / "lake" / "runs" / "run_id=down").exists()


# ------------------------------------------------------------------------------------------
# --config


def test_config_schema_accepts_what_we_pass_and_rejects_unknown_keys(tmp_path, config_validator):
    config_validator.validate(config(tmp_path))
    config_validator.validate(config(tmp_path, interval=60, run_id=None, source=None))
    for bad in [{"bogus_key": 1}, {"window": 5}, {"run_id": "a/b"}, *WRONG_TYPES.values()]:
        with pytest.raises(jsonschema.ValidationError):
            config_validator.validate(config(tmp_path, **bad))


def test_config_on_stdin(runs, config_validator, result_validator):
    config_validator.validate(config(runs["_base"] / "stdin"))
    obj = success(runs["stdin"], result_validator)  # "format": "json" came from the config
    m = obj["manifest"]
    assert Path(obj["run_dir"]) == runs["_base"] / "stdin" / "cfg_root" / "lake" / "runs" / "run_id=cfg"
    assert m["slice_spec"]["window"] == "pre5_post10"
    assert m["outputs"]["slices"]["compression"] == "snappy"


def test_config_file_and_integer_interval(runs, config_validator, result_validator):
    config_validator.validate(json.loads((runs["_base"] / "cfg.json").read_text("utf-8")))
    obj = success(runs["file"], result_validator)
    assert obj["manifest"]["slice_spec"]["interval"] == "1m"
    assert obj["manifest"]["run_id"] == "file"


def test_flags_override_config(runs, result_validator):
    obj = success(runs["over"], result_validator)
    m = obj["manifest"]
    assert m["run_id"] == "from_flag" and m["slice_spec"]["window"] == "pre3_post4"
    assert m["outputs"]["slices"]["compression"] == "zstd"
    assert Path(obj["run_dir"]) == runs["_base"] / "over_flag" / "lake" / "runs" / "run_id=from_flag"
    assert not (runs["_base"] / "over_cfg" / "cfg_root").exists()
    # --format table on the command line beats "format": "json" in the config
    assert runs["over_table"].returncode == 0, runs["over_table"].stderr
    with pytest.raises(ValueError):
        json.loads(runs["over_table"].stdout)


def test_unknown_config_key_exit_2_with_format_flag(runs, result_validator):
    err = assert_error(runs["unknown_flag"], result_validator, status=2, code="input_error")
    assert "bogus_key" in err["message"]
    assert not (runs["_base"] / "unknown_flag" / "cfg_root").exists()


def test_unknown_config_key_exit_2_with_format_in_config(runs, result_validator):
    """The wrapper sets "format": "json" in the config it pipes in: even when the config itself
    is refused, the answer on stdout must be the JSON error object."""
    err = assert_error(runs["unknown_cfg"], result_validator, status=2, code="input_error")
    assert "bogus_key" in err["message"]


@pytest.mark.parametrize("name", list(WRONG_TYPES))
def test_config_value_of_wrong_type_is_exit_2(runs, result_validator, name):
    """A value the shipped config schema refuses is bad input (exit 2, the key named): not a
    crash (exit 1, internal_error) and not silently accepted."""
    err = assert_error(runs[f"type_{name}"], result_validator, status=2, code="input_error")
    assert next(iter(WRONG_TYPES[name])) in err["message"]
    assert not (runs["_base"] / f"type_{name}" / "cfg_root" / "lake" / "runs").exists()


def test_config_not_json_is_exit_2(runs, result_validator):
    assert_error(runs["not_json"], result_validator, status=2, code="input_error")
