"""A throwaway ClickHouse server for the tests.

Everything lives in a temporary directory: config, users, data, tmp, logs, user files. Only
the native TCP port is opened, on loopback, on a free port: HTTP, HTTPS, MySQL, PostgreSQL and
interserver ports are opened by ClickHouse only when their keys are in the config, and this
config has none of them, so nothing can collide with another server on the machine.

Root: Debian's 18.16 runs as root without extra flags (newer releases refuse only when the data
directory belongs to another user; ours belongs to whoever runs the tests). No file under
/etc/clickhouse-server is read: the server gets ``--config-file`` and the config names
``users_config`` by absolute path.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

USERS = {"default": "", "lake": "s3cret-pw"}

_CANDIDATES = ("/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server", "/usr/bin/clickhouse")


def find_server_binary() -> list[str] | None:
    """Command that starts a server: ``$LAKESLICE_CLICKHOUSE_SERVER``, PATH, Debian's /usr/sbin."""
    explicit = os.environ.get("LAKESLICE_CLICKHOUSE_SERVER")
    found = [explicit] if explicit else []
    found += [shutil.which("clickhouse-server") or "", *_CANDIDATES]
    found += [shutil.which("clickhouse") or ""]
    for path in found:
        if path and os.access(path, os.X_OK):
            # The single-binary build (``clickhouse``) needs the ``server`` sub-command.
            return [path, "server"] if Path(path).name == "clickhouse" else [path]
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config_xml(root: Path, port: int) -> str:
    return f"""<?xml version="1.0"?>
<yandex>
  <logger>
    <level>information</level>
    <log>{root}/log/server.log</log>
    <errorlog>{root}/log/server.err.log</errorlog>
    <console>0</console>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{port}</tcp_port>
  <path>{root}/data/</path>
  <tmp_path>{root}/tmp/</tmp_path>
  <user_files_path>{root}/user_files/</user_files_path>
  <format_schema_path>{root}/format_schemas/</format_schema_path>
  <users_config>{root}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries>
</yandex>
"""


def _users_xml() -> str:
    def user(name: str, password: str) -> str:
        return (
            f"<{name}><password>{password}</password><networks><ip>::/0</ip></networks>"
            f"<profile>default</profile><quota>default</quota></{name}>"
        )

    users = "".join(user(n, p) for n, p in USERS.items())
    return f"""<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users>{users}</users>
  <quotas><default></default></quotas>
</yandex>
"""


class ClickHouseServer:
    """A server process on ``127.0.0.1:port`` with its state in ``root``.

    ``stop()`` then ``start()`` restarts it on the same port with the same data.
    """

    host = "127.0.0.1"

    def __init__(self, root: str | Path | None = None, *, port: int | None = None):
        self.command = find_server_binary()
        if self.command is None:
            raise FileNotFoundError(
                "clickhouse-server not found (looked in PATH, /usr/sbin, /usr/bin); "
                "run `make clickhouse` or set LAKESLICE_TEST_CLICKHOUSE_URL"
            )
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="lakeslice-ch-")).resolve()
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        for sub in ("data", "tmp", "log", "user_files", "format_schemas"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "config.xml").write_text(_config_xml(self.root, self.port))
        (self.root / "users.xml").write_text(_users_xml())

    def url(self, database: str = "default", user: str | None = None, password: str | None = None):
        cred = ""
        if user:
            cred = quote(user, safe="")
            if password is not None:
                cred += ":" + quote(password, safe="")
            cred += "@"
        return f"clickhouse://{cred}{self.host}:{self.port}/{database}"

    def client(self, **kwargs):
        from clickhouse_driver import Client

        return Client(self.host, port=self.port, **kwargs)

    def start(self, timeout: float = 60.0) -> ClickHouseServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        out = open(self.root / "log" / "stdout.log", "ab")
        # cwd=root: the server resolves relative paths against it; never the caller's cwd.
        self.proc = subprocess.Popen(
            [*self.command, f"--config-file={self.root / 'config.xml'}"],
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                status = self.proc.returncode
                raise RuntimeError(f"clickhouse-server exited with status {status}\n{self.log_tail()}")
            try:
                # A bare TCP probe first: the driver logs every refused connection.
                socket.create_connection((self.host, self.port), timeout=1).close()
                self.client(connect_timeout=1, send_receive_timeout=5).execute("SELECT 1")
                return
            except Exception as exc:  # not up yet
                last = exc
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"clickhouse-server did not answer on {self.host}:{self.port} within {timeout:.0f}s"
            f" (last error: {last})\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for name in ("stdout.log", "server.err.log", "server.log"):
            path = self.root / "log" / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} ---\n" + "\n".join(tail))
        return "\n".join(parts) or f"(no logs in {self.root / 'log'})"

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the server dies without closing connections cleanly."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(15)

    def cleanup(self) -> None:
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ClickHouseServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()
