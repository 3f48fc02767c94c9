"""The manual's four statuses from a workbook: 已通过 (a tick), 未办理 (empty), 未通过 (× ✗ 不通过 未通过, its reason
in 备注) and 可办可不办 (○ 可办可不办) — typed, read back, merged, issued again and listed."""

from __future__ import annotations

import openpyxl
import pytest

from lixiao.core.model import Status
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
