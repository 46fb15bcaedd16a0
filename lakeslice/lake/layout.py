"""Where things go in a lake (SPEC §5). Names only; nothing here touches storage.

Keys are ``/``-separated and relative to the data root, so the same names serve a local
directory and an ``s3://bucket/prefix`` root.

>>> run_key("2024-q1")
'lake/runs/run_id=2024-q1'
>>> day_key("solana", "1m", "2024-01-02")
'lake/corpus/ohlcv/chain=solana/interval=1m/date=2024-01-02'
>>> day_seal_key("solana", "1m", "2024-01-02")
'lake/corpus/_seals/ohlcv/chain=solana/interval=1m/date=2024-01-02.json'
>>> hive_value("slices/ohlcv/interval=1m/window=pre1_post2/mint_bucket=3a/part-0000.parquet", "mint_bucket")
'3a'
"""

from __future__ import annotations

from pathlib import Path

MANIFEST = "manifest.json"
COVERAGE = "outputs/coverage.parquet"
ALERTS = "inputs/alerts.parquet"
SLICES = "slices/"
LAKE = "lake"
#: Where local runs keep their generations, one directory per run_id.
GENERATIONS = f"{LAKE}/.generations/runs"
#: Chain of corpora written before the corpus layout had a ``chain=`` level.
LEGACY_CHAIN = "solana"


def run_key(run_id: str) -> str:
    return f"{LAKE}/runs/run_id={run_id}"


def generations_key(run_id: str) -> str:
    """Where the generations of a local run live; ``run_id=X`` is a symbolic link to one of them.

    No ``key=value`` segment: a hive-partitioned scan of a resolved generation directory gains
    no partition column from the directory's own name.

    >>> generations_key("2024-q1")
    'lake/.generations/runs/2024-q1'
    """
    return f"{GENERATIONS}/{run_id}"


def slices_prefix(interval: str, window: str) -> str:
    """Relative to the run directory."""
    return f"slices/ohlcv/interval={interval}/window={window}"


def corpus_root_key() -> str:
    return f"{LAKE}/corpus/ohlcv"


def corpus_key(chain: str, interval: str) -> str:
    return f"{corpus_root_key()}/chain={chain}/interval={interval}"


def legacy_corpus_key(interval: str) -> str:
    """The tree of corpora written without a ``chain=`` level (read as chain=solana)."""
    return f"{corpus_root_key()}/interval={interval}"


def day_key(chain: str, interval: str, day: str) -> str:
    return f"{corpus_key(chain, interval)}/date={day}"


def day_seal_key(chain: str, interval: str, day: str) -> str:
    """Seal of a corpus day, outside the data tree: Polars trips over any non-Parquet file in a
    directory it scans, so the day is sealed by ``corpus/_seals/ohlcv/chain=C/interval=I/date=D.json``."""
    return f"{LAKE}/corpus/_seals/ohlcv/chain={chain}/interval={interval}/date={day}.json"


def seal_key_of_day(day: str) -> str:
    """The seal key of a day key (``.../corpus/ohlcv/<levels>/date=D`` → ``.../_seals/...``).

    >>> seal_key_of_day("lake/corpus/ohlcv/chain=solana/interval=1m/date=2024-01-02")
    'lake/corpus/_seals/ohlcv/chain=solana/interval=1m/date=2024-01-02.json'
    """
    head, _, levels = day.partition("/corpus/ohlcv/")
    return f"{head}/corpus/_seals/ohlcv/{levels}.json"


def bucket_dir(bucket: str) -> str:
    return f"mint_bucket={bucket}"


def part_name(index: int) -> str:
    return f"part-{index:04d}.parquet"


def hive_values(path: str) -> dict[str, str]:
    """The ``key=value`` segments of a ``/``-separated path.

    >>> hive_values("a/chain=solana/interval=1m/x.parquet")
    {'chain': 'solana', 'interval': '1m'}
    """
    return dict(seg.split("=", 1) for seg in path.split("/") if "=" in seg)


def hive_value(path: str, key: str) -> str | None:
    return hive_values(path).get(key)


# Local paths of the same names (a plain-directory data root).


def lake_dir(data_root: str | Path) -> Path:
    """Holds runs/, corpus/ and the hidden .staging/ and .locks/ work areas."""
    return Path(data_root) / LAKE


def run_dir(data_root: str | Path, run_id: str) -> Path:
    return Path(data_root) / run_key(run_id)


def generations_dir(data_root: str | Path, run_id: str) -> Path:
    return Path(data_root) / generations_key(run_id)


def day_seal(day_path: str | Path) -> Path:
    """The seal of a local corpus day directory (see :func:`seal_key_of_day`)."""
    return Path(seal_key_of_day(Path(day_path).as_posix()))
