"""lakeslice: OHLCV candle windows around alerts, from ClickHouse into a sealed Parquet lake.

>>> import polars as pl, lakeslice as ls
>>> ls.parse_window("pre52_post4948").slots
5001
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .alerts import normalize_alerts, read_alerts
from .corpus import CorpusResult, export_corpus
from .diff import diff_runs
from .executor import Executor, LocalExecutor, open_executor
from .export import ExportResult, GroupResult, GroupTask, RunPlan, export_run_slices, plan_run, run_group
from .lake.catalog import list_runs
from .lake.commit import remove_replaced
from .lake.read import run_path, scan_corpus, scan_coverage, scan_run
from .lake.verify import verify_dir
from .spec import InputError, LakesliceError, RunError, Window, parse_interval, parse_window
from .study import event_profile, event_returns, scan_windows
from .transforms import (
    coverage,
    floor_to_interval,
    merge_windows,
    mint_bucket,
    slice_windows,
)

if TYPE_CHECKING:
    from rich.console import Console


def json_schema(name: str) -> dict[str, Any]:
    """The shipped JSON Schema ``config`` (``--config``) or ``result`` (``--format json``).

    >>> json_schema("result")["title"]
    'lakeslice export --format json output'
    """
    text = resources.files("lakeslice").joinpath(f"schemas/{name}.schema.json").read_text("utf-8")
    return json.loads(text)


if TYPE_CHECKING:
    from .dask_executor import DaskExecutor


def __getattr__(name: str) -> Any:
    """``DaskExecutor`` on first use: Dask is an optional extra (``lakeslice[dask]``)."""
    if name == "DaskExecutor":
        from .dask_executor import DaskExecutor

        return DaskExecutor
    raise AttributeError(f"module 'lakeslice' has no attribute {name!r}")


def progress_bar(*, enabled: bool = True, console: Console | None = None) -> AbstractContextManager[Any]:
    """A rich progress bar (terminal or Jupyter) to pass as ``progress=`` to an export.

    >>> with progress_bar(enabled=False) as p:  # in a notebook: with ls.progress_bar() as p:
    ...     p is None
    True
    """
    from .render import progress_bar as bar

    return bar(enabled=enabled, console=console)


def write_report(
    run_dir: str | Path,
    *,
    output: str | Path = "report.html",
    png_dir: str | Path | None = None,
    base_k: int = 0,
    kind: str = "log",
) -> Path:
    """The run report page (needs the ``report`` extra); see :func:`lakeslice.report.write_report`.

    >>> import tempfile, lakeslice as ls
    >>> root = tempfile.mkdtemp()
    >>> run = ls.export_run_slices(
    ...     "fixtures/alerts.csv", interval="1m", window="pre2_post3",
    ...     source="parquet://fixtures/candles.parquet", run_id="doc", data_root=root,
    ... )
    >>> ls.write_report(run.run_dir, output=f"{root}/report.html").name
    'report.html'
    """
    from .report import write_report as write

    return write(run_dir, output=output, png_dir=png_dir, base_k=base_k, kind=kind)


__all__ = [
    "__version__",
    "parse_interval",
    "parse_window",
    "Window",
    "floor_to_interval",
    "mint_bucket",
    "merge_windows",
    "slice_windows",
    "coverage",
    "read_alerts",
    "normalize_alerts",
    "export_run_slices",
    "export_corpus",
    "open_executor",
    "DaskExecutor",
    "ExportResult",
    "CorpusResult",
    "plan_run",
    "run_group",
    "RunPlan",
    "GroupTask",
    "GroupResult",
    "Executor",
    "LocalExecutor",
    "scan_run",
    "run_path",
    "remove_replaced",
    "scan_windows",
    "scan_coverage",
    "scan_corpus",
    "event_returns",
    "event_profile",
    "verify_dir",
    "list_runs",
    "progress_bar",
    "diff_runs",
    "write_report",
    "json_schema",
    "LakesliceError",
    "InputError",
    "RunError",
]
