"""The office directory, the shared-folder channel and fresh workbooks (no mail server: see realclients)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import openpyxl

from lixiao.core.ledger import Channel, Origin
from lixiao.core.model import Status
from lixiao.sync.datafolder import open_folder, secret_key
from lixiao.sync.delivery import refresh, routes
from lixiao.sync.pipeline import process_bytes

from .conftest import ROSTER, Cli, edit


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
