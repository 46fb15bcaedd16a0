"""A real Dask cluster for the tests: a scheduler and worker processes on loopback ports.

``LocalCluster`` with ``processes=True``: every worker is its own Python process (behind a
nanny that restarts it when it dies), exactly what a remote worker is to the coordinator, only
on this machine. Workers get the caller's ``sys.path``, so task functions defined in test
modules are importable there.
"""

from __future__ import annotations

#: Deaths of a task's worker after which the task fails (Dask's default is 3): one retry is
#: enough to prove a retry, and a task that keeps killing its worker fails quickly.
ALLOWED_FAILURES = 1


def local_cluster(n_workers: int = 2, **kwargs):
    """A started ``distributed.LocalCluster``; close it with ``.close()``."""
    import dask
    import distributed

    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
        return distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
            silence_logs=50,
            **kwargs,
        )


def dask_url(cluster) -> str:
    """``dask://127.0.0.1:PORT`` of the cluster's scheduler (what ``--executor`` takes)."""
    return cluster.scheduler_address.replace("tcp://", "dask://")
