"""The receipt (回执) of one processed file: what was applied, refused and why, conflicts and warnings."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import xlsxwriter
from xlsxwriter.utility import xl_col_to_name

from .inline import splice_rows, text_rows
from .layout import text_width

SHEETS = {
    "applied": ("已记录", ("学号", "姓名", "离校步骤", "原状态", "新状态", "说明")),
    "refused": ("被拒绝", ("学号", "姓名", "离校步骤", "交回内容", "原因")),
    "conflicts": ("冲突待核对", ("学号", "姓名", "离校步骤", "签发时", "交回", "当前")),
    "warnings": ("提示", ("提示",)),
}


def build_receipt(summary: Sequence[tuple[str, str]], sections: Mapping[str, Sequence[Sequence[str]]]) -> bytes:
    """An .xlsx receipt: a 概要 sheet of (label, value) pairs, then one sheet per non-empty section. XlsxWriter
    writes the headers, widths, panes and filters; the listings (thousands of rows for a whole class's return)
    are spliced in as inline strings."""
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False,
                                         "strings_to_numbers": False})
    head = book.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1})
    title = book.add_format({"bold": True, "font_size": 14})
    wrap = book.add_format({"text_wrap": True, "valign": "top"})
    overview = book.add_worksheet("概要")
    overview.write_string(0, 0, "离校工作簿回执", title)
    for r, (label, value) in enumerate(summary, start=2):
        overview.write_string(r, 0, label, head)
        overview.write_string(r, 1, value, wrap)
    overview.set_column(0, 0, 16)
    overview.set_column(1, 1, 90)
    listings: list[tuple[str, Sequence[Sequence[str]], int]] = []
    for key, (name, headers) in SHEETS.items():
        rows = sections.get(key, [])
        if not rows:
            continue
        sheet = book.add_worksheet(name)
        for c, h in enumerate(headers):
            sheet.write_string(0, c, h, head)
            column = [row[c] for row in rows if c < len(row)]
            sheet.set_column(c, c, max(text_width(h) + 2, min(80, max(map(text_width, column), default=0) + 2)))
        sheet.freeze_panes(1, 0)
        sheet.autofilter(0, 0, len(rows), len(headers) - 1)
        listings.append((f"xl/worksheets/sheet{len(book.worksheets())}.xml", rows, len(headers)))
    book.close()
    style = wrap.xf_index  # set by close(): the 概要 values use the same format
    spliced = {part: (text_rows(rows, 2, style), f"{xl_col_to_name(width - 1)}{len(rows) + 1}")
               for part, rows, width in listings}
    return splice_rows(buffer.getvalue(), spliced)
