"""Start-up: ``lakeslice --version`` and ``--help`` import nothing heavy, and the lazy package
still serves every public name.

The check is structural (the modules ``python -X importtime`` reports), not a timing: a real
process, the same interpreter and environment the tests run in.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import version

import pytest
from support.cli import clean_env

import lakeslice

#: Packages that cost 0.1 s or more each to import: no start-up path may load them.
HEAVY = {"polars", "pyarrow", "pandas", "numpy", "clickhouse_driver", "chdb", "jsonschema"}


def imported_packages(*argv: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ``python -X importtime ARGV``; the top-level packages it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    names = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return proc, names


@pytest.mark.parametrize(
    "args",
    [["--version"], ["--help"], ["export", "--help"], ["corpus", "--help"], ["verify", "--help"]],
    ids=" ".join,
)
def test_version_and_help_import_nothing_heavy(args):
    proc, names = imported_packages("-m", "lakeslice", *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "typer" in names and "lakeslice" in names  # the check sees the imports at all
    assert names.isdisjoint(HEAVY), sorted(names & HEAVY)
    if args == ["--version"]:
        assert proc.stdout == f"lakeslice {version('lakeslice')}\n"
    else:
        assert proc.stdout.startswith("Usage: ") and "--help" in proc.stdout


def test_importing_the_package_imports_nothing_heavy():
    proc, names = imported_packages("-c", "import lakeslice; lakeslice.parse_window('pre1_post1')")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert names.isdisjoint(HEAVY), sorted(names & HEAVY)


def test_a_heavy_name_loads_its_module_on_first_use():
    proc, names = imported_packages("-c", "import lakeslice as ls; ls.scan_run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {"polars", "pyarrow"} <= names


# Where each public name is defined: the lazy package must hand out that very object.
DEFINED_IN = {
    "lakeslice._version": ["__version__"],
    "lakeslice.alerts": ["normalize_alerts", "read_alerts"],
    "lakeslice.corpus": ["CorpusResult", "export_corpus"],
    "lakeslice.diff": ["diff_runs"],
    "lakeslice.dask_executor": ["DaskExecutor"],
    "lakeslice.errors": ["InputError", "LakesliceError", "RunError"],
    "lakeslice.executor": ["Executor", "LocalExecutor", "open_executor"],
    "lakeslice.export": [
        "ExportResult",
        "GroupResult",
        "GroupTask",
        "RunPlan",
        "export_run_slices",
        "plan_run",
        "run_group",
    ],
    "lakeslice.lake.catalog": ["list_runs"],
    "lakeslice.lake.commit": ["remove_replaced"],
    "lakeslice.lake.read": ["run_path", "scan_corpus", "scan_coverage", "scan_run"],
    "lakeslice.lake.verify": ["verify_dir"],
    "lakeslice.report": ["write_report"],
    "lakeslice.spec": ["Window", "parse_interval", "parse_window"],
    "lakeslice.study": ["event_profile", "event_returns", "scan_windows"],
    "lakeslice.transforms": [
        "coverage",
        "floor_to_interval",
        "merge_windows",
        "mint_bucket",
        "slice_windows",
    ],
}


@pytest.mark.parametrize("name", lakeslice.__all__)
def test_every_public_name_resolves_to_its_definition(name):
    got = getattr(lakeslice, name)
    namespace: dict = {}
    exec(f"from lakeslice import {name} as value", namespace)
    assert namespace["value"] is got
    assert name in dir(lakeslice)
    home = next((m for m, names in DEFINED_IN.items() if name in names), None)
    if home is None:  # defined in the package itself
        assert name in ("json_schema", "progress_bar") and callable(got)
    else:
        assert got is getattr(importlib.import_module(home), name)


def test_defined_in_lists_every_public_name_once():
    listed = [n for names in DEFINED_IN.values() for n in names]
    assert sorted(listed) == sorted(set(lakeslice.__all__) - {"json_schema", "progress_bar"})


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'scan_runs'"):
        lakeslice.scan_runs  # noqa: B018
    with pytest.raises(ImportError):
        exec("from lakeslice import scan_runs", {})
