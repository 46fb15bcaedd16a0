"""The ``lakeslice`` command: thin Typer commands that parse, call one function, render.

Machine output goes to stdout, logs and progress to stderr. Errors are one line; exit 2 for
bad usage or input, 1 for a failure while running.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from . import signals
from .errors import InputError, LakesliceError, error_line, redact
from .options import ExportOptions
from .signals import Interrupted

# Start-up time: `lakeslice --version` and `--help` must not pay for Polars, PyArrow, the
# sources or rich. Everything heavy is imported inside the command (or helper) that needs it.
if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(
    name="lakeslice",
    help="Export OHLCV candle windows around alerts into a sealed Parquet lake.",
    no_args_is_help=True,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    # plain help: Rich markup would read "[default: …]" in a help line as a tag and drop it,
    # and Rich's narrow help column cuts long values such as URLs with "…"
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


@cache
def err() -> Console:
    """The stderr console (rich: imported when something is printed)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


class Format(str, Enum):
    table = "table"
    json = "json"


def _version(value: bool) -> None:
    if value:
        from ._version import __version__

        typer.echo(f"lakeslice {__version__}")
        raise typer.Exit()


def _set_verbose(value: bool) -> None:
    """``-v`` anywhere on the line (before or after the command): INFO logs on stderr."""
    if value:
        logging.getLogger().setLevel(logging.INFO)


def _verbose_option() -> Any:
    return typer.Option(
        False,
        "--verbose",
        "-v",
        callback=_set_verbose,
        expose_value=False,
        help="Log progress details to stderr.",
    )


def _format_option(help: str = "Output: table (human) or json (one object on stdout).") -> Any:
    return typer.Option(Format.table, "--format", help=help, show_default=True)


def _option(name: str, *decls: str, required: bool = False, **kwargs: Any) -> Any:
    """A flag of export option ``name``: its default and help line come from ExportOptions.

    ``required`` options stay None by default so that ``--config`` may give them.
    """
    return typer.Option(
        ExportOptions.default(name),
        *(decls or (f"--{name.replace('_', '-')}",)),
        help=ExportOptions.help(name) + (" Required (flag or config)." if required else ""),
        show_default=True,
        **kwargs,
    )


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
) -> None:
    logging.basicConfig(format="lakeslice: %(message)s", stream=sys.stderr)
    logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)
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


def _fail(exc: BaseException, fmt: str, *, source: str | None = None) -> NoReturn:
    """Report one line and exit with the error's status; never a traceback (LAKESLICE_DEBUG=1
    re-raises, with the driver's own error chained). ``source`` is the source URL in use: its
    password, like those of the command line and the environment, never reaches the screen."""
    if os.environ.get("LAKESLICE_DEBUG"):
        raise exc
    if isinstance(exc, (LakesliceError, Interrupted)):
        code, status = exc.code, exc.exit_code
    else:
        code, status = "internal_error", 1
    line = str(exc) if isinstance(exc, Interrupted) else error_line(exc)
    message = redact(line, urls=[source, *_command_line_urls()]) + _missing_extra(exc)
    if fmt == "json":
        typer.echo(json.dumps({"error": {"code": code, "message": message}}, sort_keys=True))
    err().print(f"lakeslice: error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(status)


#: Optional packages and the extra of lakeslice that installs each.
EXTRAS = {"chdb": "chdb", "clickhouse_driver": "clickhouse", "duckdb": "duckdb", "ipywidgets": "notebook"}


def _missing_extra(exc: BaseException | None) -> str:
    """How to install the optional package whose absence caused ``exc`` (or nothing).

    >>> _missing_extra(ModuleNotFoundError("No module named 'chdb'", name="chdb"))
    " (pip install 'lakeslice[chdb]')"
    """
    while exc is not None:
        package = (exc.name or "").split(".")[0] if isinstance(exc, ModuleNotFoundError) else ""
        if package in EXTRAS:
            return f" (pip install 'lakeslice[{EXTRAS[package]}]')"
        exc = exc.__cause__ or exc.__context__
    return ""


def _check_config(data: dict[str, Any], config: str) -> None:
    """The config must fit the shipped schema (unknown keys, wrong JSON types: exit 2)."""
    import jsonschema

    from . import json_schema

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


def _apply_config(ctx: typer.Context, config: str | None) -> str | None:
    """``--config``: the file's options become the defaults of the flags (Click's default_map).

    Flags given on the command line (or in ``LAKESLICE_SOURCE``) still win. A bad config is
    kept for the command to report, so that it is shaped by ``--format`` like any error.
    """
    try:
        data = _load_config(config)
    except InputError as exc:
        ctx.meta["lakeslice.config_error"] = exc
        return config
    ctx.meta["lakeslice.config_json"] = data.get("format") == "json"
    if not data:
        return config  # nothing to check: jsonschema is not imported (0.1 s of every start)
    try:
        _check_config(data, config or "")
    except InputError as exc:
        ctx.meta["lakeslice.config_error"] = exc
        return config
    ctx.default_map = {**(ctx.default_map or {}), **{k: v for k, v in data.items() if v is not None}}
    return config


def _error_format(ctx: typer.Context, fmt: Format) -> str:
    """The format errors are reported in: the flag's, or a config's when it failed to load."""
    source = ctx.get_parameter_source("format")
    given = source is not None and source.name == "COMMANDLINE"
    return "json" if fmt == Format.json or (not given and ctx.meta.get("lakeslice.config_json")) else "table"


def _password_file_option() -> Any:
    return typer.Option(
        None,
        "--password-file",
        help="ClickHouse password: the first line of this file (as LAKESLICE_CLICKHOUSE_PASSWORD_FILE;"
        " a password in the URL or LAKESLICE_CLICKHOUSE_PASSWORD wins).",
        show_default=False,
    )


def _use_password_file(path: Path | None) -> None:
    """``--password-file``: checked now (exit 2 naming the file), read where the environment
    variable is read, when a ClickHouse source connects."""
    if path is not None:
        from .sources.clickhouse import read_password_file

        read_password_file(str(path), what=f"--password-file {path}")
        os.environ["LAKESLICE_CLICKHOUSE_PASSWORD_FILE"] = str(path)


@contextmanager
def _one_line_errors(fmt: str, *, source: str | None = None) -> Iterator[None]:
    """Every failure of the block becomes one line and the error's exit status (see _fail)."""
    try:
        yield
    except (Exception, Interrupted) as exc:  # noqa: BLE001 - every failure becomes one line
        _fail(exc, fmt, source=source)


#: Whether the console entry point (main) runs this process and installed the stop signals.
_console_entry = False


def _claim_stop_signals() -> None:
    """Install the stop-signal handlers again once Polars and PyArrow are imported: a library
    imported after ``main`` installed them can take SIGINT over (an export then ignored Ctrl-C
    while a fetch waited on a silent server)."""
    if _console_entry:  # main() installed them (not a test's in-process runner)
        import polars  # noqa: F401
        import pyarrow  # noqa: F401

        signals.install()


def _use_jemalloc() -> None:
    """PyArrow's jemalloc pool for a run, unless ``ARROW_DEFAULT_MEMORY_POOL`` names one: with
    the default (mimalloc), memory freed by the prefetch and group threads stayed mapped (peak
    RSS of a ClickHouse export at bench scale 10: 500 MiB with mimalloc, 414 with jemalloc)."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    import pyarrow as pa

    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:  # a PyArrow built without jemalloc keeps its default
        pass


def _options(ctx: typer.Context) -> dict[str, Any]:
    """The export options among the command's parameters (ExportOptions names them all)."""
    return {name: value for name, value in ctx.params.items() if name in ExportOptions.names()}


@app.command()
def export(
    ctx: typer.Context,
    alerts: str = typer.Option(None, "--alerts", help="Alerts file (.parquet or .csv). Required."),
    interval: str = _option("interval", required=True),
    window: str = _option("window", required=True),
    run_id: str = _option("run_id"),
    data_root: str = _option("data_root"),
    chain: str = _option("chain"),
    compression: str = _option("compression"),
    target_file_mb: float = _option("target_file_mb"),
    strict_coverage: bool = _option("strict_coverage", "--strict-coverage/--no-strict-coverage"),
    min_required_pre: int = _option("min_required_pre"),
    target_total: int = _option("target_total"),
    format: Format = _format_option(),
    source: str = _option("source", envvar="LAKESLICE_SOURCE", show_envvar=True),
    table: str = _option("table"),
    overwrite: bool = _option("overwrite", "--overwrite/--no-overwrite"),
    config: str = typer.Option(
        None,
        "--config",
        help="JSON object of these options (snake_case keys), a file or - for stdin; flags win.",
        callback=_apply_config,
        is_eager=True,
    ),
    source_shards: str = _option("source_shards"),
    executor: str = _option("executor"),
    password_file: Path = _password_file_option(),
    _verbose: bool = _verbose_option(),
) -> None:
    """Cut the candle windows around each alert into a sealed run."""
    fmt = _error_format(ctx, format)
    with _one_line_errors(fmt, source=source):
        if "lakeslice.config_error" in ctx.meta:
            raise ctx.meta["lakeslice.config_error"]
        for name, value in (("alerts", alerts), ("interval", interval), ("window", window)):
            if value in (None, ""):
                raise InputError(f"missing option --{name}")
        _use_password_file(password_file)
        from .export import export_run_slices
        from .render import progress_bar

        _claim_stop_signals()
        _use_jemalloc()

        with progress_bar(enabled=fmt != "json") as progress:
            result = export_run_slices(alerts, **_options(ctx), progress=progress)
    for warning in result.warnings:
        err().print(f"lakeslice: warning: {warning}", markup=False, soft_wrap=True, style="bold yellow")
    if fmt == "json":
        typer.echo(json.dumps(result.to_json(), sort_keys=True))
    else:
        from .render import render_export

        render_export(result, source=redact(source or f"chdb://{Path(data_root) / 'chdb'}", urls=[source]))


@app.command()
def corpus(
    ctx: typer.Context,
    interval: str = typer.Option(..., "--interval", help=ExportOptions.help("interval")),
    date_from: str = typer.Option(..., "--from", help="First UTC day, YYYY-MM-DD."),
    date_to: str = typer.Option(..., "--to", help="Day after the last (exclusive), YYYY-MM-DD."),
    mints: Path = typer.Option(
        None,
        "--mints",
        help="File of mints (one per line, or a CSV/Parquet with a mint column) to restrict the corpus to"
        " (such a corpus never replaces a whole day). [default: every mint]",
    ),
    source: str = _option("source", envvar="LAKESLICE_SOURCE", show_envvar=True),
    table: str = _option("table"),
    chain: str = _option("chain"),
    data_root: str = _option("data_root"),
    compression: str = _option("compression"),
    target_file_mb: float = _option("target_file_mb"),
    format: Format = _format_option(),
    source_shards: str = _option("source_shards"),
    executor: str = _option("executor"),
    password_file: Path = _password_file_option(),
    _verbose: bool = _verbose_option(),
) -> None:
    """Export a chain's candles of one interval by UTC day into the corpus tree."""
    fmt = format.value
    with _one_line_errors(fmt, source=source):
        _use_password_file(password_file)
        from .corpus import export_corpus, read_mints
        from .render import progress_bar

        _claim_stop_signals()
        _use_jemalloc()

        with progress_bar(enabled=fmt != "json") as progress:
            result = export_corpus(
                **_options(ctx),
                date_from=date_from,
                date_to=date_to,
                mints=read_mints(mints) if mints else None,
                progress=progress,
            )
    if fmt == "json":
        typer.echo(json.dumps(result.to_json(), sort_keys=True))
    else:
        from .render import render_corpus

        render_corpus(result)


def _path_argument() -> Any:
    return typer.Argument(
        ...,
        help="A run directory, a runs directory, a data root, a corpus tree, or an s3:// run or corpus URL.",
        show_default=False,
    )


@app.command()
def verify(
    path: str = _path_argument(), format: Format = _format_option(), _v: bool = _verbose_option()
) -> None:
    """Check every run and corpus day under PATH against its seal.

    Recomputes each listed file's size, SHA-256 and row count, lists every problem, and exits
    1 on any. Counts are over the files listed in each seal (slices, coverage and alerts).
    """
    with _one_line_errors(format.value):
        from .lake.verify import verify_root
        from .render import render_verify, verify_json

        reports = verify_root(path)
    if format == Format.json:
        typer.echo(json.dumps(verify_json(reports), sort_keys=True))
        bad = any(not r.ok for r in reports)
    else:
        bad = render_verify(reports)
    raise typer.Exit(1 if bad else 0)


@app.command()
def show(
    path: str = _path_argument(), format: Format = _format_option(), _v: bool = _verbose_option()
) -> None:
    """Summarize a run, or list the runs and corpus days of a lake.

    A run directory: spec, source, coverage, files and a histogram of candles per alert. A
    runs directory or data root: one line per run (as ``ls``), then the corpus days if any."""
    with _one_line_errors(format.value):
        from .render import render_show, show_json

        if format == Format.json:
            typer.echo(json.dumps(show_json(path), sort_keys=True))
        else:
            render_show(path)


@app.command("ls")
def ls_runs(
    path: Path = typer.Argument(Path("data"), help="A data root or its runs directory.", show_default=True),
    format: Format = _format_option(),
    _verbose: bool = _verbose_option(),
) -> None:
    """List the runs of a lake.

    One line per run: id, created, spec, alerts kept/dropped, candle rows, sealed files and
    bytes, sealed or not, content_sha256."""
    with _one_line_errors(format.value):
        from .lake.catalog import list_runs
        from .render import render_runs

        runs = list_runs(path)
        if format == Format.json:
            typer.echo(json.dumps({"runs": runs.to_dicts()}, sort_keys=True))
        else:
            render_runs(runs, title=f"runs in {path}")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A sealed run directory."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o", help="The HTML page to write."),
    png: Path = typer.Option(None, "--png", help="Also write every chart as a PNG into this directory."),
    base_k: int = typer.Option(0, "--base-k", help="Slot of the base price (or the last candle before)."),
    kind: str = typer.Option("log", "--kind", help="Returns: log or simple."),
) -> None:
    """One self-contained HTML page (works offline): spec, seal, coverage, lake, event profile."""
    with _one_line_errors("table"):
        from .report import write_report

        page = write_report(run_dir, output=output, png_dir=png, base_k=base_k, kind=kind)
    typer.echo(str(page))


@app.command()
def diff(
    run_a: Path = typer.Argument(..., help="The first sealed run directory."),
    run_b: Path = typer.Argument(..., help="The second sealed run directory."),
    format: Format = typer.Option(Format.table, "--format", help="table (default) or json."),
) -> None:
    """What changed from RUN_A to RUN_B: spec, files, rows per bucket, alerts' coverage."""
    fmt = format.value
    with _one_line_errors(fmt):
        from .diff import diff_runs, render_diff

        result = diff_runs(run_a, run_b)
    if fmt == "json":
        typer.echo(json.dumps(result, sort_keys=True))
    else:
        typer.echo(render_diff(result))


@app.command()
def gc(
    data_root: Path = typer.Argument(Path("data"), help="A local data root.", show_default=True),
    keep_replaced: float | None = typer.Option(
        None,
        "--keep-replaced",
        help="Seconds a replaced run generation stays for readers still reading it "
        "[default: LAKESLICE_KEEP_REPLACED or 600].",
        show_default=False,
    ),
    format: Format = _format_option(),
) -> None:
    """Remove the run generations replaced more than --keep-replaced seconds ago.

    Each --overwrite of a local run links run_id=X to a new generation and keeps the replaced
    one for plain readers still scanning it; later exports of the run remove old ones too."""
    with _one_line_errors(format.value):
        from .lake.commit import remove_replaced

        removed = remove_replaced(data_root, keep_replaced=keep_replaced)
    if format == Format.json:
        typer.echo(json.dumps({"removed": [str(p) for p in removed]}, sort_keys=True))
    else:
        typer.echo(f"removed {len(removed)} replaced generation(s)")


def main() -> None:
    """The console entry point: stop signals become one line and exit 130 (see signals.py)."""
    global _console_entry
    signals.install()
    _console_entry = True
    try:
        app(prog_name="lakeslice")
        return
    except Interrupted as exc:  # arrived outside a command's own handler (start-up, rendering)
        err().print(f"lakeslice: error: {exc}", markup=False, soft_wrap=True)
        status = exc.exit_code
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if status != signals.EXIT_STATUS:
            raise
    # Interrupted: output flushed, exit now; a fetch thread still blocked on a silent server
    # must not hold the process (its connection is already closed).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
