"""The Excel report (离校进度.xlsx): the same figures, one sheet per view, native charts, the full matrix."""

from __future__ import annotations

import io
import operator
from collections.abc import Sequence
from typing import Any

import xlsxwriter
from xlsxwriter.utility import xl_col_to_name

from lixiao.core.manual.model import Status
from lixiao.core.manual.stats import CODES, Board
from lixiao.workbooks.inline import escape_all, splice_rows

from .data import ReportData

MATRIX_IDENTITY = ("学号", "姓名", "院系", "班级", "培养层次", "宿舍", "往届")
MATRIX_FIRST_ROW = 3  # Excel row of the first student: a title row and the header row above
_MATRIX_LABELS = {code: "" if status is Status.NA else status.label for status, code in CODES.items()}


def build_excel(data: ReportData) -> bytes:
    """The workbook bytes; every text cell is written as a string, never a formula."""
    rows = matrix_xml(data.board) if data.board else None
    return add_matrix(*build_views(data), data.board, rows)


def build_views(data: ReportData) -> tuple[bytes, str]:
    """The workbook with every sheet written by XlsxWriter, and the zip part of its status matrix sheet,
    which has its header, panes, filter and widths but no rows yet (add_matrix puts them in)."""
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False,
                                         "strings_to_numbers": False, "constant_memory": False})
    head = book.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True})
    title = book.add_format({"bold": True, "font_size": 14})
    pct = book.add_format({"num_format": "0.0%"})

    def table(name: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], widths: Sequence[int] = ()) -> Any:
        sheet = book.add_worksheet(name)
        sheet.write_string(0, 0, f"{data.session}　{name}　（{data.generated_at[:16].replace('T', ' ')}）", title)
        for c, h in enumerate(headers):
            sheet.write_string(1, c, h, head)
        for r, row in enumerate(rows, start=2):
            for c, value in enumerate(row):
                if isinstance(value, float):
                    sheet.write_number(r, c, value, pct)
                elif isinstance(value, int):
                    sheet.write_number(r, c, value)
                else:
                    sheet.write_string(r, c, str(value))
        for c in range(len(headers)):
            sheet.set_column(c, c, widths[c] if c < len(widths) else 14)
        sheet.freeze_panes(2, 1)
        sheet.autofilter(1, 0, max(1, len(rows) + 1), len(headers) - 1)
        return sheet

    school = data.school
    overview_rows: list[list[Any]] = [["全校", school.expected, school.expected_previous, school.unfinished,
                                       school.unfinished_previous,
                                       school.unfinished / school.expected if school.expected else 0.0]]
    for cp, steps in data.checkpoints:
        for p in (cp, *steps):
            overview_rows.append([("　" if p is not cp else "") + p.name, p.expected, p.expected_previous,
                                  p.unfinished, p.unfinished_previous, p.percent_unfinished / 100])
    headers = ["离校点 / 步骤", "应离校人数", "其中往届", "未完成", "未完成往届", "未完成%"]
    sheet = table("实时统计", headers, overview_rows, (28, 12, 10, 10, 12, 10))
    cp_rows = [i + 2 for i, row in enumerate(overview_rows) if i and not str(row[0]).startswith("　")]
    chart = book.add_chart({"type": "bar"})
    chart.add_series({"name": "未完成%", "categories": [sheet.name, cp_rows[0], 0, cp_rows[-1], 0],
                      "values": [sheet.name, cp_rows[0], 5, cp_rows[-1], 5]} if cp_rows else {"values": "=0"})
    chart.set_title({"name": "各离校点未完成比例"})
    chart.set_legend({"none": True})
    sheet.insert_chart("H3", chart, {"x_scale": 1.5, "y_scale": 1.6})

    college_rows = [[c.name, c.expected, c.expected_previous, c.complete, c.unfinished, c.percent_complete / 100]
                    for c in data.colleges]
    sheet = table("各学院", ["学院", "应离校人数", "其中往届", "全部完成", "未完成", "完成率"], college_rows, (24,))
    if college_rows:
        chart = book.add_chart({"type": "column", "subtype": "stacked"})
        last = len(college_rows) + 1
        chart.add_series({"name": "全部完成", "categories": [sheet.name, 2, 0, last, 0],
                          "values": [sheet.name, 2, 3, last, 3], "fill": {"color": "#1a7f37"}})
        chart.add_series({"name": "未完成", "categories": [sheet.name, 2, 0, last, 0],
                          "values": [sheet.name, 2, 4, last, 4], "fill": {"color": "#c62828"}})
        chart.set_title({"name": "各学院完成情况"})
        sheet.insert_chart("H3", chart, {"x_scale": 1.6, "y_scale": 1.4})
    table("各学院实时统计", ["学院", "离校点 / 步骤", "应离校人数", "其中往届", "未完成", "未完成往届", "未完成%"],
          [[college, ("　" if p is not cp else "") + p.name, p.expected, p.expected_previous, p.unfinished,
            p.unfinished_previous, p.percent_unfinished / 100]
           for college, figures in data.college_checkpoints.items() for cp, steps in figures if cp.expected
           for p in (cp, *steps) if p.expected], (24, 28))
    if data.levels:
        table("各培养层次", ["培养层次", "应离校人数", "其中往届", "全部完成", "未完成", "完成率"],
              [[g.name, g.expected, g.expected_previous, g.complete, g.unfinished, g.percent_complete / 100]
               for g in data.levels])
    table("各班级" if data.group_title == "班级" else "各专业", ["学院", data.group_title, "应离校人数", "全部完成",
                                                              "未完成", "完成率"],
          [[college, c.name, c.expected, c.complete, c.unfinished, c.percent_complete / 100]
           for college, classes in sorted(data.classes.items()) for c in classes], (24, 16))
    if data.refund_step is not None:
        table("退费查询", ["学号", "姓名", "学院", data.group_title, "退费状态", "备注", "更新时间"],
              [[x.student_no, x.name, x.college, x.group, x.word, x.remark, x.updated_at[:16].replace("T", " ")]
               for x in data.refunds], (12, 10, 22, 16, 10, 30, 16))
    table("各宿舍楼", ["宿舍楼", "应离校人数", "全部完成", "未完成", "完成率"],
          [[b.name, b.expected, b.complete, b.unfinished, b.percent_complete / 100] for b in data.buildings])
    table("瓶颈", ["离校步骤", "合计", *data.bottleneck_colleges],
          [[name, total, *(per.get(c, 0) for c in data.bottleneck_colleges)]
           for _, name, per, total in data.bottlenecks],
          (20,))
    if data.history:
        sheet = table("每日进度", ["日期", "应离校人数", "全部完成"], [list(h) for h in data.history])
        chart = book.add_chart({"type": "line"})
        chart.add_series({"name": "全部完成", "categories": [sheet.name, 2, 0, len(data.history) + 1, 0],
                          "values": [sheet.name, 2, 2, len(data.history) + 1, 2]})
        chart.set_title({"name": "每日全部完成人数"})
        sheet.insert_chart("E3", chart)
    table("已解除限制", ["学号", "姓名", "院系", "班级", "离校步骤", "步骤状态", "理由", "操作人", "时间"],
          [[w["student_no"], w["name"], w["college"], w["class"], w["step_name"], w["status"], w["reason"],
            w["operator"], w["created_at"]] for w in data.waivers], (12, 10, 22, 14, 14, 10, 30, 16, 20))
    table("冲突", ["学号", "姓名", "离校步骤", "签发时", "交回", "当前", "文件"],
          [[c.student_no, c.name, c.step_name, c.baseline, c.returned, c.current, c.file_name]
           for c in data.conflicts])
    table("被拒绝的勾选", ["学号", "姓名", "离校步骤", "交回内容", "原因", "文件"],
          [[r.student_no, r.name, r.step_name, r.value, r.reason, r.file_name] for r in data.refused],
          (12, 10, 16, 10, 60, 30))
    step_names = [data.flow.step_label(s.code) for s in data.flow.all_steps()]
    headers = [*MATRIX_IDENTITY, *step_names, "全部完成"]
    matrix = table("状态矩阵", headers, [], (12, 8, 20, 12, 8, 18, 5))
    matrix.autofilter(1, 0, len(data.board.codes) + 1 if data.board else 1, len(headers) - 1)
    part = f"xl/worksheets/sheet{len(book.worksheets())}.xml"  # XlsxWriter numbers sheets in order
    book.close()
    return buffer.getvalue(), part


def export_matrix(board: Board, title: str, labels: Sequence[str]) -> bytes:
    """``lixiao export FILE.xlsx``: the status matrix on its own, printable (A4 landscape, the header
    rows repeat on every page), 已通过 and 未通过 coloured by conditional formats; every cell text. ``labels``: the
    steps' column headers (Flow.step_label)."""
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False,
                                         "strings_to_numbers": False})
    head = book.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True, "valign": "top"})
    sheet = book.add_worksheet("离校状态")
    sheet.write_string(0, 0, title, book.add_format({"bold": True, "font_size": 14}))
    headers = [*MATRIX_IDENTITY, *labels, "全部完成"]
    for col, name in enumerate(headers):
        sheet.write_string(1, col, name, head)
        sheet.set_column(col, col, 12 if col < len(MATRIX_IDENTITY) else max(8, min(14, len(name) * 2)))
    last_row = MATRIX_FIRST_ROW - 2 + len(board.codes)  # zero-based, as XlsxWriter counts
    if board.codes and board.steps:
        for label, colours in (("已通过", {"font_color": "#006100", "bg_color": "#C6EFCE"}),
                               ("未通过", {"font_color": "#9C0006", "bg_color": "#FFC7CE"})):
            sheet.conditional_format(MATRIX_FIRST_ROW - 1, len(MATRIX_IDENTITY), last_row, len(headers) - 2,
                                     {"type": "cell", "criteria": "==", "value": f'"{label}"',
                                      "format": book.add_format(colours)})
    sheet.freeze_panes(2, 2)
    sheet.autofilter(1, 0, max(1, last_row), len(headers) - 1)
    sheet.set_landscape()
    sheet.set_paper(9)
    sheet.repeat_rows(1)
    sheet.fit_to_pages(1, 0)
    book.close()
    return add_matrix(buffer.getvalue(), "xl/worksheets/sheet1.xml", board, matrix_xml(board))


def matrix_xml(board: Board) -> bytes:
    """The status matrix rows of the sheet as UTF-8 XML (add_matrix puts them into their sheet)."""
    return "".join(matrix_rows(board, first_row=MATRIX_FIRST_ROW)).encode("utf-8")


def add_matrix(views: bytes, part: str, board: Board | None, rows: bytes | None) -> bytes:
    """``views`` (written by XlsxWriter, the matrix sheet ``part`` without rows) with the status matrix
    ``rows`` (``matrix_xml``, which another process may have made) inside that sheet."""
    if not (board and board.codes and rows):
        return splice_rows(views, {})
    width = len(MATRIX_IDENTITY) + len(board.steps) + 1
    return splice_rows(views, {part: (rows, f"{xl_col_to_name(width - 1)}{MATRIX_FIRST_ROW + len(board.codes) - 1}")})


def matrix_rows(board: Board, first_row: int) -> list[str]:
    """The status matrix as sheet XML rows (inline strings), one string per student.

    XlsxWriter spends ~10 µs per cell; the 30,000 × 24 matrix would dominate the report's time.
    Here every step cell comes from a per-column table of ready XML keyed by the status code, the
    identity cells are escaped a whole column at a time (characters XML cannot hold removed), and
    each row's number is filled in at the end.
    """
    width = len(MATRIX_IDENTITY) + len(board.steps) + 1
    letters = [xl_col_to_name(c) for c in range(width)]
    mark = "\x00"  # stands for the row number until the row is finished
    close = "</t></is></c>"

    def column(index: int, values: list[str]) -> list[str]:
        opener = f'<c r="{letters[index]}{mark}" t="inlineStr"><is><t>'
        return [f"{opener}{text}{close}" if text else "" for text in escape_all(values)]

    students = board.students
    identity = [column(0, [s.student_no for s in students]), column(1, [s.name for s in students]),
                column(2, [s.college for s in students]), column(3, [s.class_name for s in students]),
                column(4, [s.level for s in students]), column(5, [s.dorm for s in students]),
                column(6, ["是" if s.previous else "" for s in students])]
    first_step = len(MATRIX_IDENTITY)
    tables = [{code: f'<c r="{letters[first_step + i]}{mark}" t="inlineStr"><is><t>{label}{close}' if label else ""
               for code, label in _MATRIX_LABELS.items()} for i in range(len(board.steps))]
    complete = column(width - 1, ["是" if done else "否" for done in board.complete])
    getitem = operator.getitem
    rows = [f'<row r="{mark}">{"".join(cells)}{"".join(map(getitem, tables, codes))}{g}</row>'.replace(mark, str(n))
            for n, *cells, codes, g in zip(range(first_row, first_row + len(students)), *identity,
                                           board.codes, complete, strict=True)]
    return rows
