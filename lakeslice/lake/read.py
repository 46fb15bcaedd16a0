"""Read sealed runs and corpus days back as Polars lazy frames, local or on ``s3://``.

Every reader resolves its file list **once**, from one seal (a run's ``manifest.json``, a
corpus day's seal), and checks each file's bytes against that seal's SHA-256 as it reads
them. So a reader racing an ``--overwrite`` gets the old export or the new one whole, or a
clear error saying the run changed under it; never rows of two exports. A local run is a link
to its current generation, resolved once: its readers keep reading that generation, which no
overwrite changes (:func:`run_path` gives it to plain Parquet readers).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import polars as pl

from ..errors import InputError, RunError
from ..executor import LocalExecutor
from . import layout
from .layout import COVERAGE, MANIFEST
from .manifest import Manifest
from .store import Store, open_store, scheme_of
from .verify import VerifyReport, manifest_problems, verify_root

#: Files read, hashed and decoded ahead of the one being yielded.
READ_AHEAD = 4
DAY_MS = 86_400_000


@dataclass(frozen=True)
class SealedFile:
    """One file a seal lists: where to read it, what it must hash to, its partition values."""

    store: Store
    key: str
    sha256: str
    rows: int
    parts: tuple[tuple[str, str], ...]
    where: str

    def read(self) -> bytes:
        """The file's bytes, exactly as sealed; RunError if it vanished or changed."""
        try:
            data = self.store.get(self.key)
        except FileNotFoundError:
            raise RunError(
                f"{self.where}: {self.key} vanished since the seal was read "
                "(replaced by another export?); read again"
            ) from None
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise RunError(
                f"{self.where}: {self.key} changed since the seal was read "
                "(replaced by another export?); read again"
            )
        return data


def open_run(run_dir: str | Path) -> tuple[Store, str]:
    """The store whose root is the run directory, and how to name it in messages.

    A local run is resolved once: ``run_id=X`` is a link to the generation directory of its
    current export, and every file is then read from that generation, which an ``--overwrite``
    never changes (it links a new one and keeps this one for the grace period).
    """
    if scheme_of(run_dir) is not None:
        store = open_store(run_dir)
        return store, store.root
    if not Path(run_dir).is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    return open_store(os.path.realpath(run_dir)), str(run_dir)


def resolve_run(run_dir: str | Path) -> str | Path:
    """A local run directory with its link resolved (the generation it reads now); an
    ``s3://`` URL as it is. Readers that open a run twice resolve it once with this.

    >>> resolve_run("s3://bucket/lake/runs/run_id=x")
    's3://bucket/lake/runs/run_id=x'
    """
    return run_dir if scheme_of(run_dir) is not None else Path(os.path.realpath(run_dir))


def run_path(data_root: str | Path, run_id: str) -> Path | str:
    """Where the current export of a run is, for plain Parquet readers.

    Locally, the generation directory ``run_id=X`` links to: a Polars or DuckDB scan of it
    (``hive_partitioning`` included) reads one export whole even while ``--overwrite`` replaces
    the run, for :data:`~lakeslice.lake.commit.KEEP_REPLACED_SECONDS` after the replacement. On
    ``s3://`` the run's URL (no links there: see the README's Guarantees). RunError when the
    run is not sealed.

    >>> import tempfile, lakeslice as ls
    >>> root = tempfile.mkdtemp()
    >>> _ = ls.export_run_slices("fixtures/alerts.csv", interval="1m", window="pre5_post10",
    ...                          source="parquet://fixtures/candles.parquet", data_root=root, run_id="doc")
    >>> path = run_path(root, "doc")
    >>> path.parent.name, path.name.startswith("g-")
    ('doc', True)
    >>> pl.scan_parquet(path / "slices", hive_partitioning=True).select(pl.len()).collect().item()
    75
    """
    key = layout.run_key(run_id)
    if scheme_of(data_root) is not None:
        store = open_store(data_root)
        read_seal(store, f"{key}/{MANIFEST}", store.url(key))
        return store.url(key)
    where = layout.run_dir(data_root, run_id)
    resolved = Path(resolve_run(where))
    read_seal(open_store(resolved), MANIFEST, str(where))
    return resolved


def read_seal(store: Store, key: str, where: str) -> dict:
    """A seal document; RunError naming ``where`` when absent or unreadable."""
    try:
        data = store.get(key)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise RunError(f"{where}: unsealed (no {key.rsplit('/', 1)[-1]}); readers refuse it") from None
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise RunError(f"{where}: unreadable seal {key} ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise RunError(f"{where}: seal {key} has no list of files")
    return doc


def sealed_files(
    store: Store, base: str, seal: dict, where: str, *, extra: dict[str, str] | None = None
) -> list[SealedFile]:
    """The files a seal lists (paths relative to ``base``), refusing paths that leave it."""
    out = []
    for f in seal["files"]:
        path = str(f.get("path", ""))
        if not path or path.startswith("/") or any(p in ("", ".", "..") for p in path.split("/")):
            raise RunError(f"{where}: seal lists a path outside the run: {path!r}")
        parts = {**(extra or {}), **layout.hive_values(path)}
        key = f"{base}/{path}" if base else path
        out.append(SealedFile(store, key, str(f["sha256"]), int(f["rows"]), tuple(parts.items()), where))
    return out


def _run(run_dir: str | Path, verify: bool) -> tuple[Store, str, dict]:
    store, where = open_run(run_dir)
    manifest = read_seal(store, MANIFEST, where)
    problems = manifest_problems(manifest)  # a seal that names files outside the run is never read
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RunError(f"{where}: does not verify: {problems[0]}{more}")
    if verify:
        try:
            reports = verify_root(store.root)
        except OSError:  # a file vanished while it was being checked
            reports = [VerifyReport(Path(where), problems=["a file vanished while verifying"])]
        for report in reports:
            if report.ok:
                continue
            try:
                now = read_seal(store, MANIFEST, where)
            except RunError:
                now = None
            if now != manifest:  # a new export replaced the run while it was being checked
                raise RunError(
                    f"{where}: changed since the seal was read (replaced by another "
                    "export while verifying); read again"
                )
            raise RunError(f"{where}: does not verify: {report.problems[0]}")
    return store, where, manifest


def scan_files(
    files: list[SealedFile], schema: dict[str, pl.DataType], keys: tuple[str, ...]
) -> pl.LazyFrame:
    """A lazy frame over sealed files, each checked against its seal as it is read.

    ``keys`` are partition columns (text) taken from the files' paths; a filter on them alone
    skips whole files.
    """
    from polars.io.plugins import register_io_source

    full: dict[str, pl.DataType] = {**schema, **{k: pl.String() for k in keys}}

    def source(
        with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, batch_size: int | None
    ) -> Iterator[pl.DataFrame]:
        wanted = with_columns or list(full)
        names = set(predicate.meta.root_names()) if predicate is not None else set()
        on_keys_only = predicate is not None and bool(keys) and names <= set(keys)
        # at least one column, so a frame of only partition values has the file's rows
        data_cols = [c for c in dict.fromkeys([*wanted, *names]) if c not in keys] or [next(iter(schema))]

        def load(f: SealedFile) -> pl.DataFrame:
            parts = dict(f.parts)
            frame = pl.read_parquet(io.BytesIO(f.read()), columns=data_cols)
            frame = frame.with_columns(pl.lit(parts.get(k), pl.String).alias(k) for k in keys)
            return (frame.filter(predicate) if predicate is not None else frame).select(wanted)

        chosen = [f for f in files if predicate is None or not on_keys_only or _keeps(f, keys, predicate)]
        left = n_rows
        # a few files read, hashed and decoded ahead (in order, bounded): I/O and hashing overlap
        for frame in LocalExecutor(workers=READ_AHEAD).map(load, chosen):
            if left is not None:
                frame = frame.head(left)
                left -= frame.height
            yield frame
            if left is not None and left <= 0:
                return

    return register_io_source(source, schema=full, explain_name="lakeslice", is_pure=True)


def _keeps(f: SealedFile, keys: tuple[str, ...], predicate: pl.Expr) -> bool:
    """Whether a filter on partition columns alone keeps any row of ``f``."""
    parts = dict(f.parts)
    values = pl.DataFrame({k: [parts.get(k)] for k in keys}, schema={k: pl.String for k in keys})
    return values.filter(predicate).height > 0


def scan_run(run_dir: str | Path, *, verify: bool = False) -> pl.LazyFrame:
    """The slices of a sealed run with their ``mint_bucket`` (text); refuses an unsealed run.

    ``run_dir`` is a directory or an ``s3://`` URL (credentials from the ``AWS_*`` environment).

    >>> import tempfile, lakeslice as ls
    >>> run = ls.export_run_slices("fixtures/alerts.csv", interval="1m", window="pre5_post10",
    ...                            source="parquet://fixtures/candles.parquet",
    ...                            data_root=tempfile.mkdtemp(), run_id="doc").run_dir
    >>> scan_run(run).select(pl.len(), pl.col("mint").n_unique()).collect().row(0)
    (75, 4)
    """
    from ..transforms import SLICE_SCHEMA

    store, where, manifest = _run(run_dir, verify)
    files = [f for f in sealed_files(store, "", manifest, where) if f.key.startswith(layout.SLICES)]
    return scan_files(files, dict(SLICE_SCHEMA), ("mint_bucket",))


def _one_file(run_dir: str | Path, rel: str) -> pl.LazyFrame:
    store, where, manifest = _run(run_dir, False)
    listed = [f for f in sealed_files(store, "", manifest, where) if f.key == rel]
    if not listed:
        raise RunError(f"{where}: its seal does not list {rel}")
    return pl.read_parquet(io.BytesIO(listed[0].read())).lazy()


def scan_coverage(run_dir: str | Path) -> pl.LazyFrame:
    """One coverage row per alert of a sealed run (SPEC §4), checked against its manifest.

    >>> import tempfile, lakeslice as ls
    >>> run = ls.export_run_slices("fixtures/alerts.csv", interval="1m", window="pre5_post10",
    ...                            source="parquet://fixtures/candles.parquet",
    ...                            data_root=tempfile.mkdtemp(), run_id="doc").run_dir
    >>> scan_coverage(run).group_by("status").len().sort("status").collect().rows()
    [('insufficient', 1), ('partial', 7)]
    """
    return _one_file(run_dir, COVERAGE)


def read_run_manifest(run_dir: str | Path) -> Manifest:
    """The manifest of a sealed run (a directory or an ``s3://`` URL)."""
    return cast(Manifest, _run(run_dir, False)[2])


# --------------------------------------------------------------------------------------------
# Corpus


def sealed_days(store: Store, chain: str, interval: str) -> dict[str, tuple[str, str]]:
    """Sealed days of a corpus tree: ``date → (day key, seal key)``.

    Corpora written before the ``chain=`` level are read as chain ``solana``: their days count
    where the chain tree has no seal of the same date.
    """
    return {day: (key, seal) for day, (key, seal) in corpus_days(store, chain, interval).items() if seal}


def corpus_days(store: Store, chain: str, interval: str) -> dict[str, tuple[str, str | None]]:
    """Every day of a corpus tree, sealed or not: ``date → (day key, seal key or None)``."""
    days: dict[str, tuple[str, str | None]] = {}
    trees = [(layout.corpus_key(chain, interval), f"chain={chain}/")]
    if chain == layout.LEGACY_CHAIN:
        trees.append((layout.legacy_corpus_key(interval), ""))
    for tree, level in trees:
        seals = f"{layout.LAKE}/corpus/_seals/ohlcv/{level}interval={interval}/"
        # a local day whose publish was cut between the swap and the seal's rename has only
        # "<seal>.next", which then matches it (every file is checked against it anyway)
        keys = store.list(seals)
        for key in sorted(keys, key=lambda k: k.endswith(".next")):
            name = key.removeprefix(seals).removesuffix(".next")
            day = layout.hive_value(name.removesuffix(".json"), "date")
            if "/" in name or not name.endswith(".json") or day is None:
                continue
            if days.get(day, (None, None))[1] is None:
                days[day] = (f"{tree}/date={day}", key)
        for key in store.children(tree + "/"):
            day = layout.hive_value(key.rsplit("/", 1)[-1], "date")
            if day is not None:
                days.setdefault(day, (key, None))
    return dict(sorted(days.items()))


def corpus_files(
    store: Store,
    *,
    chain: str,
    interval: str,
    start_ms: int | None = None,
    end_ms: int | None = None,
    days: list[str] | None = None,
    buckets: set[str] | None = None,
) -> list[SealedFile]:
    """The sealed files of the corpus days overlapping ``[start_ms, end_ms)`` (or ``days``).

    A day in the selection without a seal (being re-exported) is refused, never skipped.
    """
    out = []
    for day, (key, seal_key) in corpus_days(store, chain, interval).items():
        if days is not None and day not in days:
            continue
        if start_ms is not None and end_ms is not None and not _overlaps(day, start_ms, end_ms):
            continue
        if seal_key is None:
            raise RunError(
                f"{store.url(key)}: unsealed (being re-exported, or left by a failed export); "
                "readers refuse it"
            )
        seal = read_seal(store, seal_key, store.url(key))
        files = sealed_files(store, key, seal, store.url(key), extra={"date": day})
        out += [f for f in files if buckets is None or dict(f.parts).get("mint_bucket") in buckets]
    return out


def day_number(day: str) -> int:
    """Days since 1970-01-01 of a ``YYYY-MM-DD`` name.

    >>> day_number("1970-01-02")
    1
    """
    import datetime as dt

    return (dt.date.fromisoformat(day) - dt.date(1970, 1, 1)).days


def _overlaps(day: str, start_ms: int, end_ms: int) -> bool:
    # integer arithmetic: a window far past what dates represent still compares correctly
    lo = day_number(day) * DAY_MS
    return lo < end_ms and start_ms < lo + DAY_MS


def scan_corpus(
    data_root: str | Path,
    *,
    chain: str = "solana",
    interval: str | int,
    start: str | None = None,
    end: str | None = None,
) -> pl.LazyFrame:
    """The candles of the sealed corpus days in ``[start, end)`` with ``date`` and ``mint_bucket`` (text).

    Only days with a seal are read, each file checked against its day's seal.

    >>> import tempfile, lakeslice as ls
    >>> root = tempfile.mkdtemp()
    >>> _ = ls.export_corpus(interval="1m", date_from="2024-01-01", date_to="2024-01-02",
    ...                      source="parquet://fixtures/candles.parquet", data_root=root)
    >>> scan_corpus(root, interval="1m", start="2024-01-01").group_by("date").len().collect().rows()
    [('2024-01-01', 743)]
    """
    from ..spec import format_interval, parse_interval
    from ..transforms import SLICE_SCHEMA

    text = format_interval(parse_interval(interval))
    store = open_store(data_root)
    lo = day_number(_check_day(start, "start")) * DAY_MS if start else -(2**62)
    hi = day_number(_check_day(end, "end")) * DAY_MS if end else 2**62
    files = corpus_files(store, chain=chain, interval=text, start_ms=lo, end_ms=hi)
    return scan_files(files, dict(SLICE_SCHEMA), ("date", "mint_bucket"))


def _check_day(text: str, what: str) -> str:
    import datetime as dt

    try:
        return dt.date.fromisoformat(str(text)).isoformat()
    except ValueError:
        raise InputError(f"{what} {text!r}: expected a date YYYY-MM-DD") from None


# --------------------------------------------------------------------------------------------
# Verification on object storage (local directories: verify.py)


def verify_url(url: str) -> list[VerifyReport]:
    """Verify a sealed run, or every day of a corpus tree, at an ``s3://`` URL.

    Every listed object is read and hashed (an ETag is no content hash); objects the seal does
    not list are findings too.
    """
    head, sep, rest = url.rstrip("/").partition("/lake/corpus")
    if sep:
        return _verify_corpus_url(open_store(head), rest.strip("/"))
    store = open_store(url)
    report = VerifyReport(store.root)  # type: ignore[arg-type]
    manifest = read_seal(store, MANIFEST, store.root)
    _verify_files(report, sealed_files(store, "", manifest, store.root), manifest)
    listed = {f["path"] for f in manifest["files"]} | {MANIFEST}
    report.problems += [f"{k}: not listed in the seal" for k in store.list("") if k not in listed]
    return [report]


def _verify_files(report: VerifyReport, files: list[SealedFile], seal: dict) -> None:
    import pyarrow.parquet as pq

    from .manifest import FileEntry, content_sha256

    entries = [FileEntry(**f) for f in seal["files"]]
    for f, entry in zip(files, entries, strict=True):
        report.files += 1
        report.rows += entry.rows
        report.bytes += entry.bytes
        try:
            data = f.store.get(f.key)
        except FileNotFoundError:
            report.problems.append(f"{entry.path}: missing")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != entry.bytes:
            report.problems.append(f"{entry.path}: {len(data)} bytes, seal says {entry.bytes}")
        elif digest != entry.sha256:
            report.problems.append(f"{entry.path}: sha256 {digest[:12]}…, seal says {entry.sha256[:12]}…")
        else:
            try:
                rows = pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
            except Exception as exc:  # noqa: BLE001 - an unreadable footer is the finding
                report.problems.append(f"{entry.path}: unreadable Parquet ({exc})")
                continue
            if rows != entry.rows:
                report.problems.append(f"{entry.path}: {rows} rows, seal says {entry.rows}")
    if seal.get("content_sha256") != content_sha256(entries):
        report.problems.append("content_sha256 does not match its files")


def _day_of_key(key: str) -> str:
    """The day directory of a key below it.

    >>> _day_of_key("lake/corpus/ohlcv/chain=a/interval=1m/date=2024-01-01/mint_bucket=00/part-0000.parquet")
    'lake/corpus/ohlcv/chain=a/interval=1m/date=2024-01-01'
    """
    end = key.find("/", key.index("/date=") + 1)
    return key if end == -1 else key[:end]


def _verify_corpus_url(store: Store, rest: str) -> list[VerifyReport]:
    """Each day under ``lake/corpus/<rest>`` against its seal; days without one are findings."""
    levels = rest[len("ohlcv") :].strip("/") if rest.startswith("ohlcv") else ""
    tree = "/".join(p for p in (f"{layout.LAKE}/corpus/ohlcv", levels) if p)
    seals = "/".join(p for p in (f"{layout.LAKE}/corpus/_seals/ohlcv", levels) if p)
    days = {_day_of_key(k) for k in store.list(tree + "/") if "/date=" in k}
    sealed = {
        k[: -len(".json")].replace(seals, tree, 1): k for k in store.list(seals + "/") if k.endswith(".json")
    }
    reports = []
    for day in sorted(days | set(sealed)):
        report = VerifyReport(store.url(day))  # type: ignore[arg-type]
        reports.append(report)
        if day not in sealed:
            report.problems.append(f"{day.rsplit('/', 1)[-1]}: unsealed (no seal)")
            continue
        try:
            seal = read_seal(store, sealed[day], store.url(day))
        except RunError as exc:
            report.problems.append(str(exc))
            continue
        _verify_files(report, sealed_files(store, day, seal, store.url(day)), seal)
        listed = {f"{day}/{f['path']}" for f in seal["files"]}
        report.problems += [
            f"{k[len(day) + 1 :]}: not listed in the seal" for k in store.list(day + "/") if k not in listed
        ]
    if not reports:
        raise RunError(f"{store.url(tree)}: no corpus days there")
    return reports
