"""Terminal rendering for the CLI (rich, on stderr for progress, stdout for summaries)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .corpus import CorpusResult
from .export import ExportResult
from .lake.layout import hive_value
from .lake.read import read_run_manifest, scan_coverage
from .lake.store import scheme_of
from .lake.verify import VerifyReport, verify_day

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class _Bar:
    """Progress drawn as a rich bar: the stage, units done of the total, rows and rows/s."""

    def __init__(self, bar: Progress) -> None:
        self._bar = bar
        self._task = bar.add_task("planning", total=None, rows=0, rate=0.0)
        self._rows = 0
        self._started = time.perf_counter()

    def stage(self, name: str, *, total: int | None = None) -> None:
        self._bar.update(self._task, description=name, total=total, completed=0)

    def advance(self, *, done: int = 0, rows: int = 0) -> None:
        self._rows += rows
        rate = self._rows / max(time.perf_counter() - self._started, 1e-9)
        self._bar.update(self._task, advance=done, rows=self._rows, rate=rate)


@contextlib.contextmanager
def progress_bar(*, enabled: bool) -> Iterator[_Bar | None]:
    """A :class:`lakeslice.progress.Progress` drawing a bar on stderr when it is a terminal."""
    if not (enabled and err.is_terminal):
        yield None
        return
    with Progress(
        TextColumn("[bold]{task.description}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("· {task.fields[rows]:,} rows · {task.fields[rate]:,.0f} rows/s"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        yield _Bar(bar)


def render_export(result: ExportResult) -> None:
    m = result.manifest
    s = m["outputs"]["slices"]
    c = m["coverage"]
    table = Table(title=f"run {m['run_id']}", show_header=False, title_justify="left")
    table.add_row("run dir", str(result.run_dir))
    table.add_row(
        "spec", f"{m['slice_spec']['interval']} {m['slice_spec']['window']} ({m['slice_spec']['chain']})"
    )
    table.add_row("rows fetched / written", f"{result.rows_fetched:,} / {s['rows']:,}")
    table.add_row("files / bytes", f"{s['files']:,} / {s['bytes']:,} in {s['mint_buckets']} buckets")
    table.add_row("alerts kept / dropped", f"{c['kept_events']:,} / {c['dropped_events']:,}")
    table.add_row(
        "complete / partial / insufficient", f"{c['complete']:,} / {c['partial']:,} / {c['insufficient']:,}"
    )
    table.add_row("seconds", f"{result.seconds:.2f}")
    table.add_row("content_sha256", m["content_sha256"])
    out.print(table)


def render_verify(reports: list[VerifyReport]) -> bool:
    """Print one line per run or day; True when anything failed."""
    bad = False
    for r in reports:
        if r.ok:
            out.print(f"ok {r.run_dir}: {r.files} files, {r.rows:,} rows, {r.bytes:,} bytes")
        else:
            bad = True
            print(f"lakeslice: verify failed: {r.run_dir}: {r.problems[0]}", file=sys.stderr)
    return bad


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
    if scheme_of(path) is None:
        path = Path(path)
        if not (path / "manifest.json").is_file() and any(path.rglob("date=*")):
            return _render_corpus(path)
    m = read_run_manifest(path)
    s, c, spec = m["outputs"]["slices"], m["coverage"], m["slice_spec"]
    table = Table(title=f"run {m['run_id']} ({m['created_at']})", show_header=False, title_justify="left")
    snap = m["inputs"]["source_snapshot"]
    table.add_row("source", f"{snap.get('kind')} {snap.get('database') or ''}.{snap.get('table')}")
    table.add_row("spec", f"{spec['interval']} {spec['window']} chain={spec['chain']}")
    table.add_row("alerts", f"{m['inputs']['alerts']['rows']:,}")
    table.add_row("buckets / files", f"{s['mint_buckets']} / {s['files']}")
    table.add_row("rows / bytes", f"{s['rows']:,} / {s['bytes']:,}")
    table.add_row(
        "kept / dropped",
        f"{c['kept_events']:,} / {c['dropped_events']:,}" + (" (strict)" if c["strict"] else ""),
    )
    table.add_row(
        "complete / partial / insufficient", f"{c['complete']:,} / {c['partial']:,} / {c['insufficient']:,}"
    )
    table.add_row("content_sha256", m["content_sha256"])
    out.print(table)
    cov = scan_coverage(path).select("available_total").collect()
    out.print("available_total per alert:")
    for line in histogram(cov["available_total"]):
        out.print("  " + line)


def _render_corpus(path: Path) -> None:
    table = Table(title=f"corpus {path}", title_justify="left")
    for col in ("day", "sealed", "files", "rows", "bytes"):
        table.add_column(col)
    for day in sorted(p for p in path.rglob("date=*") if p.is_dir() and "_seals" not in p.parts):
        r = verify_day(day)  # shows what verify would say: sealed and intact, or why not
        sealed = "yes" if r.ok else f"[red]no[/] ({r.problems[0]})"
        table.add_row(
            hive_value(day.name, "date") or day.name, sealed, str(r.files), f"{r.rows:,}", f"{r.bytes:,}"
        )
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
