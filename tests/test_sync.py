"""The sync pipeline on real files: exactly once, three-way merge by version, refusals kept, hostile files refused."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl

from .conftest import ROSTER, Cli, drop, edit, outbox, rows, statuses, sync
from .hostile_corpus import with_member

BEFORE_CERTIFICATES = ["party_transfer", "return_instruments", "return_books", "return_student_card",
                       "electricity", "dorm_items"]










def with_operator(data: bytes, name: str) -> bytes:
    """Fill the 经办人 cell of a returned workbook."""
    book = openpyxl.load_workbook(io.BytesIO(data))
    book["办理"]["B2"] = name
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_ticks_merge_with_operator_archive_and_receipt(issued: Cli) -> None:
    """Ticked cells become 已通过 under the 经办人's name; the file is archived byte-identical; a receipt is written."""
    source = outbox(issued, "utilities")[0]
    ticked = edit(source, {("0803010103", "清理电费"): True, ("0803010104", "清理电费"): "√"})
    data = with_operator(ticked, "水电王老师")
    drop(issued, "水电.xlsx", data)
    doc = sync(issued)
    [item] = doc["files"]
    assert (item["outcome"], item["applied"], item["refused"], item["conflicts"]) == ("merged", 2, 0, 0)
    assert statuses(issued)[("0803010103", "electricity")] == ("passed", 1)
    history = issued.json("history", "0803010104")
    assert (history[-1]["step"], history[-1]["operator"], history[-1]["source_hash"]) == (
        "electricity", "水电王老师", hashlib.sha256(data).hexdigest())
    archived = issued.data / "archive" / f"{hashlib.sha256(data).hexdigest()}.xlsx"
    assert archived.read_bytes() == data
    assert not any((issued.data / "inbox").iterdir())
    receipt = openpyxl.load_workbook(issued.data / item["receipt"])
    applied = [[c.value for c in r] for r in receipt["已记录"].iter_rows(min_row=2)]
    assert sorted(r[0] for r in applied) == ["0803010103", "0803010104"] and applied[0][4] == "✓ 已通过"
    assert any(r[0].value == "经办人" and r[1].value == "水电王老师" for r in receipt["概要"].iter_rows())


def test_same_content_again_is_a_duplicate_that_changes_nothing(issued: Cli) -> None:
    """The same bytes under another name: outcome duplicate, statuses and versions unchanged."""
    data = edit(outbox(issued, "utilities")[0], {("0803010103", "清理电费"): True})
    drop(issued, "a.xlsx", data)
    sync(issued)
    before = statuses(issued)
    drop(issued, "b-copy.xlsx", data)
    [item] = sync(issued)["files"]
    assert item["outcome"] == "duplicate" and item["applied"] == 0
    assert statuses(issued) == before
    assert rows(issued, "SELECT count(*) FROM returns") == [(1,)]


def test_dry_run_writes_nothing(issued: Cli) -> None:
    """--dry-run reports the merge but leaves store.db, the inbox and the archive exactly as they were."""
    drop(issued, "a.xlsx", edit(outbox(issued, "utilities")[0], {("0803010103", "清理电费"): True}))
    db = (issued.data / "store.db").read_bytes()
    wal = issued.data / "store.db-wal"
    wal_before = wal.read_bytes() if wal.exists() else b""
    [item] = sync(issued, "--dry-run")["files"]
    assert (item["outcome"], item["applied"]) == ("merged", 1)
    assert (issued.data / "store.db").read_bytes() == db
    assert (wal.read_bytes() if wal.exists() else b"") == wal_before
    assert [p.name for p in (issued.data / "inbox").iterdir()] == ["a.xlsx"]
    assert not [p for p in (issued.data / "archive").iterdir() if p.is_file()]


def test_prerequisite_refusal_is_kept_in_the_manuals_words(issued: Cli, pass_all: Callable[..., None]) -> None:
    """A certificate ticked while 缴还欠款 is pending is refused, kept, and listed in the receipt."""
    pass_all("0803010103", BEFORE_CERTIFICATES)
    issued("issue", "--checkpoint", "certificates")
    path = next(p for p in outbox(issued, "certificates") if "机电工程学院" in p.name and "第2版" in p.name)
    drop(issued, "证件.xlsx", edit(path, {("0803010103", "领取学位证"): True}))
    [item] = sync(issued)["files"]
    assert (item["outcome"], item["applied"], item["refused"]) == ("merged", 0, 1)
    [(step, reason)] = rows(issued, "SELECT step, reason FROM refused_ticks")
    assert step == "degree_certificate"
    assert reason == "当前学生没有完成以下步骤，不能进行当前离校点的离校：财务处离校点：缴还欠款"
    receipt = openpyxl.load_workbook(issued.data / item["receipt"])
    assert receipt["被拒绝"]["E2"].value == reason


def test_untick_is_a_revocation(cli: Cli) -> None:
    """A box ticked at issue and returned unticked sets the step back to 未办理, audited as revoked."""
    cli("set", "0803010103", "electricity", "passed")
    cli("issue", "--checkpoint", "utilities")
    drop(cli, "u.xlsx", edit(outbox(cli, "utilities")[0], {("0803010103", "清理电费"): False}))
    [item] = sync(cli)["files"]
    assert item["applied"] == 1
    assert statuses(cli)[("0803010103", "electricity")] == ("pending", 2)
    assert cli.json("history", "0803010103")[-1]["decision"] == "revoked"


def test_old_copy_cannot_undo_a_newer_decision(cli: Cli) -> None:
    """Tick → reissue → revoke, then an old copy re-ticking the same cell is a conflict in either order."""
    cli("issue", "--checkpoint", "utilities")
    gen1 = outbox(cli, "utilities")[0]
    drop(cli, "g1-a.xlsx", edit(gen1, {("0803010103", "清理电费"): True}))
    sync(cli)
    cli("issue", "--checkpoint", "utilities")
    gen2 = outbox(cli, "utilities")[1]
    drop(cli, "g2.xlsx", edit(gen2, {("0803010103", "清理电费"): False}))
    sync(cli)
    assert statuses(cli)[("0803010103", "electricity")] == ("pending", 2)
    old_copy = edit(gen1, {("0803010103", "清理电费"): True, ("0803010104", "清理电费"): True})
    drop(cli, "g1-b.xlsx", old_copy)
    [item] = sync(cli)["files"]
    assert (item["applied"], item["conflicts"]) == (1, 1)  # the other student's tick still applies
    assert statuses(cli)[("0803010103", "electricity")] == ("pending", 2)
    assert rows(cli, "SELECT student_no, baseline, returned, current FROM conflicts") == [
        ("0803010103", "未勾选", "已勾选", "未办理")]


def test_batch_room_tick_clears_every_roommate(issued: Cli) -> None:
    """One tick on the 按宿舍 row passes 清理电费 for each student of that room."""
    path = outbox(issued, "utilities")[0]
    drop(issued, "room.xlsx", edit(path, {("8区-10栋-1层-0121", "清理电费"): True}, sheet="按宿舍"))
    [item] = sync(issued)["files"]
    room = {s.student_no for s in ROSTER if s.dorm == "8区-10栋-1层-0121"}
    assert item["applied"] == len(room) == 3
    assert {n for (n, s), (st, _) in statuses(issued).items() if st == "passed"} == room
    steps = {s["step"]: s for s in issued.json("status", sorted(room)[0])["steps"]}
    assert steps["electricity"]["remark"] == "按宿舍批量：8区-10栋-1层-0121"


def _special_cells(path: Path) -> tuple[openpyxl.Workbook, Any, dict[str, int], dict[tuple[str, str], int]]:
    """The 解除限制 sheet of a special-desk workbook, its columns by header, its rows by (学号, 离校步骤)."""
    book = openpyxl.load_workbook(path)
    ws = book["解除限制"]
    head = next(r for r in range(1, 10) if ws.cell(r, 1).value == "学号")
    cols = {ws.cell(head, c).value: c for c in range(1, ws.max_column + 1) if ws.cell(head, c).value}
    where = {(ws.cell(r, 1).value, ws.cell(r, cols["离校步骤"]).value): r for r in range(head + 1, ws.max_row + 1)}
    return book, ws, cols, where


def test_special_desk_lifts_and_restores(cli: Cli, tmp_path: Path) -> None:
    """The special desk's workbook shows each restricted step's arrears (from the finance feed); ticking 解除限制
    with a reason and a 凭证 lifts it and keeps both; without a reason it is refused; unticking restores it."""
    finance = tmp_path / "财务.csv"
    finance.write_text("学号,欠费金额\n0803010103,120\n0803010104,35.5\n", "utf-8")
    assert cli("feed", "finance", str(finance)).exit_code == 0
    cli("issue", "--checkpoint", "special")
    book, ws, cols, where = _special_cells(outbox(cli, "special")[0])
    assert list(cols)[4:13] == ["离校点", "离校点当前状态", "离校步骤", "步骤当前状态(初始)", "状态说明", "限制状态",
                                "解除限制", "理由", "凭证"]
    arrears = where[("0803010103", "缴还欠款")]
    assert ws.cell(arrears, cols["状态说明"]).value == "欠费 120.00 元"
    assert ws.cell(arrears, cols["离校点当前状态"]).value == "未完成"
    assert ws.cell(arrears, cols["步骤当前状态(初始)"]).value == "未通过(未通过)"
    ws.cell(arrears, cols["解除限制"]).value = True
    ws.cell(arrears, cols["理由"]).value = "欠费缓交，经学生处批准"
    ws.cell(arrears, cols["凭证"]).value = "缓交证明 2026-031"
    ws.cell(where[("0803010104", "缴还欠款")], cols["解除限制"]).value = True  # no reason: refused
    buffer = io.BytesIO()
    book.save(buffer)
    drop(cli, "special.xlsx", buffer.getvalue())
    [item] = sync(cli)["files"]
    assert (item["applied"], item["refused"]) == (1, 1)
    [waiver] = cli.json("waivers")
    assert (waiver["student_no"], waiver["reason"], waiver["evidence"]) == (
        "0803010103", "欠费缓交，经学生处批准", "缓交证明 2026-031")
    cli("issue", "--checkpoint", "special")
    book, ws, cols, where = _special_cells(outbox(cli, "special")[1])
    arrears = where[("0803010103", "缴还欠款")]
    assert ws.cell(arrears, cols["解除限制"]).value is True
    ws.cell(arrears, cols["解除限制"]).value = False
    buffer = io.BytesIO()
    book.save(buffer)
    drop(cli, "special2.xlsx", buffer.getvalue())
    sync(cli)
    assert cli.json("waivers") == []
    guide = " ".join(str(c.value) for row in book["说明"].iter_rows() for c in row if c.value)
    assert "凭证" in guide and "前置条件" not in guide and "按班级" not in guide


def test_edited_name_and_foreign_rows_change_nothing(issued: Cli) -> None:
    """A row whose 姓名 was changed is refused whole; a 学号 not issued is reported; neither is applied."""
    path = outbox(issued, "utilities")[0]
    book = openpyxl.load_workbook(path)
    ws = book["办理"]
    ws["B5"] = "张冒名"
    ws.cell(5, 10).value = True
    ws.append(["0999999999", "外人"] + [""] * 7 + [True])
    buffer = io.BytesIO()
    book.save(buffer)
    drop(issued, "x.xlsx", buffer.getvalue())
    [item] = sync(issued)["files"]
    assert (item["applied"], item["refused"]) == (0, 1)
    text = " ".join(item["reasons"])
    assert "0999999999 不在签发的名单中" in text and "学生名单与签发时不同" in text
    [(reason,)] = rows(issued, "SELECT reason FROM refused_ticks")
    assert "姓名“张冒名”（签发时为“雷宇”）与名单不符" in reason and "整行未作任何变更" in reason


def test_another_offices_column_is_ignored(issued: Cli) -> None:
    """A column added with another office's step name changes nothing: only signed step columns are read."""
    path = outbox(issued, "utilities")[0]
    book = openpyxl.load_workbook(path)
    ws = book["办理"]
    ws.cell(4, 20).value = "缴还欠款"
    ws.cell(5, 20).value = True
    buffer = io.BytesIO()
    book.save(buffer)
    drop(issued, "x.xlsx", buffer.getvalue())
    [item] = sync(issued)["files"]
    assert item["applied"] == 0 and statuses(issued) == {}


def test_bad_marks_are_refused_with_their_cell(issued: Cli) -> None:
    """An unreadable mark is a refused tick naming the cell, never an untick."""
    drop(issued, "m.xlsx", edit(outbox(issued, "utilities")[0], {("0803010103", "清理电费"): "也许"}))
    [item] = sync(issued)["files"]
    assert item["refused"] == 1
    [(value, reason)] = rows(issued, "SELECT value, reason FROM refused_ticks")
    assert value == "也许" and "无法识别的勾选内容" in reason


def test_forged_and_foreign_tokens_are_rejected(issued: Cli, tmp_path: Path) -> None:
    """A workbook signed by another data folder, or with both the token sheet and the token properties removed,
    is rejected."""
    from click.testing import CliRunner

    from lixiao.sync.cli.main import main

    other = tmp_path / "other"
    runner = CliRunner()
    runner.invoke(main, ["init", str(other)])
    (other / ".secret").write_text((other / ".secret").read_text()[::-1])
    drop(issued, "foreign.xlsx", with_member(outbox(issued, "utilities")[0].read_bytes(), "x", b""))
    book = openpyxl.load_workbook(outbox(issued, "dorm")[0])
    del book["_lixiao"]
    book.custom_doc_props.props = [p for p in book.custom_doc_props.props if not p.name.startswith("lixiao_token")]
    buffer = io.BytesIO()
    book.save(buffer)
    drop(issued, "notoken.xlsx", buffer.getvalue())
    data = (issued.data / ".secret").read_text()
    (issued.data / ".secret").write_text(data[::-1])  # as if signed with another key
    results = {f["file"]: f for f in sync(issued)["files"]}
    assert results["foreign.xlsx"]["reasons"][0].startswith("bad_signature：")
    assert results["notoken.xlsx"]["reasons"][0].startswith("no_token：")


def test_young_empty_file_is_deferred_not_rejected(issued: Cli) -> None:
    """An empty file that just appeared may still be copying: deferred, left in the inbox."""
    path = issued.data / "inbox" / "copying.xlsx"
    path.write_bytes(b"")
    past = time.time() - 5
    os.utime(path, (past, past))
    [item] = sync(issued)["files"]
    assert item["outcome"] == "deferred" and path.exists()


def test_editor_debris_is_ignored(issued: Cli) -> None:
    """Lock and temp files of Excel and LibreOffice are never processed."""
    for name in ("~$u.xlsx", ".~lock.u.xlsx#", "lu123.tmp", "A1B2C3D4"):
        drop(issued, name, b"junk")
    assert sync(issued)["files"] == []


def test_replaying_the_archive_changes_nothing(issued: Cli) -> None:
    """Every archived file dropped into the inbox again is a duplicate; statuses and versions stay."""
    drop(issued, "u.xlsx", edit(outbox(issued, "utilities")[0], {("0803010103", "清理电费"): True}))
    drop(issued, "d.xlsx", edit(outbox(issued, "dorm")[0], {("0803010104", "清理宿舍物品"): True}))
    sync(issued)
    before = statuses(issued)
    for archived in (issued.data / "archive").glob("*.xlsx"):
        drop(issued, "replay-" + archived.name, archived.read_bytes())
    outcomes = {f["outcome"] for f in sync(issued)["files"]}
    assert outcomes == {"duplicate"} and statuses(issued) == before


def test_sync_exit_codes(issued: Cli) -> None:
    """Exit 0 when everything merged cleanly; 1 when a file or a tick was refused."""
    drop(issued, "u.xlsx", edit(outbox(issued, "utilities")[0], {("0803010103", "清理电费"): True}))
    assert issued("sync").exit_code == 0
    drop(issued, "bad.xlsx", b"<html></html>")
    assert issued("sync").exit_code == 1


def test_a_refused_file_returned_again_is_refused_again_with_its_reason(issued: Cli) -> None:
    """The same refused bytes again: same outcome, the first reason repeated, an explanation beside it."""
    drop(issued, "bad.xlsx", b"<html><body>x</body></html>")
    sync(issued)
    drop(issued, "bad-again.xlsx", b"<html><body>x</body></html>")
    [item] = sync(issued)["files"]
    assert item["outcome"] == "rejected" and item["reasons"][0].startswith("html：")
    note = (issued.data / "rejected" / "bad-again.xlsx.说明.txt").read_text("utf-8")
    assert "错误代码：html" in note and "网页" in note and "结果：已拒绝\n" in note


def test_a_return_without_its_hidden_sheet_merges_and_names_its_program(issued: Cli) -> None:
    """A suite that dropped the hidden sheet (the token is in the document properties): the tick is merged, and
    the ledger, the receipt and the report's list of returns say which program saved the file."""
    book = openpyxl.load_workbook(outbox(issued, "utilities")[0])
    del book["_lixiao"]
    ws = book["办理"]
    col = next(c for c in range(1, ws.max_column + 1) if ws.cell(4, c).value == "清理电费")
    row = next(r for r in range(5, ws.max_row + 1) if ws.cell(r, col).value is False)
    ws.cell(row, col).value = True
    book.properties.creator = "clerk"
    buffer = io.BytesIO()
    book.save(buffer)
    data = buffer.getvalue()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        custom = archive.read("docProps/custom.xml")
    kso = custom.replace(b"</Properties>", b'<property fmtid="{D5CDD505-2E9C-101B-9397-08002B2CF9AE}" pid="90" '
                         b'name="KSOProductBuildVer"><vt:lpwstr>2052-12.1.0.17827</vt:lpwstr></property></Properties>')
    drop(issued, "wps.xlsx", with_member(data, "docProps/custom.xml", kso))
    [item] = sync(issued)["files"]
    assert (item["outcome"], item["applied"]) == ("merged", 1)
    [(detail,)] = rows(issued, "SELECT detail FROM returns")
    assert json.loads(detail)["program"] == "WPS 2052-12.1.0.17827"
    receipt = next((issued.data / "receipts").glob("*-回执.xlsx"))
    summary = {r[0].value: r[1].value for r in openpyxl.load_workbook(receipt)["概要"].iter_rows()}
    assert summary["保存软件"] == "WPS 2052-12.1.0.17827"
    assert issued("report").exit_code == 0
    assert "WPS 2052-12.1.0.17827" in (issued.data / "reports" / "index.html").read_text("utf-8")


def test_a_zip_of_returns_in_the_inbox_is_told_to_unzip(issued: Cli) -> None:
    """A .zip holding returned workbooks, dropped into inbox/, is refused with what to do: unzip and return the
    .xlsx files themselves (not "not a workbook")."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("水电.xlsx", outbox(issued, "utilities")[0].read_bytes())
    drop(issued, "交回.zip", buffer.getvalue())
    [item] = sync(issued)["files"]
    assert item["outcome"] == "rejected" and "请解压" in item["reasons"][0] and "水电.xlsx" in item["reasons"][0]
