"""The bench's measurements: a contender's peak RSS is its own, not the bench's.

Linux carries the RSS high-water mark across ``exec``; the bench forks contenders from a small
launcher process (benchmarks/launcher.py) so that a big bench process does not floor them.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from benchmarks.report import md_table, target_rows
from benchmarks.run import Launcher

MiB = 1024 * 1024


def test_a_small_child_reports_its_own_peak_rss(tmp_path):
    held = np.ones(300 * MiB // 8)  # this process: > 300 MiB resident
    assert held.sum() == held.size
    launcher = Launcher()
    try:
        run = lambda argv: launcher.run(  # noqa: E731
            argv, env=dict(os.environ), stdout=tmp_path / "out", stderr=tmp_path / "err"
        )
        empty = run([sys.executable, "-c", "pass"])
        grows = run(
            [sys.executable, "-c", "b = bytearray(200 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"]
        )
        failing = run([sys.executable, "-c", "raise SystemExit(3)"])
    finally:
        launcher.close()
    assert empty["exit"] == 0 and failing["exit"] == 3
    assert empty["maxrss_kib"] * 1024 < 40 * MiB  # a bare interpreter, far below the 300 MiB here
    assert 200 * MiB < grows["maxrss_kib"] * 1024 < 260 * MiB  # its own 200 MiB, counted once
    assert 0 < empty["wall_s"] < grows["wall_s"] + 5 and empty["cpu_s"] > 0


def test_targets_table_marks_misses():
    doc = {
        "targets": [
            {"target": "ls-parquet / duckdb", "value": 1.03, "limit": 0.6, "goal": 0.33, "ok": False},
            {"target": "ls-clickhouse peak RSS MiB", "value": 463.2, "limit": 512, "goal": 256, "ok": True},
        ]
    }
    table = md_table(["target", "value", "limit", "goal", ""], target_rows(doc))
    assert table.splitlines()[2:] == [
        "| ls-parquet / duckdb | 1.03 | <= 0.6 | 0.33 | MISS |",
        "| ls-clickhouse peak RSS MiB | 463 | <= 512 | 256 | ok |",
    ]
