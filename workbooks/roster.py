"""The empty roster template (学生名单模板) with the expected Chinese headers, written as .xlsx bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence

import xlsxwriter

from lixiao.core.manual.model import FLAG_COLUMNS, WITHHELD_COLUMN, Student
from lixiao.core.manual.roster import COLUMNS

EXAMPLE = ("0803010103", "丁德卫", "男", "11010519491231002X", "机电工程学院", "机械设计制造及其自动化",
           "08机设1班", "8区-10栋-1层-0121", "本科", "否", "是", "否", "否", "否")
NOTES = (
    "学号、身份证号必须是文本格式（本模板已设好），不要让 Excel 把它们变成数字。",
    "宿舍格式：区-栋-层-房间，如 2区-3栋-3层-0309；研究生公寓写楼名-栋-层-房间，如 研究生公寓-1栋-2层-0201；"
    "没有住宿的留空。",
    "培养层次：本科、硕士或博士。",
    f"{'、'.join(FLAG_COLUMNS)}：填 是 或 否（空白视为否）。",
    f"{WITHHELD_COLUMN}：填暂缓发放的证书——学位证、毕业证 或 两证；不暂缓填 否（空白视为否；是 视为两证）。"
    "暂缓的证书在教务处离校点领取，其余证件仍在学院领取。",
    "国家助学贷款在校本部（10534）和潇湘（12649）两处都有的学生，在“国家助学贷款”列填写 10534、12649"
    "（或 校本部、潇湘）：两处都确认后才算完成。",
    "模板第 2 行是示例，导入前请删除。",
)


def build_roster_template(example: bool = True) -> bytes:
    """An empty .xlsx roster with the headers in order, text-formatted ID columns and a notes sheet."""
    return build_roster([EXAMPLE] if example else [])


def roster_row(student: Student) -> tuple[str, ...]:
    """One student as the roster's text cells, in COLUMNS order."""
    flags = tuple(("、".join(student.lenders) if attr == "national_loan" and student.lenders else "是")
                  if student.flag(attr) else "否" for attr in FLAG_COLUMNS.values())
    return (student.student_no, student.name, student.gender, student.id_card, student.college, student.major,
            student.class_name, student.dorm, student.level, *flags, student.withheld_word)


def build_roster(rows: Sequence[Sequence[str]]) -> bytes:
    """An .xlsx roster of text cells (IDs stay text) with the expected headers and a notes sheet."""
    widths = [22 if title in ("身份证号", "专业", "宿舍") else 12 for title in COLUMNS]
    return text_table("学生名单", COLUMNS, widths, rows, NOTES, 90)


def text_table(name: str, headers: Sequence[str], widths: Sequence[int], rows: Sequence[Sequence[str]],
               notes: Sequence[str], notes_width: int) -> bytes:
    """A one-table .xlsx for people to fill in: text-formatted columns (numbers stay as typed), a frozen header
    row, and a 填写说明 sheet (the roster and the 通讯录 templates)."""
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False})
    text = book.add_format({"num_format": "@"})
    head = book.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "num_format": "@"})
    sheet = book.add_worksheet(name)
    for col, title in enumerate(headers):
        sheet.write_string(0, col, title, head)
        sheet.set_column(col, col, widths[col], text)
    for r, row in enumerate(rows, start=1):
        for col, value in enumerate(row):
            sheet.write_string(r, col, value, text)
    sheet.freeze_panes(1, 0)
    sheet_notes = book.add_worksheet("填写说明")
    sheet_notes.set_column(0, 0, notes_width)
    for number, line in enumerate(notes):
        sheet_notes.write_string(number, 0, line)
    book.close()
    return buffer.getvalue()
