"""Render a WorkbookPlan as an .xlsx with real Excel 365 checkboxes, usable as TRUE/FALSE elsewhere."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import xlsxwriter
from xlsxwriter.workbook import Workbook
from xlsxwriter.worksheet import Worksheet

from lixiao.core.certificates import ReadyList, is_certificate_desk, ready_list
from lixiao.core.issuance import BATCH_SHEETS, WorkbookPlan, batch_ident, waiver_ident
from lixiao.core.marks import WRITTEN
from lixiao.core.model import Status
from lixiao.core.signing import row_key

from .layout import (
    COUNT_SUFFIX,
    GROUP_HEADERS,
    GUIDE_SHEET,
    HEADER_ROW,
    MAIN_SHEET,
    META_SHEET,
    OPERATOR_CELL,
    PREREQ_HEADER,
    PROPERTY_PREFIX,
    READY_HEADERS,
    READY_SHEET,
    REMARK_HEADER,
    ROW_KEY_HEADER,
    WAIVER_HEADERS,
    WAIVER_SHEET,
    text_width,
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
                        ("generation", str(token.generation)), ("signature", token.signature)):
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
         "勾选表示已办理通过；灰色格子表示该生不需要办理；橙色表示前置条件未满足（勾选会被拒绝）；请勿修改学号、姓名等列；"
         "排序请用表头的筛选按钮，或先选中整行。")
    identity = plan.identity_columns
    headers = [*identity, PREREQ_HEADER, *(s.name for s in plan.steps), REMARK_HEADER]
    if token.row_secret:
        headers.append(ROW_KEY_HEADER)
    first_step = len(identity) + 1
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
        lines = max(_lines(row.prerequisite, prereq_width), _lines(row.remark, REMARK_WIDTH))
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
    for r, row in enumerate(plan.waiver_rows, start=HEADER_ROW + 1):
        values = (row.student.student_no, row.student.name, row.student.college, row.student.class_name,
                  row.checkpoint_title, row.step.name, row.status.label, "限制已关闭" if row.waived else "限制已开启")
        for col, value in enumerate(values):
            sheet.write_string(r, col, value, f.identity)
        sheet.insert_checkbox(r, 8, row.waived, f.box)
        sheet.write_string(r, 9, row.reason, f.remark)
        if token.row_secret:
            sheet.write_string(r, 10, token.key(waiver_ident(row.student.student_no, row.step.code)), f.row_key)
    last_row = HEADER_ROW + max(1, len(plan.waiver_rows))
    for col, width in enumerate((12, 10, 22, 14, 22, 12, 12, 12, 10, 36, 9)):
        sheet.set_column(col, col, width)
    sheet.data_validation(HEADER_ROW + 1, 8, last_row, 8, {
        "validate": "list", "source": ["TRUE", "FALSE"], "error_type": "information"})
    sheet.freeze_panes(HEADER_ROW + 1, 2)
    sheet.autofilter(HEADER_ROW, 0, last_row, len(headers) - 1)
    _print_setup(sheet, len(headers) - 1)
    sheet.activate()


GUIDE = [
    ("这是什么", "本工作簿由 lixiao 离校系统为“{title}”（{scope}）生成，第 {generation} 版。"
     "每行一名学生，每个带方框的列是一个离校步骤。"),
    ("怎样办理", "学生办完某一步骤后，在该行该列的方框里打勾（Excel 365 直接点击方框）。"
     "旧版 Excel、WPS 或 LibreOffice 中看到的是 TRUE/FALSE（旧版 LibreOffice 显示 1/0）：选择 TRUE 表示已通过，"
     "也可以输入 ✓、√、“是”或 1。"
     "灰色格子表示该生不需要办理此步骤，不用填。"),
    ("经办人", "请在第 2 行“经办人”后面填写您的姓名，系统会把本次交回的所有办理记录记在您名下。"),
    ("前置条件", "“前置条件”列写着“未满足：……”的学生还有前面的离校点没有办完，"
     "此时打勾会被系统拒绝，并在回执中说明原因。"),
    ("批量办理", "“按班级”“按宿舍”“按学院”表每行一个班级/宿舍/学院：在某步骤下打勾，"
     "表示该组所有需要办理该步骤的学生都已通过（例如一个 4 人寝室一次勾选）。"
     "批量表中取消勾选不会撤销任何学生，撤销请在“办理”表逐个取消。"),
    ("撤销", "如果勾错了，在“办理”表取消该格的勾（或选 FALSE、输入 0 或“否”），系统会记录撤销。"
     "请不要用 Delete 清空勾选格：清空的格子无法与插入、删除单元格造成的错位区分，这一列的勾选会全部不生效。"
     "撤销较多格子、或同一列既撤销又新勾选的文件，会先交协调人确认后才生效。"),
    ("未通过与可办可不办", "学生不能通过某一步骤时（如图书未还、欠费），在该格输入 ×、✗ 或“未通过”"
     "（旧版 Excel、WPS、LibreOffice 也可从下拉列表选择），并在“备注”写明原因，原因会随记录保存并显示给学生；"
     "没写原因的也会记录，回执中会提醒补写。"
     "该生之后办完，把该格改为勾选或 TRUE 即可。签发时已是未通过的格子显示“未通过”。"
     "不需要该生办理但也不拦着他的，输入 ○ 或“可办可不办”。"),
    ("不能用的标记", "请不要输入英文字母 x（有人用它表示勾，有人表示叉）或错误值（#N/A 等，常见于粘贴的公式结果）："
     "这些格子不会被当作“未勾选”，而是被拒绝并在回执中列出，请改为勾选、× 或留空。"
     "批量表和“解除限制”只能勾选或取消勾选。"),
    ("备注", "“备注”列可以写说明（如“欠费已缴清”），会随办理记录一起保存。"),
    ("排序与筛选", "可以排序、筛选、隐藏行、调整列宽。排序时请点击表头的筛选按钮选择排序，或先点击行号选中整行再排序；"
     "不要只选中几列排序，也不要只在部分列中粘贴、插入或删除单元格。"
     "最后一列“行校验”把每一行的内容绑在一起：一行中的学号与其他格子错开时，该行（错开的行较多时整个文件）会被拒绝，"
     "以免把勾选记到别的学生名下。"),
    ("不要修改", "不要修改学号、姓名、身份证号等信息列和“行校验”列，不要删除或重命名工作表，不要设置密码。"),
    ("交回", "保存后（保持 .xlsx 格式），按协调人要求通过邮件、U 盘或共享文件夹交回本文件。"
     "文件名可以改，内容会被自动识别；同一文件交回两次不会重复记录。"),
    ("个人信息", "本表包含学生个人信息，仅用于离校办理，请勿外传。身份证号已隐去中间 8 位。"),
]


READY_GUIDE = ("可领证名单", "第一张表“可领证名单”按班级列出签发时前置条件已全部满足、还有证件未领取的学生，"
               "以及每人尚未领取的证件。只给名单中的学生发证；不在名单中的学生前置条件未满足，请勿发证。"
               "名单只反映签发时的情况：其他离校点之后办完的学生，会出现在协调人下一版的名单中。"
               "发证后请在“办理”表勾选；“可领证名单”表本身不会被系统读取。")


def _guide_sheet(book: Workbook, f: _Formats, plan: WorkbookPlan, generation: int) -> None:
    sheet = book.add_worksheet(GUIDE_SHEET)
    sheet.set_column(0, 0, 14)
    sheet.set_column(1, 1, 100)
    sheet.write_string(0, 0, "使用说明", f.title)
    guide = [READY_GUIDE, *GUIDE] if plan.kind == "office" and is_certificate_desk(plan.checkpoint) else GUIDE
    for r, (head, text) in enumerate(guide, start=2):
        sheet.write_string(r, 0, head, f.guide_head)
        body = text.format(title=plan.title, scope=plan.scope, generation=generation)
        sheet.write_string(r, 1, body, f.guide)
        sheet.set_row(r, 18 * (1 + text_width(body) // 100))
    sheet.protect("", {"select_locked_cells": True, "select_unlocked_cells": True})
