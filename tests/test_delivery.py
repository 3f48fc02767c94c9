"""The office directory, the shared-folder channel and fresh workbooks (no mail server: see realclients)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

import openpyxl

from lixiao.core.manual.model import Status
from lixiao.core.storage.ledger import Channel, Origin
from lixiao.sync.datafolder import open_folder, secret_key
from lixiao.sync.issuing import plan_all
from lixiao.sync.live.delivery import refresh, routes
from lixiao.sync.takeback.pipeline import process_bytes

from .conftest import ROSTER, Cli, edit, statuses


def _settings(cli: Cli, text: str) -> None:
    path = cli.data / "lixiao.toml"
    path.write_text(path.read_text("utf-8") + "\n" + text + "\n", "utf-8")


def _share(cli: Cli, tmp_path: Path, minutes: float = 10) -> Path:
    share = tmp_path / "共享"
    _settings(cli, f'[delivery]\nshare_root = "{share}"\nrefresh_minutes = {minutes}')
    return share


def _old(path: Path) -> Path:
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


def test_offices_template_lists_every_office_and_import_lists_bad_rows(cli: Cli, tmp_path: Path) -> None:
    """The template has one row per office (per college for per-college checkpoints); an import with a bad row
    names it by row number and imports nothing; a good one is stored and audited."""
    template = tmp_path / "通讯录.xlsx"
    result = cli("offices", "template", str(template))
    assert result.exit_code == 0, result.output
    sheet = openpyxl.load_workbook(template).worksheets[0]
    titles = [sheet.cell(r, 1).value for r in range(2, sheet.max_row + 1)]
    assert "宿管中心离校点" in titles and "机电工程学院领取证件" in titles and "能源与安全工程学院领取证件" in titles
    bad = tmp_path / "bad.csv"
    bad.write_text("离校点,联系人,电子邮箱\n宿管中心离校点,王老师,wang@school.edu.cn\n不存在的离校点,李,x@y.cn\n"
                   "水电通信中心离校点,赵,not-an-address\n", "utf-8")
    result = cli("offices", "import", str(bad))
    assert result.exit_code == 1
    assert "第 3 行" in result.output and "不存在的离校点" in result.output
    assert "第 4 行" in result.output and "not-an-address" in result.output
    assert cli.json("offices", "show")["offices"][0]["emails"] == []
    good = tmp_path / "good.csv"
    good.write_text("离校点,联系人,电子邮箱,共享文件夹\n宿管中心离校点,王老师,Wang@School.edu.cn；li@school.edu.cn,\n"
                    "机电工程学院领取证件,陈老师,,机电\n", "utf-8")
    result = cli("offices", "import", str(good), "--operator", "协调人")
    assert result.exit_code == 0, result.output
    shown = {o["title"]: o for o in cli.json("offices", "show")["offices"]}
    assert shown["宿管中心离校点"]["emails"] == ["wang@school.edu.cn", "li@school.edu.cn"]
    assert shown["机电工程学院领取证件"]["share_path"].endswith("机电")
    with sqlite3.connect(cli.data / "store.db") as conn:
        events = conn.execute("SELECT decision, operator FROM audit WHERE kind = 'office'").fetchall()
    assert events == [("added", "协调人"), ("added", "协调人")]
    assert cli("offices", "import", str(good)).exit_code == 0  # the same again changes nothing
    with sqlite3.connect(cli.data / "store.db") as conn:
        assert conn.execute("SELECT count(*) FROM audit WHERE kind = 'office'").fetchone()[0] == 2
    assert cli("verify").exit_code == 0


def test_send_without_any_channel_says_what_to_set(cli: Cli) -> None:
    """No directory and no share root: one clear line, exit 2."""
    result = cli("send")
    assert result.exit_code == 2
    assert "offices import" in result.output and "share_root" in result.output


def test_shared_folder_round_trip(cli: Cli, tmp_path: Path) -> None:
    """send issues generation 1 into each office's 待办/; a ticked file put into 交回/ is merged by sync, moved to
    交回/已处理/ with its receipt in 交回/回执/, recorded as a share return; a refused file gets a .说明.txt."""
    share = _share(cli, tmp_path)
    result = cli("send", "--json")
    assert result.exit_code == 0, result.output
    todo = share / "宿管中心离校点" / "待办"
    issued = sorted(todo.glob("*.xlsx"))
    assert len(issued) == 1 and (cli.data / "outbox" / "dorm" / issued[0].name).read_bytes() == issued[0].read_bytes()
    assert (share / "机电工程学院领取证件" / "待办").is_dir()
    back = share / "宿管中心离校点" / "交回"
    (back / "宿管-已勾选.xlsx").write_bytes(edit(issued[0], {(ROSTER[0].student_no, "清理宿舍物品"): True}))
    (back / "随便.xlsx").write_bytes(b"not a workbook at all")
    _old(back / "宿管-已勾选.xlsx")
    _old(back / "随便.xlsx")
    (back / "~$宿管-已勾选.xlsx").write_bytes(b"excel lock debris")
    result = cli("sync", "--json")
    files = {f["file"]: f["outcome"] for f in json.loads(result.output)["files"]}
    assert files == {"宿管-已勾选.xlsx": "merged", "随便.xlsx": "rejected"}
    assert sorted(p.name for p in (back / "已处理").iterdir()) == ["宿管-已勾选.xlsx", "随便.xlsx"]
    assert (back / "回执" / "宿管-已勾选-回执.xlsx").is_file()
    assert "已拒绝" in (back / "回执" / "随便.说明.txt").read_text("utf-8")
    assert (back / "~$宿管-已勾选.xlsx").exists()  # debris is left alone
    with sqlite3.connect(cli.data / "store.db") as conn:
        row = conn.execute("SELECT channel, sender FROM returns WHERE outcome = 'merged'").fetchone()
    assert row == ("share", "宿管中心离校点")
    again = cli("send")
    assert again.exit_code == 0 and "已是最新" in again.output


def test_a_certificate_desk_gets_a_fresh_generation_when_readiness_changes(cli: Cli, tmp_path: Path) -> None:
    """Once a student's prerequisites are all met, refresh issues the certificate desk a new generation (its
    可领证名单 lists the student) into 待办/, moves the untouched old one to 待办/旧版/, and waits refresh_minutes
    before the next one for the same office."""
    share = _share(cli, tmp_path, minutes=0)
    assert cli("send", "--checkpoint", "certificates").exit_code == 0
    todo = share / "机电工程学院领取证件" / "待办"
    first = sorted(todo.glob("*.xlsx"))
    assert [p.name.endswith("第1版.xlsx") for p in first] == [True]
    student = ROSTER[0].student_no
    blocked = cli.json("status", student)["blocked"]
    missing = sorted({step.split("：")[-1] for b in blocked for step in b["missing"]})
    steps = {s["step_name"]: s["step"] for s in cli.json("status", student)["steps"]}
    for name in missing:
        result = cli("set", student, steps[name], "passed")
        assert result.exit_code == 0, result.output
    assert cli.json("status", student)["blocked"] == []
    folder = open_folder(cli.data)
    try:
        done = refresh(folder)
        assert [i.generation for i in done.issued] == [2]
        assert "机电工程学院领取证件" in done.issued[0].path.name or done.issued[0].scope == "机电工程学院"
        later = refresh(folder)  # nothing changed since: nothing issued, nothing waiting (the interval is 0 here)
        assert later.issued == [] and later.waiting == []
    finally:
        folder.close()
    current = sorted(todo.glob("*.xlsx"))
    assert [p.name[-9:] for p in current] == ["-第2版.xlsx"]
    assert [p.name for p in (todo / "旧版").iterdir()] == [first[0].name]
    ready = openpyxl.load_workbook(current[0]).worksheets[0]
    assert ready.title == "可领证名单"
    cells = {str(c.value) for row in ready.iter_rows() for c in row if c.value is not None}
    assert student in cells


def test_refresh_waits_for_the_interval_and_skips_offices_without_a_channel(cli: Cli, tmp_path: Path) -> None:
    """A readiness change inside refresh_minutes of the last issue waits (the office is listed as waiting);
    force issues at once; offices with no channel are never refreshed."""
    _share(cli, tmp_path)
    assert cli("send", "--checkpoint", "registrar").exit_code == 0
    student = next(s for s in ROSTER if s.withheld).student_no
    folder = open_folder(cli.data)
    try:
        library = folder.clearance.step("return_books")
        folder.clearance.set_step(folder.clearance.student(student), library.code, Status.PASSED, remark="",
                                  source="cli", operator="t")
        waiting = refresh(folder)
        assert waiting.issued == [] and waiting.waiting == ["教务处离校点"]
        forced = refresh(folder, force=True)
        assert [(i.checkpoint, i.generation) for i in forced.issued] == [("registrar", 2)]
        assert all(r.share for r in routes(folder))  # the share root gives every office a folder
    finally:
        folder.close()


def test_an_unknown_mail_sender_is_flagged_or_held(cli: Cli, tmp_path: Path) -> None:
    """A mailed return from outside the directory merges with the sender flagged; with unknown_sender = "hold"
    it waits in held/ for the coordinator."""
    assert cli("issue", "--checkpoint", "dorm").exit_code == 0
    book = sorted((cli.data / "outbox" / "dorm").glob("*.xlsx"))[-1]
    stranger = Origin(Channel.MAIL, sender="who@example.com", message_id="<1@x>", sender_known=False)
    folder = open_folder(cli.data)
    try:
        data = edit(book, {(ROSTER[0].student_no, "清理宿舍物品"): True})
        merged = process_bytes(folder, "a.xlsx", data, stranger, secret_key(cli.data))
        assert merged.outcome == "merged"
        row = folder.store.ledger(merged.hash)
        assert row is not None and "不在通讯录中" in row.details.origin
    finally:
        folder.close()
    _settings(cli, '[mail]\nunknown_sender = "hold"')
    folder = open_folder(cli.data)
    try:
        data = edit(book, {(ROSTER[1].student_no, "清理宿舍物品"): True})
        held = process_bytes(folder, "b.xlsx", data, stranger, secret_key(cli.data))
        assert held.outcome == "held"
        assert (cli.data / "held" / "b.xlsx").is_file()
    finally:
        folder.close()


def _sent(cli: Cli, tmp_path: Path) -> Path:
    share = _share(cli, tmp_path)
    assert cli("send", "--checkpoint", "dorm", "--checkpoint", "utilities").exit_code == 0
    return share


def test_a_linked_processed_folder_is_never_followed(cli: Cli, tmp_path: Path) -> None:
    """交回/已处理 replaced by a link elsewhere: that office's returns are not taken (nothing is written where the
    link points), sync says why, and the file waits; a real folder again and it is taken."""
    share = _sent(cli, tmp_path)
    back = share / "宿管中心离校点" / "交回"
    issued = next((share / "宿管中心离校点" / "待办").glob("*.xlsx"))
    _old_write(back / "a.xlsx", edit(issued, {(ROSTER[0].student_no, "清理宿舍物品"): True}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (back / "已处理").symlink_to(elsewhere)
    result = cli("sync", "--json")
    document = json.loads(result.output)
    assert document["files"] == [] and any("已处理" in p and "链接" in p for p in document["problems"])
    assert list(elsewhere.iterdir()) == [] and (back / "a.xlsx").exists()
    (back / "已处理").unlink()
    assert json.loads(cli("sync", "--json").output)["files"][0]["outcome"] == "merged"
    assert (back / "已处理" / "a.xlsx").is_file()


def test_a_workbook_in_another_offices_folder_is_refused(cli: Cli, tmp_path: Path) -> None:
    """水电's workbook put into 宿管中心's 交回/ is refused (not merged); the explanation names the right office."""
    share = _sent(cli, tmp_path)
    power = next((share / "水电通信中心离校点" / "待办").glob("*.xlsx"))
    back = share / "宿管中心离校点" / "交回"
    _old_write(back / "水电-错放.xlsx", edit(power, {(ROSTER[0].student_no, "清理电费"): True}))
    [item] = json.loads(cli("sync", "--json").output)["files"]
    assert item["outcome"] == "rejected" and "水电通信中心离校点" in item["reasons"][0]
    assert (ROSTER[0].student_no, "electricity") not in {(n, s) for (n, s), (st, _) in statuses(cli).items()
                                                           if st == "passed"}
    assert "放进“水电通信中心离校点”自己的交回文件夹" in (back / "回执" / "水电-错放.说明.txt").read_text("utf-8")


def test_subfolders_fresh_files_odd_entries_and_a_missing_folder(cli: Cli, tmp_path: Path) -> None:
    """A return in a subfolder of 交回/ (an unzipped archive) is taken; one copied a moment ago is waited for,
    not skipped; a link in 交回/ is refused and removed, never moved into 已处理/; a missing 交回/ is said."""
    share = _sent(cli, tmp_path)
    back = share / "宿管中心离校点" / "交回"
    issued = next((share / "宿管中心离校点" / "待办").glob("*.xlsx"))
    (back / "解压后").mkdir()
    _old_write(back / "解压后" / "sub.xlsx", edit(issued, {(ROSTER[0].student_no, "清理宿舍物品"): True}))
    (back / "刚存.xlsx").write_bytes(edit(issued, {(ROSTER[1].student_no, "清理宿舍物品"): True}))  # just now
    (back / "密码.xlsx").symlink_to("/etc/passwd")
    files = {f["file"]: f["outcome"] for f in json.loads(cli("sync", "--json").output)["files"]}
    assert files == {"sub.xlsx": "merged", "刚存.xlsx": "merged", "密码.xlsx": "rejected"}
    assert not os.path.lexists(back / "密码.xlsx") and not os.path.lexists(back / "已处理" / "密码.xlsx")
    shutil.rmtree(share / "水电通信中心离校点" / "交回")
    result = cli("sync")
    assert "水电通信中心离校点的共享文件夹里没有“交回”文件夹" in result.output


def test_a_certificate_desk_workbook_is_refreshed_after_its_own_returns(cli: Cli, tmp_path: Path) -> None:
    """A student who collected everything at the desk leaves its 可领证名单: readiness counts that too."""
    folder = open_folder(cli.data)
    try:
        before = {p.scope: p.readiness_digest() for p in plan_all(folder, ["certificates"], None)}
        with folder.store.transaction():
            for step in folder.flow.checkpoint("certificates").steps:
                folder.store.write_status(ROSTER[0].student_no, step.code, Status.PASSED, remark="", source="t",
                                          operator="", decision="applied")
        after = {p.scope: p.readiness_digest() for p in plan_all(folder, ["certificates"], None)}
    finally:
        folder.close()
    assert before["机电工程学院"] != after["机电工程学院"]
    assert before["能源与安全工程学院"] == after["能源与安全工程学院"]


def _old_write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    _old(path)


def test_send_issues_the_current_generation_when_the_issued_one_is_out_of_date(cli: Cli, tmp_path: Path) -> None:
    """A workbook issued before a status changed (lixiao set) is not the one send delivers: send issues generation 2
    with the current values, so the office never ticks a copy that returns as a conflict; a second send with nothing
    changed issues nothing."""
    share = _share(cli, tmp_path)
    assert cli("issue", "--checkpoint", "dorm").exit_code == 0
    assert cli("set", ROSTER[0].student_no, "清理宿舍物品", "已通过").exit_code == 0
    result = cli("send", "--checkpoint", "dorm")
    assert result.exit_code == 0, result.output
    [delivered] = sorted((share / "宿管中心离校点" / "待办").glob("*.xlsx"))
    assert delivered.name.endswith("第2版.xlsx")
    sheet = openpyxl.load_workbook(delivered)["办理"]
    ticked = [row[0].value for row in sheet.iter_rows() if any(c.value is True for c in row)]
    assert ROSTER[0].student_no in ticked
    assert cli("set", ROSTER[1].student_no, "清理宿舍物品", "已通过").exit_code == 0
    again = cli("send", "--checkpoint", "dorm")
    assert again.exit_code == 0 and "已是最新" in again.output  # delivered already: left to the readiness rule
    assert sorted(p.name for p in (share / "宿管中心离校点" / "待办").glob("*.xlsx")) == [delivered.name]
