"""NumPy <-> Arrow through buffers: no copies, and no pandas.

pyarrow imports pandas, when it is installed (the AWS SDK for pandas layer has it), on its first
conversion of a NumPy array or a Python object (`pa.array`, `pa.scalar`, a Python scalar given
to a compute function, `Array.to_numpy`): about 0.2 s of a fresh process that validation
otherwise never needs. The validator converts with these helpers instead.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa


def bools(array: pa.BooleanArray) -> np.ndarray:
    """A boolean array without nulls (a compute kernel's answer on text) as NumPy bools."""
    if array.null_count:
        raise ValueError("a boolean array with nulls has no NumPy bool equivalent")
    if not len(array):
        return np.zeros(0, dtype=bool)
    bits = np.frombuffer(array.buffers()[1], dtype=np.uint8)
    end = array.offset + len(array)
    return np.unpackbits(bits, count=end, bitorder="little")[array.offset :].view(bool)


def numbers(array: pa.Array, dtype: type[np.generic]) -> np.ndarray:
    """A fixed-width array's values as a read-only NumPy view (undefined where null)."""
    data = np.frombuffer(array.buffers()[1], dtype=dtype)
    return data[array.offset : array.offset + len(array)]


def _bitmap(mask: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(mask, bitorder="little"))


def arrow_bools(mask: np.ndarray) -> pa.BooleanArray:
    return pa.Array.from_buffers(pa.bool_(), len(mask), [None, _bitmap(mask)])


def arrow_numbers(
    values: np.ndarray, type: pa.DataType, valid: np.ndarray | None = None
) -> pa.Array:
    """`values` (their dtype must be `type`'s) as an Arrow array, null where not `valid`."""
    values = np.ascontiguousarray(values)
    if values.dtype.itemsize * 8 != type.bit_width:
        raise TypeError(f"{values.dtype} values are not {type} values")
    bitmap = None if valid is None else _bitmap(valid)
    return pa.Array.from_buffers(type, len(values), [bitmap, pa.py_buffer(values)])


def null_where_not(values: pa.StringArray, keep: np.ndarray) -> pa.StringArray:
    """`values` with the entries where `keep` is False made null (kernels skip them: a cast
    does not parse them)."""
    if values.null_count:
        raise ValueError("the text already holds nulls")
    if values.offset:  # the bitmap counts from the buffers' start
        keep = np.concatenate([np.zeros(values.offset, dtype=bool), keep])
    return pa.Array.from_buffers(
        values.type, len(values), [_bitmap(keep), *values.buffers()[1:]], offset=values.offset
    )


def arrow_strings(texts: Iterable[str]) -> pa.StringArray:
    encoded = [text.encode() for text in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return pa.StringArray.from_buffers(
        len(encoded), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))
    )


def fixed_width_strings(matrix: np.ndarray) -> pa.StringArray:
    """The rows of an (n, width) uint8 matrix of UTF-8 text as a string array."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(matrix))
    )


def byte_lengths(values: pa.StringArray | pa.BinaryArray) -> np.ndarray:
    """Each value's length in bytes, straight from the offsets buffer."""
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)
    return np.diff(offsets[values.offset : values.offset + len(values) + 1])


def fixed_width_bytes(values: pa.StringArray | pa.BinaryArray, width: int) -> np.ndarray:
    """The bytes of values that all have `width` bytes, as an (n, width) uint8 view."""
    n = len(values)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset : values.offset + 1]
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)
    return data[offsets[0] : offsets[0] + n * width].reshape(n, width)
