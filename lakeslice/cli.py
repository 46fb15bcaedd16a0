"""The ``lakeslice`` command: thin Typer commands that parse, call one function, render.

Machine output goes to stdout, logs and progress to stderr. Errors are one line; exit 2 for
bad usage or input, 1 for a failure while running.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Any

import jsonschema
import typer
from rich.console import Console

from . import json_schema
from ._version import __version__
from .corpus import export_corpus, read_mints
from .errors import InputError, LakesliceError, error_line, redact
from .export import export_run_slices
from .lake.verify import verify_path
from .options import ExportOptions
from .render import progress_bar, render_corpus, render_export, render_show, render_verify

app = typer.Typer(
    name="lakeslice",
    help="Export OHLCV candle windows around alerts into a sealed Parquet lake.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False)

EXPORT_DEFAULTS: dict[str, Any] = {
    **{f.name: f.default for f in dataclasses.fields(ExportOptions)},
    "alerts": None,
    "format": "table",
}


class Format(str, Enum):
    table = "table"
    json = "json"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lakeslice {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="lakeslice: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_redact_record)
    # clickhouse_driver logs every failed connect at WARNING with a traceback; our own error
    # line already says what happened (errors are one line). LAKESLICE_DEBUG=1 shows them.
    if not os.environ.get("LAKESLICE_DEBUG"):
        logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)


def _command_line_urls() -> list[str]:
    """The URLs this process was given: their passwords are secrets in every output."""
    return [u for u in (os.environ.get("LAKESLICE_SOURCE"), *sys.argv[1:]) if u and "://" in u]


def _redact_record(record: logging.LogRecord) -> bool:
    """Log lines are an output too: the same redaction as the error line."""
    record.msg, record.args = redact(record.getMessage(), urls=_command_line_urls()), None
    return True


def _fail(exc: BaseException, fmt: str, *, source: str | None = None) -> None:
    """Report one line and exit with the error's status; never a traceback (LAKESLICE_DEBUG=1
    re-raises, with the driver's own error chained). ``source`` is the source URL in use: its
    password, like those of the command line and the environment, never reaches the screen."""
    if os.environ.get("LAKESLICE_DEBUG"):
        raise exc
    if isinstance(exc, LakesliceError):
        code, status = exc.code, exc.exit_code
    else:
        code, status = "internal_error", 1
    message = redact(error_line(exc), urls=[source, *_command_line_urls()])
    if fmt == "json":
        typer.echo(json.dumps({"error": {"code": code, "message": message}}, sort_keys=True))
    err.print(f"lakeslice: error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(status)


def _check_config(data: dict[str, Any], config: str) -> None:
    """The config must fit the shipped schema (unknown keys, wrong JSON types: exit 2)."""
    validator = jsonschema.Draft202012Validator(json_schema("config"))
    error = next(iter(sorted(validator.iter_errors(data), key=lambda e: list(e.path))), None)
    if error is not None:
        where = f"config key {error.path[0]!r}" if error.path else "config"
        raise InputError(f"{'stdin' if config == '-' else config}: {where}: {error.message}")


def _load_config(config: str | None) -> dict[str, Any]:
    if not config:
        return {}
    try:
        text = sys.stdin.read() if config == "-" else Path(config).read_text("utf-8")
    except OSError as exc:
        raise InputError(f"{config}: cannot read config ({exc.strerror})") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{'stdin' if config == '-' else config}: config is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{config}: config must be a JSON object")
    return data


def _merge(flags: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Command-line flags override the config file, which overrides the defaults."""
    out = dict(EXPORT_DEFAULTS)
    out.update({k: v for k, v in config.items() if v is not None})
    out.update({k: v for k, v in flags.items() if v is not None})
    for required in ("alerts", "interval", "window"):
        if out.get(required) in (None, ""):
            raise InputError(f"missing option --{required.replace('_', '-')}")
    return out


@app.command()
def export(
    alerts: str = typer.Option(None, "--alerts", help="Alerts file (.parquet or .csv)."),
    interval: str = typer.Option(None, "--interval", help="Candle interval: 1s, 1m, 5m, 1h, 1d."),
    window: str = typer.Option(None, "--window", help="Window preN_postM, e.g. pre52_post4948."),
    run_id: str = typer.Option(None, "--run-id", help="Run id (default: UTC time + suffix)."),
    data_root: str = typer.Option(None, "--data-root", help="Lake root [default: data]."),
    chain: str = typer.Option(None, "--chain", help="Chain [default: solana]."),
    compression: str = typer.Option(None, "--compression", help="zstd (default), snappy, none."),
    target_file_mb: float = typer.Option(None, "--target-file-mb", help="Part size [512]."),
    strict_coverage: bool = typer.Option(None, "--strict-coverage/--no-strict-coverage"),
    min_required_pre: int = typer.Option(
        None, "--min-required-pre", help=ExportOptions.help("min_required_pre")
    ),
    target_total: int = typer.Option(None, "--target-total", help=ExportOptions.help("target_total")),
    format: Format = typer.Option(None, "--format", help="table (default) or json."),
    source: str = typer.Option(
        None,
        "--source",
        help="clickhouse://, chdb://, parquet:// or corpus:// URL.",
        envvar="LAKESLICE_SOURCE",
        show_envvar=True,
    ),
    table: str = typer.Option(None, "--table", help="Source table [ohlcv_candles]."),
    source_shards: str = typer.Option(None, "--source-shards", help=ExportOptions.help("source_shards")),
    executor: str = typer.Option(None, "--executor", help=ExportOptions.help("executor")),
    overwrite: bool = typer.Option(None, "--overwrite/--no-overwrite", help="Replace a sealed run."),
    config: str = typer.Option(None, "--config", help="JSON options file, or - for stdin."),
) -> None:
    """Cut the candle windows around each alert into a sealed run."""
    flags = dict(locals())
    flags.pop("config")
    flags["format"] = format.value if format else None
    fmt = "json" if (flags["format"] == "json") else "table"
    url = flags["source"]
    try:
        loaded = _load_config(config)
        url = url or loaded.get("source")
        # a config's "format": "json" also shapes errors found while merging (a missing --window)
        if flags["format"] is None and loaded.get("format") == "json":
            fmt = "json"
        _check_config(loaded, config)
        opts = _merge(flags, loaded)
        fmt = opts["format"]
        if fmt not in ("table", "json"):
            raise InputError(f"format {fmt!r}: expected table or json")
        with progress_bar(enabled=fmt != "json") as progress:
            result = export_run_slices(
                opts["alerts"],
                interval=opts["interval"],
                window=opts["window"],
                source=opts["source"],
                table=opts["table"],
                source_shards=opts["source_shards"],
                executor=opts["executor"],
                data_root=opts["data_root"],
                run_id=opts["run_id"],
                chain=opts["chain"],
                compression=opts["compression"],
                target_file_mb=opts["target_file_mb"],
                strict_coverage=opts["strict_coverage"],
                min_required_pre=opts["min_required_pre"],
                target_total=opts["target_total"],
                overwrite=opts["overwrite"],
                progress=progress,
            )
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        _fail(exc, fmt, source=url if isinstance(url, str) else None)
    if fmt == "json":
        typer.echo(json.dumps(result.to_json(), sort_keys=True))
    else:
        render_export(result)


@app.command()
def corpus(
    interval: str = typer.Option(..., "--interval", help="Candle interval: 1s, 1m, 1h, ..."),
    date_from: str = typer.Option(..., "--from", help="First UTC day, YYYY-MM-DD."),
    date_to: str = typer.Option(..., "--to", help="Day after the last (exclusive), YYYY-MM-DD."),
    mints: Path = typer.Option(
        None,
        "--mints",
        help="File of mints (one per line, or a CSV/Parquet with a mint column) to restrict the corpus to.",
    ),
    source: str = typer.Option(
        None,
        "--source",
        envvar="LAKESLICE_SOURCE",
        show_envvar=True,
        help="clickhouse://, chdb:// or parquet:// URL.",
    ),
    table: str = typer.Option("ohlcv_candles", "--table"),
    chain: str = typer.Option("solana", "--chain"),
    data_root: str = typer.Option("data", "--data-root"),
    compression: str = typer.Option("zstd", "--compression"),
    target_file_mb: float = typer.Option(512.0, "--target-file-mb"),
    format: Format = typer.Option(Format.table, "--format"),
    source_shards: str = typer.Option(None, "--source-shards", help=ExportOptions.help("source_shards")),
    executor: str = typer.Option("local", "--executor", help=ExportOptions.help("executor")),
) -> None:
    """Export every candle of a chain and interval by UTC day into the corpus tree."""
    fmt = format.value
    try:
        with progress_bar(enabled=fmt != "json") as progress:
            result = export_corpus(
                interval=interval,
                date_from=date_from,
                date_to=date_to,
                source=source,
                table=table,
                chain=chain,
                data_root=data_root,
                compression=compression,
                target_file_mb=target_file_mb,
                mints=read_mints(mints) if mints else None,
                progress=progress,
                executor=executor,
                source_shards=source_shards,
            )
    except Exception as exc:  # noqa: BLE001
        _fail(exc, fmt, source=source)
    if fmt == "json":
        typer.echo(json.dumps(result.to_json(), sort_keys=True))
    else:
        render_corpus(result)


@app.command()
def verify(run_dir: str = typer.Argument(..., help="A run directory or s3:// URL (or corpus root).")) -> None:
    """Recompute every hash and row count of a sealed run; exit 1 on any mismatch."""
    try:
        reports = verify_path(run_dir)
    except Exception as exc:  # noqa: BLE001
        _fail(exc, "table")
    bad = render_verify(reports)
    raise typer.Exit(1 if bad else 0)


@app.command()
def show(
    run_dir: str = typer.Argument(..., help="A sealed run directory or s3:// URL (or corpus root)."),
) -> None:
    """A human summary of a sealed run: spec, buckets, files, rows, coverage."""
    try:
        render_show(run_dir)
    except Exception as exc:  # noqa: BLE001
        _fail(exc, "table")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A sealed run directory."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o", help="The HTML page to write."),
    png: Path = typer.Option(None, "--png", help="Also write every chart as a PNG into this directory."),
    base_k: int = typer.Option(0, "--base-k", help="Slot of the base price (or the last candle before)."),
    kind: str = typer.Option("log", "--kind", help="Returns: log or simple."),
) -> None:
    """One self-contained HTML page (works offline): spec, seal, coverage, lake, event profile."""
    try:
        from .report import write_report

        page = write_report(run_dir, output=output, png_dir=png, base_k=base_k, kind=kind)
    except Exception as exc:  # noqa: BLE001
        _fail(exc, "table")
    typer.echo(str(page))


@app.command()
def diff(
    run_a: Path = typer.Argument(..., help="The first sealed run directory."),
    run_b: Path = typer.Argument(..., help="The second sealed run directory."),
    format: Format = typer.Option(Format.table, "--format", help="table (default) or json."),
) -> None:
    """What changed from RUN_A to RUN_B: spec, files, rows per bucket, alerts' coverage."""
    fmt = format.value
    try:
        from .catalog import diff_runs, render_diff

        result = diff_runs(run_a, run_b)
    except Exception as exc:  # noqa: BLE001
        _fail(exc, fmt)
    if fmt == "json":
        typer.echo(json.dumps(result, sort_keys=True))
    else:
        typer.echo(render_diff(result))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
