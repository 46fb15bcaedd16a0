"""The commit protocols: data first, seal last, one writer per run (docs/design.md).

:func:`open_commit` gives the protocol of the store:

- local (:class:`LocalCommit`): the run is staged in ``lake/.staging/<name>.<token>/`` (outside
  every tree a Parquet reader scans, on the same file system), the seal is written there, and
  the staged directory is renamed onto the final one, or swapped with it by
  ``renameat2(RENAME_EXCHANGE)`` on an overwrite. An ``flock`` on ``lake/.locks/<name>.lock``
  (dropped by the kernel even on SIGKILL) makes two exports of one name exclusive.
- object storage (:class:`ObjectCommit`): no rename exists, so files go to their final keys
  under a lease object (conditional PUT), an overwrite unseals the old run first, and the seal
  is put last with ``If-None-Match: *``.

Both stage a directory that becomes visible as a whole: :attr:`target` is where the data goes,
:meth:`seal` publishes it.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Protocol

from ..errors import InputError, RunError
from .layout import LAKE, MANIFEST
from .manifest import Sealed, dumps
from .store import LocalStore, ObjectStore, Store, fsync_dir, join
from .writer import Target

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
#: Seconds an object-storage lease lasts without a refresh (``LAKESLICE_LEASE_SECONDS``).
LEASE_SECONDS = 60.0


class Commit(Protocol):
    """Stage a directory (``target``), then publish it with its seal in one step."""

    target: Target

    def __enter__(self) -> Commit: ...

    def __exit__(self, *exc: object) -> None: ...

    def seal(self, document: Sealed) -> None: ...


def open_commit(store: Store, final: str, *, overwrite: bool, seal_key: str | None = None) -> Commit:
    """The commit protocol of ``store`` for the directory key ``final``.

    ``seal_key`` puts the seal outside the directory (corpus days, so that Parquet readers
    scanning the tree never meet it); by default it is ``final/manifest.json``.

    >>> import tempfile
    >>> from lakeslice.lake.store import open_store
    >>> store = open_store(tempfile.mkdtemp())
    >>> with open_commit(store, "lake/runs/run_id=x", overwrite=False) as c:
    ...     _ = c.target.put("a.txt", b"data", 0)
    ...     c.seal({"ok": True})
    >>> store.list("lake/runs/")
    ['lake/runs/run_id=x/a.txt', 'lake/runs/run_id=x/manifest.json']
    """
    if isinstance(store, LocalStore):
        return LocalCommit(store, final, overwrite=overwrite, seal_key=seal_key)
    if isinstance(store, ObjectStore):
        return ObjectCommit(store, final, overwrite=overwrite, seal_key=seal_key)
    raise TypeError(f"no commit protocol for {type(store).__name__}")


def _lock_name(final: str) -> str:
    """``lake/runs/run_id=x`` → ``runs.run_id=x``: one flat name per directory."""
    rel = final[len(LAKE) + 1 :] if final.startswith(LAKE + "/") else final
    return rel.replace("/", ".")


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


class LocalCommit:
    """Stage under ``lake/.staging``, publish with one rename (or an exchange on overwrite)."""

    def __init__(self, store: LocalStore, final: str, *, overwrite: bool, seal_key: str | None) -> None:
        self.store = store
        self.final = store.path(final)
        self.overwrite = overwrite
        self.seal_path = store.path(seal_key) if seal_key else None
        self.work = store.path(LAKE)
        self.key = _lock_name(final)
        self.staging = self.work / ".staging" / f"{self.key}.{secrets.token_hex(4)}"
        self.target = Target(store, self.staging.relative_to(store.base).as_posix())
        self._lock = store.lock(f"{LAKE}/.locks/{self.key}.lock")
        self.sealed = False

    def __enter__(self) -> LocalCommit:
        self._prepare_parent()
        if not self._lock.acquire():
            raise RunError(
                f"{self.final}: another export of this run_id is in progress (lock {self._lock.path})"
            )
        try:
            self._check_final()
            self._clean_stale()
            self.staging.mkdir(parents=True)
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if not self.sealed:
                shutil.rmtree(self.staging, ignore_errors=True)
        finally:
            self._lock.release()

    def seal(self, document: Sealed) -> None:
        """Write the seal, then publish the staged directory in one rename.

        With a seal outside the directory, the new seal is written as ``<seal>.next`` first,
        the directories are swapped, and ``.next`` is renamed over the seal: after a crash,
        whichever of the two matches the directory is its seal (see verify.py).
        """
        from .store import write_atomic

        if self.seal_path is None:
            write_atomic(self.staging / MANIFEST, dumps(document))
        else:
            write_atomic(next_seal(self.seal_path), dumps(document))
        try:
            self._publish()
            if self.seal_path is not None:
                os.replace(next_seal(self.seal_path), self.seal_path)
                fsync_dir(self.seal_path.parent)
        except OSError as exc:
            raise RunError(f"{self.final}: cannot publish the sealed data ({exc.strerror})") from exc
        self.sealed = True

    def _check_final(self) -> None:
        """Refuse to replace a sealed run, or anything that is not a run, without overwrite."""
        if self.overwrite or not os.path.lexists(self.final):
            return
        if self.seal_path is None and (self.final / MANIFEST).is_file():
            raise InputError(f"{self.final}: already sealed; pass --overwrite to replace it")
        if self.seal_path is None:
            what = "a file" if not self.final.is_dir() else "an unsealed directory"
            raise InputError(
                f"{self.final}: {what} is in the way (not a sealed run); pass --overwrite to replace it"
            )

    def _prepare_parent(self) -> None:
        parent = self.final.parent
        for p in [parent, *parent.parents]:
            if p.exists() and not p.is_dir():
                raise InputError(f"{p}: data root path is a file, not a directory")
            if p.exists():
                break
        try:
            parent.mkdir(parents=True, exist_ok=True)
            (self.work / ".staging").mkdir(parents=True, exist_ok=True)
            (self.work / ".locks").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{parent}: cannot create ({exc.strerror})") from exc
        if not os.access(self.work / ".staging", os.W_OK) or not os.access(parent, os.W_OK):
            raise InputError(f"{parent}: not writable")

    def _clean_stale(self) -> None:
        # We hold the lock: any staging or trash of this name belongs to a dead export.
        # Only "<key>.<8 hex>[.old]": "<key>.*" alone would also match the live staging of a run
        # whose id extends this one with a dot (run "a" vs run "a.b").
        own = re.compile(re.escape(self.key) + r"\.[0-9a-f]{8}(\.old)?")
        for p in (self.work / ".staging").glob(f"{self.key}.*"):
            if own.fullmatch(p.name):
                _remove(p)

    def _publish(self) -> None:
        if not os.path.lexists(self.final):
            os.rename(self.staging, self.final)
        elif self.final.is_dir() and not self.final.is_symlink() and _exchange(self.staging, self.final):
            _remove(self.staging)  # now holds the old run
        else:
            trash = self.staging.with_name(self.staging.name + ".old")
            os.rename(self.final, trash)
            os.rename(self.staging, self.final)
            _remove(trash)
        fsync_dir(self.final.parent)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class Lease:
    """One writer per directory on object storage: a lease object made by a conditional PUT.

    The lease holds an owner token and an expiry (wall-clock seconds). It is created with
    ``If-None-Match: *``; a live lease refuses a second writer; an expired one is taken over
    with ``If-Match`` on the ETag that was read, so of two takers exactly one wins. While held,
    a thread refreshes it (again with ``If-Match``); a failed refresh marks it lost and the
    seal is refused.
    """

    def __init__(self, store: ObjectStore, key: str, *, seconds: float) -> None:
        self.store = store
        self.key = key
        self.seconds = seconds
        self.token = secrets.token_hex(8)
        self.etag: str | None = None
        self.took_over = False
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewing = threading.Lock()

    def _body(self) -> bytes:
        return json.dumps({"owner": self.token, "expires": time.time() + self.seconds}).encode()

    def acquire(self, what: str) -> None:
        self.etag = self.store.create(self.key, self._body())
        if self.etag is None:
            data, etag = self.store.get_with_etag(self.key)
            expires = _lease_expiry(data)
            if expires is not None and expires > time.time():
                raise RunError(
                    f"{what}: another export of this run_id is in progress (lease until "
                    f"{time.strftime('%H:%M:%SZ', time.gmtime(expires))})"
                )
            self.etag = self.store.replace_if(self.key, self._body(), etag)
            if self.etag is None:
                raise RunError(f"{what}: another export of this run_id took over the expired lease")
            self.took_over = True
        self._thread = threading.Thread(target=self._refresh, name="lakeslice-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> bool:
        """Extend the lease if it is still ours (``If-Match``); False once it is lost."""
        with self._renewing:
            if self.lost:
                return False
            try:
                etag = self.store.replace_if(self.key, self._body(), self.etag)
            except Exception:  # noqa: BLE001 - a failed refresh is a lost lease
                etag = None
            if etag is None:
                self.lost = True
                return False
            self.etag = etag
            return True

    def _refresh(self) -> None:
        while not self._stop.wait(self.seconds / 3) and self._renew():
            pass

    def check(self, what: str) -> None:
        """Refresh now (the refresher keeps running); RunError when the lease is no longer ours."""
        if not self._renew():
            raise RunError(f"{what}: lost the export lease (another export took over); not sealed")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self.lost and self.etag is not None:
            self.store.delete([self.key])


def _lease_expiry(data: bytes) -> float | None:
    try:
        return float(json.loads(data)["expires"])
    except (ValueError, KeyError, TypeError):
        return None


class ObjectCommit:
    """Object storage: a lease, data first, the seal put last with ``If-None-Match: *``.

    A new run is written at its final keys. A replacement (``--overwrite`` of a sealed run) is
    staged under ``lake/.staging/`` while the old run stays sealed and readable; at the seal the
    old run is unsealed and removed, the staged files are copied in (server-side) and the new
    seal is put. A failure before that leaves the old run as it was.
    """

    def __init__(self, store: ObjectStore, final: str, *, overwrite: bool, seal_key: str | None) -> None:
        self.store = store
        self.final = final
        self.overwrite = overwrite
        self.seal_key = seal_key or join(final, MANIFEST)
        self.name = _lock_name(final)
        self.staging = f"{LAKE}/.staging/{self.name}.{secrets.token_hex(4)}"
        self.target = Target(store, final)
        seconds = float(os.environ.get("LAKESLICE_LEASE_SECONDS") or LEASE_SECONDS)
        self.lease = Lease(store, f"{LAKE}/.locks/{self.name}.lease", seconds=seconds)
        self.sealed = False
        self._swapping = False
        self.where = store.url(final)

    def __enter__(self) -> ObjectCommit:
        self.lease.acquire(self.where)
        try:
            self._prepare()
        except BaseException:
            self.lease.release()
            raise
        return self

    def _prepare(self) -> None:
        """Choose where the data goes; remove what a dead export of this name left."""
        own = re.compile(re.escape(self.name) + r"\.[0-9a-f]{8}")
        for prefix in self.store.children(f"{LAKE}/.staging/"):
            if own.fullmatch(prefix.rsplit("/", 1)[-1]):  # we hold the lease: a dead export's
                self.store.delete(self.store.list(prefix + "/"))
        sealed = self.store.exists(self.seal_key)
        if sealed and not self.overwrite:
            raise InputError(f"{self.where}: already sealed; pass --overwrite to replace it")
        if sealed:
            self.target = Target(self.store, self.staging)
            return
        leftovers = self.store.list(self.final + "/")
        if leftovers and not (self.overwrite or self.lease.took_over):
            raise InputError(
                f"{self.where}: objects are in the way (not a sealed run); pass --overwrite to replace them"
            )
        self.store.delete(leftovers)

    def __exit__(self, *exc: object) -> None:
        try:
            if not self.sealed:
                self.store.delete(self.store.list(self.target.prefix + "/"))
                if self._swapping:
                    self.store.delete(self.store.list(self.final + "/"))
        finally:
            self.lease.release()

    def seal(self, document: Sealed) -> None:
        self.lease.check(self.where)
        staged = self.target.prefix != self.final
        if staged:
            self._swap_in()
        if not self.store.put_if_absent(self.seal_key, dumps(document)):
            raise RunError(f"{self.where}: sealed by another export meanwhile; this one is not sealed")
        self.sealed = True
        if staged:
            self.store.delete(self.store.list(self.staging + "/"))

    def _swap_in(self) -> None:
        """Unseal the old run (the seal goes first), remove its files, copy the staged ones in."""
        self._swapping = True
        staged = self.store.list(self.staging + "/")
        self.store.delete([self.seal_key])
        self.store.delete(self.store.list(self.final + "/"))
        for key in staged:
            self.store.copy(key, self.final + key.removeprefix(self.staging))


__all__ = ["Commit", "open_commit", "LocalCommit", "ObjectCommit", "Lease", "next_seal"]
