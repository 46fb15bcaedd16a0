"""Where a lake's bytes live: a local directory or an S3 bucket, behind one small interface.

Keys are ``/``-separated paths relative to the data root (``lake/runs/run_id=x/manifest.json``).
A :class:`Store` puts whole objects (atomically: a reader sees all of an object or none of it),
puts an object only if absent (the primitive of the seal and of the S3 lease), gets, lists,
deletes, and tells Polars and pyarrow how to read the same bytes (:meth:`Store.url`,
:attr:`Store.storage_options`, :meth:`Store.arrow_filesystem`).

:func:`open_store` picks the implementation from the data root: ``s3://bucket/prefix`` is an
:class:`ObjectStore` (credentials and endpoint from the standard ``AWS_*`` environment), any
other ``scheme://`` is refused, and a plain path is a :class:`LocalStore`.

>>> import tempfile
>>> s = open_store(tempfile.mkdtemp())
>>> s.put("lake/a.txt", b"one")
>>> s.put_if_absent("lake/a.txt", b"two"), s.get("lake/a.txt")
(False, b'one')
>>> s.list("lake/")
['lake/a.txt']
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import os
import re
import secrets
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from obstore import UpdateVersion
    from obstore.store import RetryConfig

from ..errors import InputError, RunError

#: A list of keys (inside the store classes ``list`` names their listing method).
Keys = list[str]
T = TypeVar("T")

#: Schemes ``--data-root`` accepts besides a plain path.
SCHEMES = ("s3",)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class Store(Protocol):
    """The operations the lake needs from its storage."""

    #: The data root as the user gave it (a path, or ``s3://bucket/prefix``); never a secret.
    root: str

    @property
    def storage_options(self) -> dict[str, str] | None:
        """What Polars' ``scan_parquet(storage_options=...)`` needs (None: a local path)."""
        ...

    #: True when directories can be renamed atomically (the local commit protocol).
    local: bool

    def url(self, key: str) -> str:
        """Where Polars, DuckDB or pyarrow find ``key`` (a path or ``s3://`` URL)."""
        ...

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` whole (replacing any object there)."""
        ...

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write only if nothing is at ``key``; False (nothing written) when something is."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes at ``key``; FileNotFoundError when there is nothing."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> Keys:
        """Every key under ``prefix`` (a ``/``-terminated directory prefix), sorted."""
        ...

    def delete(self, keys: Keys) -> None:
        """Remove ``keys`` (missing ones are fine)."""
        ...

    def children(self, prefix: str) -> Keys:
        """The keys of the "directories" right below ``prefix`` (not recursive), sorted."""
        ...

    def copy(self, src: str, dst: str) -> None:
        """Copy an object within the store (server-side on object storage)."""
        ...

    def arrow_filesystem(self) -> tuple[Any, str]:
        """A pyarrow filesystem and the path of the data root in it."""
        ...


def scheme_of(root: str | Path) -> str | None:
    """The URL scheme of a data root, or None for a plain path.

    >>> scheme_of("s3://bucket/p"), scheme_of("data"), scheme_of("gs://b")
    ('s3', None, 'gs')
    """
    m = _SCHEME.match(str(root))
    return m.group(1).lower() if m else None


def open_store(root: str | Path) -> Store:
    """The store of a data root; unknown schemes are input errors (never taken for a path)."""
    scheme = scheme_of(root)
    if scheme is None:
        return LocalStore(root)
    if scheme == "s3":
        return ObjectStore(str(root))
    raise InputError(f"--data-root {scheme}://…: unsupported scheme (a directory, or s3://bucket/prefix)")


def join(*parts: str) -> str:
    """Keys joined with single slashes.

    >>> join("lake/", "runs", "run_id=x/")
    'lake/runs/run_id=x'
    """
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


class LocalStore:
    """A directory. Every put is tmp + write + fsync + rename + fsync of the directory."""

    local = True

    @property
    def storage_options(self) -> dict[str, str] | None:
        return None

    def __init__(self, root: str | Path) -> None:
        self.root = str(root)
        self.base = Path(root)

    def path(self, key: str) -> Path:
        return self.base / key if key else self.base

    def url(self, key: str) -> str:
        return str(self.path(key))

    def put(self, key: str, data: bytes) -> None:
        write_atomic(self.path(key), data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_name(path)
        _write_synced(tmp, data)
        try:
            os.link(tmp, path)  # fails if path exists: the local If-None-Match
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)
        return True

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def list(self, prefix: str) -> Keys:
        top = self.path(prefix)
        if not top.is_dir():
            return []
        return sorted(p.relative_to(self.base).as_posix() for p in top.rglob("*") if p.is_file())

    def delete(self, keys: Keys) -> None:
        for key in keys:
            self.path(key).unlink(missing_ok=True)

    def copy(self, src: str, dst: str) -> None:
        self.put(dst, self.get(src))

    def children(self, prefix: str) -> Keys:
        top = self.path(prefix)
        if not top.is_dir():
            return []
        return sorted(p.relative_to(self.base).as_posix() for p in top.iterdir() if p.is_dir())

    def arrow_filesystem(self) -> tuple[Any, str]:
        from pyarrow import fs

        return fs.LocalFileSystem(), str(self.base.resolve())

    def lock(self, key: str) -> LocalLock:
        return LocalLock(self.path(key))


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_atomic(path: Path, data: bytes) -> None:
    """The one atomic-write sequence: temporary name, write, fsync, rename, fsync the directory."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_name(path)
        try:
            _write_synced(tmp, data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)
    except OSError as exc:
        raise RunError(f"{path}: cannot write ({exc.strerror or exc})") from exc


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalLock:
    """An exclusive ``flock`` on a lock file; the kernel drops it when the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ObjectStore:
    """An S3 bucket (and key prefix) through obstore, configured by the standard environment.

    Credentials, region and endpoint come from ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` and ``AWS_ALLOW_HTTP`` (what
    Polars and pyarrow read too). No credential is kept in :attr:`root` or in any message.
    """

    local = False

    def __init__(self, root: str) -> None:
        from obstore.store import S3Store

        rest = root.split("://", 1)[1]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise InputError(f"--data-root {root}: expected s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.root = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        retry: RetryConfig = {"max_retries": 3, "retry_timeout": dt.timedelta(seconds=30)}
        self._s3 = S3Store(bucket, prefix=self.prefix or None, retry_config=retry)

    def __reduce__(self) -> tuple[type[ObjectStore], tuple[str]]:
        # rebuilt from the root on the other side (an executor's worker reads its own AWS_*)
        return (ObjectStore, (self.root,))

    @property
    def storage_options(self) -> dict[str, str]:
        """The ``AWS_*`` environment as Polars/object_store keys (lowercase)."""
        return {k.lower(): v for k, v in os.environ.items() if k in _AWS_KEYS}

    def url(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def put(self, key: str, data: bytes) -> None:
        import obstore

        self._call("write", key, lambda: obstore.put(self._s3, key, data))

    def create(self, key: str, data: bytes) -> str | None:
        """Put with ``If-None-Match: *``: the new ETag, or None when something is there."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            return self._call("write", key, lambda: obstore.put(self._s3, key, data, mode="create"))["e_tag"]
        except (AlreadyExistsError, PreconditionError):
            return None

    def replace_if(self, key: str, data: bytes, etag: str | None) -> str | None:
        """Put with ``If-Match: etag``: the new ETag, or None when the object changed."""
        import obstore
        from obstore.exceptions import PreconditionError

        mode: UpdateVersion = {"e_tag": etag}
        try:
            return self._call("write", key, lambda: obstore.put(self._s3, key, data, mode=mode))["e_tag"]
        except (PreconditionError, FileNotFoundError):
            return None

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self.create(key, data) is not None

    def get(self, key: str) -> bytes:
        import obstore

        return bytes(self._call("read", key, lambda: obstore.get(self._s3, key).bytes()))

    def get_with_etag(self, key: str) -> tuple[bytes, str | None]:
        import obstore

        result = self._call("read", key, lambda: obstore.get(self._s3, key))
        return bytes(result.bytes()), result.meta.get("e_tag")

    def exists(self, key: str) -> bool:
        import obstore

        try:
            self._call("read", key, lambda: obstore.head(self._s3, key))
        except FileNotFoundError:
            return False
        return True

    def list(self, prefix: str) -> Keys:
        import obstore

        where = prefix.rstrip("/") or None
        chunks = self._call("list", prefix, lambda: list(obstore.list(self._s3, where, chunk_size=1000)))
        return sorted(m["path"] for chunk in chunks for m in chunk)

    def delete(self, keys: Keys) -> None:
        import obstore

        for i in range(0, len(keys), 1000):
            batch = keys[i : i + 1000]
            self._call("delete", batch[0], partial(obstore.delete, self._s3, batch))

    def copy(self, src: str, dst: str) -> None:
        import obstore

        self._call("copy", dst, lambda: obstore.copy(self._s3, src, dst))

    def children(self, prefix: str) -> Keys:
        import obstore

        where = prefix.rstrip("/") or None
        found = self._call("list", prefix, lambda: obstore.list_with_delimiter(self._s3, where))
        return sorted(p.rstrip("/") for p in found["common_prefixes"])

    def arrow_filesystem(self) -> tuple[Any, str]:
        return s3_filesystem(), f"{self.bucket}/{self.prefix}".rstrip("/")

    def _call(self, what: str, key: str, fn: Callable[[], T]) -> T:
        """Run an obstore call; its failures become one line naming the object, never a secret."""
        from obstore.exceptions import (
            AlreadyExistsError,
            BaseError,
            PermissionDeniedError,
            PreconditionError,
            UnauthenticatedError,
        )

        try:
            return fn()
        except FileNotFoundError:
            if what == "read":
                raise
            # a PUT or LIST answered 404: the bucket itself is missing
            raise RunError(f"{self.url(key)}: cannot {what}: bucket {self.bucket!r} does not exist") from None
        except (AlreadyExistsError, PreconditionError):
            raise
        except (PermissionDeniedError, UnauthenticatedError):
            raise RunError(
                f"{self.url(key)}: cannot {what}: access denied (check AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY and that the bucket exists)"
            ) from None
        except (BaseError, OSError, ValueError) as exc:
            raise RunError(f"{self.url(key)}: cannot {what}: {_obstore_reason(exc)}") from None


_AWS_KEYS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT",
    "AWS_ALLOW_HTTP",
)


def _obstore_reason(exc: BaseException) -> str:
    """The useful part of an object-store error: the HTTP status or the connection failure."""
    text = str(exc)
    m = re.search(r"status code: (\d{3} [A-Za-z ]+)", text)
    if m:
        reason = m.group(1).strip()
        code = re.search(r"<Code>([A-Za-z]+)</Code>", text)
        return f"{reason} ({code.group(1)})" if code else reason
    for hint in ("error sending request", "Connection refused", "timed out", "dns error"):
        if hint in text:
            return f"{hint} (is AWS_ENDPOINT_URL right?)" if hint != "timed out" else "timed out"
    return text.splitlines()[0][:200] if text else type(exc).__name__


def s3_filesystem() -> Any:
    """A pyarrow S3FileSystem configured from the same ``AWS_*`` environment."""
    from pyarrow import fs

    kw: dict[str, Any] = {}
    env = os.environ
    if env.get("AWS_ACCESS_KEY_ID"):
        kw["access_key"] = env["AWS_ACCESS_KEY_ID"]
        kw["secret_key"] = env.get("AWS_SECRET_ACCESS_KEY", "")
        if env.get("AWS_SESSION_TOKEN"):
            kw["session_token"] = env["AWS_SESSION_TOKEN"]
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        kw["region"] = region
    endpoint = env.get("AWS_ENDPOINT_URL") or env.get("AWS_ENDPOINT")
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kw["endpoint_override"] = host.rstrip("/") if host else scheme
        kw["scheme"] = scheme if host else "https"
    return fs.S3FileSystem(**kw)


__all__ = [
    "Store",
    "LocalStore",
    "ObjectStore",
    "s3_filesystem",
    "open_store",
    "scheme_of",
    "join",
    "write_atomic",
    "fsync_dir",
    "SCHEMES",
]
