"""The commit protocol: stage everything, seal last, make it visible with one rename.

A run is written into ``lake/.staging/<name>.<token>/`` (outside every tree a Parquet reader
scans, on the same file system so the final rename is atomic). Sealing writes ``manifest.json``
there (temporary name, fsync, rename) and then renames the staged directory onto
``runs/run_id=<id>``; an overwrite swaps old and new with ``renameat2(RENAME_EXCHANGE)`` where
the kernel has it, so a reader sees the old sealed run or the new one, never a mix. A lock
file (``flock``, released by the kernel even on SIGKILL) makes two exports of one run_id
exclusive; stale staging directories of that run_id are removed by the next holder of the lock.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import secrets
import shutil
from pathlib import Path

from ..spec import InputError, RunError
from .layout import MANIFEST
from .manifest import fsync_dir, write_json_atomic

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths; False when the platform cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def next_seal(seal_path: Path) -> Path:
    return seal_path.with_name(seal_path.name + ".next")


class Commit:
    """Stage a directory that becomes ``final`` atomically when sealed.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> with Commit(root / "run_id=x", overwrite=False) as c:
    ...     _ = (c.staging / "a.txt").write_text("data")
    ...     c.seal({"ok": True})
    >>> sorted(p.name for p in (root / "run_id=x").iterdir())
    ['a.txt', 'manifest.json']
    """

    def __init__(
        self, final: Path, *, overwrite: bool, work_root: Path | None = None, seal_name: str = MANIFEST
    ) -> None:
        self.final = Path(final)
        self.overwrite = overwrite
        self.seal_name = seal_name
        self.parent = self.final.parent
        # staging and locks live under work_root (the lake dir), outside the scanned trees
        self.work = Path(work_root) if work_root is not None else self.parent
        self.key = f"{self.parent.name}.{self.final.name}"
        self.staging = self.work / ".staging" / f"{self.key}.{secrets.token_hex(4)}"
        self._lock_fd: int | None = None
        self.sealed = False

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Commit:
        self._prepare_parent()
        self._lock()
        if (self.final / self.seal_name).exists() and not self.overwrite:
            self._unlock()
            raise InputError(f"{self.final}: already sealed; pass --overwrite to replace it")
        self._clean_stale()
        self.staging.mkdir(parents=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if not self.sealed:
                shutil.rmtree(self.staging, ignore_errors=True)
        finally:
            self._unlock()

    def seal(self, manifest: dict, *, seal_path: Path | None = None) -> None:
        """Write the seal, then publish the staged directory in one rename.

        ``seal_path`` puts the seal outside the directory (corpus days, so that Parquet readers
        scanning the tree never meet it). Then the new seal is written as ``<seal>.next``
        first, the directories are swapped, and ``.next`` is renamed over the seal: after a
        crash, whichever of the two matches the directory is its seal (see verify.py).
        """
        if seal_path is None:
            write_json_atomic(self.staging / self.seal_name, manifest)
        else:
            seal_path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(next_seal(seal_path), manifest)
        try:
            self._publish()
            if seal_path is not None:
                os.replace(next_seal(seal_path), seal_path)
                fsync_dir(seal_path.parent)
        except OSError as exc:
            raise RunError(f"{self.final}: cannot publish the sealed data ({exc.strerror})") from exc
        self.sealed = True

    # -- pieces ------------------------------------------------------------------------------
    def _prepare_parent(self) -> None:
        for p in [self.parent, *self.parent.parents]:
            if p.exists() and not p.is_dir():
                raise InputError(f"{p}: data root path is a file, not a directory")
            if p.exists():
                break
        try:
            self.parent.mkdir(parents=True, exist_ok=True)
            (self.work / ".staging").mkdir(parents=True, exist_ok=True)
            (self.work / ".locks").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{self.parent}: cannot create ({exc.strerror})") from exc
        if not os.access(self.work / ".staging", os.W_OK) or not os.access(self.parent, os.W_OK):
            raise InputError(f"{self.parent}: not writable")

    def _lock(self) -> None:
        path = self.work / ".locks" / f"{self.key}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunError(
                f"{self.final}: another export of this run_id is in progress (lock {path})"
            ) from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _clean_stale(self) -> None:
        # We hold the lock: any staging or trash of this name belongs to a dead export.
        # Only "<key>.<8 hex>[.old]": "<key>.*" alone would also match the live staging of a run
        # whose id extends this one with a dot (run "a" vs run "a.b").
        own = re.compile(re.escape(self.key) + r"\.[0-9a-f]{8}(\.old)?")
        for p in (self.work / ".staging").glob(f"{self.key}.*"):
            if own.fullmatch(p.name):
                shutil.rmtree(p, ignore_errors=True)

    def _publish(self) -> None:
        if not self.final.exists():
            os.rename(self.staging, self.final)
        elif _exchange(self.staging, self.final):
            shutil.rmtree(self.staging, ignore_errors=True)  # now holds the old run
        else:
            trash = self.staging.with_name(self.staging.name + ".old")
            os.rename(self.final, trash)
            os.rename(self.staging, self.final)
            shutil.rmtree(trash, ignore_errors=True)
        fsync_dir(self.parent)
