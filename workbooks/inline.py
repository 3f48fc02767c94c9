"""Sheet rows written as XML directly (inline strings), for the sheets too long for XlsxWriter's ~10 µs a cell:
the report's status matrix and a receipt's listings. XlsxWriter writes the workbook with the sheet's header,
formats, widths and filter; ``splice_rows`` puts the rows into that sheet."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Sequence

from xlsxwriter.utility import xl_col_to_name

LEVEL = 1  # generated workbooks favour speed; level 6 is ≈ 3× slower for ≈ 25 % less

# What XML 1.0 cannot hold is removed: C0 controls but tab and line ends, lone surrogates, U+FFFE and U+FFFF
# (a receipt with one of them is not well-formed, and LibreOffice stops reading the sheet there).
_NOT_XML = [*(c for c in range(32) if c not in (9, 10, 13)), *range(0xD800, 0xE000), 0xFFFE, 0xFFFF]
_XML_ESCAPE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", **{chr(c): None for c in _NOT_XML}})
_UNSAFE = re.compile("[&<>\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SEPARATOR = "\x01"  # removed from values, so it can separate values escaped together


def escape_all(values: list[str]) -> list[str]:
    """Each value XML-escaped, characters XML cannot hold removed; one pass over the whole list."""
    joined = _SEPARATOR.join(values)
    if joined.count(_SEPARATOR) == len(values) - 1 and not _UNSAFE.search(joined.replace(_SEPARATOR, "")):
        return joined.split(_SEPARATOR) if values else []  # the usual case: nothing to escape
    return [v.translate(_XML_ESCAPE) for v in values]


def text_rows(rows: Sequence[Sequence[str]], first_row: int, style: int, chunk: int = 4096) -> bytes:
    """Rows of text cells (style index ``style``, whitespace kept) from sheet row ``first_row`` (one-based) on,
    as UTF-8 XML; an empty text is an empty cell. Built ``chunk`` rows at a time, so that the per-cell strings of
    only one chunk are alive at once."""
    if not rows:
        return b""
    width = max(len(row) for row in rows)
    mark = "\x00"  # stands for the row number until the row is finished
    openers = [f'<c r="{xl_col_to_name(index)}{mark}" s="{style}" t="inlineStr"><is><t xml:space="preserve">'
               for index in range(width)]
    pieces = []
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        columns = [[f"{openers[index]}{text}</t></is></c>" if text else ""
                    for text in escape_all([row[index] if index < len(row) else "" for row in part])]
                   for index in range(width)]
        numbers = range(first_row + start, first_row + start + len(part))
        pieces.append("".join(f'<row r="{mark}">{"".join(cells)}</row>'.replace(mark, str(number))
                              for number, cells in zip(numbers, zip(*columns, strict=True), strict=True))
                      .encode("utf-8"))
    return b"".join(pieces)


def splice_rows(book: bytes, parts: dict[str, tuple[bytes, str]]) -> bytes:
    """``book`` (written by XlsxWriter) with each sheet ``part`` given its rows (``text_rows`` XML) after the ones
    it has and its dimension set to the last cell (``parts``: part → (rows, last cell such as "F4508")); every
    part is recompressed at LEVEL by the standard zipfile."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(book)) as source, zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            content = source.read(info.filename)
            rows, last = parts.get(info.filename, (b"", ""))
            if rows:
                xml = re.sub(r'<dimension ref="[^"]*"/>', f'<dimension ref="A1:{last}"/>', content.decode("utf-8"),
                             count=1).replace("<sheetData/>", "<sheetData></sheetData>", 1)
                head, tail = xml.split("</sheetData>", 1)
                content = b"".join((head.encode("utf-8"), rows, f"</sheetData>{tail}".encode()))
            entry = zipfile.ZipInfo(info.filename, info.date_time)
            target.writestr(entry, content, compress_type=zipfile.ZIP_DEFLATED, compresslevel=LEVEL)
    return buffer.getvalue()
