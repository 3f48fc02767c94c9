"""The manual's four statuses from a workbook: 已通过 (a tick), 未办理 (empty), 未通过 (× ✗ 不通过 未通过, its reason
in 备注) and 可办可不办 (○ 可办可不办) — typed, read back, merged, issued again and listed."""

from __future__ import annotations

import openpyxl
import pytest

from lixiao.core.manual.model import Status
from lixiao.workbooks.layout import MAIN_SHEET
from lixiao.workbooks.reader import read_returned

from .conftest import Cli, drop, edit, key_of, outbox, rows, statuses, sync

ELECTRICITY = ("0803010103", "清理电费")


@pytest.mark.parametrize(("mark", "status"), [
    ("×", Status.FAILED), ("✗", Status.FAILED), ("✘", Status.FAILED), ("不通过", Status.FAILED),
    ("未通过", Status.FAILED), (" 未通过 ", Status.FAILED), ("○", Status.OPTIONAL), ("可办可不办", Status.OPTIONAL),
    ("未办理", Status.PENDING),
])
def test_typed_statuses_are_read_as_the_manuals_statuses(issued: Cli, mark: str, status: Status) -> None:
    """Each typed mark of the manual's statuses reads as that status, with no anomaly."""
    returned = read_returned(edit(outbox(issued, "utilities")[0], {ELECTRICITY: mark}), key_of(issued))
    assert returned.rows["0803010103"].marks["electricity"] is status
    assert returned.anomalies == []


def test_failed_with_its_reason_is_recorded_shown_and_issued_again_as_failed(issued: Cli) -> None:
    """× with 备注 “图书未还” records 未通过 with that reason; the receipt shows ✗ 未通过; the next workbook shows
    “未通过” in the cell (read back unchanged); ticking it later passes the step."""
    data = edit(outbox(issued, "utilities")[0], {ELECTRICITY: "×", ("0803010103", "备注"): "电费欠 35 元"})
    drop(issued, "failed.xlsx", data)
    [item] = sync(issued)["files"]
    assert (item["outcome"], item["applied"], item["refused"]) == ("merged", 1, 0)
    assert not any("没有写原因" in r for r in item["reasons"])
    [(status, remark)] = rows(issued, "SELECT status, remark FROM statuses WHERE student_no = '0803010103'")
    assert (status, remark) == ("failed", "电费欠 35 元")
    receipt = openpyxl.load_workbook(issued.data / item["receipt"])
    assert [c.value for c in receipt["已记录"][2]][3:5] == ["↓ 未办理", "✗ 未通过"]
    record = {s["step"]: s for s in issued.json("status", "0803010103")["steps"]}
    assert (record["electricity"]["status"], record["electricity"]["remark"]) == ("failed", "电费欠 35 元")

    issued("issue", "--checkpoint", "utilities")
    second = outbox(issued, "utilities")[1]
    sheet = openpyxl.load_workbook(second)[MAIN_SHEET]
    cell = next(row for row in sheet.iter_rows(values_only=True) if row[0] == "0803010103")
    assert "未通过" in cell and "电费欠 35 元" in cell
    unchanged = read_returned(second.read_bytes(), key_of(issued))
    assert unchanged.rows["0803010103"].marks["electricity"] is Status.FAILED and unchanged.anomalies == []
    drop(issued, "unchanged.xlsx", second.read_bytes())
    [same] = sync(issued)["files"]
    assert same["applied"] == 0 and statuses(issued)[("0803010103", "electricity")] == ("failed", 1)

    drop(issued, "paid.xlsx", edit(second, {ELECTRICITY: True, ("0803010103", "备注"): "已缴清"}))
    [paid] = sync(issued)["files"]
    assert paid["applied"] == 1
    assert statuses(issued)[("0803010103", "electricity")] == ("passed", 2)


def test_failed_without_a_reason_is_recorded_with_a_warning(issued: Cli) -> None:
    """未通过 with an empty 备注 is still recorded (the office said so) and the receipt asks for the reason."""
    drop(issued, "noreason.xlsx", edit(outbox(issued, "utilities")[0], {ELECTRICITY: "未通过"}))
    [item] = sync(issued)["files"]
    assert item["applied"] == 1
    assert any("没有写原因" in r and "0803010103" in r for r in item["reasons"])
    assert statuses(issued)[("0803010103", "electricity")] == ("failed", 1)
    receipt = openpyxl.load_workbook(issued.data / item["receipt"])
    assert any("没有写原因" in str(c.value) for row in receipt["提示"].iter_rows() for c in row)


def test_optional_is_recorded_and_does_not_hold_the_student_back(issued: Cli) -> None:
    """○ records 可办可不办, which meets the prerequisite of a later office like a pass."""
    drop(issued, "optional.xlsx", edit(outbox(issued, "utilities")[0], {ELECTRICITY: "○"}))
    [item] = sync(issued)["files"]
    assert item["applied"] == 1
    assert statuses(issued)[("0803010103", "electricity")] == ("optional", 1)
    record = {s["step"]: s for s in issued.json("status", "0803010103")["steps"]}
    assert record["electricity"]["status"] == "optional"


def test_a_mark_on_a_step_that_does_not_apply_is_refused(issued: Cli) -> None:
    """未通过 typed into the grey cell of a student the step does not concern is refused, nothing written."""
    path = outbox(issued, "student_affairs")[0]
    data = edit(path, {("0803010103", "生源地贷款还款确认"): "未通过"})
    drop(issued, "na.xlsx", data)
    [item] = sync(issued)["files"]
    assert (item["applied"], item["refused"]) == (0, 1)
    assert rows(issued, "SELECT value, reason FROM refused_ticks") == [
        ("未通过", "该生不需要办理“生源地贷款还款确认”（不适用）")]


def test_batch_rows_take_only_ticks(issued: Cli) -> None:
    """× on a 按宿舍 row is refused as an anomaly naming the 办理 sheet; no roommate changes."""
    path = outbox(issued, "utilities")[0]
    returned = read_returned(edit(path, {("8区-10栋-1层-0121", "清理电费"): "×"}, sheet="按宿舍"), key_of(issued))
    [anomaly] = returned.anomalies
    assert anomaly.code == "bad_mark" and "只能在“办理”表" in anomaly.reason
    drop(issued, "room.xlsx", edit(path, {("8区-10栋-1层-0121", "清理电费"): "×"}, sheet="按宿舍"))
    [item] = sync(issued)["files"]
    assert item["applied"] == 0 and statuses(issued) == {}


def test_a_failed_mark_against_a_moved_store_is_a_conflict_the_review_can_take(issued: Cli) -> None:
    """The store passed the step after issue; a copy saying 未通过 is a conflict labelled 未通过, and `review
    resolve … take` records 未通过."""
    issued("set", "0803010103", "electricity", "passed")
    drop(issued, "late.xlsx", edit(outbox(issued, "utilities")[0], {ELECTRICITY: "未通过"}))
    [item] = sync(issued)["files"]
    assert (item["applied"], item["conflicts"]) == (0, 1)
    assert rows(issued, "SELECT baseline, returned, current FROM conflicts") == [("未勾选", "未通过", "已通过")]
    [conflict] = issued.json("review", "list")["items"]
    result = issued("review", "resolve", conflict["id"], "take", "--reason", "与水电核实：确实欠费")
    assert result.exit_code == 0, result.output
    assert statuses(issued)[("0803010103", "electricity")] == ("failed", 2)
    assert issued.json("review", "list")["items"] == []


# -- found by an adversarial pass (tired clerks, hostile sorts) -----------------------------------------------


def test_a_reason_written_later_is_kept(issued: Cli) -> None:
    """未通过 first returned without a reason; the clerk writes it later — in the next generation (cell still
    未通过) or in the same copy returned again: the reason is stored, the status stays 未通过."""
    first = outbox(issued, "utilities")[0]
    drop(issued, "a.xlsx", edit(first, {ELECTRICITY: "×"}))
    sync(issued)
    drop(issued, "b.xlsx", edit(first, {ELECTRICITY: "×", ("0803010103", "备注"): "电费未缴清 86 元"}))
    [again] = sync(issued)["files"]
    assert again["applied"] == 1
    assert rows(issued, "SELECT status, remark FROM statuses") == [("failed", "电费未缴清 86 元")]
    issued("issue", "--checkpoint", "utilities")
    second = outbox(issued, "utilities")[1]
    drop(issued, "c.xlsx", edit(second, {("0803010103", "备注"): "电费未缴清 90 元"}))
    [later] = sync(issued)["files"]
    assert later["applied"] == 1
    assert rows(issued, "SELECT status, remark FROM statuses") == [("failed", "电费未缴清 90 元")]
    receipt = openpyxl.load_workbook(issued.data / later["receipt"])
    assert [c.value for c in receipt["已记录"][2]][5] == "补写原因：电费未缴清 90 元"


def test_an_old_remark_is_not_taken_as_the_reason_nor_given_to_a_tick(issued: Cli) -> None:
    """A × with no new 备注 gets no reason (and the warning), even where the row shows an older remark; in a row
    with × on one step and a tick on another, the typed 备注 goes to the 未通过 only."""
    college = next(p for p in outbox(issued, "college") if "机电工程学院" in p.name)
    drop(issued, "a.xlsx", edit(college, {("0803010103", "转出党团组织关系"): True,
                                          ("0803010103", "备注"): "已转出至长沙市委组织部"}))
    sync(issued)
    issued("issue", "--checkpoint", "college")
    second = sorted(p for p in outbox(issued, "college") if "机电工程学院" in p.name)[-1]
    drop(issued, "b.xlsx", edit(second, {("0803010103", "归还教学仪器"): "×"}))
    [item] = sync(issued)["files"]
    assert any("没有写原因" in r for r in item["reasons"])
    assert dict(rows(issued, "SELECT step, remark FROM statuses WHERE student_no = '0803010103'")) == {
        "party_transfer": "已转出至长沙市委组织部", "return_instruments": ""}
    drop(issued, "c.xlsx", edit(college, {("0803010104", "转出党团组织关系"): "×", ("0803010104", "归还教学仪器"): True,
                                          ("0803010104", "备注"): "党员材料未交"}))
    sync(issued)
    assert dict(rows(issued, "SELECT step, status || ':' || remark FROM statuses WHERE student_no = '0803010104'")) \
        == {"party_transfer": "failed:党员材料未交", "return_instruments": "passed:"}


def test_review_cannot_take_an_unreadable_mark(issued: Cli) -> None:
    """A refused ✕ (not a mark lixiao knows) cannot be “taken” — that once recorded 已通过; the coordinator is told
    to set the right status."""
    drop(issued, "x.xlsx", edit(outbox(issued, "utilities")[0], {ELECTRICITY: "✕"}))
    sync(issued)
    [item] = issued.json("review", "list")["items"]
    result = issued("review", "resolve", item["id"], "take", "--reason", "核实：是未通过")
    assert result.exit_code != 0 and "不是一个明确的状态" in result.output
    assert statuses(issued) == {}


def test_a_batch_tick_leaves_a_failed_member_alone(issued: Cli) -> None:
    """A room ticked on 按宿舍 does not overturn a roommate recorded 未通过 (with its reason); the receipt says so."""
    first = outbox(issued, "utilities")[0]
    drop(issued, "a.xlsx", edit(first, {ELECTRICITY: "×", ("0803010103", "备注"): "电费欠 320 元"}))
    sync(issued)
    issued("issue", "--checkpoint", "utilities")
    second = outbox(issued, "utilities")[1]
    drop(issued, "room.xlsx", edit(second, {("8区-10栋-1层-0121", "清理电费"): True}, sheet="按宿舍"))
    [item] = sync(issued)["files"]
    assert item["applied"] == 2 and any("是未通过，批量勾选没有改变它" in r for r in item["reasons"])
    assert rows(issued, "SELECT status, remark FROM statuses WHERE student_no = '0803010103'") == [
        ("failed", "电费欠 320 元")]


def test_failed_marks_moved_by_a_column_sort_are_held(cli: Cli) -> None:
    """Five 未通过 cells moved by sorting the tick column alone (five cleared, five new elsewhere) hold the file,
    as moved ticks do; so does a column of × without reasons."""
    from .conftest import cohort_folder

    folder = Cli(cohort_folder(cli.data.parent / "cohort", 40), cli.runner)
    folder("issue", "--checkpoint", "utilities")
    first = outbox(folder, "utilities")[0]
    nos = sorted(read_returned(first.read_bytes(), key_of(folder)).rows)
    drop(folder, "a.xlsx", edit(first, {**{(no, "清理电费"): "×" for no in nos[:5]},
                                        **{(no, "备注"): "欠费" for no in nos[:5]}}))
    assert sync(folder)["files"][0]["outcome"] == "merged"
    folder("issue", "--checkpoint", "utilities")
    second = outbox(folder, "utilities")[1]
    moved = {**{(no, "清理电费"): False for no in nos[:5]}, **{(no, "清理电费"): "×" for no in nos[10:15]}}
    drop(folder, "b.xlsx", edit(second, moved))
    [held] = sync(folder)["files"]
    assert held["outcome"] == "held" and "又新填了 5 个" in held["reasons"][0]
    column = {(no, "清理电费"): "×" for no in nos[20:40]}
    drop(folder, "c.xlsx", edit(second, column))
    [mass] = sync(folder)["files"]
    assert mass["outcome"] == "held" and "记为未通过却没有写原因" in mass["reasons"][0]


def test_optional_needs_the_prerequisites_like_a_tick(issued: Cli) -> None:
    """○ at the certificate desk would count as done: it is refused while the prerequisites are unmet."""
    path = outbox(issued, "certificates")[0]
    drop(issued, "cert.xlsx", edit(path, {("0803010103", "领取报到证"): "○"}))
    [item] = sync(issued)["files"]
    assert (item["applied"], item["refused"]) == (0, 1)
    [(value, reason)] = rows(issued, "SELECT value, reason FROM refused_ticks")
    assert value == "可办可不办" and reason.startswith("当前学生没有完成以下步骤")
    assert issued("set", "0803010103", "report_card", "optional").exit_code == 1


def test_a_failed_conflict_taken_keeps_its_reason(issued: Cli) -> None:
    """A 未通过 with its reason that meets a moved store is a conflict; taking it records the reason too."""
    issued("set", "0803010103", "electricity", "passed")
    drop(issued, "late.xlsx", edit(outbox(issued, "utilities")[0],
                                   {ELECTRICITY: "×", ("0803010103", "备注"): "电费单据作废，需重缴"}))
    sync(issued)
    [conflict] = issued.json("review", "list")["items"]
    assert issued("review", "resolve", conflict["id"], "take", "--reason", "核实").exit_code == 0
    assert rows(issued, "SELECT status, remark FROM statuses") == [("failed", "电费单据作废，需重缴")]
