"""The command line shared by the non-lakeslice contenders (``duckdb_job``, ``original``)."""

from __future__ import annotations

import argparse


def job_args(
    *positional: str, ints: tuple[str, ...] = (), argv: list[str] | None = None
) -> argparse.Namespace:
    """Parse ``POSITIONAL... --interval-s --pre --post --chain`` (the bench's window job).

    >>> a = job_args("host", "port", ints=("port",), argv=["h", "9000", "--pre", "5"])
    >>> a.port, a.pre, a.post
    (9000, 5, 1000)
    """
    ap = argparse.ArgumentParser()
    for name in positional:
        ap.add_argument(name, type=int if name in ints else str)
    ap.add_argument("--interval-s", type=int, default=60)
    ap.add_argument("--pre", type=int, default=52)
    ap.add_argument("--post", type=int, default=1000)
    ap.add_argument("--chain", default="solana")
    return ap.parse_args(argv)
