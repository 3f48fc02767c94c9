"""The 待核对 queue: open items listed, resolved (keep / take / dismiss) with an audit event, settled items dropping
out by themselves, and the report showing open items only."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import openpyxl

from .conftest import Cli, drop, edit, outbox, rows, statuses, sync

STUDENT, OTHER = "0803010103", "0803010104"


def _conflict(cli: Cli) -> None:
    """Tick → reissue → revoke, then the old copy re-ticks the cell: one conflict (as in test_sync)."""
    cli("issue", "--checkpoint", "utilities")
    gen1 = outbox(cli, "utilities")[0]
    drop(cli, "g1-a.xlsx", edit(gen1, {(STUDENT, "清理电费"): True}))
    sync(cli)
    cli("issue", "--checkpoint", "utilities")
    drop(cli, "g2.xlsx", edit(outbox(cli, "utilities")[1], {(STUDENT, "清理电费"): False}))
    sync(cli)
    drop(cli, "g1-b.xlsx", edit(gen1, {(STUDENT, "清理电费"): True, (OTHER, "清理电费"): True}))
    assert sync(cli)["files"][0]["conflicts"] == 1


def _items(cli: Cli) -> list[dict[str, str]]:
    items: list[dict[str, str]] = cli.json("review", "list")["items"]
    return items


def test_a_conflict_is_kept_or_taken_with_a_reason_and_an_audit_event(cli: Cli) -> None:
    """`review resolve C… take` applies the returned tick (checked like set) and closes the item; the reason
    and operator are audited; the item no longer appears; a second resolve of it is refused."""
    _conflict(cli)
    [item] = [i for i in _items(cli) if i["kind"] == "conflict"]
    assert item["student_no"] == STUDENT and "交回 已勾选" in item["summary"]
    result = cli("review", "resolve", item["id"], "keep")
    assert result.exit_code == 2 and "--reason" in result.output
    result = cli("review", "resolve", item["id"], "take", "--reason", "已与水电核实", "--operator", "协调人")
    assert result.exit_code == 0, result.output
    assert statuses(cli)[(STUDENT, "electricity")][0] == "passed"
    assert [i for i in _items(cli) if i["kind"] == "conflict"] == []
    assert rows(cli, "SELECT resolution FROM conflicts WHERE resolved_at IS NOT NULL") == [("take",)]
    assert rows(cli, "SELECT old, new, operator, detail FROM audit WHERE kind = 'review'") == [
        (item["id"], "take", "协调人", "已与水电核实")]
    again = cli("review", "resolve", item["id"], "keep", "--reason", "x")
    assert again.exit_code == 2 and "没有待核对项" in again.output
    assert cli("verify").exit_code == 0


def test_a_conflict_settled_by_set_drops_out_by_itself(cli: Cli) -> None:
    """After `lixiao set` gives the cell the returned value, the conflict is no longer open (nor in the report)."""
    _conflict(cli)
    assert any(i["kind"] == "conflict" for i in _items(cli))
    assert cli("set", STUDENT, "electricity", "passed").exit_code == 0
    assert not any(i["kind"] == "conflict" for i in _items(cli))
    assert cli("report").exit_code == 0
    page = (cli.data / "reports" / "index.html").read_text("utf-8")
    assert "冲突（0）" in page


def test_a_refused_tick_drops_out_once_passed_or_is_dismissed(issued: Cli) -> None:
    """A certificate tick refused for missing prerequisites is listed; dismissing it closes it; a refused tick
    whose step is later passed leaves the queue without any action."""
    desk = next(p for p in outbox(issued, "certificates") if "机电工程学院" in p.name)
    drop(issued, "证件.xlsx", edit(desk, {(STUDENT, "领取学位证"): True, (OTHER, "领取学位证"): True}))
    assert sync(issued)["files"][0]["refused"] == 2
    refused = [i for i in _items(issued) if i["kind"] == "refused"]
    assert sorted(i["student_no"] for i in refused) == [STUDENT, OTHER]
    mine = next(i for i in refused if i["student_no"] == STUDENT)
    taken = issued("review", "resolve", mine["id"], "take", "--reason", "再试")
    assert taken.exit_code == 1 and "当前学生没有完成以下步骤" in taken.output  # still refused: nothing changed
    assert issued("review", "resolve", mine["id"], "dismiss", "--reason", "学生未办完，已告知").exit_code == 0
    left = [i for i in _items(issued) if i["kind"] == "refused"]
    assert [i["student_no"] for i in left] == [OTHER]
    step = next(s["step"] for s in issued.json("status", OTHER)["steps"] if s["step_name"] == "领取学位证")
    folder_rows = rows(issued, "SELECT count(*) FROM refused_ticks WHERE resolved_at IS NULL")
    assert folder_rows == [(1,)]
    # once the step is passed (all prerequisites by hand here), the refusal is moot
    status = issued.json("status", OTHER)
    for block in status["blocked"]:
        for missing in block["missing"]:
            name = missing.split("：")[-1]
            code = next(s["step"] for s in status["steps"] if s["step_name"] == name)
            assert issued("set", OTHER, code, "passed").exit_code == 0
    assert issued("set", OTHER, step, "passed").exit_code == 0
    assert [i for i in _items(issued) if i["kind"] == "refused"] == []


def test_a_refused_file_is_acknowledged(issued: Cli) -> None:
    """A file refused as a whole is an item until dismissed; `review` without a subcommand lists the queue."""
    drop(issued, "坏文件.xlsx", "学号,姓名\n0803010103,丁德卫\n".encode())  # a CSV renamed .xlsx
    sync(issued)
    [item] = [i for i in _items(issued) if i["kind"] == "file"]
    assert item["file"] == "坏文件.xlsx"
    listed = issued("review")
    assert listed.exit_code == 0 and item["id"] in listed.output
    wrong = issued("review", "resolve", item["id"], "take", "--reason", "x")
    assert wrong.exit_code == 2 and "只能 dismiss" in wrong.output
    assert issued("review", "resolve", item["id"], "dismiss", "--reason", "已让学院重新交回").exit_code == 0
    assert [i for i in _items(issued) if i["kind"] == "file"] == []
    assert json.loads(issued("review", "list", "--json").output)["items"] == []


def test_the_resolve_choices_are_the_actions() -> None:
    """`review resolve` lists its actions without importing core.review (a fast --help): they must stay the enum's."""
    from lixiao.core.clearance.review import Action
    from lixiao.sync.cli.review import review_resolve

    [choice] = [p.type for p in review_resolve.params if p.name == "action"]
    assert list(choice.choices) == [a.value for a in Action]  # type: ignore[attr-defined]


def _refused_lift(cli: Cli, tmp_path: Path) -> dict[str, str]:
    """A 解除限制 tick without a 理由, refused: the review item it leaves."""
    finance = tmp_path / "财务.csv"
    finance.write_text(f"学号,欠费金额\n{STUDENT},120\n", "utf-8")
    assert cli("feed", "finance", str(finance)).exit_code == 0
    cli("issue", "--checkpoint", "special")
    book = openpyxl.load_workbook(outbox(cli, "special")[0])
    ws = book["解除限制"]
    head = next(r for r in range(1, 10) if ws.cell(r, 1).value == "学号")
    cols = {ws.cell(head, c).value: c for c in range(1, ws.max_column + 1) if ws.cell(head, c).value}
    row = next(r for r in range(head + 1, ws.max_row + 1)
               if (ws.cell(r, 1).value, ws.cell(r, cols["离校步骤"]).value) == (STUDENT, "缴还欠款"))
    ws.cell(row, cols["解除限制"]).value = True  # no 理由: refused
    buffer = io.BytesIO()
    book.save(buffer)
    drop(cli, "special.xlsx", buffer.getvalue())
    assert sync(cli)["files"][0]["refused"] == 1
    [item] = [i for i in _items(cli) if i["kind"] == "refused"]
    return item


def test_taking_a_refused_lift_lifts_the_restriction_with_the_reason(cli: Cli, tmp_path: Path) -> None:
    """`take` on a refused 解除限制 tick lifts the restriction (checked like lixiao waive, the --reason as its 理由)
    and closes the item — it never sends the coordinator to lixiao set."""
    item = _refused_lift(cli, tmp_path)
    taken = cli("review", "resolve", item["id"], "take", "--reason", "欠费缓交，经学生处批准")
    assert taken.exit_code == 0, taken.output
    assert "lixiao set" not in taken.output
    [waiver] = cli.json("waivers")
    assert (waiver["student_no"], waiver["reason"]) == (STUDENT, "欠费缓交，经学生处批准")
    assert _items(cli) == []


def test_a_refused_lift_drops_out_once_the_waiver_is_granted(cli: Cli, tmp_path: Path) -> None:
    """A refused 解除限制 tick leaves the queue by itself once `lixiao waive` lifted that restriction."""
    item = _refused_lift(cli, tmp_path)
    step = next(s["step"] for s in cli.json("status", STUDENT)["steps"] if s["step_name"] == "缴还欠款")
    assert item["step"] == step
    assert cli("waive", STUDENT, step, "--reason", "欠费缓交").exit_code == 0
    assert _items(cli) == []


def test_a_refused_file_has_a_short_id_and_its_old_id_still_works(issued: Cli) -> None:
    """A refused file's id is short (F + a number); the former F + 12 hex digits of its hash is still accepted."""
    drop(issued, "坏文件.xlsx", "学号,姓名\n0803010103,丁德卫\n".encode())
    sync(issued)
    [item] = [i for i in _items(issued) if i["kind"] == "file"]
    assert re.fullmatch(r"F\d{1,6}", item["id"]), item["id"]
    [(digest_hex,)] = rows(issued, "SELECT hash FROM returns WHERE outcome = 'rejected'")
    done = issued("review", "resolve", f"F{digest_hex[:12]}", "dismiss", "--reason", "已让学院重新交回")
    assert done.exit_code == 0, done.output
    assert _items(issued) == []


def test_the_dashboard_counts_what_review_lists(issued: Cli) -> None:
    """The report's 待核对 card counts the same items as `lixiao review`: refused files too."""
    drop(issued, "坏文件.xlsx", "学号,姓名\n0803010103,丁德卫\n".encode())
    desk = next(p for p in outbox(issued, "certificates") if "机电工程学院" in p.name)
    drop(issued, "证件.xlsx", edit(desk, {(STUDENT, "领取学位证"): True}))
    sync(issued)
    listed = _items(issued)
    assert {i["kind"] for i in listed} == {"file", "refused"}
    assert issued("report").exit_code == 0
    page = (issued.data / "reports" / "index.html").read_text("utf-8")
    card = re.search(r'<div class="sub">待核对</div><div class="num">(\d+)</div>', page)
    assert card is not None and int(card.group(1)) == len(listed)
    assert f"<td>{next(i['id'] for i in listed if i['kind'] == 'file')}</td>" in page
