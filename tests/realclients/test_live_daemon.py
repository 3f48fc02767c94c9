"""The real daemon on the shared-folder channel: returns put into an office's 交回/ are taken, and a certificate
desk whose readiness changed gets a fresh generation in its 待办/ without anyone running a command."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from lixiao.sync.cli.main import main

from ..conftest import ROSTER, edit
from .test_watch import wait_for

pytestmark = pytest.mark.slow


def _ready(desk: Path) -> set[str]:
    """The cells of the 可领证名单 (first sheet) of the newest workbook in a 待办/ folder."""
    books = sorted(desk.glob("*.xlsx"), key=lambda p: int(p.name.rsplit("第", 1)[1].split("版")[0]))
    if not books:
        return set()
    try:
        sheet = openpyxl.load_workbook(books[-1], read_only=True).worksheets[0]
    except (OSError, KeyError, ValueError):
        return set()  # being written
    assert sheet.title == "可领证名单"
    return {str(c.value) for row in sheet.iter_rows() for c in row if c.value is not None}


def test_the_daemon_takes_share_returns_and_refreshes_a_certificate_desk(tmp_path: Path, roster_file: Path) -> None:
    """send → 待办/; with the daemon running, a ticked file in 交回/ merges and moves to 已处理/ with its receipt
    in 回执/; the student it made ready (the other prerequisites set by hand before) makes the daemon issue the
    certificate desk a fresh generation into 待办/ (older ones to 旧版/) with the student in its 可领证名单."""
    runner = CliRunner()
    data, share = tmp_path / "data", tmp_path / "共享"
    assert runner.invoke(main, ["init", str(data)]).exit_code == 0
    assert runner.invoke(main, ["--data", str(data), "students", "import", str(roster_file)]).exit_code == 0
    with (data / "lixiao.toml").open("a", encoding="utf-8") as handle:
        handle.write(f'\n[delivery]\nshare_root = "{share}"\nrefresh_minutes = 0\nshare_poll = 0.5\n')
    result = runner.invoke(main, ["--data", str(data), "send"])
    assert result.exit_code == 0, result.output
    student = ROSTER[0].student_no
    status = runner.invoke(main, ["--data", str(data), "status", student, "--json"])
    doc = json.loads(status.output)
    names = {s["step_name"]: s["step"] for s in doc["steps"]}
    missing = {m.split("：")[-1] for b in doc["blocked"] for m in b["missing"]}
    missing.discard("清理宿舍物品")  # this one comes back through the dorm office's share, below
    for name in sorted(missing):
        assert runner.invoke(main, ["--data", str(data), "set", student, names[name], "passed"]).exit_code == 0
    dorm = share / "宿管中心离校点"
    issued = next((dorm / "待办").glob("*.xlsx"))
    desk = share / "机电工程学院领取证件" / "待办"
    assert [p.name[-9:] for p in desk.glob("*.xlsx")] == ["-第1版.xlsx"]
    daemon = subprocess.Popen([sys.executable, "-m", "lixiao.sync.cli", "--data", str(data), "watch", "--settle",
                               "0.3", "--rescan", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=dict(os.environ))
    try:
        time.sleep(1.5)
        target = dorm / "交回" / "宿管-已办.xlsx"
        partial = dorm / "交回" / ".宿管-已办.xlsx.part"
        partial.write_bytes(edit(issued, {(student, "清理宿舍物品"): True}))
        partial.rename(target)  # as a copy tool finishes
        wait_for(lambda: (dorm / "交回" / "已处理" / "宿管-已办.xlsx").exists(), 60, "the share return to be taken")
        assert (dorm / "交回" / "回执" / "宿管-已办-回执.xlsx").exists()
        wait_for(lambda: student in _ready(desk), 90, "a fresh certificate-desk generation listing the student")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    # at start (readiness changed by the `set`s) and after the share return: generations 2 and 3
    assert [p.name[-9:] for p in desk.glob("*.xlsx")] == ["-第3版.xlsx"]
    assert sorted(p.name[-9:] for p in (desk / "旧版").glob("*.xlsx")) == ["-第1版.xlsx", "-第2版.xlsx"]
    with sqlite3.connect(data / "store.db") as conn:
        assert conn.execute("SELECT channel FROM returns").fetchall() == [("share",)]
    assert runner.invoke(main, ["--data", str(data), "verify"]).exit_code == 0
