"""可领证名单: who a certificate desk may hand certificates to now — the pure list, its sheet and its report page."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from lixiao.core.clearance.certificates import ReadyList, board_ready_lists, ready_list, school_ready_lists
from lixiao.core.clearance.issuance import plan_workbooks
from lixiao.core.feeds.synthetic import make_cohort
from lixiao.core.manual import rules
from lixiao.core.manual.flow import load_preset
from lixiao.core.manual.model import Flow, Status, Student
from lixiao.core.manual.stats import CODES, Board
from lixiao.core.storage.store import StatusRow, Store
from lixiao.workbooks.layout import MAIN_SHEET, READY_SHEET

from .conftest import ROSTER, Cli, drop, edit, make_student, outbox, statuses, sync

YEAR = 2026
BEFORE_CERTIFICATES = ["party_transfer", "return_instruments", "return_books", "return_student_card",
                       "electricity", "dorm_items", "pay_arrears"]
CERTIFICATES = ["degree_certificate", "diploma", "report_card", "hukou_letter"]


def stored_rows(passed: dict[str, list[str]], failed: dict[str, list[str]] | None = None) -> dict[str, dict[str, Any]]:
    """Stored status rows: 学号 → step → passed (or failed)."""
    result: dict[str, dict[str, StatusRow]] = {}
    for status, table in ((Status.PASSED, passed), (Status.FAILED, failed or {})):
        for no, steps in table.items():
            for step in steps:
                result.setdefault(no, {})[step] = StatusRow(status, "", 1, "2026-06-01T10:00:00+08:00", "cli", "")
    return result


def summary(listing: ReadyList) -> tuple[Any, ...]:
    """A list as plain values: office, counts, and per class the 学号 with what is still to collect."""
    return (listing.checkpoint, listing.title, listing.ready, listing.blocked, listing.done,
            [(c.name, [(e.student.student_no, e.pending_names) for e in c.students]) for c in listing.classes])


def desk_plans(flow: Flow, students: list[Student], stored: dict[str, dict[str, Any]],
               waived: dict[str, dict[str, str]], code: str) -> list[ReadyList]:
    """The 可领证名单 of each workbook ``lixiao issue`` would plan for one desk."""
    return [ready_list(plan) for plan in plan_workbooks(flow, YEAR, "2026届", flow.checkpoint(code), students,
                                                        stored, waived)]


def brute_board(flow: Flow, students: list[Student], stored: dict[str, dict[str, Any]],
                waived: dict[str, dict[str, str]]) -> Board:
    """A board computed student by student from rules.effective_status (no fast path)."""
    steps = tuple(flow.all_steps())
    codes = ["".join(CODES[rules.effective_status(
        step, s, stored[s.student_no][step.code].status if step.code in stored.get(s.student_no, {}) else None, YEAR)]
        for step in steps) for s in students]
    return Board(steps, students, codes, [False] * len(students), {no: set(w) for no, w in waived.items()})


MIXED = [
    make_student("0803010103"),  # prerequisites met, nothing collected
    make_student("0803010109", name="周强", class_name="08机设2班"),  # met, 报到证 already collected
    make_student("0803010101", name="吴敏", class_name="08机设2班"),  # met
    make_student("0803010104", name="沈睿"),  # 缴还欠款 missing
    make_student("0803010105", name="刘美娟"),  # 缴还欠款 missing but waived (欠费缓交)
    make_student("0803010106", name="郑浩"),  # everything collected
    make_student("0803010108", name="孙丽"),  # everything collected, then a late library fee failed 归还图书
    make_student("0803010107", name="高鹏", withheld_degree=True, withheld_diploma=True),  # both at 教务处
]
MIXED_PASSED = {
    "0803010103": BEFORE_CERTIFICATES,
    "0803010109": [*BEFORE_CERTIFICATES, "report_card"],
    "0803010101": BEFORE_CERTIFICATES,
    "0803010104": BEFORE_CERTIFICATES[:-1],
    "0803010105": BEFORE_CERTIFICATES[:-1],
    "0803010106": BEFORE_CERTIFICATES + CERTIFICATES,
    "0803010108": [s for s in BEFORE_CERTIFICATES if s != "return_books"] + CERTIFICATES,
    "0803010107": BEFORE_CERTIFICATES,
}
MIXED_WAIVED = {"0803010105": {"pay_arrears": "欠费缓交"}}


def test_ready_list_of_a_certificate_workbook(undergrad: Flow) -> None:
    """Met and waived students are listed by class then 学号 with what they still lack; unmet and done are counted."""
    stored = stored_rows(MIXED_PASSED, failed={"0803010108": ["return_books"]})
    [listing] = desk_plans(undergrad, MIXED, stored, MIXED_WAIVED, "certificates")
    assert summary(listing) == ("certificates", "机电工程学院领取证件", 5, 1, 2, [
        ("08机设1班", [("0803010103", "领取学位证、领取毕业/结业证、领取报到证、领取户口迁移证明"),
                      ("0803010105", "领取学位证、领取毕业/结业证、领取报到证、领取户口迁移证明"),
                      ("0803010107", "领取报到证、领取户口迁移证明")]),
        ("08机设2班", [("0803010101", "领取学位证、领取毕业/结业证、领取报到证、领取户口迁移证明"),
                      ("0803010109", "领取学位证、领取毕业/结业证、领取户口迁移证明")]),
    ])


def test_ready_list_of_the_registrar_holds_only_withheld_students(undergrad: Flow) -> None:
    """教务处 concerns only withheld students (its steps apply to nobody else) and needs no college step."""
    stored = stored_rows({"0803010107": [s for s in BEFORE_CERTIFICATES if s != "party_transfer"]})
    [listing] = desk_plans(undergrad, MIXED, stored, {}, "registrar")
    assert summary(listing) == ("registrar", "教务处离校点", 1, 0, 0,
                                [("08机设1班", [("0803010107", "领取学位证、领取毕业/结业证")])])
    [blocked] = desk_plans(undergrad, MIXED, {}, {}, "registrar")
    assert (blocked.ready, blocked.blocked, blocked.done, blocked.classes) == (0, 1, 0, ())


def test_school_lists_from_a_board_equal_the_workbooks_lists(undergrad: Flow) -> None:
    """Per office and class, the report's list (from the board, memoised) is exactly what each workbook lists."""
    students = make_cohort(600).students
    rng = random.Random(7)
    steps = [s.code for s in undergrad.all_steps()]
    stored = stored_rows({s.student_no: [c for c in steps if rng.random() < 0.85] for s in students},
                         failed={s.student_no: ["return_books"] for s in students[::37]})
    waived = {s.student_no: {"pay_arrears": "欠费缓交"} for s in students[::11]}
    expected = [*desk_plans(undergrad, students, stored, waived, "certificates"),
                *desk_plans(undergrad, students, stored, waived, "registrar")]
    got = board_ready_lists(undergrad, brute_board(undergrad, students, stored, waived), YEAR)
    assert [summary(x) for x in got] == [summary(x) for x in expected]
    assert len(got) == len({s.college for s in students}) + 1
    assert all(sum(getattr(x, count) for x in got) > 20 for count in ("ready", "blocked", "done"))  # every branch
    assert sum(x.ready + x.blocked + x.done for x in got[:-1]) == len(students)


# ---- the workbook sheet ------------------------------------------------------------------------------------------


@pytest.fixture
def certificate_desk(cli: Cli, pass_all: Callable[[str, list[str]], None]) -> Cli:
    """丁德卫 ready, 沈睿 ready through a 欠费缓交 waiver, 刘美娟 blocked; certificates and 教务处 issued."""
    pass_all("0803010103", BEFORE_CERTIFICATES)
    pass_all("0803010104", [*BEFORE_CERTIFICATES[:-1], "national_loan"])
    assert cli("waive", "0803010104", "pay_arrears", "--reason", "欠费缓交", "--evidence", "缓交证明1").exit_code == 0
    result = cli("issue", "--checkpoint", "certificates", "--checkpoint", "registrar")
    assert result.exit_code == 0, result.output
    return cli


def ready_rows(path: Path) -> list[tuple[Any, ...]]:
    """The 可领证名单 sheet's rows as values."""
    return [tuple(row) for row in openpyxl.load_workbook(path)[READY_SHEET].iter_rows(values_only=True)]


def mechanical(cli: Cli) -> Path:
    """The 机电工程学院领取证件 workbook."""
    return next(p for p in outbox(cli, "certificates") if "机电工程学院" in p.name)


def test_certificate_workbook_opens_on_the_ready_list(certificate_desk: Cli) -> None:
    """The first, active and only selected sheet is 可领证名单, listing exactly the ready students by class."""
    path = mechanical(certificate_desk)
    book = openpyxl.load_workbook(path)
    assert book.sheetnames[:2] == [READY_SHEET, MAIN_SHEET] and book.active.title == READY_SHEET
    assert [ws.title for ws in book.worksheets if ws.sheet_view.tabSelected] == [READY_SHEET]
    rows = ready_rows(path)
    assert rows[0][0].startswith("2026届本科毕业生离校　机电工程学院领取证件　可领证名单　截至 20")
    assert rows[1][0] == "可领证 2 人　　前置条件未满足 1 人（请勿发证）　　已领完 0 人"
    assert rows[2][0].startswith("只给本表中的学生发证；不在表中的学生前置条件未满足")
    everything = "领取学位证、领取毕业/结业证、领取报到证、领取户口迁移证明"
    assert rows[3:] == [("学号", "姓名", "班级", "尚未领取"), ("08机设1班　可领证 2 人", None, None, None),
                        ("0803010103", "丁德卫", "08机设1班", everything),
                        ("0803010104", "沈睿", "08机设1班", everything)]
    sheet = book[READY_SHEET]
    assert all(c.data_type == "s" for row in sheet.iter_rows() for c in row if c.value is not None)
    assert (sheet.page_setup.orientation, sheet.page_setup.paperSize) == ("portrait", 9)
    assert sheet.print_title_rows == "$1:$4" and sheet.sheet_properties.pageSetUpPr.fitToPage
    assert sheet.page_setup.fitToHeight == 0


def test_an_empty_ready_list_says_so(certificate_desk: Cli) -> None:
    """教务处: 高鹏's prerequisites are unmet, so the sheet lists nobody and says so."""
    [path] = outbox(certificate_desk, "registrar")
    rows = ready_rows(path)
    assert rows[1][0] == "可领证 0 人　　前置条件未满足 1 人（请勿发证）　　已领完 0 人"
    assert rows[4][0] == "目前没有可领证的学生。" and len(rows) == 5


def test_other_offices_have_no_ready_list(issued: Cli) -> None:
    """Only desks with prerequisites get the sheet; elsewhere 办理 stays first and active."""
    book = openpyxl.load_workbook(outbox(issued, "utilities")[0])
    assert READY_SHEET not in book.sheetnames and book.sheetnames[0] == MAIN_SHEET and book.active.title == MAIN_SHEET


def test_returned_certificate_workbook_merges(certificate_desk: Cli) -> None:
    """Ticks on 办理 behind the list merge; a tick for a student not on the list is refused as before."""
    path = mechanical(certificate_desk)
    data = edit(path, {("0803010103", "领取报到证"): True, ("0803010105", "领取报到证"): True})
    assert openpyxl.load_workbook(io.BytesIO(data)).sheetnames[0] == READY_SHEET  # the list came back first
    drop(certificate_desk, "证件.xlsx", data)
    [item] = sync(certificate_desk)["files"]
    assert (item["outcome"], item["applied"], item["refused"]) == ("merged", 1, 1)
    assert statuses(certificate_desk)[("0803010103", "report_card")] == ("passed", 1)
    assert ("0803010105", "report_card") not in statuses(certificate_desk)


def test_a_return_without_the_list_sheet_still_merges(certificate_desk: Cli) -> None:
    """The list is for staff only: deleting the sheet before returning changes nothing lixiao reads."""
    book = openpyxl.load_workbook(io.BytesIO(edit(mechanical(certificate_desk), {("0803010104", "领取学位证"): True})))
    del book[READY_SHEET]
    buffer = io.BytesIO()
    book.save(buffer)
    drop(certificate_desk, "证件.xlsx", buffer.getvalue())
    [item] = sync(certificate_desk)["files"]
    assert (item["outcome"], item["applied"], item["refused"]) == ("merged", 1, 0)
    assert statuses(certificate_desk)[("0803010104", "degree_certificate")] == ("passed", 1)


# ---- the report page ---------------------------------------------------------------------------------------------


def test_report_page_lists_the_ready_students(certificate_desk: Cli) -> None:
    """reports/可领证名单.html: one section per office, the ready students with what they lack; linked from index."""
    sync(certificate_desk)  # nothing to take; the report is built by `lixiao report`
    assert certificate_desk("report").exit_code == 0
    reports = certificate_desk.data / "reports"
    assert 'href="可领证名单.html"' in (reports / "index.html").read_text("utf-8")
    page = (reports / "可领证名单.html").read_text("utf-8")
    sections = page.split('<section class="ready-office"')[1:]
    assert [s.split("<h2>")[1].split("　")[0] for s in sections] == [
        "机电工程学院领取证件", "能源与安全工程学院领取证件", "教务处离校点"]
    assert "0803010103" in sections[0] and "0803010104" in sections[0] and "0803010105" not in sections[0]
    assert "可领证 2 人，前置条件未满足 1 人（请勿发证），已领完 0 人" in sections[0]
    assert "<td>领取学位证、领取毕业/结业证、领取报到证、领取户口迁移证明</td>" in sections[0]
    assert "目前没有可领证的学生。" in sections[1] and "目前没有可领证的学生。" in sections[2]
    assert 'id="generated-at">20' in page
    for student in ROSTER:
        assert student.id_card not in page


def test_report_lists_equal_the_store_lists(certificate_desk: Cli) -> None:
    """What the report shows is school_ready_lists of the store, and each office's list equals its workbook's."""
    store = Store.open(certificate_desk.data / "store.db")
    lists = school_ready_lists(store, load_preset("undergrad"))
    mechanical_list = next(x for x in lists if x.title == "机电工程学院领取证件")
    assert summary(mechanical_list)[2:5] == (2, 1, 0)
    assert [e.student.student_no for e in mechanical_list.students()] == ["0803010103", "0803010104"]


def test_report_page_escapes_names(cli: Cli, pass_all: Callable[[str, list[str]], None], tmp_path: Path) -> None:
    """A ready student named <script>… is shown as text on the page."""
    from lixiao.workbooks.roster import build_roster, roster_row

    roster = tmp_path / "nasty.xlsx"
    roster.write_bytes(build_roster([roster_row(make_student("090000001", name="<script>alert(1)</script>",
                                                             class_name="<b>班</b>"))]))
    assert cli("students", "import", str(roster)).exit_code == 0
    pass_all("090000001", BEFORE_CERTIFICATES)
    assert cli("report").exit_code == 0
    page = (cli.data / "reports" / "可领证名单.html").read_text("utf-8")
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>班</b>" not in page and "&lt;b&gt;班&lt;/b&gt;" in page
