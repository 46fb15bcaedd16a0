"""Progress in a terminal: ``lakeslice export`` under a real pseudo-terminal, and the renderer
driven with any stage names.

The export's frames are read from what the process drew on the pty; the expected group count
comes from the plain-Python reference (SHA-1 buckets, estimated rows), the expected rows from
the source file itself.
"""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
from pathlib import Path

import polars as pl
from rich.console import Console
from support.cli import LAKESLICE, clean_env
from support.reference import bucket_group_count

from lakeslice.render import progress_bar
from lakeslice.sources.parquet import ParquetSource
from lakeslice.synthetic import BASE_TS, synthetic_candles

#: Stages an export goes through, in order (lakeslice.progress.STAGES); the renderer draws
#: whatever it is sent.
STAGES = ("planning", "fetching", "writing", "sealing")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def pty_transcript(args: list[str], env: dict, *, stdout: Path) -> str:
    """Run a command with stderr on a pseudo-terminal; what it drew there, as text."""
    master, slave = pty.openpty()
    with stdout.open("wb") as out:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            proc.kill()
            raise AssertionError("no output from the pty in 120 s")
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0, stdout.read_text()
    return ANSI.sub("", b"".join(chunks).decode("utf-8", "replace"))


def frames_of(text: str) -> list[str]:
    """The lines a live display drew, one a redraw (rich moves the cursor back with \\r)."""
    return [f.strip() for f in re.split(r"[\r\n]", text) if f.strip()]


def shown_rows(frame: str) -> int:
    return int(re.search(r"· ([\d,]+) rows ·", frame).group(1).replace(",", ""))


def test_export_progress_shows_the_total_at_once_and_every_stage(tmp_path):
    # 300 mints, each alert's window (5001 slots) spans all of its mint's 100 candles: the
    # estimate (300 x 5001 rows) makes several groups, the fetch returns every candle once.
    candles = synthetic_candles(mints=300, candles_per_mint=100, gap_fraction=0.0, seed=3)
    candles.write_parquet(tmp_path / "src.parquet")
    mints = candles["token_address"].unique().sort().to_list()
    alerts = tmp_path / "alerts.csv"
    pl.DataFrame({"mint": mints, "ts_ms": [(BASE_TS + 52 * 60) * 1000] * len(mints)}).write_csv(alerts)
    total = bucket_group_count(dict.fromkeys(mints, 5001), ParquetSource.group_rows)
    assert total >= 2
    args = [
        str(LAKESLICE), "export", "--alerts", str(alerts), "--interval", "1m",
        "--window", "pre52_post4948", "--source", f"parquet://{tmp_path / 'src.parquet'}",
        "--data-root", str(tmp_path / "d"), "--run-id", "p",
    ]  # fmt: skip
    text = pty_transcript(args, clean_env(COLUMNS="150", TERM="xterm"), stdout=tmp_path / "summary.txt")
    frames = frames_of(text)
    fetching = [f for f in frames if f.startswith("fetching")]
    assert fetching, frames[:5]
    assert f" 0/{total} " in fetching[0]  # the total at once, before any group is done
    assert all(f"/{total} " in f for f in fetching)
    assert "?" not in text
    order = list(dict.fromkeys(f.split()[0] for f in frames if f.split()[0] in STAGES))
    assert order == list(STAGES), order
    # rows count up to every candle fetched; the last frame (sealing) shows them all, as the
    # summary does
    assert shown_rows(frames[-1]) == candles.height
    summary = " ".join((tmp_path / "summary.txt").read_text().split())
    assert f"rows fetched / written │ {candles.height:,} /" in summary


def test_the_bar_draws_any_stage_with_its_total_and_rows():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120, color_system=None)
    with progress_bar(console=console) as bar:
        assert bar is not None
        bar.stage("planning")
        bar.stage("fetching", total=3)
        bar.advance(done=1, rows=1_000)
        bar.stage("writing", total=7)  # a stage the renderer has never heard of
        bar.advance(done=2, rows=234)
        bar.stage("indexing")  # and one without a total
        bar.stage("sealing")
    frames = frames_of(ANSI.sub("", buffer.getvalue()))
    first = {f.split()[0]: f for f in reversed(frames)}  # each stage's first frame
    assert list(dict.fromkeys(f.split()[0] for f in frames)) == [
        "planning", "fetching", "writing", "indexing", "sealing"
    ]  # fmt: skip
    assert " 0/3 " in first["fetching"] and " 0/7 " in first["writing"]
    assert "/" not in first["indexing"].split("·")[0]  # no total: no count, never "?"
    # rows add up across stages; a new stage is drawn at once, with the rows so far
    assert [shown_rows(first[s]) for s in ("fetching", "writing", "indexing", "sealing")] == [
        0, 1_000, 1_234, 1_234
    ]  # fmt: skip


def test_no_bar_off_a_terminal():
    buffer = io.StringIO()
    with progress_bar(console=Console(file=buffer)) as bar:
        assert bar is None
    with progress_bar(console=Console(file=buffer, force_terminal=True), enabled=False) as bar:
        assert bar is None
    assert buffer.getvalue() == ""
