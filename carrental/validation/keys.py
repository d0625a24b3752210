"""Exact duplicate-key detection over a stream of batches, in bounded memory.

The `unique` rule: a key that already appeared on an earlier row is a duplicate (the first
occurrence is kept). Keys are buffered in memory up to `memory_budget` bytes, so small files
never touch the disk. Past the budget the buffer is hash-partitioned into `PARTITIONS` spill
files (Arrow IPC, LZ4-compressed: fast) in a temporary folder, so memory stays bounded whatever the
file size; at the end each partition is read back alone and checked exactly.

Rows are in file order (within a partition). A key whose 64-bit hash no other key has is
unique; that is most keys, and one sort of the hashes finds them. The few others are compared
with real string equality (a hash collision cannot merge two keys): `dictionary_encode` numbers
their distinct keys in order of first appearance, so a row holds a *new* key exactly when its
index is larger than every index before it, and duplicates fall out of one running maximum.

Disk use when spilling: about 20 % of the file for rentals (~400 MB for a 2 GB file, 22 M keys;
zstd would halve that for ~15 % more time). On Lambda that is /tmp (512 MB by default): size
EphemeralStorage for the largest file expected.
"""

from __future__ import annotations

import hashlib
import heapq
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from carrental.validation.arrays import (
    arrow_bools,
    arrow_numbers,
    bools,
    fixed_width_bytes,
    numbers,
)
from carrental.validation.verdict import MAX_EXAMPLES, Example, shorten

_PARTITION_BITS = 7
PARTITIONS = 1 << _PARTITION_BITS
DEFAULT_MEMORY_BUDGET = 32 * 1024 * 1024
_SCHEMA = pa.schema([("key", pa.string()), ("row", pa.int64()), ("flagged", pa.bool_())])
_DRAIN_CHUNK = 4 * 1024 * 1024  # bytes of buffered keys partitioned at a time
_HASH_CHUNK = 1 << 16  # keys hashed at a time: bounds the hash's temporary arrays
_LONG_KEY = 64  # longer keys are hashed on their first and last 32 bytes (and length)
# Fixed odd multipliers: the same key lands in the same partition in every batch and every run
# (from a fixed digest: numpy.random would add ~20 ms to a fresh process's imports).
_MULTIPLIERS = np.frombuffer(
    hashlib.blake2b(b"carrental.validation.keys", digest_size=_LONG_KEY).digest(), dtype="<u8"
) | np.uint64(1)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class DuplicateKeys:
    """Feed (key, row number, already-rejected flag) batches in file order; `finish()` returns
    the number of duplicate rows, how many of them break no other reject rule, and the first
    MAX_EXAMPLES duplicates as (row, key)."""

    def __init__(self, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> None:
        self.memory_budget = memory_budget
        self._buffer: list[pa.RecordBatch] = []
        self._buffered_bytes = 0
        self._spill_dir: tempfile.TemporaryDirectory | None = None
        self._writers: list[pa.ipc.RecordBatchStreamWriter] = []

    @property
    def spilled(self) -> bool:
        return self._spill_dir is not None

    def add(self, keys: pa.StringArray, rows: np.ndarray, flagged: np.ndarray) -> None:
        """`flagged`: the row already breaks another reject rule (so it is not counted twice)."""
        columns = [keys, arrow_numbers(rows, pa.int64()), arrow_bools(flagged)]
        batch = pa.RecordBatch.from_arrays(columns, schema=_SCHEMA)
        self._buffer.append(batch)
        self._buffered_bytes += batch.nbytes
        if self._buffered_bytes > self.memory_budget:
            self._spill()

    def finish(self) -> tuple[int, int, list[Example]]:
        try:
            if not self.spilled:
                buffered = pa.Table.from_batches(self._buffer, schema=_SCHEMA)
                self._buffer.clear()
                return _duplicates([buffered])
            self._spill()
            for writer in self._writers:
                writer.close()
            return _duplicates(
                pa.ipc.open_stream(path).read_all() for path in self._partition_paths()
            )
        finally:
            self.close()

    def close(self) -> None:
        self._buffer.clear()
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        if self._spill_dir is not None:
            self._spill_dir.cleanup()
            self._spill_dir = None

    def _partition_paths(self) -> list[Path]:
        assert self._spill_dir is not None
        return [Path(self._spill_dir.name) / f"keys-{p:03d}.arrow" for p in range(PARTITIONS)]

    def _spill(self) -> None:
        if self._spill_dir is None:
            self._spill_dir = tempfile.TemporaryDirectory(prefix="carrental-keys-")
            options = pa.ipc.IpcWriteOptions(compression="lz4")
            self._writers = [
                pa.ipc.new_stream(str(path), _SCHEMA, options=options)
                for path in self._partition_paths()
            ]
        self._drain(lambda p, piece: self._writers[p].write_table(piece))
        # Hand the freed buffers back to the OS: Arrow's allocator otherwise keeps them.
        pa.default_memory_pool().release_unused()

    def _drain(self, sink: Callable[[int, pa.Table], None]) -> None:
        """Move the buffer into sink(partition, rows in file order), a few MB at a time:
        partitioning all of it at once would double its memory."""
        while self._buffer:
            chunk, size = [], 0
            while self._buffer and size < _DRAIN_CHUNK:
                chunk.append(self._buffer.pop(0))
                size += chunk[-1].nbytes
            for p, piece in _take_partitions(chunk):
                sink(p, piece)
        self._buffered_bytes = 0


def _take_partitions(batches: list[pa.RecordBatch]) -> Iterator[tuple[int, pa.Table]]:
    table = pa.Table.from_batches(batches, schema=_SCHEMA).combine_chunks()
    if not table.num_rows:
        return
    partition = partition_of(table.column("key").chunk(0))
    order = np.argsort(partition, kind="stable")  # stable: rows stay in file order
    grouped = table.take(arrow_numbers(order, pa.int64()))
    bounds = np.concatenate([[0], np.cumsum(np.bincount(partition, minlength=PARTITIONS))])
    for p in range(PARTITIONS):
        if bounds[p + 1] > bounds[p]:
            yield p, grouped.slice(bounds[p], bounds[p + 1] - bounds[p])


def partition_of(keys: pa.StringArray) -> np.ndarray:
    """The partition of each (non-empty) key: the top bits of its hash (as small ints, which
    argsort sorts by radix)."""
    return (hashes(keys) >> np.uint64(64 - _PARTITION_BITS)).astype(np.uint8)


def hashes(keys: pa.StringArray) -> np.ndarray:
    """The 64-bit hash of each (non-empty) key, _HASH_CHUNK keys at a time."""
    out = np.empty(len(keys), dtype=np.uint64)
    for start in range(0, len(keys), _HASH_CHUNK):
        chunk = keys.slice(start, _HASH_CHUNK)
        out[start : start + len(chunk)] = _hash(chunk)
    return out


def _hash(keys: pa.StringArray) -> np.ndarray:
    """64-bit hashes of keys, computed on fixed-width byte matrices, one per key length
    (ids usually share one length, so this is one matrix and a few vector products)."""
    lengths = numbers(pc.binary_length(keys), np.int32)
    out = np.empty(len(keys), dtype=np.uint64)
    long = lengths > _LONG_KEY
    present = np.flatnonzero(np.bincount(lengths[~long]))  # the lengths there are
    if len(present) == 1 and not long.any():  # the usual case: one matrix, no copy
        return _hash_matrix(fixed_width_bytes(keys, present[0]), present[0])
    for length in present:
        where = np.flatnonzero(lengths == length)
        same = keys.take(arrow_numbers(where, pa.int64()))
        out[where] = _hash_matrix(fixed_width_bytes(same, length), length)
    if long.any():
        where = np.flatnonzero(long)
        raw = keys.take(arrow_numbers(where, pa.int64())).cast(pa.binary())
        half = _LONG_KEY // 2
        ends = [pc.binary_slice(raw, 0, half), pc.binary_slice(raw, -half)]
        matrix = np.hstack([fixed_width_bytes(end, half) for end in ends])
        out[where] = _hash_matrix(matrix, lengths[where])
    return out


def _hash_matrix(matrix: np.ndarray, lengths) -> np.ndarray:
    n, width = matrix.shape
    padded = np.zeros((n, -(-width // 8) * 8), dtype=np.uint8)
    padded[:, :width] = matrix
    words = padded.view("<u8")
    mixed = np.broadcast_to(np.asarray(lengths, dtype=np.uint64), (n,)) * _GOLDEN
    for j in range(words.shape[1]):
        mixed ^= words[:, j]
        mixed *= _MULTIPLIERS[j]
        mixed ^= mixed >> np.uint64(29)
    return mixed * _GOLDEN  # Fibonacci hashing: the top bits depend on every input bit


def _duplicates(partitions: Iterable[pa.Table]) -> tuple[int, int, list[Example]]:
    count = 0
    unflagged = 0
    examples: list[Example] = []
    for table in partitions:
        if not table.num_rows:
            continue
        table = table.combine_chunks()
        duplicate = _repeats(table.column("key").chunk(0))
        count += int(np.count_nonzero(duplicate))
        flagged = bools(table.column("flagged").chunk(0))
        unflagged += int(np.count_nonzero(duplicate & ~flagged))
        where = np.flatnonzero(duplicate)[:MAX_EXAMPLES]
        rows = numbers(table.column("row").chunk(0), np.int64)[where]
        keys = table.column("key").chunk(0).take(arrow_numbers(where, pa.int64())).to_pylist()
        examples = heapq.nsmallest(
            MAX_EXAMPLES,
            examples + [(int(r), shorten(k)) for r, k in zip(rows, keys, strict=True)],
        )
        del table
        pa.default_memory_pool().release_unused()
    return count, unflagged, examples


def _repeats(keys: pa.StringArray) -> np.ndarray:
    """Which keys repeat an earlier key, exactly (see the module docstring)."""
    key_hashes = hashes(keys)
    repeats = np.zeros(len(keys), dtype=bool)
    ordered = np.sort(key_hashes)
    if not (ordered[1:] == ordered[:-1]).any():
        return repeats
    order = np.argsort(key_hashes)  # slower than a sort: only when some hash is shared
    ordered = key_hashes[order]
    same = ordered[1:] == ordered[:-1]
    shared = np.zeros(len(keys), dtype=bool)
    shared[1:] |= same
    shared[:-1] |= same
    suspects = np.sort(order[shared])  # in file order
    index = pc.dictionary_encode(keys.take(arrow_numbers(suspects, pa.int64())))
    codes = numbers(index.indices, np.int32)
    seen_before = np.concatenate([[-1], np.maximum.accumulate(codes)[:-1]])
    repeats[suspects] = codes <= seen_before
    return repeats
