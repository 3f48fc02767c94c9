"""Pieces of one zip part deflated apart, joined, and written as a zip any reader accepts."""

from __future__ import annotations

import io
import os
import random
import zipfile
import zlib

import pytest

from lixiao.reports.deflate import Piece, crc32_combine, deflate, join, write_zip


@pytest.mark.parametrize("sizes", [(0, 0), (1, 0), (0, 1), (1, 1), (7, 1000), (4096, 3), (100_000, 65_537)])
def test_crc32_combine_equals_the_crc_of_the_whole(sizes: tuple[int, int]) -> None:
    rng = random.Random(sum(sizes))
    a, b = rng.randbytes(sizes[0]), rng.randbytes(sizes[1])
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_joined_pieces_inflate_to_the_whole_and_the_zip_reads_back() -> None:
    rng = random.Random(3)
    head = b"<worksheet><sheetData>"
    middle = [f"<row r='{n}'>已通过</row>".encode() * 3 for n in range(5000)] + [os.urandom(3000)]
    tail = b"</sheetData></worksheet>"
    piece = join([deflate([head], last=False), deflate(middle, last=False), deflate([tail], last=True)])
    whole = head + b"".join(middle) + tail
    assert zlib.decompress(piece.data, -15) == whole
    assert (piece.crc, piece.size) == (zlib.crc32(whole), len(whole))
    assert Piece.unpack(piece.pack()) == piece
    small = rng.randbytes(10)
    archive = write_zip([("xl/worksheets/sheet1.xml", (2026, 6, 30, 17, 59, 58), piece),
                         ("[Content_Types].xml", (1980, 1, 1, 0, 0, 0), deflate([small], last=True)),
                         ("说明.txt", (2026, 1, 2, 3, 4, 5), deflate([], last=True))])
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        assert z.testzip() is None
        assert z.namelist() == ["xl/worksheets/sheet1.xml", "[Content_Types].xml", "说明.txt"]
        assert z.read("xl/worksheets/sheet1.xml") == whole and z.read("[Content_Types].xml") == small
        assert z.read("说明.txt") == b""
        assert z.getinfo("xl/worksheets/sheet1.xml").date_time == (2026, 6, 30, 17, 59, 58)
