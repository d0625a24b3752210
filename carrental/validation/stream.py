"""The byte stream a CSV is validated from, read once.

`CheckedStream` counts, hashes and checks the bytes as they pass (UTF-8, NUL bytes) and lets the
reader peek at the file's start; `sniff` tells compressed, binary and UTF-16 content from text by
its first bytes.
"""

from __future__ import annotations

import codecs
import collections
import hashlib
import threading
from typing import BinaryIO

from carrental.validation.verdict import Problem

SNIFF_BYTES = 64 * 1024

_MAGIC = (
    (b"\x1f\x8b", "gzip-compressed"),
    (b"PK\x03\x04", "a zip archive"),
    (b"BZh", "bzip2-compressed"),
    (b"\xfd7zXZ\x00", "xz-compressed"),
    (b"(\xb5/\xfd", "zstd-compressed"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"PAR1", "a Parquet file"),
    (b"\xff\xfe", "UTF-16 text (little-endian BOM), not UTF-8"),
    (b"\xfe\xff", "UTF-16 text (big-endian BOM), not UTF-8"),
)
UTF8_BOM = b"\xef\xbb\xbf"
# C0 control bytes that text never holds (tab, line feed and carriage return aside)
_BINARY_CONTROLS = bytes([*range(0, 9), 11, 12, *range(14, 32)])


class CheckedStream:
    """A read-only stream over `raw` that can peek at its start, counts the bytes read and
    checks that they are UTF-8 and free of NUL bytes as they pass (an ASCII check, or else an
    incremental decode, and two memchr per read: cheaper than checking every column of every
    batch). `read(n)` fills up to n bytes (S3 bodies return short reads).
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._pending = b""
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._digest = hashlib.sha256()
        # Bytes read but not hashed yet: pyarrow's readahead thread reads, the caller's thread
        # hashes (hashlib lets go of the GIL, which must not happen in a thread that may still
        # run while the interpreter shuts down after an early stop).
        self._unhashed: collections.deque[bytes] = collections.deque()
        self.bytes_read = 0
        self.first_non_utf8_byte: int | None = None  # offset in the file
        self.first_nul_byte: int | None = None  # offset in the file
        # Whether a quote was read: only a quoted value can hold a line break.
        self.quoted = False
        self.closed = False
        self.end_served = threading.Event()  # a read after close() was answered

    def _pull(self, n: int) -> bytes:
        data = self._raw.read(n)
        if self.first_nul_byte is None and (nul := data.find(b"\x00")) >= 0:
            self.first_nul_byte = self.bytes_read + nul
        self.quoted = self.quoted or b'"' in data
        # ASCII is UTF-8, and far cheaper to check than decoding (unless a character that
        # started in the previous read is still incomplete)
        ascii = data.isascii() and not self._utf8.getstate()[0]
        if self.first_non_utf8_byte is None and not ascii:
            try:
                self._utf8.decode(data, final=not data or n < 0)
            except UnicodeDecodeError as exc:
                self.first_non_utf8_byte = self.bytes_read + exc.start
        self.bytes_read += len(data)
        self._unhashed.append(data)
        return data

    def hash_pending(self) -> None:
        """Hash what was read so far (in the caller's thread)."""
        while self._unhashed:
            self._digest.update(self._unhashed.popleft())

    @property
    def sha256(self) -> str:
        self.hash_pending()
        return self._digest.hexdigest()

    def peek(self, n: int) -> bytes:
        while len(self._pending) < n:
            data = self._pull(n - len(self._pending))
            if not data:
                break
            self._pending += data
        return self._pending[:n]

    def read(self, n: int = -1) -> bytes:
        if self.closed:  # see carrental.validation.rows.RowChecker.read
            self.end_served.set()
            return b""
        if n is None or n < 0:
            data, self._pending = self._pending + self._pull(-1), b""
            return data
        chunks = [self._pending[:n]] if self._pending else []
        self._pending = self._pending[n:]
        missing = n - sum(map(len, chunks))
        while missing > 0:
            data = self._pull(missing)
            if not data:
                break
            chunks.append(data)
            missing -= len(data)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one read: no copy

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def sniff(start: bytes) -> Problem | None:
    for magic, what in _MAGIC:
        if start.startswith(magic):
            return Problem(
                "not_csv_text" if "UTF-16" not in what else "not_utf8",
                f"the file is {what}: upload plain UTF-8 CSV text",
            )
    nul = start.find(b"\x00")
    header_end = start.find(b"\n")
    controls = sum(start.count(bytes([c])) for c in _BINARY_CONTROLS)
    # A stray NUL in a text file is reported with its row and column (carrental.validation.rows); a file
    # that starts with binary content is reported as such.
    if nul >= 0 and (header_end < 0 or nul < header_end or controls > len(start) / 100):
        if start[1:64:2].count(0) > 24 or start[0:64:2].count(0) > 24:
            return Problem(
                "not_utf8",
                "the file looks like UTF-16 text without a byte order mark (every other byte "
                "is NUL): save it as UTF-8",
            )
        return Problem(
            "not_csv_text", f"the file is binary, not CSV text (a NUL byte at offset {nul:,})"
        )
    return None
