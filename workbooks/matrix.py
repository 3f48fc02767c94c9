"""The full status matrix (学号 × steps, the manual's marks) as .xlsx or .csv bytes."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import xlsxwriter

IDENTITY = ("学号", "姓名", "院系", "班级", "宿舍", "往届")


def matrix_csv(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> bytes:
    """CSV with a BOM so that Excel opens the Chinese text correctly; cells starting with = + - @ are quoted inert."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(headers)
    for row in rows:
        writer.writerow([_inert(v) for v in row])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def _inert(value: str) -> str:
    # A leading apostrophe keeps spreadsheet programs from running user text as a formula.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def matrix_xlsx(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str) -> bytes:
    """An .xlsx with a frozen header, filters, fitted widths; every cell written as text."""
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False,
                                         "strings_to_numbers": False})
    head = book.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True,
                            "valign": "top"})
    passed = book.add_format({"font_color": "#006100", "bg_color": "#C6EFCE"})
    failed = book.add_format({"font_color": "#9C0006", "bg_color": "#FFC7CE"})
    sheet = book.add_worksheet("离校状态")
    sheet.write_string(0, 0, title, book.add_format({"bold": True, "font_size": 14}))
    for col, name in enumerate(headers):
        sheet.write_string(1, col, name, head)
    for r, row in enumerate(rows, start=2):
        for c, value in enumerate(row):
            fmt = passed if value == "已通过" else failed if value == "未通过" else None
            sheet.write_string(r, c, value, fmt)
    for col, name in enumerate(headers):
        sheet.set_column(col, col, 12 if col < len(IDENTITY) else max(8, min(14, len(name) * 2)))
    sheet.freeze_panes(2, 2)
    sheet.autofilter(1, 0, max(1, len(rows) + 1), len(headers) - 1)
    sheet.set_landscape()
    sheet.set_paper(9)
    sheet.repeat_rows(1)
    sheet.fit_to_pages(1, 0)
    book.close()
    return buffer.getvalue()
