"""Candles from a source sharded by mint bucket: each bucket range is read from its own shard.

``--source-shards 00-7f=clickhouse://h1:9000/db,80-ff=clickhouse://h2/db`` says which shard
holds which buckets (SPEC §1 ``mint_bucket``); the ranges must cover ``00``..``ff`` exactly
once. A request is split by the buckets of its mints and each part goes to the shard that holds
them, so a shard is asked only for its own mints. Bucket groups are planned so that they never
straddle two shards (:attr:`ShardedSource.shard_starts`): one group, one shard connection.

What the lake records (the ``source`` column, the manifest's ``source_snapshot``) is the logical
table, usually the ``Distributed`` table over the shards named by ``--source``: an export read
shard by shard has the same bytes as one read through the ``Distributed`` table.

>>> [(s.first, s.last, s.url) for s in parse_shards("00-7f=parquet://a,80-ff=parquet://b")]
[('00', '7f', 'parquet://a'), ('80', 'ff', 'parquet://b')]
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import polars as pl
import pyarrow as pa

from ..errors import InputError, redact
from .base import CandleRequest, Source, SourceInfo

__all__ = ["Shard", "ShardedSource", "parse_shards"]

# A shard entry starts at the beginning or after a comma: "xx=" or "xx-yy=".
_ENTRY = re.compile(r"(?:^|,)\s*([0-9A-Fa-f]{2})(?:-([0-9A-Fa-f]{2}))?=")


@dataclass(frozen=True)
class Shard:
    """Buckets ``first``..``last`` (two hex characters each, inclusive) live at ``url``."""

    first: str
    last: str
    url: str

    @property
    def buckets(self) -> str:
        return f"{self.first}-{self.last}"


def parse_shards(text: str) -> list[Shard]:
    """Shards of ``RANGE=URL,RANGE=URL…`` (``RANGE``: ``xx`` or ``xx-yy``), in bucket order.

    Commas inside a URL are kept: an entry starts only where ``,xx=`` or ``,xx-yy=`` does.
    The ranges must cover ``00``..``ff`` with no gap and no overlap (InputError otherwise).

    >>> [s.buckets for s in parse_shards("80-ff=chdb://b, 00-7f=chdb://a")]
    ['00-7f', '80-ff']
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError(
            "--source-shards: empty; expected e.g. 00-7f=clickhouse://h1/db,80-ff=clickhouse://h2/db"
        )
    starts = list(_ENTRY.finditer(text))
    if not starts or starts[0].start() != 0 and text[: starts[0].start()].strip():
        raise InputError(
            f"--source-shards {redact(text)!r}: expected RANGE=URL entries, e.g. 00-7f=clickhouse://h1/db"
        )
    shards = []
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        url = text[match.end() : end].strip()
        first = match.group(1).lower()
        last = (match.group(2) or match.group(1)).lower()
        if not url or int(last, 16) < int(first, 16):
            raise InputError(f"--source-shards: bad entry {redact(match.group(0).lstrip(',') + url)!r}")
        shards.append(Shard(first, last, url))
    shards.sort(key=lambda s: s.first)
    _check_cover(shards)
    return shards


def _check_cover(shards: list[Shard]) -> None:
    expected = 0
    for shard in shards:
        first = int(shard.first, 16)
        if first > expected:
            raise InputError(f"--source-shards: no shard holds buckets {expected:02x}-{first - 1:02x}")
        if first < expected:
            raise InputError(f"--source-shards: buckets {shard.first}-{expected - 1:02x} are in two shards")
        expected = int(shard.last, 16) + 1
    if expected <= 0xFF:
        raise InputError(f"--source-shards: no shard holds buckets {expected:02x}-ff")


class ShardedSource:
    """A :class:`~lakeslice.sources.base.Source` that routes each mint to its bucket's shard.

    ``sources`` are open sources, one per shard, in the order of ``shards``. ``label`` and
    ``snapshot`` describe the logical table the lake records.
    """

    kind = "sharded"

    def __init__(
        self, shards: Sequence[Shard], sources: Sequence[Source], *, label: str, snapshot: SourceInfo
    ):
        self.shards = list(shards)
        self.sources = list(sources)
        self.label = label
        self._snapshot = snapshot
        rows = [getattr(s, "group_rows", None) for s in self.sources]
        self.group_rows = min((r for r in rows if r), default=None)

    @property
    def shard_starts(self) -> list[str]:
        """First bucket of every shard: a bucket group never crosses one of these."""
        return [s.first for s in self.shards]

    def snapshot(self) -> SourceInfo:
        """The logical table's snapshot plus ``shards`` (each shard's buckets and snapshot)."""
        shards = [
            {"buckets": sh.buckets, **src.snapshot()}
            for sh, src in zip(self.shards, self.sources, strict=True)
        ]
        return cast(SourceInfo, {**self._snapshot, "shards": shards})

    def _shard_of(self, buckets: pl.Expr) -> pl.Expr:
        """Index of the shard holding each bucket (two hex characters)."""
        firsts = pl.Series([int(s.first, 16) for s in self.shards], dtype=pl.Int64)
        return pl.lit(firsts).search_sorted(buckets.str.to_integer(base=16), side="right") - 1

    def fetch(self, request: CandleRequest) -> Iterator[pa.RecordBatch]:
        """The request's candles, each mint's ranges asked of the shard that holds its bucket."""
        if request.ranges is None:
            for i, source in enumerate(self.sources):
                yield from self._own_rows(i, source.fetch(request))
            return
        from ..transforms import mint_bucket

        routed = request.ranges.with_columns(_shard=self._shard_of(mint_bucket("mint")))
        for (i,), part in routed.partition_by("_shard", as_dict=True, maintain_order=True).items():
            sub = replace(request, ranges=part.drop("_shard"))
            yield from self.sources[i].fetch(sub)

    def _own_rows(self, i: int, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Only rows of shard ``i``'s buckets: a bucket is read from one shard, never two."""
        from ..transforms import mint_bucket

        for batch in batches:
            mints = pl.Series("mint", batch.column("mint")).cast(pl.String).to_frame()
            mine = mints.select(self._shard_of(mint_bucket("mint")) == i).to_series()
            yield batch.filter(mine.to_arrow())

    def mint_counts(self, *, chain: str, interval_s: int, start_ms: int, end_ms: int) -> pl.DataFrame:
        from ..transforms import mint_bucket

        counts = [
            s.mint_counts(chain=chain, interval_s=interval_s, start_ms=start_ms, end_ms=end_ms).filter(
                self._shard_of(mint_bucket("mint")) == i
            )
            for i, s in enumerate(self.sources)
        ]
        return pl.concat(counts).group_by("mint").agg(pl.col("rows").sum()).sort("mint")

    def holdings(self) -> pl.DataFrame:
        """``chain, interval_s, rows`` of every shard together (rows summed over the shards)."""
        frames = [s.holdings() for s in self.sources]
        return (
            pl.concat(frames)
            .group_by("chain", "interval_s")
            .agg(pl.col("rows").sum())
            .sort("chain", "interval_s")
        )

    def close(self) -> None:
        for source in self.sources:
            source.close()


def open_sharded(url: str | None, shards_text: str, *, table: str, data_root: str | Path) -> ShardedSource:
    """Open every shard of ``shards_text``; ``url`` (optional) names the logical table.

    Without ``url`` the shards must name the same database and table, which the lake records.
    """
    from . import open_source

    shards = parse_shards(shards_text)
    sources: list[Source] = []
    try:
        for shard in shards:
            sources.append(open_source(shard.url, table=table, data_root=data_root))
        label, snapshot = _logical(url, sources, table=table, data_root=data_root)
    except BaseException:
        for source in sources:
            source.close()
        raise
    return ShardedSource(shards, sources, label=label, snapshot=snapshot)


def _logical(
    url: str | None, sources: list[Source], *, table: str, data_root: str | Path
) -> tuple[str, SourceInfo]:
    """Label and snapshot of the logical table (``url``, else what every shard agrees on)."""
    if url:
        from . import open_source

        logical = open_source(url, table=table, data_root=data_root)
        try:
            return logical.label, logical.snapshot()
        finally:
            logical.close()
    labels = {s.label for s in sources}
    if len(labels) != 1:
        raise InputError(
            f"--source-shards: the shards are {', '.join(sorted(labels))}; "
            "give --source for the table the lake records (e.g. the Distributed table)"
        )
    first = sources[0].snapshot()
    hosts = ",".join(str(s.snapshot().get("host", "")) for s in sources)
    return sources[0].label, {**first, "host": hosts}
