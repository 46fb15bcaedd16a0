"""Two throwaway ClickHouse servers as the two shards of one cluster, for the tests.

Each shard is a :class:`chserver.ClickHouseServer` (own temporary root, own free loopback
port); a ``config.d/cluster.xml`` next to each server's config adds the cluster to
``remote_servers``, so any of them can hold a ``Distributed`` table over both. Nothing else of
the single-server fixture changes.

The candle table is sharded by the mint's bucket (SHA-1 of the mint, first byte): shard ``i``
of ``n`` holds the buckets ``[256·i/n, 256·(i+1)/n)``, i.e. with two shards ``00-7f`` and
``80-ff``. :meth:`ClickHouseCluster.sharding_key` is that rule in ClickHouse SQL.
"""

from __future__ import annotations

import socket

from chserver import ClickHouseServer

CLUSTER = "lake_cluster"


#: ClickHouse's bucket text of a row, to compare with ``lakeslice.mint_bucket``.
BUCKET_SQL = "lower(hex(substring(SHA1(token_address), 1, 1)))"


def _remote_servers_xml(ports: list[int]) -> str:
    shards = "".join(
        f"<shard><replica><host>127.0.0.1</host><port>{port}</port></replica></shard>" for port in ports
    )
    return (
        '<?xml version="1.0"?>\n'
        f"<yandex><remote_servers><{CLUSTER}>{shards}</{CLUSTER}></remote_servers></yandex>\n"
    )


def _distinct_ports(n: int) -> list[int]:
    """``n`` free loopback ports, all different (each socket is held until all are picked)."""
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class ClickHouseCluster:
    """``n`` ClickHouse servers on loopback that know each other as the shards of :data:`CLUSTER`."""

    def __init__(self, n: int = 2):
        self.shards = [ClickHouseServer(port=port) for port in _distinct_ports(n)]
        xml = _remote_servers_xml([s.port for s in self.shards])
        for server in self.shards:
            (server.root / "config.d").mkdir(exist_ok=True)
            (server.root / "config.d" / "cluster.xml").write_text(xml)

    def sharding_key(self) -> str:
        """Shard number (0-based) of a row: first byte of SHA1(token_address) · n // 256.

        ``reinterpretAsUInt8`` reads the first byte of the FixedString(20) digest; the
        ``Distributed`` engine sends a row to shard ``key % n`` (equal weights).
        """
        return f"intDiv(reinterpretAsUInt8(SHA1(token_address)) * {len(self.shards)}, 256)"

    def bucket_ranges(self) -> list[tuple[str, str]]:
        """``(first, last)`` bucket of each shard, in shard order: ``[("00", "7f"), ("80", "ff")]``."""
        n = len(self.shards)
        return [(f"{256 * i // n:02x}", f"{256 * (i + 1) // n - 1:02x}") for i in range(n)]

    def source_shards(self, database: str) -> str:
        """The ``--source-shards`` text for ``database`` on every shard."""
        ranges = self.bucket_ranges()
        return ",".join(
            f"{lo}-{hi}={s.url(database)}" for (lo, hi), s in zip(ranges, self.shards, strict=True)
        )

    def start(self) -> ClickHouseCluster:
        try:
            for server in self.shards:
                server.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def cleanup(self) -> None:
        for server in self.shards:
            server.cleanup()

    def __enter__(self) -> ClickHouseCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()
