"""Formatting is not an attack: a dimension, styled empty cells or an empty row reaching row 1,048,576 or column
XFD is read; a far cell that holds anything (a value, a formula, inline text) is still refused."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import openpyxl
import pytest

from lixiao.workbooks.reader import _sheet_paths
from lixiao.workbooks.sniff import MAX_FAR_EMPTY, check_parts, column_number

from .conftest import Cli, drop, outbox, statuses, sync

HEAD = b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
LO_LAST_ROW = (b'<row r="1048576" customFormat="false" ht="12.8" hidden="false" customHeight="false" outlineLevel="0"'
               b' collapsed="false"></row>')  # as LibreOffice 7.4 writes it after a row is deleted


def letters(column: int) -> str:
    """The letters of a one-based column number (1 → A, 16384 → XFD)."""
    name = ""
    while column:
        column, rest = divmod(column - 1, 26)
        name = chr(65 + rest) + name
    return name


def styled_empties(first: int, last: int, row: int = 1) -> bytes:
    """Styled empty cells <c r="…" s="N"/> from column ``first`` to ``last`` of one row, as WPS writes a row
    formatted to the sheet's edge."""
    return b"".join(b'<c r="%s%d" s="3"/>' % (letters(c).encode(), row) for c in range(first, last + 1))


def sheet(dimension: bytes, first_row: bytes = b"", tail: bytes = b"") -> bytes:
    """A 20 × 12 sheet with values, its row 1 extended by ``first_row`` and ``tail`` after the last row."""
    rows = [b'<row r="%d">' % r + b"".join(b'<c r="%s%d"><v>%d</v></c>' % (letters(c).encode(), r, c)
                                          for c in range(1, 13)) + (first_row if r == 1 else b"") + b"</row>"
            for r in range(1, 21)]
    return HEAD + b'<dimension ref="%s"/><sheetData>' % dimension + b"".join(rows) + tail + b"</sheetData></worksheet>"


def verdict_of(xml: bytes, chunk: int = 1 << 20) -> tuple[str, str]:
    """check_parts on a zip holding this worksheet part: (code, message)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", xml)
    verdict = check_parts(zipfile.ZipFile(io.BytesIO(buffer.getvalue())), chunk)
    return verdict.code, verdict.message


SHAPES = [
    ("LibreOffice row deleted", sheet(b"A1:L1048576", tail=LO_LAST_ROW), "ok"),
    ("WPS row 1 to XFD", sheet(b"A1:XFD2", styled_empties(13, 16_384)), "ok"),
    ("empty last row with spans", sheet(b"A1:L1048576", tail=b'<row r="1048576" spans="1:12"/>'), "ok"),
    ("styled empty cell at XFD1048576", sheet(b"A1:XFD1048576", tail=b'<row r="1048576" s="2" customFormat="1">'
                                              b'<c r="XFD1048576" s="3"/></row>'), "ok"),
    ("value at XFD1 among styled empties",
     sheet(b"A1:XFD2", styled_empties(13, 16_383) + b'<c r="XFD1" s="3"><v>1</v></c>'), "far_cell"),
    ("empty inline string at XFD1048576 (calamine aborts)",
     sheet(b"A1:XFD1048576", tail=b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t></t></is></c></row>'),
     "far_cell"),
    ("formula at L1048576", sheet(b"A1:L1048576", tail=b'<row r="1048576"><c r="L1048576"><f>1+1</f></c></row>'),
     "far_cell"),
    ("cell without r in the empty last row", sheet(b"A1:L1048576", tail=b'<row r="1048576"><c><v>1</v></c></row>'),
     "far_cell"),
    ("cell without r after a styled XFD1", sheet(b"A1:XFD2", styled_empties(13, 16_384) + b"<c><v>1</v></c>"),
     "far_cell"),
    ("row without r after the empty last row", sheet(b"A1:L1048576", tail=LO_LAST_ROW + b"<row><c><v>1</v></c></row>"),
     "far_cell"),
    ("empty last row outside the dimension", sheet(b"A1:L20", tail=LO_LAST_ROW), "far_cell"),
    ("dimension to the last row, no row there", sheet(b"A1:L1048576"), "lying_dimension"),
    ("dimension to XFD, no cell there", sheet(b"A1:XFD20"), "lying_dimension"),
]


@pytest.mark.parametrize("chunk", [97, 4099, 1 << 20])
@pytest.mark.parametrize(("name", "xml", "code"), SHAPES, ids=[s[0] for s in SHAPES])
def test_far_formatting_is_read_and_far_content_refused_at_any_window_size(name: str, xml: bytes, code: str,
                                                                          chunk: int) -> None:
    """Each shape gets the same verdict however the stream is cut into windows; no verdict says 恶意."""
    found, message = verdict_of(xml, chunk)
    assert found == code, message
    assert "恶意" not in message


def test_too_many_far_styled_cells_are_refused_with_what_to_do() -> None:
    """More far cells holding only formatting than MAX_FAR_EMPTY (16 rows styled to XFD) costs too much to scan:
    refused, and the message says to delete the extra rows and columns."""
    rows = MAX_FAR_EMPTY // (16_384 - 702) + 1
    extra = b"".join(b'<row r="%d">' % r + styled_empties(1, 16_384, r) + b"</row>" for r in range(21, 21 + rows))
    code, message = verdict_of(sheet(b"A1:XFD%d" % (20 + rows), tail=extra))
    assert code == "far_cell" and "删除后重新保存" in message and "恶意" not in message
    fewer = b"".join(b'<row r="%d">' % r + styled_empties(1, 16_384, r) + b"</row>" for r in range(21, 23))
    assert verdict_of(sheet(b"A1:XFD22", tail=fewer))[0] == "ok"


def wps_save(data: bytes, main_sheet: str = "办理") -> bytes:
    """The workbook as WPS for Mac 5.1 saves it (FIELD-NOTES "WPS Spreadsheets"): the KSOProductBuildVer custom
    property, directory entries in the zip, row 1 holding 16,384 cells — its own plus styled empty ones to XFD1 —
    and dimension A1:XFD2; shared strings and t="b" booleans as they are."""
    source = zipfile.ZipFile(io.BytesIO(data))
    part = _sheet_paths(source)[main_sheet][0]
    members = {info.filename: source.read(info.filename) for info in source.infolist()}
    custom = members["docProps/custom.xml"]
    pid = max(int(p) for p in re.findall(rb'pid="(\d+)"', custom)) + 1
    members["docProps/custom.xml"] = custom.replace(b"</Properties>", b'<property fmtid="{D5CDD505-2E9C-101B-9397-'
                                                    b'08002B2CF9AE}" pid="%d" name="KSOProductBuildVer"><vt:lpwstr>'
                                                    b"2052-5.1.0.7646</vt:lpwstr></property></Properties>" % pid)
    xml = re.sub(rb'<dimension ref="[^"]*"/>', b'<dimension ref="A1:XFD2"/>', members[part])
    row1 = re.search(rb'<row r="1"[^>]*>(.*?)</row>', xml)
    assert row1 is not None
    own = {column_number(re.match(rb'<c r="([A-Z]+)', cell).group(1)): cell  # type: ignore[union-attr]
           for cell in re.findall(rb'<c r="[A-Z]+1"(?:[^>]*/>|[^>]*>.*?</c>)', row1.group(1))}
    cells = b"".join(own.get(c) or styled_empties(c, c) for c in range(1, 16_385))
    xml = xml[:row1.start(1)] + cells + xml[row1.end(1):]
    members[part] = re.sub(rb'(<row r="1"[^>]*?) spans="[^"]*"', rb'\1 spans="1:16384"', xml, count=1)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder in ("_rels/", "docProps/", "xl/"):  # WPS stores the folders as entries of their own
            archive.writestr(zipfile.ZipInfo(folder), b"")
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def ticked(path: Path, student_nos: list[str], column: str = "清理电费") -> bytes:
    """The issued workbook with two checkbox cells turned from FALSE to TRUE in its XML (t="b", 0 → 1), as a
    program that keeps booleans t="b" writes a tick."""
    header, rows = _students(path)
    col = header.index(column) + 1
    data = path.read_bytes()
    source = zipfile.ZipFile(io.BytesIO(data))
    part = _sheet_paths(source)["办理"][0]
    members = {info.filename: source.read(info.filename) for info in source.infolist()}
    for no in student_nos:
        ref = b"%s%d" % (letters(col).encode(), rows[no])
        members[part], count = re.subn(rb'(<c r="' + ref + rb'"[^>]*t="b"[^>]*><v>)0(</v>)', rb"\g<1>1\2",
                                       members[part])
        assert count == 1, ref
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_a_wps_save_with_a_header_row_formatted_to_the_edge_is_read_and_merged(issued: Cli) -> None:
    """A return shaped like a real WPS save (KSOProductBuildVer, folder entries, 16,384 cells in row 1, dimension
    A1:XFD2, shared strings, t="b" 1/0) with two ticks merges, and the two ticks land on their students."""
    path = outbox(issued, "utilities")[0]
    chosen = ["0803010103", sorted(_students(path)[1])[-1]]
    data = wps_save(ticked(path, chosen))
    archive = zipfile.ZipFile(io.BytesIO(data))
    xml = archive.read(_sheet_paths(archive)["办理"][0])
    assert {"xl/", "docProps/", "_rels/"} <= set(archive.namelist()) and b"KSOProductBuildVer" in archive.read(
        "docProps/custom.xml")
    row1 = re.search(rb'<row r="1"[^>]*>(.*?)</row>', xml)
    assert row1 is not None and row1.group(1).count(b"<c ") == 16_384 and b'<c r="XFD1" s="3"/>' in row1.group(1)
    assert b'<dimension ref="A1:XFD2"/>' in xml and b't="s"' in xml and b"inlineStr" not in xml
    assert len(re.findall(rb't="b"[^>]*><v>1</v>', xml)) >= 2 and re.search(rb't="b"[^>]*><v>0</v>', xml)
    drop(issued, "wps.xlsx", data)
    [item] = sync(issued)["files"]
    assert (item["outcome"], item["applied"], item["refused"]) == ("merged", 2, 0), item
    assert {no for (no, step), (status, _v) in statuses(issued).items()
            if step == "electricity" and status == "passed"} == set(chosen)


def _students(path: Path) -> tuple[list[object], dict[str, int]]:
    """The 办理 sheet's header row and each 学号's row number (one-based)."""
    ws = openpyxl.load_workbook(path, read_only=True)["办理"]
    grid = [[c.value for c in r] for r in ws.iter_rows()]
    header = next(i for i, r in enumerate(grid) if r and r[0] == "学号")
    return grid[header], {str(r[0]): i + 1 for i, r in enumerate(grid) if i > header and r and r[0]}


def test_a_stray_note_far_out_is_refused_naming_the_sheet_as_staff_see_it(issued: Cli) -> None:
    """A note typed far to the right of 办理 (column AAA) and a far value in a sheet the clerk added: the file is
    refused with the sheet's own title and what to do, never an internal part name like xl/worksheets/…"""
    for sheet_title, cell in (("办理", (5, 703)), ("草稿", (250_000, 1))):
        book = openpyxl.load_workbook(outbox(issued, "utilities")[0])
        ws = book[sheet_title] if sheet_title in book.sheetnames else book.create_sheet(sheet_title)
        ws.cell(*cell).value = "备忘"
        buffer = io.BytesIO()
        book.save(buffer)
        drop(issued, f"{sheet_title}.xlsx", buffer.getvalue())
    outcomes = {f["file"]: f for f in sync(issued)["files"]}
    for sheet_title in ("办理", "草稿"):
        [reason] = outcomes[f"{sheet_title}.xlsx"]["reasons"]
        assert f"工作表“{sheet_title}”" in reason and "请删除" in reason and "xl/worksheets" not in reason
