"""The manual to the letter (issue 25): 退费状态 is no prerequisite of the certificates (§3.2, §3.9), one withheld
certificate at 教务处 (§3.2), the special desk's screen (§3.9), and the whole 离校记录 in each office's workbook."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from lixiao.core.clearance.certificates import ReadyList, ready_list
from lixiao.core.clearance.issuance import plan_workbooks
from lixiao.core.manual import rules
from lixiao.core.manual.model import Flow, Status, Student
from lixiao.core.manual.roster import COLUMNS, parse_withheld, validate_row
from lixiao.core.manual.stats import Board
from lixiao.core.storage.chain import Event
from lixiao.core.storage.store import StatusRow, Store
from lixiao.sync.demo.tour import manual_lines
from lixiao.workbooks.layout import MAIN_SHEET, PROGRESS_HEADER, WAIVER_SHEET
from lixiao.workbooks.reader import read_returned
from lixiao.workbooks.roster import roster_row
from lixiao.workbooks.writer import Token, build_workbook

from .conftest import Cli, make_student, outbox

# §3.2's 2012 student: library passed, the rest pending — 退费状态 among them, as his 离校记录 lists it.
SHEN = make_student("0703010228", name="沈睿", withheld_degree=True, withheld_diploma=True,
                    dorm="2区-3栋-3层-0309", class_name="08机设3班")
MANUAL_3_2 = ("当前学生没有完成以下步骤，不能进行当前离校点的离校："
              "学生工作处离校点：归还学生证；水电通信中心离校点：清理电费；宿管中心离校点：清理宿舍物品；财务处离校点：缴还欠款")
BEFORE = ["party_transfer", "return_instruments", "return_books", "return_student_card", "electricity", "dorm_items",
          "pay_arrears"]


def rows_of(passed: dict[str, list[str]]) -> dict[str, dict[str, StatusRow]]:
    """Stored rows: 学号 → step → passed."""
    return {no: {step: StatusRow(Status.PASSED, "", 1, "2016-06-01T10:00:00+08:00", "cli", "") for step in steps}
            for no, steps in passed.items()}


def desk_list(flow: Flow, year: int, students: list[Student], passed: dict[str, list[str]], code: str) -> ReadyList:
    """The 可领证名单 of the one workbook ``lixiao issue`` plans for a desk."""
    [plan] = plan_workbooks(flow, year, f"{year}届", flow.checkpoint(code), students, rows_of(passed), {})
    return ready_list(plan)


def listed(listing: ReadyList) -> list[tuple[str, str]]:
    """(学号, 尚未领取) of every ready student."""
    return [(e.student.student_no, e.pending_names) for e in listing.students()]


# ---- 退费状态 -------------------------------------------------------------------------------------------------------

def test_the_registrar_refusal_of_a_2012_student_names_only_arrears_of_finance(undergrad: Flow) -> None:
    """§3.2 in its own session (2012, 退费状态 in use and pending): the refusal is word for word the manual's four
    steps — 财务处离校点：缴还欠款, not 退费状态."""
    decision = rules.may_set(undergrad, SHEN, "registrar_degree_certificate", Status.PASSED,
                             {"return_books": Status.PASSED}, set(), 2012)
    assert not decision.allowed and decision.reason == MANUAL_3_2


@pytest.mark.parametrize("preset", ["undergrad", "graduate"])
def test_a_student_awaiting_a_refund_collects_certificates_in_2016(preset: str, request: pytest.FixtureRequest
                                                                   ) -> None:
    """2016 (退费状态 in use): a student with every office done but the refund still pending may be handed the 学位证;
    only 缴还欠款 of 财务处 restricts, and the special desk has no restriction of 退费状态 to lift."""
    flow: Flow = request.getfixturevalue(preset)
    student = make_student()
    statuses = {s.code: Status.PASSED for cp in flow.checkpoints if not cp.requires for s in cp.steps}
    statuses["refund_status"] = Status.PENDING
    assert rules.may_set(flow, student, "degree_certificate", Status.PASSED, statuses, set(), 2016).allowed
    statuses["pay_arrears"] = Status.PENDING
    refused = rules.may_set(flow, student, "degree_certificate", Status.PASSED, statuses, set(), 2016)
    assert refused.reason == "当前学生没有完成以下步骤，不能进行当前离校点的离校：财务处离校点：缴还欠款"
    assert not rules.restricting_checkpoints(flow, "refund_status")
    assert not rules.is_complete(flow, student, statuses, 2016)  # 全部完成 still waits for the refund


# ---- one certificate withheld ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("typed", "expected"), [
    ("学位证", (True, False)), ("毕业证", (False, True)), ("毕业/结业证", (False, True)), ("两证", (True, True)),
    ("否", (False, False)), ("", (False, False)), ("是", (True, True)), ("学位证、毕业证", (True, True)),
    ("报到证", None),
])
def test_withheld_names_the_certificate(typed: str, expected: tuple[bool, bool] | None) -> None:
    """暂缓发证 takes 学位证, 毕业证, 两证 or 否; the old 是 means 两证; anything else is refused."""
    assert parse_withheld(typed) == expected


def test_a_roster_row_withholding_only_the_degree(undergrad: Flow) -> None:
    """A roster row with 暂缓发证 学位证 imports as that alone, writes back the same word, and a wrong word is refused
    saying what to write."""
    cells = dict(zip(COLUMNS, roster_row(make_student()), strict=True))
    student = validate_row(2, {**cells, "暂缓发证": "学位证"})
    assert isinstance(student, Student) and (student.withheld_degree, student.withheld_diploma) == (True, False)
    assert roster_row(student)[-1] == "学位证"
    problem = validate_row(3, {**cells, "暂缓发证": "报到证"})
    assert not isinstance(problem, Student)
    assert "暂缓发证“报到证”应为 学位证、毕业证、两证 或 否（是 表示两证都暂缓）" in problem.reasons


def test_the_store_keeps_which_certificate_is_withheld(tmp_path: Path) -> None:
    """Each of the four choices reads back as written; a store written before (withheld = 1) reads as 两证."""
    store = Store.create(tmp_path / "s.db", "2026届", 2026, "undergrad")
    students = [make_student(f"08030101{i:02d}", withheld_degree=d, withheld_diploma=p)
                for i, (d, p) in enumerate([(False, False), (True, False), (False, True), (True, True)])]
    store.upsert_students(students, source="test")
    assert store.students() == students
    with store.transaction():
        store.db.execute("UPDATE students SET withheld = 1 WHERE student_no = '0803010100'")
    assert store.students()[0].withheld_word == "两证"
    store.close()


def test_the_chain_of_a_store_from_before_reads_withheld_as_both(tmp_path: Path) -> None:
    """A roster event written before 暂缓发证 named the certificate ({"withheld": true}) replays as both withheld, so
    verify finds such a student as the table holds him."""
    store = Store.create(tmp_path / "s.db", "2026届", 2026, "undergrad")
    gao = make_student("0801020227", name="高鹏", withheld_degree=True, withheld_diploma=True)
    store.upsert_students([gao], source="test")
    with store.transaction():
        store.append_audit([Event("student", student_no=gao.student_no, old='{"withheld": false}',
                                  new='{"withheld": true}', decision="updated", source="test")])
    replayed = store.trusted_replay().students[gao.student_no]
    assert (replayed["withheld_degree"], replayed["withheld_diploma"]) == (True, True)
    assert "withheld" not in replayed
    assert store.trusted_differences(store.trusted_replay()).student_changed == []
    store.close()


def test_only_the_degree_withheld_splits_the_certificates_between_the_desks(undergrad: Flow) -> None:
    """A student whose 学位证 alone is withheld gets the 毕业证 (and 报到证, 户口) at the college desk and the 学位证 at
    教务处: the lists each desk gets are exact."""
    degree = make_student("0803010103", withheld_degree=True)
    both = make_student("0803010104", name="沈睿", withheld_degree=True, withheld_diploma=True)
    plain = make_student("0803010105", name="刘美娟")
    students = [degree, both, plain]
    passed = {s.student_no: BEFORE for s in students}
    college = desk_list(undergrad, 2026, students, passed, "certificates")
    assert listed(college) == [
        ("0803010103", "领取毕业/结业证、领取报到证、领取户口迁移证明"),
        ("0803010104", "领取报到证、领取户口迁移证明"),
        ("0803010105", "领取学位证、领取毕业/结业证、领取报到证、领取户口迁移证明"),
    ]
    registrar = desk_list(undergrad, 2026, students, passed, "registrar")
    assert listed(registrar) == [("0803010103", "领取学位证"), ("0803010104", "领取学位证、领取毕业/结业证")]
    done = {**passed, "0803010103": [*BEFORE, "diploma", "report_card", "hukou_letter", "registrar_degree_certificate"]}
    statuses = {code: Status.PASSED for code in done["0803010103"]}
    assert rules.is_complete(undergrad, degree, statuses, 2026)
    assert not rules.is_complete(undergrad, degree, {**statuses, "registrar_degree_certificate": Status.PENDING}, 2026)


# ---- the special desk's screen -----------------------------------------------------------------------------------

def _sheet(data: bytes, name: str) -> list[list[Any]]:
    """The values of one sheet from the header row on."""
    ws = openpyxl.load_workbook(io.BytesIO(data))[name]
    values = [list(r) for r in ws.iter_rows(values_only=True)]
    return values[next(i for i, r in enumerate(values) if r[0] == "学号"):]


def test_the_special_desk_shows_the_checkpoint_and_the_initial_status(undergrad: Flow) -> None:
    """§3.9's screen as columns: 离校点 财务处离校点, 离校点当前状态 未完成, 离校步骤 缴还欠款, 步骤当前状态(初始) as
    未办理(未通过) — the status now and the one the cell first received — and 限制状态."""
    student = make_student("0801020227", name="高鹏")
    pending = {student.student_no: {"pay_arrears": StatusRow(Status.PENDING, "", 2, "", "cli", "")}}
    [plan] = plan_workbooks(undergrad, 2026, "2026届", undergrad.checkpoint("special"), [student], pending, {},
                            initial={student.student_no: {"pay_arrears": Status.FAILED}})
    header, row = _sheet(build_workbook(plan, Token("w", 1, "{}", "sig"), "2026-06-01T10:00"), WAIVER_SHEET)[:2]
    shown = dict(zip(header, row, strict=False))
    assert [shown[k] for k in ("离校点", "离校点当前状态", "离校步骤", "步骤当前状态(初始)", "限制状态")] == [
        "财务处离校点", "未完成", "缴还欠款", "未办理(未通过)", "限制已开启"]


def test_status_and_waivers_show_the_special_desks_columns(cli: Cli, tmp_path: Path) -> None:
    """`lixiao status` lists the special desk's row (离校点当前状态, 步骤当前状态(初始), 限制状态) and `lixiao waivers`
    carries both beside the lifted step; the 初始 is the status the finance feed first gave."""
    finance = tmp_path / "财务.csv"
    finance.write_text("学号,欠费金额\n0803010103,120\n", "utf-8")
    assert cli("feed", "finance", str(finance)).exit_code == 0
    assert cli("waive", "0803010103", "pay_arrears", "--reason", "欠费缓交").exit_code == 0
    [restriction] = cli.json("status", "0803010103")["restrictions"]
    assert restriction == {
        "checkpoint_name": "财务处离校点", "checkpoint_status": "未完成", "step": "pay_arrears",
        "step_name": "缴还欠款", "status": "未通过", "initial": "未通过", "restriction": "限制已关闭"}
    text = cli("status", "0803010103").output
    assert "离校点当前状态 未完成" in text and "步骤当前状态(初始) 未通过(未通过)  限制已关闭" in text
    [waiver] = cli.json("waivers")
    assert (waiver["checkpoint_status"], waiver["status"], waiver["initial"]) == ("未完成", "未通过", "未通过")


def test_first_statuses_are_each_cells_first_recorded_status(tmp_path: Path) -> None:
    """The 初始 is the first status event of the cell, whatever came later; a cell never written is absent."""
    store = Store.create(tmp_path / "s.db", "2026届", 2026, "undergrad")
    store.upsert_students([make_student("0803010103"), make_student("0803010104", name="沈睿")], source="test")
    with store.transaction():
        for status in (Status.FAILED, Status.PENDING, Status.PASSED):
            store.write_status("0803010103", "pay_arrears", status, remark="", source="feed", operator="",
                               decision="set")
    assert store.first_statuses(["pay_arrears"]) == {"0803010103": {"pay_arrears": Status.FAILED}}
    assert store.first_statuses(["pay_arrears"], "0803010104") == {}
    store.close()


# ---- 离校进度 -----------------------------------------------------------------------------------------------------

def test_progress_names_what_is_missing_of_the_whole_record(undergrad: Flow) -> None:
    """离校进度 counts the steps 全部完成 counts: 9/11 · 缺 清理电费、缴还欠款; all of them: 全部完成; more than four
    missing are counted."""
    student = make_student()
    done = {s.code: Status.PASSED for s in undergrad.all_steps() if s.code not in ("electricity", "pay_arrears")}
    assert rules.progress_text(undergrad, student, done, 2026) == "9/11 · 缺 清理电费、缴还欠款"
    everything = {**done, "electricity": Status.PASSED, "pay_arrears": Status.OPTIONAL}
    assert rules.progress_text(undergrad, student, everything, 2026) == "11/11 · 全部完成"
    assert rules.progress_text(undergrad, student, {}, 2026) == (
        "0/11 · 缺 转出党团组织关系、归还教学仪器、归还图书、归还学生证 等 11 项")
    withheld = replace(student, withheld_degree=True)
    waiting = {**everything, "registrar_degree_certificate": Status.PENDING}
    assert rules.progress_text(undergrad, withheld, waiting, 2026) == "10/11 · 缺 领取学位证（教务处离校点）"


def test_every_office_workbook_carries_the_progress_and_the_reader_ignores_it(issued: Cli) -> None:
    """The 办理 sheet has 离校进度 right after 前置条件, one cell per student; a return whose 离校进度 was typed over
    reads with the same identity columns and nothing refused."""
    path = outbox(issued, "utilities")[0]
    book = openpyxl.load_workbook(path)
    ws = book[MAIN_SHEET]
    head = next(r for r in range(1, 10) if ws.cell(r, 1).value == "学号")
    titles = [c.value for c in ws[head]]
    at = titles.index(PROGRESS_HEADER)
    assert titles[at - 1] == "前置条件"
    assert ws.cell(head + 1, at + 1).value == "0/11 · 缺 转出党团组织关系、归还教学仪器、归还图书、归还学生证 等 11 项"
    ws.cell(head + 1, at + 1).value = "随便写的"
    buffer = io.BytesIO()
    book.save(buffer)
    from .conftest import key_of
    returned = read_returned(buffer.getvalue(), key_of(issued))
    row = next(iter(returned.rows.values()))
    assert PROGRESS_HEADER not in row.identity and "前置条件" not in row.identity
    assert not [a for a in returned.anomalies if a.kind != "checkbox_lost"]


def test_the_demo_states_both_rules(undergrad: Flow) -> None:
    """`lixiao demo` (a 2026 session) says where a student with the 学位证 alone withheld collects what, and what a
    2016 session decides for a student awaiting a refund, both from the rules."""
    degree = make_student("0803010103", withheld_degree=True)
    board = Board(tuple(undergrad.all_steps()), [degree, make_student("0803010104", name="沈睿")], [], [], {})
    assert manual_lines(undergrad, board) == [
        "暂缓发证（学位证）：丁德卫（0803010103）在机电工程学院领取证件领 领取毕业/结业证、领取报到证、"
        "领取户口迁移证明；在教务处离校点领 领取学位证",
        "按 2016 届流程（退费状态仍在使用，2017 年取消）：其余离校点办完、只差退费的学生 → 可以领证；"
        "全部完成：否（等财务处录入退费状态）",
    ]
