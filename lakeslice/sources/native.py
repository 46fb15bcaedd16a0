"""ClickHouse native-protocol blocks decoded straight into Arrow, without pandas.

clickhouse-driver's NumPy and Arrow result paths import pandas (``columns/numpy/base.py``),
which alone costs more start-up than a small export. A candle query returns a few column
types: integers, floats, decimals, strings (and maybe ``Nullable`` of those). Those are read here, one
``numpy.frombuffer`` (or one buffer of offsets and bytes) per column of a block; any other type
goes through the driver's own column reader, row by row, and is still exact.

The driver keeps the protocol (connection, compression, packets, exceptions, progress). Only
the reading of a query's data blocks changes: :func:`arrow_blocks` wraps the connection's block
stream, and while the connection's client settings carry :data:`ARROW` (set for one query; the
next query's settings drop it) every data block comes back as a ``pyarrow.RecordBatch``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from clickhouse_driver import defines
from clickhouse_driver.block import BlockInfo, ColumnOrientedBlock, RowOrientedBlock
from clickhouse_driver.protocol import ServerPacketTypes
from clickhouse_driver.reader import read_binary_str, read_binary_uint8
from clickhouse_driver.varint import read_varint

from lakeslice.sources.base import from_numpy

__all__ = ["ARROW", "arrow_blocks", "read_batch", "send_tables", "stream_batches"]

#: Client-settings key: this query's data blocks are read as Arrow record batches.
ARROW = "lakeslice_arrow"

_FIXED = {
    name: np.dtype(code)
    for name, code in {
        "Int8": "<i1",
        "Int16": "<i2",
        "Int32": "<i4",
        "Int64": "<i8",
        "UInt8": "<u1",
        "UInt16": "<u2",
        "UInt32": "<u4",
        "UInt64": "<u8",
        "Float32": "<f4",
        "Float64": "<f8",
    }.items()
}


_DECIMAL_RE = re.compile(r"Decimal\((\d+), *(\d+)\)")


class _ArrowBlockStream:
    """A connection's block input stream that reads data blocks into Arrow while asked to."""

    def __init__(self, inner: Any):
        self.inner = inner

    def read(self, use_numpy: bool | None = None) -> Any:
        # The driver passes use_numpy=None for a query's data blocks only (not for totals,
        # logs or profile events).
        context = self.inner.context
        if use_numpy is None and context.client_settings.get(ARROW):
            return read_batch(self.inner.fin, context)
        return self.inner.read(use_numpy=use_numpy)


def arrow_blocks(connection: Any) -> None:
    """Make ``connection`` (connected) read data blocks as Arrow while :data:`ARROW` is set."""
    if not isinstance(connection.block_in, _ArrowBlockStream):
        connection.block_in = _ArrowBlockStream(connection.block_in)
    connection.context.client_settings = {**connection.context.client_settings, ARROW: True}


def stream_batches(client: Any) -> Iterator[pa.RecordBatch]:
    """The record batches of the query just sent on ``client`` (see :func:`arrow_blocks`)."""
    for packet in client.packet_generator():
        if packet.type == ServerPacketTypes.DATA and packet.block.num_rows:
            yield packet.block


def send_tables(connection: Any, tables: Sequence[tuple[str, list[tuple[str, str]], dict[str, Any]]]) -> None:
    """Send external tables ``(name, structure, {column: numpy array})`` column by column."""
    for name, structure, columns in tables:
        data = [columns[column].tolist() for column, _ in structure]
        connection.send_data(ColumnOrientedBlock(structure, data), table_name=name)
    connection.send_data(RowOrientedBlock())  # an empty block ends the external tables


def read_batch(fin: Any, context: Any) -> pa.RecordBatch:
    """One native block from ``fin`` as a record batch (the block's column names and order)."""
    revision = context.server_info.used_revision
    if revision >= defines.DBMS_MIN_REVISION_WITH_BLOCK_INFO:
        BlockInfo().read(fin)
    n_columns, n_rows = read_varint(fin), read_varint(fin)
    names, arrays = [], []
    for _ in range(n_columns):
        names.append(read_binary_str(fin))
        spec = read_binary_str(fin)
        custom = False
        if revision >= defines.DBMS_MIN_REVISION_WITH_CUSTOM_SERIALIZATION:
            custom = bool(read_binary_uint8(fin))
        arrays.append(_read_column(fin, context, spec, n_rows, custom) if n_rows else pa.nulls(0))
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _read_column(fin: Any, context: Any, spec: str, n: int, custom: bool) -> pa.Array:
    if not custom and _decodable(spec):
        return _decode(fin, spec, n)
    # Any other type (or a sparse serialization): the driver's generic reader, exact but row-wise.
    from clickhouse_driver.columns.service import read_column

    return pa.array(read_column(context, spec, n, fin, use_numpy=False, has_custom_serialization=custom))


def _decodable(spec: str) -> bool:
    """
    >>> [_decodable(s) for s in ("Float64", "Nullable(String)", "Decimal(12, 2)", "Decimal(76, 2)", "Date")]
    [True, True, True, False, False]
    """
    inner = spec[len("Nullable(") : -1] if spec.startswith("Nullable(") else spec
    decimal = _decimal(inner)
    return inner in _FIXED or inner == "String" or (decimal is not None and decimal[0] <= 38)


def _decimal(spec: str) -> tuple[int, int] | None:
    """Precision and scale of ``Decimal(P, S)``.

    >>> _decimal("Decimal(12, 2)"), _decimal("Float64")
    ((12, 2), None)
    """
    m = _DECIMAL_RE.fullmatch(spec)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _decode(fin: Any, spec: str, n: int) -> pa.Array:
    """A column of ``n`` values: one buffer per column, no Python object per value."""
    if spec.startswith("Nullable("):
        nulls = np.frombuffer(fin.read(n), dtype=np.uint8, count=n)
        values = _decode(fin, spec[len("Nullable(") : -1], n)
        validity = pa.py_buffer(np.packbits(nulls == 0, bitorder="little"))
        return pa.Array.from_buffers(values.type, n, [validity, *values.buffers()[1:]])
    if spec == "String":
        offsets, data = fin.read_strings_arrow(n)
        binary = pa.Array.from_buffers(
            pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        )
        return binary.cast(pa.string())  # checks UTF-8
    decimal = _decimal(spec)
    if decimal is not None:
        return _decode_decimal(fin, n, *decimal)
    return from_numpy(np.frombuffer(fin.read(n * _FIXED[spec].itemsize), dtype=_FIXED[spec], count=n))


def _decode_decimal(fin: Any, n: int, precision: int, scale: int) -> pa.Array:
    """Decimal(P, S): Int32/Int64/Int128 by precision on the wire; Arrow's decimal128 is the
    16-byte little-endian two's complement of the same integer."""
    if precision > 18:
        words = np.frombuffer(fin.read(16 * n), dtype="<i8", count=2 * n)
    else:
        width = np.dtype("<i4") if precision <= 9 else np.dtype("<i8")
        low = np.frombuffer(fin.read(width.itemsize * n), dtype=width, count=n).astype(np.int64)
        words = np.empty(2 * n, dtype=np.int64)
        words[0::2], words[1::2] = low, low >> 63  # sign-extended to 128 bits
    return pa.Array.from_buffers(pa.decimal128(precision, scale), n, [None, pa.py_buffer(words)])
