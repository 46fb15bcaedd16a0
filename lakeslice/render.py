"""Terminal rendering for the CLI (rich, on stderr for progress, stdout for summaries)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .corpus import CorpusResult
from .export import ExportResult
from .lake.catalog import corpus_days, existing, kind_of, list_runs, run_warnings, source_name
from .lake.manifest import CoverageSummary, Sealed
from .lake.read import read_run_manifest, scan_coverage
from .lake.store import scheme_of
from .lake.verify import VerifyReport, verify_day

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class _Count(ProgressColumn):
    """``done/total`` once the stage knows its total; nothing while it does not."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        return Text(f"{int(task.completed):,}/{int(task.total):,}", style="progress.download")


class _Bar:
    """Progress drawn as a rich bar: the stage, units done of the total, rows and rows/s.

    A new stage is drawn at once (its total too), not at the next refresh tick, so a long
    first unit never leaves the screen without the total.
    """

    def __init__(self, bar: Progress) -> None:
        self._bar = bar
        self._lock = threading.Lock()  # advance() comes from the fetch thread too
        self._task = bar.add_task("planning", total=None, rows=0, rate=0.0)
        self._rows = 0
        self._started = time.perf_counter()

    def stage(self, name: str, *, total: int | None = None) -> None:
        with self._lock:
            # a task per stage: rich cannot set a task's total back to "unknown"
            self._bar.remove_task(self._task)
            self._task = self._bar.add_task(name, total=total, rows=self._rows, rate=self._rate())
            self._bar.refresh()

    def _rate(self) -> float:
        return self._rows / max(time.perf_counter() - self._started, 1e-9)

    def advance(self, *, done: int = 0, rows: int = 0) -> None:
        with self._lock:
            self._rows += rows
            self._bar.update(self._task, advance=done, rows=self._rows, rate=self._rate())


@contextlib.contextmanager
def progress_bar(*, enabled: bool = True, console: Console | None = None) -> Iterator[_Bar | None]:
    """A :class:`lakeslice.progress.Progress` drawn by rich on ``console`` (stderr by default).

    Drawn in a terminal or in Jupyter (rich renders there with ``ipywidgets``, the
    ``notebook`` extra); elsewhere (a pipe, a file) it yields None and nothing is drawn.
    Any stage name the exporter sends is drawn, with its total once known. In a terminal the
    bar is erased at the end (the summary follows); in Jupyter its last frame, with the
    final counts, stays in the cell.

    >>> with progress_bar(enabled=False) as p:
    ...     print(p)
    None
    """
    console = console or err
    if not (enabled and (console.is_terminal or console.is_jupyter)):
        yield None
        return
    if console.is_jupyter and importlib.util.find_spec("ipywidgets") is None:
        # rich would warn at every redraw and draw nothing: say once what is missing
        warnings.warn(
            "no progress bar: Jupyter needs ipywidgets (pip install 'lakeslice[notebook]')", stacklevel=3
        )
        yield None
        return
    with Progress(
        TextColumn("[bold]{task.description}[/]"),
        BarColumn(),
        _Count(),
        TextColumn("· {task.fields[rows]:,} rows · {task.fields[rate]:,.0f} rows/s"),
        TimeElapsedColumn(),
        console=console,
        transient=not console.is_jupyter,
    ) as bar:
        yield _Bar(bar)
        bar.refresh()  # rich does not redraw a Jupyter bar on exit: the final counts, once


def _pairs(title: str) -> Table:
    """A two-column table whose values wrap instead of being cut (hashes stay whole)."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", no_wrap=True)
    table.add_column("value", overflow="fold")
    return table


def sealed_counts(manifest: Sealed) -> tuple[int, int, int]:
    """Files, rows and bytes of every file the seal lists: exactly what ``verify`` counts."""
    files = manifest.get("files", [])
    return len(files), sum(int(f["rows"]) for f in files), sum(int(f["bytes"]) for f in files)


def render_export(result: ExportResult, *, source: str | None = None) -> None:
    """The summary of an export on stdout; ``source`` is the URL it read (password-free)."""
    m = result.manifest
    s = m["outputs"]["slices"]
    c = m["coverage"]
    table = _pairs(f"run {m['run_id']}")
    table.add_row("run dir", str(result.run_dir))
    named = source_name(m["inputs"]["source_snapshot"])
    table.add_row("source", f"{source} ({named})" if source else named)
    table.add_row(
        "spec", f"{m['slice_spec']['interval']} {m['slice_spec']['window']} ({m['slice_spec']['chain']})"
    )
    table.add_row("rows fetched / written", f"{result.rows_fetched:,} / {s['rows']:,}")
    table.add_row("slice files / bytes", f"{s['files']:,} / {s['bytes']:,} in {s['mint_buckets']} buckets")
    table.add_row("alerts kept / dropped", _kept(c))
    table.add_row("complete / partial / insufficient", _statuses(c))
    table.add_row("seconds", f"{result.seconds:.2f}")
    _print_with_hash(table, m)


def _print_with_hash(table: Table, m: Sealed) -> None:
    out.print(table)
    # on a line of its own: a hash folded inside a table cell cannot be copied whole
    out.print(f"content_sha256 {m['content_sha256']}", markup=False, soft_wrap=True)


def _statuses(c: CoverageSummary) -> str:
    return f"{c['complete']:,} / {c['partial']:,} / {c['insufficient']:,}"


def _kept(c: CoverageSummary) -> str:
    strict = f" (strict: pre >= {c['min_required_pre']}, total >= {c['target_total']})" if c["strict"] else ""
    return f"{c['kept_events']:,} / {c['dropped_events']:,}{strict}"


def _report_kind(report: VerifyReport) -> str:
    return "day" if Path(report.run_dir).name.startswith("date=") else "run"


def render_verify(reports: list[VerifyReport]) -> bool:
    """One line per run or day, every problem on stderr, a summary line; True when any failed."""
    for r in reports:
        if r.ok:
            out.print(
                f"ok {r.run_dir}: {r.files} sealed files, {r.rows:,} rows, {r.bytes:,} bytes",
                markup=False,
                soft_wrap=True,
            )
        for problem in r.problems:
            err.print(f"lakeslice: verify failed: {r.run_dir}: {problem}", markup=False, soft_wrap=True)
    summary = verify_json(reports)["summary"]
    out.print(
        f"verified {summary['runs']} runs and {summary['days']} corpus days: {summary['ok']} ok, "
        f"{summary['failed']} failed, {summary['problems']} problems "
        "(counts: the files each seal lists: slices, coverage and alerts of a run; a day's parts)",
        markup=False,
        soft_wrap=True,
    )
    return summary["failed"] > 0


def verify_json(reports: list[VerifyReport]) -> dict[str, Any]:
    """``verify --format json``: every run/day checked, its problems, and a summary."""
    checked = [
        {
            "path": str(r.run_dir),
            "kind": _report_kind(r),
            "ok": r.ok,
            "files": r.files,
            "rows": r.rows,
            "bytes": r.bytes,
            "problems": list(r.problems),
        }
        for r in reports
    ]
    failed = sum(1 for r in reports if not r.ok)
    return {
        "ok": failed == 0,
        "checked": checked,
        "summary": {
            "runs": sum(1 for r in reports if _report_kind(r) == "run"),
            "days": sum(1 for r in reports if _report_kind(r) == "day"),
            "ok": len(reports) - failed,
            "failed": failed,
            "problems": sum(len(r.problems) for r in reports),
        },
    }


def histogram(values: pl.Series, *, bins: int = 10, width: int = 40) -> list[str]:
    """A small text histogram of integer values: one line per non-empty bin.

    >>> for line in histogram(pl.Series([1, 1, 2, 9]), bins=3, width=4):
    ...     print(line)
           1–3        ████ 3
           7–9        █ 1
    """
    if values.len() == 0:
        return ["(no alerts)"]
    lo, hi = values.to_frame("v").select(lo=pl.col("v").min(), hi=pl.col("v").max()).row(0)
    step = max(1, -(-(hi - lo + 1) // bins))
    counts = (
        pl.DataFrame({"v": values}).with_columns(b=((pl.col("v") - lo) // step)).group_by("b").len().sort("b")
    )
    peak = max(counts.select(pl.col("len").max()).item(), 1)
    lines = []
    for b, n in counts.iter_rows():  # one line per bin (≤ bins), not per row
        start = lo + b * step
        bar = "█" * max(1, round(n / peak * width))
        lines.append(f"{start:>8}–{start + step - 1:<8} {bar} {n}")
    return lines


def render_show(path: str | Path) -> None:
    """A run's summary, or the runs (and corpus days) of a runs directory, data root or corpus.

    An ``s3://`` URL names a run (read through its manifest, like a local one).
    """
    if scheme_of(path) is not None:
        return _render_run(path)
    path = existing(path)
    kind = kind_of(path)
    if kind == "run":
        return _render_run(path)
    if kind in ("runs", "root"):
        render_runs(list_runs(path), title=f"runs in {path}")
    days = corpus_days(path) if kind in ("root", "corpus") else []
    if days or kind == "corpus":
        _render_corpus(path, days)


def _render_run(path: str | Path) -> None:
    m = read_run_manifest(path)
    s, c, spec = m["outputs"]["slices"], m["coverage"], m["slice_spec"]
    table = _pairs(f"run {m['run_id']} ({m['created_at']})")
    table.add_row("source", source_name(m["inputs"]["source_snapshot"]))
    table.add_row("spec", f"{spec['interval']} {spec['window']} chain={spec['chain']}")
    table.add_row("alerts", f"{m['inputs']['alerts']['rows']:,}")
    table.add_row("kept / dropped", _kept(c))
    table.add_row("complete / partial / insufficient", _statuses(c))
    table.add_row("slices: buckets / files", f"{s['mint_buckets']} / {s['files']}")
    table.add_row("slices: rows / bytes", f"{s['rows']:,} / {s['bytes']:,}")
    files, rows, size = sealed_counts(m)
    table.add_row("sealed files / rows / bytes", f"{files} / {rows:,} / {size:,} (what verify checks)")
    _print_with_hash(table, m)
    for warning in run_warnings(m):
        out.print(f"warning: {warning}", markup=False, soft_wrap=True)
    cov = scan_coverage(path).select("available_total").collect()
    out.print("available_total per alert:")
    for line in histogram(cov["available_total"]):
        out.print("  " + line)


def render_runs(runs: pl.DataFrame, *, title: str) -> None:
    """The table of :func:`lakeslice.lake.catalog.list_runs`; hashes whole, never cut.

    A terminal narrower than a table with the hash column gets the hashes listed below it.
    """
    if not runs.height:
        out.print(f"{title}: no runs", markup=False)
        return
    wide = out.width >= 170
    table = Table(title=title, title_justify="left")
    columns = ["run_id", "created", "spec", "kept / dropped", "candle rows", "sealed files / bytes", "sealed"]
    for col in columns + (["content_sha256"] if wide else []):
        table.add_column(col, justify="right" if "/" in col or "rows" in col else "left", overflow="fold")
    for r in runs.iter_rows(named=True):  # one line per run, not per candle
        if not r["sealed"]:
            table.add_row(r["run_id"], "", "", "", "", "", "[red]no[/] (no manifest.json)", *([""] * wide))
            continue
        table.add_row(
            r["run_id"],
            r["created_at"],
            f"{r['interval']} {r['window']} {r['chain']}",
            f"{r['alerts_kept']:,} / {r['alerts_dropped']:,}",
            f"{r['rows']:,}",
            f"{r['files']:,} / {r['bytes']:,}",
            "yes",
            *([r["content_sha256"]] if wide else []),
        )
    out.print(table)
    if not wide:
        out.print("content_sha256:")
        for run_id, sha in runs.filter("sealed").select("run_id", "content_sha256").iter_rows():
            out.print(f"  {run_id}  {sha}", markup=False, soft_wrap=True)


def show_json(path: str | Path) -> dict[str, Any]:
    """``show --format json``: a run's manifest and sealed counts, or the runs and days listed."""
    remote = scheme_of(path) is not None  # an s3:// URL names a run
    path = path if remote else existing(path)
    kind = "run" if remote else kind_of(Path(path))
    doc: dict[str, Any] = {"kind": kind, "path": str(path)}
    if kind == "run":
        # a local run is read from the generation it links to now (see run_path)
        resolved = path if remote else os.path.realpath(path)
        m = read_run_manifest(resolved)
        doc["resolved_path"] = str(resolved)
        files, rows, size = sealed_counts(m)
        doc.update(manifest=m, sealed={"files": files, "rows": rows, "bytes": size}, warnings=run_warnings(m))
        return doc
    if kind in ("runs", "root"):
        doc["runs"] = list_runs(path).to_dicts()
    if kind in ("root", "corpus"):
        doc["corpus_days"] = [_day_json(day, verify_day(day)) for day in corpus_days(path)]
    return doc


def _day_json(day: Path, report: VerifyReport) -> dict[str, Any]:
    return {
        "date": day.name.removeprefix("date="),
        "path": str(day),
        "sealed": report.ok,
        "files": report.files,
        "rows": report.rows,
        "bytes": report.bytes,
        "problems": list(report.problems),
    }


def _render_corpus(path: Path, days: list[Path] | None = None) -> None:
    table = Table(title=f"corpus {path}", title_justify="left")
    for col in ("day", "sealed", "sealed files", "rows", "bytes"):
        table.add_column(col, overflow="fold")
    for day in corpus_days(path) if days is None else days:
        r = verify_day(day)  # shows what verify would say: sealed and intact, or why not
        sealed = "yes" if r.ok else f"[red]no[/] ({escape(r.problems[0])})"
        table.add_row(day.name[5:], sealed, str(r.files), f"{r.rows:,}", f"{r.bytes:,}")
    out.print(table)


def render_corpus(result: CorpusResult) -> None:
    table = Table(title=f"corpus {result.root}", title_justify="left")
    for col in ("day", "files", "rows", "bytes"):
        table.add_column(col)
    for d in result.days:
        table.add_row(d["date"], str(len(d["files"])), f"{d['rows']:,}", f"{d['bytes']:,}")
    out.print(table)
    j = result.to_json()
    out.print(
        f"{j['total_rows']:,} rows in {result.seconds:.2f}s "
        f"({j['rows_per_second'] or 0:,} rows/s), {result.rows_fetched:,} fetched"
    )
