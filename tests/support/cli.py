"""The two ways tests run the command: the installed entry point in a subprocess (what users
run: exit status, stdout, stderr of a real process) and Typer's in-process runner (quick)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from typer.testing import CliRunner, Result

from lakeslice.cli import app

from .data import ALERTS_CSV, CANDLES_PQ

LAKESLICE = Path(sys.executable).with_name("lakeslice")
#: SOURCE_DATE_EPOCH of every run: byte-reproducible manifests.
EPOCH = "1700000000"


def clean_env(**extra: str | None) -> dict[str, str]:
    """The caller's environment without lakeslice/ClickHouse settings that could leak in;
    ``extra`` sets variables (``None`` removes one)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LAKESLICE_") and k not in ("CLICKHOUSE_PASSWORD", "SOURCE_DATE_EPOCH")
    }
    env["SOURCE_DATE_EPOCH"] = EPOCH
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_cli(
    *args: object,
    cwd: Path | str | None = None,
    input: str | None = None,  # noqa: A002 - subprocess.run's name
    env: dict[str, str | None] | None = None,
    timeout: float = 180,
) -> subprocess.CompletedProcess:
    """``lakeslice ARGS`` in a subprocess with a clean environment (plus ``env``)."""
    return subprocess.run(
        [str(LAKESLICE), *map(str, args)],
        capture_output=True,
        text=True,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        cwd=cwd,
        env=clean_env(**(env or {})),
        timeout=timeout,
    )


def run_chains(chains: list[list], *, cwd: Path) -> dict[str, subprocess.CompletedProcess]:
    """Chains side by side (4 at a time), the steps of a chain in order. A step is
    ``(name, args)`` or ``(name, args, stdin)`` (a CLI call) or a callable (setup between
    calls). name -> CompletedProcess."""

    def run_chain(chain: list) -> list[tuple[str, subprocess.CompletedProcess]]:
        out = []
        for step in chain:
            if callable(step):
                step()
            else:
                name, args, *stdin = step
                out.append((name, run_cli(*args, cwd=cwd, input=stdin[0] if stdin else None)))
        return out

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(item for done in pool.map(run_chain, chains) for item in done)


def popen_cli(
    *args: object, env: dict[str, str | None] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """``lakeslice ARGS`` started in its own process group (a signal hits exactly this export)."""
    return subprocess.Popen(
        [str(LAKESLICE), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=clean_env(**(env or {})),
        cwd=cwd,
        start_new_session=True,
    )


def invoke(
    args: Iterable[object],
    *,
    input: str | None = None,  # noqa: A002 - CliRunner's name
    env: dict[str, str] | None = None,
) -> Result:
    """``lakeslice ARGS`` in this process (Typer's runner, as ``CliRunner.invoke`` takes them)."""
    return CliRunner().invoke(app, [str(a) for a in args], input=input, env=env)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """The process exited 0 (else fail with what it printed)."""
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def one_json_object(stdout: str) -> dict:
    """stdout is exactly one JSON object (one line, newline-terminated) and nothing else."""
    assert stdout.endswith("\n") and stdout.count("\n") == 1, repr(stdout[:500])
    obj, end = json.JSONDecoder().raw_decode(stdout)
    assert stdout[end:] == "\n", repr(stdout[end:])
    assert isinstance(obj, dict)
    return obj


def error_lines(stderr: str) -> list[str]:
    """The non-empty lines of stderr."""
    return [line for line in stderr.splitlines() if line.strip()]


def export_args(
    data_root: Path | str,
    run_id: str,
    *,
    window: str = "pre10_post20",
    alerts: Path | str = ALERTS_CSV,
    source: Path | str = CANDLES_PQ,
    interval: str = "1m",
    extra: Iterable[object] = (),
) -> list[str]:
    """``export`` arguments, over the committed fixtures by default; a plain path is Parquet."""
    url = source if "://" in str(source) else f"parquet://{source}"
    return [
        "export",
        "--alerts",
        str(alerts),
        "--source",
        str(url),
        "--interval",
        interval,
        "--window",
        window,
        "--data-root",
        str(data_root),
        "--run-id",
        run_id,
        *map(str, extra),
    ]
