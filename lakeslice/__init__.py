"""lakeslice: OHLCV candle windows around alerts, from ClickHouse into a sealed Parquet lake.

>>> import polars as pl, lakeslice as ls
>>> ls.parse_window("pre52_post4948").slots
5001

Names are imported on first use (``ls.scan_run``, ``from lakeslice import scan_run``): Polars,
PyArrow and the sources load only when something needs them, so ``lakeslice --version`` and
``--help`` start fast.
"""

from __future__ import annotations

import importlib
import json
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports these
    from rich.console import Console

    from ._version import __version__
    from .alerts import normalize_alerts, read_alerts
    from .corpus import CorpusResult, export_corpus
    from .dask_executor import DaskExecutor
    from .diff import diff_runs
    from .errors import InputError, LakesliceError, RunError
    from .executor import Executor, LocalExecutor, open_executor
    from .export import ExportResult, GroupResult, GroupTask, RunPlan, export_run_slices, plan_run, run_group
    from .lake.catalog import list_runs
    from .lake.commit import remove_replaced
    from .lake.read import run_path, scan_corpus, scan_coverage, scan_run
    from .lake.verify import verify_dir
    from .report import write_report
    from .spec import Window, parse_interval, parse_window
    from .study import event_profile, event_returns, scan_windows
    from .transforms import coverage, floor_to_interval, merge_windows, mint_bucket, slice_windows

#: Public name -> the module that defines it.
_LAZY = {
    "__version__": "._version",
    **dict.fromkeys(("normalize_alerts", "read_alerts"), ".alerts"),
    "diff_runs": ".diff",
    **dict.fromkeys(("CorpusResult", "export_corpus"), ".corpus"),
    "DaskExecutor": ".dask_executor",  # Dask is an optional extra (lakeslice[dask])
    **dict.fromkeys(("InputError", "LakesliceError", "RunError"), ".errors"),
    **dict.fromkeys(("Executor", "LocalExecutor", "open_executor"), ".executor"),
    **dict.fromkeys(
        ("ExportResult", "GroupResult", "GroupTask", "RunPlan", "export_run_slices", "plan_run", "run_group"),
        ".export",
    ),
    "list_runs": ".lake.catalog",
    "remove_replaced": ".lake.commit",
    **dict.fromkeys(("run_path", "scan_corpus", "scan_coverage", "scan_run"), ".lake.read"),
    "verify_dir": ".lake.verify",
    "write_report": ".report",  # needs the report extra
    **dict.fromkeys(("Window", "parse_interval", "parse_window"), ".spec"),
    **dict.fromkeys(("event_profile", "event_returns", "scan_windows"), ".study"),
    **dict.fromkeys(
        ("coverage", "floor_to_interval", "merge_windows", "mint_bucket", "slice_windows"), ".transforms"
    ),
}


def __getattr__(name: str) -> Any:
    """Import a public name on first use, then keep it as a module attribute.

    >>> import lakeslice
    >>> lakeslice.parse_interval("5m")
    300
    """
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lakeslice' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def json_schema(name: str) -> dict[str, Any]:
    """The shipped JSON Schema ``config`` (``--config``) or ``result`` (``--format json``).

    >>> json_schema("result")["title"]
    'lakeslice export --format json output'
    """
    from importlib import resources

    text = resources.files("lakeslice").joinpath(f"schemas/{name}.schema.json").read_text("utf-8")
    return json.loads(text)


def progress_bar(*, enabled: bool = True, console: Console | None = None) -> AbstractContextManager[Any]:
    """A rich progress bar (terminal or Jupyter) to pass as ``progress=`` to an export.

    >>> with progress_bar(enabled=False) as p:  # in a notebook: with ls.progress_bar() as p:
    ...     p is None
    True
    """
    from .render import progress_bar as bar

    return bar(enabled=enabled, console=console)


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
