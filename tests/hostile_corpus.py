"""The hostile and malformed corpus, built by code from an issued workbook (shared by tests and bench)."""

from __future__ import annotations

import io
import re
import struct
import zipfile
from collections.abc import Callable
from typing import Any

import pytest

from lixiao.workbooks.cells import column_name


def zip_with(members: dict[str, bytes]) -> bytes:
    """A zip file with the given members (deflated)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def with_member(data: bytes, name: str, content: bytes) -> bytes:
    """Rewrite a workbook zip with one member replaced or added."""
    source = zipfile.ZipFile(io.BytesIO(data))
    members = {i.filename: source.read(i.filename) for i in source.infolist()}
    members[name] = content
    return zip_with(members)


def encrypted_like() -> bytes:
    """An OLE compound file naming an EncryptionInfo stream, as Excel writes a password-protected workbook."""
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100 + "EncryptionInfo".encode("utf-16-le") + b"\0" * 400






def sheet_xml(data: bytes) -> bytes:
    """The 办理 sheet's XML of an issued workbook."""
    return zipfile.ZipFile(io.BytesIO(data)).read("xl/worksheets/sheet1.xml")


def with_sheet(data: bytes, transform: Callable[[bytes], bytes]) -> bytes:
    """The workbook with its 办理 sheet XML transformed."""
    return with_member(data, "xl/worksheets/sheet1.xml", transform(sheet_xml(data)))


def overlapping(data: bytes) -> bytes:
    """Point the second central-directory entry at the first entry's local header."""
    raw = bytearray(data)
    first = raw.find(b"PK\x01\x02")
    second = raw.find(b"PK\x01\x02", first + 4)
    struct.pack_into("<I", raw, second + 42, struct.unpack_from("<I", raw, first + 42)[0])
    return bytes(raw)


def dtd(body: bytes) -> Callable[[bytes], bytes]:
    """A sharedStrings part carrying a DTD (entity expansion or external entity)."""
    return lambda wb: with_member(wb, "xl/sharedStrings.xml", b'<?xml version="1.0"?>' + body)


def far_value_among_formatting(xml: bytes) -> bytes:
    """Row 1 formatted to the sheet's edge as WPS writes it (styled empty cells to XFD1, the dimension covering
    them), but XFD1 holds a value: only the check for far content can refuse it."""
    end = xml.index(b"</row>")
    styled = b"".join(b'<c r="%s1" s="1"/>' % column_name(c).encode() for c in range(1, 16_383))
    xml = xml[:end] + styled + b'<c r="XFD1" s="1"><v>1</v></c>' + xml[end:]
    return re.sub(rb'<dimension ref="A1:[A-Z]+([0-9]+)"', rb'<dimension ref="A1:XFD\1"', xml, count=1)


BILLION_LAUGHS = (b'<!DOCTYPE lolz [<!ENTITY lol "lol">' + b"".join(
    b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10 if i > 1 else b"&lol;" * 10) for i in range(1, 10))
    + b']><sst><si><t>&lol9;</t></si></sst>')
QUADRATIC = b'<!DOCTYPE q [<!ENTITY a "' + b"a" * 50_000 + b'">]><sst><si><t>' + b"&a;" * 20_000 + b"</t></si></sst>"
XXE_FILE = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><sst><si><t>&e;</t></si></sst>'
XXE_HTTP = b'<!DOCTYPE x [<!ENTITY e SYSTEM "http://127.0.0.1:9/x">]><sst><si><t>&e;</t></si></sst>'

CORPUS: list[Any] = [
    ("billion laughs", dtd(BILLION_LAUGHS), "xml_dtd"),
    ("quadratic blow-up", dtd(QUADRATIC), "xml_dtd"),
    ("XXE file", dtd(XXE_FILE), "xml_dtd"),
    ("XXE http", dtd(XXE_HTTP), "xml_dtd"),
    ("deflate bomb", lambda wb: with_member(wb, "xl/bomb.xml", b"<a>" + b"0" * 60_000_000 + b"</a>"), "zip_bomb"),
    ("50 MB string", lambda wb: with_member(wb, "xl/sharedStrings.xml", b"<sst><si><t>" + b"x" * 50_000_000
                                            + b"</t></si></sst>"), "zip_bomb"),
    ("overlapping entries", overlapping, "overlapping_entries"),
    pytest.param("100k zip members", lambda wb: zip_with({f"x{i}": b"" for i in range(100_000)}),
                 "too_many_entries", marks=pytest.mark.slow),
    ("cell at XFD1048576", lambda wb: with_sheet(wb, lambda x: x.replace(
        b"</sheetData>", b'<row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData>')), "far_cell"),
    ("lying dimension", lambda wb: with_sheet(wb, lambda x: x.replace(
        b'<dimension ref="', b'<dimension ref="A1:XFD1048576" x="', 1)), "lying_dimension"),
    ("a million rows", lambda wb: with_sheet(wb, lambda x: x.replace(b"</sheetData>", b"".join(
        b'<row r="%d"/>' % r for r in range(1000, 1_000_001, 997)) + b"</sheetData>")), "far_cell"),
    ("value at XFD1 among styled empty cells", lambda wb: with_sheet(wb, far_value_among_formatting), "far_cell"),
    ("encrypted workbook", lambda wb: encrypted_like(), "encrypted"),
    (".xls renamed", lambda wb: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "xls"),
    ("CSV renamed", lambda wb: "学号,清理电费\n0803010103,TRUE\n".encode(), "csv"),
    ("HTML renamed", lambda wb: b"<html><body><table><tr><td>x</td></tr></table></body></html>", "html"),
    ("truncated", lambda wb: wb[: len(wb) // 2], "truncated"),
    ("empty", lambda wb: b"", "empty"),
    ("macros", lambda wb: with_member(wb, "xl/vbaProject.bin", b"macro"), "macros"),
    ("not a workbook zip", lambda wb: zip_with({"hello.txt": b"hi"}), "not_xlsx"),
]


def cases() -> list[tuple[str, Callable[[bytes], bytes], str]]:
    """(name, builder, expected code) of every case, slow marks removed."""
    return [tuple(c.values) if hasattr(c, "values") else c for c in CORPUS]  # type: ignore[misc]
