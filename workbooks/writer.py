"""Render a WorkbookPlan as an .xlsx with real Excel 365 checkboxes, usable as TRUE/FALSE elsewhere."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import xlsxwriter
from xlsxwriter.workbook import Workbook
from xlsxwriter.worksheet import Worksheet

from lixiao.core.clearance.certificates import ReadyList, is_certificate_desk, ready_list
from lixiao.core.clearance.issuance import BATCH_SHEETS, WorkbookPlan, batch_ident, waiver_ident
from lixiao.core.manual.marks import WRITTEN
from lixiao.core.manual.model import Status
from lixiao.core.manual.rules import checkpoint_word
from lixiao.core.storage.signing import row_key

from .guides import GUIDE, READY_GUIDE, WAIVER_GUIDE
from .layout import (
    COUNT_SUFFIX,
    GROUP_HEADERS,
    GUIDE_SHEET,
    HEADER_ROW,
    MAIN_SHEET,
    META_SHEET,
    OPERATOR_CELL,
    PREREQ_HEADER,
    PROGRESS_HEADER,
    PROPERTY_PREFIX,
    READY_HEADERS,
    READY_SHEET,
    REMARK_HEADER,
    ROW_KEY_HEADER,
    WAIVER_HEADERS,
    WAIVER_SHEET,
    text_width,
    token_parts,
)


@dataclass(frozen=True, slots=True)
class Token:
    """The signed identity written into the hidden sheet and the document properties."""

    workbook_id: str
    generation: int
    payload_text: str
    signature: str
    row_secret: bytes = b""  # signing.row_secret of this workbook; empty: no 行校验 column (tests of old files)

    def key(self, ident: str) -> str:
        """The 行校验 value of one row."""
        return row_key(self.row_secret, ident) if self.row_secret else ""


BOOLEAN_FORMAT = '"TRUE";"TRUE";"FALSE"'
REMARK_WIDTH = 30
PROGRESS_WIDTH = 28
LINE_HEIGHT = 15  # points per line of 11-point 等线


def _lines(text: str, width: int) -> int:
    """How many lines ``text`` wraps to in a column ``width`` characters wide (CJK counting double)."""
    return max(1, -(-text_width(text) // max(1, width - 2)))


class _Formats:
    """Every cell style of a lixiao workbook; checkbox styles are never shared with text cells."""

    def __init__(self, book: Workbook) -> None:
        def fmt(**props: Any) -> Any:
            return book.add_format({"font_name": "等线", "font_size": 11, "valign": "vcenter", **props})

        self.title = fmt(bold=True, font_size=14)
        self.label = fmt(bold=True, align="right")
        self.operator = fmt(locked=False, bg_color="#FFF2CC", border=1, num_format="@")
        self.hint = fmt(font_color="#7F7F7F", italic=True)
        self.header = fmt(bold=True, bg_color="#DDEBF7", border=1, text_wrap=True, align="center")
        self.identity = fmt(num_format="@", border=1)
        self.met = fmt(num_format="@", border=1, font_color="#006100")
        self.unmet = fmt(num_format="@", border=1, bg_color="#FCE4D6", font_color="#9C0006", text_wrap=True)
        self.na = fmt(bg_color="#D9D9D9", border=1)
        self.remark = fmt(locked=False, num_format="@", border=1, text_wrap=True)
        self.count = fmt(num_format="@", border=1, align="center")
        self.guide = fmt(text_wrap=True, valign="top")
        self.guide_head = fmt(bold=True, font_size=12)
        # insert_checkbox mutates the format it is given: these two serve checkbox cells only.
        self.row_key = fmt(num_format="@", font_color="#A6A6A6", font_size=8, border=1)
        # An explicit TRUE/FALSE number format: LibreOffice otherwise shows every boolean but the sheet's first as
        # 1/0 (seen in 7.4), so one column read "0" in some rows and "FALSE" in others. Booleans ignore it in Excel.
        self.box = fmt(locked=False, border=1, align="center", num_format=BOOLEAN_FORMAT)
        self.box_blocked = fmt(locked=False, border=1, align="center", bg_color="#FCE4D6", num_format=BOOLEAN_FORMAT)
        self.ticked = book.add_format({"bg_color": "#C6EFCE", "font_color": "#006100"})
        self.failed_mark = book.add_format({"bg_color": "#FFC7CE", "font_color": "#9C0006"})
        # a step cell issued 未通过 / 可办可不办: text, in a format no checkbox shares
        self.stated = fmt(locked=False, border=1, align="center", num_format="@")
        self.counts = fmt(bold=True, num_format="@")
        self.warning = fmt(bold=True, font_color="#9C0006", text_wrap=True, num_format="@")
        self.group = fmt(bold=True, bg_color="#F2F2F2", border=1, num_format="@")
        self.listed = fmt(num_format="@", border=1, text_wrap=True)


def build_workbook(plan: WorkbookPlan, token: Token, issued_at: str) -> bytes:
    """The .xlsx bytes of one issued workbook."""
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {
        "in_memory": True, "strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False,
    })
    formats = _Formats(book)
    book.set_properties({"title": f"{plan.session} {plan.title} {plan.scope}", "author": "lixiao",
                         "comments": "lixiao 离校工作簿；请勿删除隐藏的工作表"})
    for name, value in (("workbook", token.workbook_id), ("checkpoint", plan.checkpoint.code),
                        ("generation", str(token.generation)), ("signature", token.signature),
                        *token_parts(token.payload_text)):
        book.set_custom_property(PROPERTY_PREFIX + name, value)
    if plan.kind == "waiver":
        _waiver_sheet(book, formats, plan, token, issued_at)
    else:
        certificates = is_certificate_desk(plan.checkpoint)
        if certificates:  # first and active: what staff see on opening is who may be handed a certificate
            _ready_sheet(book, formats, plan, ready_list(plan), issued_at)
        _main_sheet(book, formats, plan, token, issued_at, active=not certificates)
        for mode, groups in plan.groups.items():
            _batch_sheet(book, formats, plan, token, mode, groups)
    _guide_sheet(book, formats, plan, token.generation)
    meta = book.add_worksheet(META_SHEET)
    meta.write_string(0, 0, "lixiao-token")
    meta.write_string(1, 0, token.payload_text)
    meta.write_string(2, 0, token.signature)
    meta.very_hidden()
    book.close()
    return buffer.getvalue()


def _top(sheet: Worksheet, f: _Formats, plan: WorkbookPlan, issued_at: str, generation: int, hint: str) -> None:
    sheet.write_string(0, 0, f"{plan.session}　{plan.title}　{plan.scope}　第 {generation} 版", f.title)
    sheet.write_string(1, 0, "经办人：", f.label)
    sheet.write_blank(*OPERATOR_CELL, None, f.operator)
    sheet.write_string(1, 3, f"签发于 {issued_at[:16].replace('T', ' ')}", f.hint)
    sheet.write_string(2, 0, hint, f.hint)
    sheet.set_row(0, 24)


def _print_setup(sheet: Worksheet, last_col: int) -> None:
    sheet.set_landscape()
    sheet.set_paper(9)  # A4
    sheet.repeat_rows(0, HEADER_ROW)
    sheet.fit_to_pages(1, 0)
    sheet.set_margins(left=0.4, right=0.4, top=0.5, bottom=0.5)
    sheet.set_footer("&C第 &P 页，共 &N 页")


def _finish_grid(sheet: Worksheet, f: _Formats, boxes: tuple[int, int] | None, last_row: int, last_col: int,
                 frozen_cols: int, statuses: bool = False) -> None:
    """What every ticking sheet gets: a TRUE/FALSE list and green ticks on the box columns, frozen
    header, filter (over every column, 行校验 included) and print setup.

    No sheet protection: Excel refuses to sort any range holding locked cells of a protected sheet, so staff
    unprotected it and sorted whatever they had selected. Rows are kept honest by the 行校验 key instead,
    and identity cells are checked on return."""
    if boxes is not None:
        choices = ["TRUE", "FALSE", *WRITTEN.values()] if statuses else ["TRUE", "FALSE"]
        sheet.data_validation(HEADER_ROW + 1, boxes[0], last_row, boxes[1], {
            "validate": "list", "source": choices, "error_type": "information", "input_title": "勾选",
            "input_message": ("勾选或选 TRUE 表示已通过；未通过选“未通过”（备注写原因）" if statuses
                              else "勾选或选 TRUE 表示已办理通过"),
        })
        sheet.conditional_format(HEADER_ROW + 1, boxes[0], last_row, boxes[1],
                                 {"type": "cell", "criteria": "==", "value": "TRUE", "format": f.ticked})
        if statuses:
            sheet.conditional_format(HEADER_ROW + 1, boxes[0], last_row, boxes[1], {
                "type": "cell", "criteria": "==", "value": f'"{WRITTEN[Status.FAILED]}"', "format": f.failed_mark})
    sheet.freeze_panes(HEADER_ROW + 1, frozen_cols)
    sheet.autofilter(HEADER_ROW, 0, last_row, last_col)
    sheet.set_row(HEADER_ROW, 32)
    _print_setup(sheet, last_col)


def _main_sheet(book: Workbook, f: _Formats, plan: WorkbookPlan, token: Token, issued_at: str,
                active: bool = True) -> None:
    sheet = book.add_worksheet(MAIN_SHEET)
    _top(sheet, f, plan, issued_at, token.generation,
         "勾选表示已办理通过；未通过输入 × 并在备注写原因；灰色格子表示该生不需要办理；"
         "橙色表示前置条件未满足（勾选会被拒绝）；请勿修改学号、姓名等列；排序请用表头的筛选按钮，或先选中整行。")
    identity = plan.identity_columns
    headers = [*identity, PREREQ_HEADER, PROGRESS_HEADER, *(s.name for s in plan.steps), REMARK_HEADER]
    if token.row_secret:
        headers.append(ROW_KEY_HEADER)
    first_step = len(identity) + 2
    remark_col = first_step + len(plan.steps)
    widths = [text_width(h) + 2 for h in headers]
    for col, title in enumerate(headers):
        sheet.write_string(HEADER_ROW, col, title, f.header)
    prereq_width = min(40, max(10, max((text_width(r.prerequisite) for r in plan.rows), default=8)))
    for r, row in enumerate(plan.rows, start=HEADER_ROW + 1):
        for col, value in enumerate(row.identity):
            sheet.write_string(r, col, value, f.identity)
            widths[col] = max(widths[col], text_width(value) + 2)
        sheet.write_string(r, len(identity), row.prerequisite, f.unmet if row.blocked else f.met)
        sheet.write_string(r, len(identity) + 1, row.progress, f.listed)
        lines = max(_lines(row.prerequisite, prereq_width), _lines(row.remark, REMARK_WIDTH),
                    _lines(row.progress, PROGRESS_WIDTH))
        if lines > 1:  # wrapped text: neither XlsxWriter nor LibreOffice's print sizes the row by itself
            sheet.set_row(r, LINE_HEIGHT * lines)
        box = f.box_blocked if row.blocked else f.box
        for index, cell in enumerate(row.cells):
            if cell.status in WRITTEN and cell.applicable:
                sheet.write_string(r, first_step + index, WRITTEN[cell.status], f.stated)
            elif cell.applicable:
                sheet.insert_checkbox(r, first_step + index, cell.ticked, box)
            else:
                sheet.write_blank(r, first_step + index, None, f.na)
        sheet.write_string(r, remark_col, row.remark, f.remark)
        if token.row_secret:
            sheet.write_string(r, remark_col + 1, token.key(row.student.student_no), f.row_key)
    last_row = HEADER_ROW + max(1, len(plan.rows))
    widths[len(identity)] = prereq_width
    widths[len(identity) + 1] = PROGRESS_WIDTH
    widths[remark_col] = REMARK_WIDTH
    if token.row_secret:
        widths[remark_col + 1] = 9
    for col, width in enumerate(widths):
        sheet.set_column(col, col, min(width, 40))
    _finish_grid(sheet, f, (first_step, remark_col - 1) if plan.steps else None, last_row, len(headers) - 1, 2,
                 statuses=True)
    if active:  # never two active sheets: Excel would open them grouped, and typing would fill both
        sheet.activate()


READY_HINT = ("只给本表中的学生发证；不在表中的学生前置条件未满足（或证件已领完），请勿发证，见“办理”表的前置条件列。"
              "发证后在“办理”表勾选。")


def _ready_sheet(book: Workbook, f: _Formats, plan: WorkbookPlan, listing: ReadyList, issued_at: str) -> None:
    """可领证名单: per class (or 培养层次 专业), the students whose prerequisites were all met at issue and who still
    have something to collect; printable on A4 portrait. Nothing here is read back."""
    sheet = book.add_worksheet(READY_SHEET)
    last = len(READY_HEADERS) - 1
    scope = "" if plan.scope in plan.title else f"　{plan.scope}"
    sheet.merge_range(0, 0, 0, last, "", f.title)
    as_of = issued_at[:16].replace("T", " ")
    sheet.write_string(0, 0, f"{plan.session}　{plan.title}{scope}　可领证名单　截至 {as_of}", f.title)
    sheet.merge_range(1, 0, 1, last, "", f.counts)
    sheet.write_string(1, 0, f"可领证 {listing.ready} 人　　前置条件未满足 {listing.blocked} 人（请勿发证）"
                       f"　　已领完 {listing.done} 人", f.counts)
    sheet.merge_range(2, 0, 2, last, "", f.warning)
    sheet.write_string(2, 0, READY_HINT, f.warning)
    grouped_by = "班级 / 培养层次 · 专业" if any(not r.student.class_name for r in plan.rows) else "班级"
    for col, title in enumerate(READY_HEADERS):
        sheet.write_string(HEADER_ROW, col, grouped_by if title == "班级" else title, f.header)
    r = HEADER_ROW + 1
    if not listing.classes:
        sheet.merge_range(r, 0, r, last, "", f.group)
        sheet.write_string(r, 0, "目前没有可领证的学生。", f.group)
    for group in listing.classes:
        sheet.merge_range(r, 0, r, last, "", f.group)
        sheet.write_string(r, 0, f"{group.name}　可领证 {len(group.students)} 人", f.group)
        r += 1
        for entry in group.students:
            student = entry.student
            for col, value in enumerate((student.student_no, student.name, student.class_group, entry.pending_names)):
                sheet.write_string(r, col, value, f.listed)
            r += 1
    sheet.set_row(0, 24)
    sheet.set_row(2, 32)
    sheet.set_row(HEADER_ROW, 20)
    names = [s.student for s in listing.students()]
    sheet.set_column(0, 0, max(12, max((text_width(s.student_no) for s in names), default=0) + 2))
    sheet.set_column(1, 1, min(20, max(10, max((text_width(s.name) for s in names), default=0) + 2)))
    sheet.set_column(2, 2, min(24, max(14, max((text_width(s.class_name) for s in names), default=0) + 2)))
    sheet.set_column(3, 3, 44)
    sheet.freeze_panes(HEADER_ROW + 1, 0)
    sheet.set_portrait()
    sheet.set_paper(9)  # A4
    sheet.repeat_rows(0, HEADER_ROW)
    sheet.fit_to_pages(1, 0)
    sheet.set_margins(left=0.5, right=0.5, top=0.6, bottom=0.6)
    sheet.set_footer("&C第 &P 页，共 &N 页")
    sheet.activate()


def _batch_sheet(book: Workbook, f: _Formats, plan: WorkbookPlan, token: Token, mode: str,
                 groups: list[Any]) -> None:
    sheet = book.add_worksheet(BATCH_SHEETS[mode])
    unit = GROUP_HEADERS[mode]
    sheet.write_string(0, 0, f"{plan.session}　{plan.title}　{plan.scope}　{BATCH_SHEETS[mode]}批量办理", f.title)
    sheet.write_string(1, 0, "经办人：", f.label)
    sheet.write_string(1, 1, "（填在“办理”表）", f.hint)
    sheet.write_string(2, 0, f"每行一个{unit}：勾选某一步骤表示该{unit}所有需要办理该步骤的学生均已通过"
                       "（前置条件未满足的学生会被拒绝并在回执中列出）。", f.hint)
    headers = [GROUP_HEADERS[mode], "人数", "成员"]
    headers += [f"{s.name}{COUNT_SUFFIX}" for s in plan.steps]
    headers += [s.name for s in plan.steps]
    first_box = 3 + len(plan.steps)
    last_box = len(headers) - 1
    if token.row_secret:
        headers.append(ROW_KEY_HEADER)
    for col, title in enumerate(headers):
        sheet.write_string(HEADER_ROW, col, title, f.header)
    for r, group in enumerate(groups, start=HEADER_ROW + 1):
        sheet.write_string(r, 0, group.key, f.identity)
        sheet.write_string(r, 1, str(len(group.student_nos)), f.count)
        sheet.write_string(r, 2, "、".join(group.names), f.identity)
        for index, (passed, total) in enumerate(group.counts):
            sheet.write_string(r, 3 + index, f"{passed}/{total}", f.count)
            if total:
                sheet.insert_checkbox(r, first_box + index, group.ticked[index], f.box)
            else:
                sheet.write_blank(r, first_box + index, None, f.na)
        if token.row_secret:
            sheet.write_string(r, last_box + 1, token.key(batch_ident(mode, group.key)), f.row_key)
    last_row = HEADER_ROW + max(1, len(groups))
    sheet.set_column(0, 0, max(12, max((text_width(g.key) for g in groups), default=10) + 2))
    sheet.set_column(1, 1, 6)
    sheet.set_column(2, 2, 36)
    sheet.set_column(3, last_box, 14)
    if token.row_secret:
        sheet.set_column(last_box + 1, last_box + 1, 9)
    _finish_grid(sheet, f, (first_box, last_box), last_row, len(headers) - 1, 1)


def _waiver_sheet(book: Workbook, f: _Formats, plan: WorkbookPlan, token: Token, issued_at: str) -> None:
    sheet = book.add_worksheet(WAIVER_SHEET)
    _top(sheet, f, plan, issued_at, token.generation,
         "勾选“解除限制”并填写理由 = 关闭该步骤对后续离校点的限制（如欠费缓交）；取消勾选 = 重新开启限制。")
    headers = [*WAIVER_HEADERS, *((ROW_KEY_HEADER,) if token.row_secret else ())]
    for col, title in enumerate(headers):
        sheet.write_string(HEADER_ROW, col, title, f.header)
    box = WAIVER_HEADERS.index("解除限制")
    for r, row in enumerate(plan.waiver_rows, start=HEADER_ROW + 1):
        values = (row.student.student_no, row.student.name, row.student.college, row.student.class_group,
                  row.checkpoint_title, checkpoint_word(row.checkpoint_done), row.step.name,
                  f"{row.status.label}({row.initial.label})", row.note, "限制已关闭" if row.waived else "限制已开启")
        for col, value in enumerate(values):
            sheet.write_string(r, col, value, f.identity)
        sheet.insert_checkbox(r, box, row.waived, f.box)
        sheet.write_string(r, box + 1, row.reason, f.remark)
        sheet.write_blank(r, box + 2, None, f.remark)  # 凭证: typed with a new lift
        if token.row_secret:
            sheet.write_string(r, box + 3, token.key(waiver_ident(row.student.student_no, row.step.code)), f.row_key)
    last_row = HEADER_ROW + max(1, len(plan.waiver_rows))
    for col, width in enumerate((12, 10, 22, 14, 22, 10, 12, 18, 24, 12, 10, 30, 20, 9)):
        sheet.set_column(col, col, width)
    sheet.data_validation(HEADER_ROW + 1, box, last_row, box, {
        "validate": "list", "source": ["TRUE", "FALSE"], "error_type": "information"})
    sheet.freeze_panes(HEADER_ROW + 1, 2)
    sheet.autofilter(HEADER_ROW, 0, last_row, len(headers) - 1)
    _print_setup(sheet, len(headers) - 1)
    sheet.activate()


def _guide_sheet(book: Workbook, f: _Formats, plan: WorkbookPlan, generation: int) -> None:
    sheet = book.add_worksheet(GUIDE_SHEET)
    sheet.set_column(0, 0, 14)
    sheet.set_column(1, 1, 100)
    sheet.write_string(0, 0, "使用说明", f.title)
    if plan.kind == "waiver":
        guide = WAIVER_GUIDE
    else:
        guide = [READY_GUIDE, *GUIDE] if is_certificate_desk(plan.checkpoint) else GUIDE
    for r, (head, text) in enumerate(guide, start=2):
        sheet.write_string(r, 0, head, f.guide_head)
        body = text.format(title=plan.title, scope=plan.scope, generation=generation)
        sheet.write_string(r, 1, body, f.guide)
        sheet.set_row(r, 18 * (1 + text_width(body) // 100))
    sheet.protect("", {"select_locked_cells": True, "select_unlocked_cells": True})
