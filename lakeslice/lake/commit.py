"""The commit protocols: data first, seal last, one writer per run (docs/design.md).

:func:`open_commit` gives the protocol of the store:

- local (:class:`LocalCommit`): the run is staged in ``lake/.staging/<name>.<token>/`` (outside
  every tree a Parquet reader scans, on the same file system) and the seal is written there.
  A run is then renamed whole into an immutable generation directory
  ``lake/.generations/runs/<run_id>/g-<token>`` and ``runs/run_id=<run_id>`` becomes a
  relative symbolic link to it, replaced atomically by a rename: a reader that resolved the
  link keeps a whole export to read, and a replaced generation stays for a grace period
  (:data:`KEEP_REPLACED_SECONDS`) before a later writer of the run, or
  :func:`remove_replaced` (``lakeslice gc``), removes it. A corpus day (sealed outside its directory, and
  scanned by ``**`` globs that DuckDB does not follow through links) is renamed onto the final
  directory, or swapped with it by ``renameat2(RENAME_EXCHANGE)``. An ``flock`` on
  ``lake/.locks/<name>.lock`` (dropped by the kernel even on SIGKILL) makes two exports of one
  name exclusive.
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
from .layout import GENERATIONS, LAKE, MANIFEST, generations_key, run_dir, run_key
from .manifest import Sealed, dumps
from .store import LocalStore, ObjectStore, Store, fsync_dir, join, scheme_of
from .writer import Target

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
#: Seconds an object-storage lease lasts without a refresh (``LAKESLICE_LEASE_SECONDS``).
LEASE_SECONDS = 60.0
#: Seconds a replaced local run generation is kept for readers still reading it
#: (``LAKESLICE_KEEP_REPLACED``, or ``lakeslice gc --keep-replaced``).
KEEP_REPLACED_SECONDS = 600.0
_GENERATION = re.compile(r"g-[0-9a-f]{8}")


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
    >>> store.list("lake/runs/run_id=x/")  # a link to the generation of this export
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
        # a run gets generations; a corpus day (sealed outside) is swapped in place
        run_id = self.final.name.removeprefix("run_id=")
        self.generations = store.path(generations_key(run_id)) if seal_key is None else None
        self.generation: Path | None = None
        self.keep = keep_replaced_seconds() if self.generations is not None else 0.0

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
                if self.generation is not None and not _links_to(self.final, self.generation):
                    _remove(self.generation)
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
            what = "an unsealed directory" if self.final.is_dir() else "a file"
            if self.final.is_symlink() and not self.final.exists():
                what = "a link to a missing generation"
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
        own = re.compile(re.escape(self.key) + r"\.[0-9a-f]{8}(\.old|\.link)?")
        for p in (self.work / ".staging").glob(f"{self.key}.*"):
            if own.fullmatch(p.name):
                _remove(p)

    def _publish(self) -> None:
        if self.generations is not None:
            self._publish_generation(self.generations)
            return
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

    def _publish_generation(self, generations: Path) -> None:
        """Sealed staging → a new generation; then the run's link is pointed at it in one rename.

        Each step leaves ``run_id=X`` a sealed run: before the link's rename it is the old one
        (or absent), after it the new one. The replaced generation is marked (its mtime) when
        it stops being the current one, so its grace period starts then.
        """
        generations.mkdir(parents=True, exist_ok=True)
        self.generation = generations / f"g-{self.staging.name.rsplit('.', 1)[-1]}"
        os.rename(self.staging, self.generation)
        fsync_dir(generations)
        old = current_generation(self.final)
        if old is not None and old.is_dir():
            os.utime(old)
        link = self.staging.with_name(self.staging.name + ".link")
        os.symlink(os.path.relpath(self.generation, self.final.parent), link)
        if os.path.isdir(self.final) and not os.path.islink(self.final):
            self._replace_directory(link)  # a run written before generations
        else:
            os.rename(link, self.final)  # replaces a link (or a file) atomically
        fsync_dir(self.final.parent)
        self.sealed = True
        try:
            collect_generations(generations, keep=self.keep, current=self.generation)
        except OSError:  # the export is sealed; what is left is removed by a later writer or gc
            pass

    def _replace_directory(self, link: Path) -> None:
        if _exchange(link, self.final):
            _remove(link)  # now the old directory
            return
        trash = self.staging.with_name(self.staging.name + ".old")
        os.rename(self.final, trash)
        os.rename(link, self.final)
        _remove(trash)


def keep_replaced_seconds() -> float:
    """The grace period of replaced generations: ``LAKESLICE_KEEP_REPLACED`` or the default."""
    text = os.environ.get("LAKESLICE_KEEP_REPLACED")
    if not text:
        return KEEP_REPLACED_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise InputError(f"LAKESLICE_KEEP_REPLACED={text!r}: expected a number of seconds >= 0")
    return value


def current_generation(run: Path) -> Path | None:
    """The generation a run's link points to; None for an absent run or a plain directory."""
    if not os.path.islink(run):
        return None
    return run.parent / os.readlink(run)


def _links_to(run: Path, generation: Path) -> bool:
    current = current_generation(run)
    return current is not None and os.path.realpath(current) == os.path.realpath(generation)


def collect_generations(generations: Path, *, keep: float, current: Path | None) -> list[Path]:
    """Remove the generations of one run other than ``current`` replaced more than ``keep``
    seconds ago; the caller holds the run's lock. The removed directories, sorted.

    A generation's mtime is when it was sealed, and is set again when it stops being current.
    """
    if not generations.is_dir():
        return []
    now = time.time()
    keep_real = os.path.realpath(current) if current is not None else None
    removed = []
    for gen in sorted(generations.iterdir()):
        if not _GENERATION.fullmatch(gen.name) or os.path.realpath(gen) == keep_real:
            continue
        try:
            age = now - gen.lstat().st_mtime
        except FileNotFoundError:
            continue
        if age >= keep:
            _remove(gen)
            removed.append(gen)
    return removed


def remove_replaced(data_root: str | Path, *, keep_replaced: float | None = None) -> list[Path]:
    """Remove the replaced generations of every local run of ``data_root`` older than
    ``keep_replaced`` seconds (default ``LAKESLICE_KEEP_REPLACED`` or 600); the removed ones.

    A run being exported (its lock is held) is skipped: its writer removes them itself. The
    current generation of a run is never removed; generations of a run whose link is gone are.

    >>> import tempfile
    >>> remove_replaced(tempfile.mkdtemp())
    []
    """
    if scheme_of(data_root) is not None:
        raise InputError(f"{data_root}: only a local data root keeps run generations")
    keep = keep_replaced_seconds() if keep_replaced is None else keep_replaced
    if not keep >= 0:
        raise InputError(f"--keep-replaced {keep}: expected a number of seconds >= 0")
    top = Path(data_root) / GENERATIONS
    store = LocalStore(data_root)
    removed: list[Path] = []
    for gens in sorted(top.iterdir()) if top.is_dir() else []:
        lock = store.lock(f"{LAKE}/.locks/{_lock_name(run_key(gens.name))}.lock")
        if not lock.acquire():
            continue
        try:
            removed += collect_generations(
                gens, keep=keep, current=current_generation(run_dir(data_root, gens.name))
            )
            if not any(gens.iterdir()):
                gens.rmdir()
        finally:
            lock.release()
    return removed


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


__all__ = [
    "Commit",
    "open_commit",
    "LocalCommit",
    "ObjectCommit",
    "Lease",
    "next_seal",
    "collect_generations",
    "current_generation",
    "keep_replaced_seconds",
    "remove_replaced",
    "KEEP_REPLACED_SECONDS",
]
