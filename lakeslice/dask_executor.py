"""Bucket groups as tasks on an existing Dask cluster (``--executor dask://HOST:PORT``).

lakeslice has no scheduler of its own: :class:`DaskExecutor` hands each bucket-group task to
``dask.distributed`` (``Client.map``) and gives the results back in task order, so the seal is
the same whatever finished first. What makes it safe:

- Before any task, every worker's lakeslice, polars and pyarrow versions must equal the
  coordinator's (the bytes of a Parquet file depend on them); each task checks again where it
  runs, so a worker that joins later cannot slip through.
- A worker that dies mid-task: the scheduler reruns the task elsewhere (Dask's
  ``distributed.scheduler.allowed-failures``); a group writes the same keys with the same bytes
  however often it runs. A task that keeps failing fails the run with one line; the remaining
  tasks are cancelled and nothing is sealed.
- Tasks carry no secret: sources travel as :class:`~lakeslice.sources.portable.PortableSource`
  and workers read credentials from their own environment.

Requires the ``dask`` extra: ``pip install 'lakeslice[dask]'``.

>>> parse_address("dask://scheduler.example:8786")
'tcp://scheduler.example:8786'
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .errors import InputError, LakesliceError, RunError

__all__ = ["DaskExecutor", "parse_address", "worker_versions"]

log = logging.getLogger("lakeslice")


def parse_address(url: str) -> str:
    """``dask://HOST:PORT`` (or ``tcp://``, ``tls://``) as a scheduler address for ``Client``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("dask", "tcp", "tls") or not rest or "/" in rest.rstrip("/"):
        raise InputError(f"--executor {url!r}: expected local or dask://HOST:PORT")
    host, _, port = rest.rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--executor {url!r}: expected dask://HOST:PORT")
    return f"{'tcp' if scheme == 'dask' else scheme}://{rest.rstrip('/')}"


def worker_versions() -> dict[str, str]:
    """The versions the bytes depend on, where this runs (coordinator or worker)."""
    from . import __version__
    from .lake.manifest import library_versions

    return {"lakeslice": __version__, **library_versions()}


class _VersionGuard:
    """Picklable wrapper: check the worker's versions, then run the task."""

    def __init__(self, fn: Callable[[Any], Any], expected: dict[str, str]):
        self.fn, self.expected = fn, expected

    def __call__(self, task: Any) -> Any:
        found = worker_versions()
        if found != self.expected:
            raise RunError(_mismatch("this worker", found, self.expected))
        return self.fn(task)


def _mismatch(where: str, found: dict[str, str], expected: dict[str, str]) -> str:
    diff = ", ".join(
        f"{k} {found.get(k)} (coordinator {v})" for k, v in expected.items() if found.get(k) != v
    )
    return f"Dask worker {where} has {diff}: the files' bytes depend on these; install the same versions"


class DaskExecutor:
    """Run tasks on a Dask cluster: a ``dask.distributed.Client`` or a scheduler address.

    ``map(fn, tasks)`` yields ``fn(task)`` in task order and stops at the first failure.
    ``fn`` and the tasks must pickle (cloudpickle) and hold no open handle nor secret.
    """

    #: Tasks run in other processes: sources and stores must travel as descriptions.
    remote = True

    def __init__(
        self,
        client: Any = None,
        *,
        address: str | None = None,
        connect_timeout: float = 30,
        worker_timeout: float = 60,
    ):
        try:
            from distributed import Client
        except ImportError:
            raise InputError("--executor dask: install the extra: pip install 'lakeslice[dask]'") from None
        self._owns = client is None
        if client is None:
            addr = parse_address(address) if address else None
            if addr is None:
                raise InputError("--executor dask: give dask://HOST:PORT or a dask.distributed.Client")
            try:
                client = Client(addr, timeout=connect_timeout, set_as_default=False)
            except Exception as exc:  # OSError, TimeoutError: one line, exit 1
                raise RunError(f"Dask scheduler {addr}: cannot connect: {_first_line(exc)}") from None
        self.client = client
        self.worker_timeout = worker_timeout

    @classmethod
    def from_url(cls, url: str) -> DaskExecutor:
        return cls(address=url)

    @property
    def where(self) -> str:
        return f"Dask scheduler {self.client.scheduler.address}"

    def check_workers(self) -> dict[str, str]:
        """The coordinator's versions, once every worker was found to have the same (RunError)."""
        expected = worker_versions()
        try:  # an adaptive cluster, or a worker being restarted, may have none for a moment
            self.client.wait_for_workers(1, timeout=self.worker_timeout)
        except Exception:  # TimeoutError, WorkerStartTimeoutError
            raise RunError(f"{self.where}: no workers after {self.worker_timeout:g}s") from None
        found = self.client.run(worker_versions)
        if not found:
            raise RunError(f"{self.where}: no workers")
        for worker, versions in sorted(found.items()):
            if versions != expected:
                raise RunError(_mismatch(worker, versions, expected))
        return expected

    def map(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        """``fn(task)`` for every task on the cluster, yielded in task order."""
        from distributed import as_completed

        tasks = list(tasks)
        if not tasks:
            return
        expected = self.check_workers()
        token = secrets.token_hex(6)
        keys = [f"lakeslice-group-{token}-{i:06d}" for i in range(len(tasks))]
        order = {key: i for i, key in enumerate(keys)}
        futures = self.client.map(_VersionGuard(fn, expected), tasks, key=keys, pure=False, retries=0)
        ready: dict[int, Any] = {}
        following = 0
        try:
            for future in as_completed(futures, loop=self.client.loop):
                i = order[future.key]
                if future.status != "finished":
                    raise _task_error(i, future)
                ready[i] = future
                while following in ready:
                    yield ready.pop(following).result()
                    following += 1
        finally:
            self.client.cancel([f for f in futures if not f.done()])

    def close(self) -> None:
        if self._owns:
            self.client.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _task_error(i: int, future: Any) -> LakesliceError:
    """One line for a failed task; lakeslice's own errors keep their kind (exit 2 or 1)."""
    if future.status == "cancelled":
        return RunError(f"bucket group {i}: cancelled on the Dask cluster; not sealed")
    exc = future.exception()
    if isinstance(exc, LakesliceError):
        return exc
    name = type(exc).__name__
    if name == "KilledWorker":
        return RunError(
            f"bucket group {i}: the Dask workers running it died repeatedly (KilledWorker); not sealed"
        )
    return RunError(f"bucket group {i} failed on a Dask worker: {name}: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
