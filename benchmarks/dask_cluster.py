"""A Dask scheduler and two worker processes on loopback ports for the ``ls-dask`` contender.

Started once before the contenders (untimed) with the ``dask`` command of the venv, stopped at
the end. Each worker is one process with one thread, like a small machine each; their CPU and
memory are not in the contender's numbers (only the coordinator, ``lakeslice export``, is the
timed process), so ``ls-dask``'s peak RSS is the coordinator's.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DASK = str(Path(sys.executable).with_name("dask"))
WORKERS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskCluster:
    """``dask scheduler`` + ``dask worker --nworkers 2 --nthreads 1`` as child processes."""

    def __init__(self, log_dir: Path, *, workers: int = WORKERS):
        self.port = _free_port()
        self.workers = workers
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"dask://127.0.0.1:{self.port}"

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "wb") as out:
            self.procs.append(
                subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            )

    def start(self, timeout: float = 120) -> DaskCluster:
        address = f"tcp://127.0.0.1:{self.port}"
        self._spawn(
            "scheduler",
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"],
        )
        self._spawn(
            "workers",
            [DASK, "worker", address, "--host", "127.0.0.1", "--nworkers", str(self.workers),
             "--nthreads", "1", "--no-dashboard", "--memory-limit", "0"],
        )  # fmt: skip
        from distributed import Client

        deadline = time.monotonic() + timeout
        with Client(address, timeout=timeout, set_as_default=False) as client:
            client.wait_for_workers(self.workers, timeout=max(1.0, deadline - time.monotonic()))
        return self

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(20)
        self.procs = []
