"""The office directory template (离校点通讯录): one row per office, to fill in with addresses or share paths."""

from __future__ import annotations

import io
from collections.abc import Sequence

import xlsxwriter

from lixiao.core.offices import DIRECTORY_HEADERS

NOTES = (
    "每行一个离校点：“离校点”一列是工作簿上的名称，不要改动。",
    "电子邮箱：接收工作簿的邮箱，多个用分号（;）隔开；交回时用这些邮箱回复，系统就能认出是哪个离校点。",
    "共享文件夹：该离校点的共享文件夹路径（如 /mnt/离校共享/宿管中心）；相对路径相对于 lixiao.toml 的 "
    "[delivery] share_root。两列都空的离校点不投递，工作簿仍在 outbox/ 中。",
    "填好后运行：lixiao offices import 通讯录.xlsx",
)


def build_directory(rows: Sequence[Sequence[str]]) -> bytes:
    """An .xlsx directory: the headers, one text row per office, and a notes sheet."""
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False})
    text = book.add_format({"num_format": "@"})
    head = book.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "num_format": "@"})
    sheet = book.add_worksheet("通讯录")
    for col, title in enumerate(DIRECTORY_HEADERS):
        sheet.write_string(0, col, title, head)
        sheet.set_column(col, col, (26, 12, 40, 40)[col], text)
    for r, row in enumerate(rows, start=1):
        for col, value in enumerate(row):
            sheet.write_string(r, col, value, text)
    sheet.freeze_panes(1, 0)
    notes = book.add_worksheet("填写说明")
    notes.set_column(0, 0, 100)
    for number, line in enumerate(NOTES):
        notes.write_string(number, 0, line)
    book.close()
    return buffer.getvalue()
