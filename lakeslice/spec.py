"""Intervals, windows and run ids (SPEC §1, §5).

Everything here is plain Python on scalars: no data passes through it. The error types live in
:mod:`lakeslice.errors` and are importable from here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InputError, LakesliceError, RunError

__all__ = [
    "LakesliceError",
    "InputError",
    "RunError",
    "Window",
    "parse_interval",
    "format_interval",
    "parse_window",
    "check_run_id",
    "COMPRESSIONS",
    "check_compression",
]


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INTERVAL_RE = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")


def parse_interval(text: str | int) -> int:
    """Width of a candle interval in seconds.

    Accepts ``Ns``, ``Nm``, ``Nh``, ``Nd`` or a bare positive integer of seconds.

    >>> parse_interval("5m"), parse_interval("1d"), parse_interval(15)
    (300, 86400, 15)
    """
    if isinstance(text, bool):
        raise InputError(f"interval {text!r}: expected Ns, Nm, Nh, Nd or positive seconds")
    if isinstance(text, int):
        seconds = text
    else:
        m = _INTERVAL_RE.match(str(text))
        if not m:
            raise InputError(
                f"interval {text!r}: expected Ns, Nm, Nh, Nd or a positive number of seconds"
                " (e.g. 1m, 15s, 1h)"
            )
        seconds = int(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds <= 0:
        raise InputError(f"interval {text!r}: must be a positive number of seconds")
    return seconds


def format_interval(seconds: int) -> str:
    """Normalized interval text: the largest unit that divides it exactly.

    >>> format_interval(60), format_interval(90), format_interval(86400)
    ('1m', '90s', '1d')
    """
    for unit, width in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % width == 0:
            return f"{seconds // width}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Window:
    """``pre`` candles before the anchor, the anchor candle, ``post`` candles after.

    >>> w = Window(52, 4948)
    >>> w.name, w.slots, str(w)
    ('pre52_post4948', 5001, 'pre52_post4948')
    """

    pre: int
    post: int

    @property
    def name(self) -> str:
        return f"pre{self.pre}_post{self.post}"

    @property
    def slots(self) -> int:
        return self.pre + 1 + self.post

    def __str__(self) -> str:
        return self.name


_WINDOW_RE = re.compile(r"^pre(\d+)_post(\d+)$")


def parse_window(text: str | Window) -> Window:
    """Parse ``preN_postM``.

    >>> parse_window("pre52_post4948")
    Window(pre=52, post=4948)
    """
    if isinstance(text, Window):
        return text
    m = _WINDOW_RE.match(str(text).strip())
    if not m:
        raise InputError(f"window {text!r}: expected preN_postM with N, M >= 0 (e.g. pre52_post4948)")
    return Window(int(m.group(1)), int(m.group(2)))


_RUN_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def check_run_id(run_id: str) -> str:
    """Refuse run ids that could escape the runs directory.

    >>> check_run_id("2024-01-01_a")
    '2024-01-01_a'
    """
    # fullmatch: "$" would also match before a trailing newline
    if not run_id or not _RUN_ID_RE.fullmatch(run_id) or set(run_id) == {"."}:
        raise InputError(
            f"run_id {run_id!r}: use letters, digits, '-', '_' and '.' only (not empty, not '..')"
        )
    return run_id


COMPRESSIONS = ("zstd", "snappy", "none")


def check_compression(name: str) -> str:
    """The Parquet compression name, if it is one lakeslice writes.

    >>> check_compression("zstd")
    'zstd'
    """
    if name not in COMPRESSIONS:
        raise InputError(f"compression {name!r}: expected one of {', '.join(COMPRESSIONS)}")
    return name
