"""Ctrl-C, SIGTERM and SIGHUP as one clean stop: staging removed, nothing half sealed.

The command line installs :func:`install`: the first of these signals raises
:class:`Interrupted` in the main thread, so every ``with``/``finally`` on the way out cleans up
(staging directories, connections); further signals are ignored while that happens, and a
third one ends the process at once. Inside :func:`deferred` (the seal's final renames) a
signal waits until the block is over: a run is either not sealed, or sealed whole.

Library use (a notebook) keeps Python's own Ctrl-C (``KeyboardInterrupt``).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Interrupted", "install", "deferred", "STOP_SIGNALS"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Exit status of a run stopped by a signal (the shell's 128 + SIGINT).
EXIT_STATUS = 130


class Interrupted(BaseException):
    """A stop signal arrived. ``sealed``: it arrived while sealing and the seal completed first.

    A BaseException, like KeyboardInterrupt: ``except Exception`` handlers must not swallow it.
    """

    code = "interrupted"
    exit_code = EXIT_STATUS

    def __init__(self, name: str, *, sealed: bool = False) -> None:
        self.name, self.sealed = name, sealed
        done = "while sealing; the seal completed first" if sealed else "before sealing; staging removed"
        super().__init__(f"interrupted by {name} {done}")


class _State:
    """What the handler knows: signals seen, seals in progress, a signal held for them."""

    seen = 0
    defer = 0
    pending: str | None = None


_state = _State()


def _handler(signum: int, _frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    _state.seen += 1
    if _state.seen >= 3:  # the user insists: no more cleanup
        os._exit(EXIT_STATUS)
    if _state.seen > 1:
        return  # already stopping: let the cleanup finish
    if _state.defer:
        _state.pending = name
        return
    raise Interrupted(name)


def install() -> None:
    """Route SIGINT, SIGTERM and SIGHUP to :class:`Interrupted` (main thread only)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _handler)
    _state.seen, _state.defer, _state.pending = 0, 0, None


@contextmanager
def deferred() -> Iterator[None]:
    """Hold stop signals until the block ends; then raise :class:`Interrupted` (``sealed=True``).

    >>> with deferred():
    ...     pass
    """
    _state.defer += 1
    try:
        yield
    finally:
        _state.defer -= 1
    pending = _state.pending
    if pending and not _state.defer:
        _state.pending = None
        raise Interrupted(pending, sealed=True)
