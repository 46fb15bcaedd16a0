"""How a long operation reports progress: stages, units done and rows, to any renderer.

The export and the corpus call these methods; the CLI draws them with rich (render.py), a
notebook may pass its own object. Calls may come from worker threads.
"""

from __future__ import annotations

from typing import Protocol

#: Stage names, in the order an export goes through them.
STAGES = ("planning", "fetching", "writing", "sealing")


class Progress(Protocol):
    """Receives progress: ``stage`` starts a stage, ``advance`` adds units done and rows."""

    def stage(self, name: str, *, total: int | None = None) -> None: ...

    def advance(self, *, done: int = 0, rows: int = 0) -> None: ...


class NoProgress:
    """Progress that goes nowhere.

    >>> p = NoProgress()
    >>> p.stage("planning"); p.advance(done=1, rows=10)
    """

    def stage(self, name: str, *, total: int | None = None) -> None:
        return None

    def advance(self, *, done: int = 0, rows: int = 0) -> None:
        return None


__all__ = ["Progress", "NoProgress", "STAGES"]
