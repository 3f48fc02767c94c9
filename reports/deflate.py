"""Deflate pieces of one zip part apart and join them: a part can be compressed by two processes.

A raw deflate stream may be cut after a sync flush (an empty stored block, byte-aligned, not the
last block) and continued by an independent compressor: the pieces concatenate into one valid
stream. Their CRC-32s combine without the data (zlib's crc32_combine, which Python's zlib does
not expose). ``write_zip`` then stores the already-compressed parts; Python's zipfile cannot.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

LEVEL = 1  # the reports favour speed; level 6 is ≈ 3× slower for ≈ 25 % less


@dataclass(frozen=True, slots=True)
class Piece:
    """Raw deflate data ending on a byte boundary, with the CRC-32 and length of what it holds."""

    data: bytes
    crc: int
    size: int

    def pack(self) -> bytes:
        """The piece as bytes (to pass it between processes)."""
        return struct.pack("<IQ", self.crc, self.size) + self.data

    @classmethod
    def unpack(cls, packed: bytes) -> Piece:
        """The piece ``pack`` wrote."""
        crc, size = struct.unpack_from("<IQ", packed)
        return cls(packed[12:], crc, size)


def deflate(chunks: Iterable[bytes], last: bool) -> Piece:
    """Compress ``chunks`` as one piece; ``last`` closes the stream, otherwise it ends with a sync flush."""
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    out, crc, size = [], 0, 0
    for chunk in chunks:
        out.append(compressor.compress(chunk))
        crc = zlib.crc32(chunk, crc)
        size += len(chunk)
    out.append(compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH))
    return Piece(b"".join(out), crc, size)


def join(pieces: list[Piece]) -> Piece:
    """One stream of the pieces in order (each but the last must end with a sync flush)."""
    crc = 0
    for piece in pieces:
        crc = crc32_combine(crc, piece.crc, piece.size)
    return Piece(b"".join(p.data for p in pieces), crc, sum(p.size for p in pieces))


def _times(matrix: list[int], vector: int) -> int:
    total, row = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


def _square(matrix: list[int]) -> list[int]:
    return [_times(matrix, matrix[n]) for n in range(32)]


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32 of A + B from crc32(A), crc32(B) and len(B) (zlib's algorithm: apply len(B) zero
    bytes to crc1 by squaring the one-zero-bit operator over GF(2), then add crc2)."""
    if length2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << n for n in range(31)]  # one zero bit
    even = _square(odd)  # two zero bits
    odd = _square(even)  # four zero bits
    while True:
        even = _square(odd)  # first pass: one zero byte
        if length2 & 1:
            crc1 = _times(even, crc1)
        length2 >>= 1
        if not length2:
            break
        odd = _square(even)
        if length2 & 1:
            crc1 = _times(odd, crc1)
        length2 >>= 1
        if not length2:
            break
    return crc1 ^ crc2


def write_zip(entries: Sequence[tuple[str, tuple[int, ...], Piece]]) -> bytes:
    """A zip archive of (name, date_time, deflated piece) entries, in order (no zip64: parts < 4 GiB)."""
    out = io.BytesIO()
    central = []
    for name, date_time, piece in entries:
        encoded = name.encode("utf-8")
        flags = 0 if encoded.isascii() else 0x800  # bit 11: the name is UTF-8
        year, month, day, hour, minute, second = date_time[:6]
        dos_time = hour << 11 | minute << 5 | second // 2
        dos_date = (year - 1980) << 9 | month << 5 | day
        offset = out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, 8, dos_time, dos_date, piece.crc,
                              len(piece.data), piece.size, len(encoded), 0))
        out.write(encoded)
        out.write(piece.data)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, flags, 8, dos_time, dos_date,
                                   piece.crc, len(piece.data), piece.size, len(encoded), 0, 0, 0, 0, 0, offset)
                       + encoded)
    directory = b"".join(central)
    start = out.tell()
    out.write(directory)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(directory), start, 0))
    return out.getvalue()
