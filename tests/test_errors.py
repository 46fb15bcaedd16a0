"""lakeslice.errors: one line per failure, one redactor, through the real command.

The password cases of issue 12 item 4: a password with an unencoded ``/`` or ``@`` in a
``clickhouse://`` URL never reaches stdout or stderr, whichever way the URL was given.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from chserver import free_port
from hypothesis import given
from hypothesis import strategies as st
from support.cli import error_lines, export_args, one_json_object, run_cli

from lakeslice.errors import (
    InputError,
    LakesliceError,
    RunError,
    error_line,
    one_line,
    redact,
    retryable,
    split_credentials,
)
from lakeslice.sources.clickhouse import SourceConnectionError, parse_url

HARD_PASSWORDS = ["pa/ss@wo@rd", "a@b", "x/y", "p:w@/h?x#1", "ends-with@", "@starts"]


def secret_free(text: str, password: str) -> None:
    for form in {password, quote(password, safe="")}:
        assert form not in text, f"password {form!r} in {text!r}"


# --------------------------------------------------------------------------------------------
# the types and their markers


def test_exit_codes_and_codes_reach_the_user_through_the_types():
    assert (InputError("x").exit_code, InputError("x").code) == (2, "input_error")
    assert (RunError("x").exit_code, RunError("x").code) == (1, "runtime_error")
    assert isinstance(InputError("x"), ValueError) and isinstance(RunError("x"), LakesliceError)


def test_retryable_follows_the_marker_not_the_name():
    class SourceConnectionError(RunError):  # same name as the real one, no marker
        pass

    assert retryable(SourceConnectionError("x")) is False
    from lakeslice.sources.clickhouse import SourceConnectionError as Real

    assert retryable(Real("dropped")) is True


def test_old_import_path_still_works():
    from lakeslice.spec import InputError as Old

    assert Old is InputError


@given(st.text(max_size=2000))
def test_one_line_is_one_short_line(text):
    line = one_line(ValueError(text))
    assert line and "\n" not in line and "\r" not in line and len(line) <= 300
    assert error_line(ValueError(text)).startswith("ValueError")


# --------------------------------------------------------------------------------------------
# one parse of the URL, one redactor


@pytest.mark.parametrize("password", HARD_PASSWORDS)
def test_split_and_parse_find_the_whole_password(password):
    url = f"clickhouse://lake:{password}@db.example:9001/quant"
    cred = split_credentials(url)
    assert (cred.user, cred.password) == ("lake", password)
    assert cred.location == "clickhouse://db.example:9001/quant"
    parsed = parse_url(url)
    assert (parsed["user"], parsed["password"], parsed["host"], parsed["port"], parsed["database"]) == (
        "lake",
        password,
        "db.example",
        9001,
        "quant",
    )


def test_percent_encoded_password_is_decoded():
    assert parse_url("clickhouse://lake:a%2Fb%40c@h/db")["password"] == "a/b@c"


@pytest.mark.parametrize("password", HARD_PASSWORDS)
def test_redact_hides_any_url_password_in_a_message(password):
    url = f"clickhouse://lake:{password}@db:9000/x"
    for text in (f"source {url!r}: bad port", f"cannot reach {url}", f'"{url}" failed'):
        out = redact(text)
        secret_free(out, password)
        assert "lake:***@db:9000/x" in out


def test_redact_known_secrets_anywhere(monkeypatch):
    monkeypatch.setenv("LAKESLICE_CLICKHOUSE_PASSWORD", "env pw/1")
    out = redact("a env pw/1 b env%20pw%2F1 c s3 s3cret", secrets=["s3cret"])
    assert out == "a *** b *** c s3 ***"


# --------------------------------------------------------------------------------------------
# through the real command (fails on a redactor that reads the URL word by word)


def _down_url(password: str) -> str:
    return f"clickhouse://lake:{password}@127.0.0.1:{free_port()}/quant"


@pytest.mark.parametrize("fmt", ["json", "table"])
@pytest.mark.parametrize("password", ["pa/ss@wo@rd", "x/y", "a@b:c"])
def test_cli_never_prints_a_hard_password(tmp_path, password, fmt):
    proc = run_cli(*export_args(tmp_path, "pw", source=_down_url(password), extra=["--format", fmt]))
    assert proc.returncode in (1, 2), proc.stderr
    secret_free(proc.stdout + proc.stderr, password)
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("lakeslice: error: "), proc.stderr
    if fmt == "json":
        err = one_json_object(proc.stdout)["error"]
        secret_free(json.dumps(err), password)


def test_cli_never_prints_a_hard_password_from_config_or_env(tmp_path):
    password = "cf/g@pw"
    cfg = tmp_path / "c.json"
    args = export_args(tmp_path, "cfg", extra=["--format", "json"])
    source_at = args.index("--source")
    cfg.write_text(json.dumps({"source": _down_url(password)}))
    no_source = args[:source_at] + args[source_at + 2 :]
    proc = run_cli(*no_source, "--config", cfg)
    assert proc.returncode in (1, 2), proc.stderr
    secret_free(proc.stdout + proc.stderr, password)
    assert one_json_object(proc.stdout)["error"]["message"]

    proc = run_cli(*no_source, env={"LAKESLICE_SOURCE": _down_url(password)})
    assert proc.returncode in (1, 2), proc.stderr
    secret_free(proc.stdout + proc.stderr, password)


def test_cli_wrong_hard_password_against_the_server(tmp_path, clickhouse_server):
    password = "wr/ong@pw"
    url = clickhouse_server.url("default", "lake", password)
    proc = run_cli(*export_args(tmp_path, "auth", source=url, extra=["--format", "json"]))
    assert proc.returncode == 1, proc.stderr
    err = one_json_object(proc.stdout)["error"]
    assert "authentication failed" in err["message"] and "lake" in err["message"]
    secret_free(proc.stdout + proc.stderr, password)


def test_debug_keeps_the_driver_error_reachable(tmp_path):
    url = _down_url("pw")
    plain = run_cli(*export_args(tmp_path, "dbg", source=url))
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    debug = run_cli(*export_args(tmp_path, "dbg", source=url), env={"LAKESLICE_DEBUG": "1"})
    assert debug.returncode != 0
    assert SourceConnectionError.__name__ in debug.stderr
    # the driver's own exception is chained, not hidden by "from None"
    assert "The above exception was the direct cause" in debug.stderr
    assert "clickhouse_driver" in debug.stderr
