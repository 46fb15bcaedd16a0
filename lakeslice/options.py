"""Export options: one definition of each option, its default and its help line.

The CLI (flags, help text, ``--config`` through Typer's ``default_map``), the JSON Schema of
``--config`` and the Python API all read :class:`ExportOptions`; nothing else states a default.
Thresholds of strict coverage follow the window unless given: ``target_total`` defaults to the
window's slots and ``min_required_pre`` to its ``pre``.

>>> opts = ExportOptions(interval="1m", window="pre10_post20")
>>> spec = opts.resolve()
>>> spec.interval_text, spec.window.slots, spec.min_required_pre, spec.target_total
('1m', 31, 10, 31)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .spec import (
    InputError,
    Window,
    check_compression,
    format_interval,
    parse_interval,
    parse_window,
)

#: Compression codecs of the data files.
COMPRESSIONS = ("zstd", "snappy", "none")


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """Every option of a run export, with its default and help line (``metadata["help"]``)."""

    interval: str | int = _opt(None, "Candle interval: 1s, 15s, 1m, 5m, 1h, 1d, or seconds.")
    window: str = _opt(None, "Window preN_postM: N candles before the anchor, M after.")
    run_id: str | None = _opt(None, "Run id: letters, digits, - _ . [default: UTC time + suffix].")
    data_root: str = _opt("data", "Lake root: a directory or s3://bucket/prefix.")
    chain: str = _opt("solana", "Chain of the candles to read.")
    source: str | None = _opt(
        None,
        "Candle source: clickhouse://, chdb://, parquet:// or corpus:// URL [default: chdb://<data_root>/chdb].",
    )
    table: str = _opt("ohlcv_candles", "Source table (clickhouse://, chdb://).")
    source_shards: str | None = _opt(
        None,
        "Read each bucket range from its shard, e.g. 00-7f=URL,80-ff=URL"
        " (--source then names the table the lake records).",
    )
    compression: str = _opt("zstd", "Parquet compression: zstd, snappy or none.")
    target_file_mb: float = _opt(512.0, "Split a bucket into parts of about this many MiB.")
    strict_coverage: bool = _opt(False, "Keep only alerts with enough candles (see the two thresholds).")
    min_required_pre: int | None = _opt(
        None, "Strict: candles needed before the anchor [default: the window's pre]."
    )
    target_total: int | None = _opt(None, "Strict: candles needed in the window [default: its slots].")
    overwrite: bool = _opt(False, "Replace a sealed run of the same run_id.")
    executor: str = _opt(
        "local", "Where bucket groups run: local (threads here) or dask://HOST:PORT (a Dask scheduler)."
    )

    @classmethod
    def help(cls, name: str) -> str:
        """The help line of option ``name``.

        >>> ExportOptions.help("chain")
        'Chain of the candles to read.'
        """
        return str(_fields()[name].metadata["help"])

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of option ``name`` (None: derived or required).

        >>> ExportOptions.default("target_file_mb")
        512.0
        """
        return _fields()[name].default

    @classmethod
    def names(cls) -> frozenset[str]:
        """The option names: the keyword arguments of an export (and ``--config`` keys).

        >>> {"chain", "window", "overwrite"} <= ExportOptions.names()
        True
        """
        return frozenset(_fields())

    def replace(self, **changes: Any) -> ExportOptions:
        """A copy with ``changes`` applied (None leaves a field as it is)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def resolve(self) -> RunSpec:
        """Validate and derive: the :class:`RunSpec` of these options (InputError when bad)."""
        if self.interval in (None, ""):
            raise InputError("missing option --interval")
        if self.window in (None, ""):
            raise InputError("missing option --window")
        interval_s = parse_interval(self.interval)
        window = parse_window(self.window)
        if not self.chain:
            raise InputError("--chain: must not be empty")
        return RunSpec(
            interval_text=format_interval(interval_s),
            interval_s=interval_s,
            window=window,
            chain=self.chain,
            compression=check_compression(self.compression),
            target_bytes=_target_bytes(self.target_file_mb),
            strict=bool(self.strict_coverage),
            min_required_pre=_threshold("min-required-pre", self.min_required_pre, window.pre, window, "pre"),
            target_total=_threshold("target-total", self.target_total, window.slots, window, "slots"),
        )


@dataclass(frozen=True)
class RunSpec:
    """Validated, derived options of one run export: what the plan and the manifest use."""

    interval_text: str
    interval_s: int
    window: Window
    chain: str
    compression: str
    target_bytes: int
    strict: bool
    min_required_pre: int
    target_total: int


def _fields() -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(ExportOptions)}


def _target_bytes(target_file_mb: float) -> int:
    try:
        value = float(target_file_mb)
    except (TypeError, ValueError):
        raise InputError(f"--target-file-mb {target_file_mb!r}: expected a number of MiB") from None
    target = value * 1024 * 1024
    if not target >= 1024 or target == float("inf"):  # also refuses NaN
        raise InputError(f"--target-file-mb {target_file_mb!r}: must be at least 1 KiB (0.001) and finite")
    return int(target)


def _threshold(flag: str, value: int | None, default: int, window: Window, what: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"--{flag} {value!r}: expected a whole number")
    if value < 0:
        raise InputError(f"--{flag} {value}: must be >= 0")
    if value > default:
        raise InputError(
            f"--{flag} {value} is larger than the window {window.name} allows ({what} = {default})"
        )
    return value


__all__ = ["ExportOptions", "RunSpec", "COMPRESSIONS"]
