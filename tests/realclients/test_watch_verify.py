"""The real daemon checks its store all season (issue 24.4): a status forged with sqlite3 while it runs is found by
its periodic check; it stops taking returns and lixiao watch --check says unhealthy."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lixiao.sync.cli.main import main

from ..conftest import ROSTER, edit, set_settings
from .test_watch import Daemon, folder, ledger, wait_for, workbook

pytestmark = pytest.mark.slow
__all__ = ["folder"]  # the fixture, shared with test_watch

PERIOD_MINUTES = 0.05  # 3 s: the daemon's [watch] verify_every_minutes in this test


def test_a_status_forged_while_the_daemon_runs_stops_it_within_the_period(folder: Path) -> None:
    """The daemon merges a return; a status is then forged behind its back; within verify_every it writes
    store.damaged and logs one Chinese line, a later return stays in the inbox, and watch --check exits 1."""
    set_settings(folder, "watch", verify_every_minutes=PERIOD_MINUTES)
    daemon = Daemon(folder, "--rescan", "1")
    try:
        first = edit(workbook(folder, "utilities"), {(ROSTER[0].student_no, "清理电费"): True})
        (folder / "inbox" / "水电.xlsx").write_bytes(first)
        wait_for(lambda: bool(ledger(folder)) and ledger(folder)[-1][2] == "merged", what="the first merge")
        with sqlite3.connect(folder / "store.db") as conn:
            changed = conn.execute("UPDATE statuses SET status = 'failed' WHERE student_no = ? AND step = ?",
                                   [ROSTER[0].student_no, "electricity"]).rowcount
        assert changed == 1
        wait_for(lambda: (folder / "store.damaged").exists(), PERIOD_MINUTES * 60 + 20, "the periodic check")
        wait_for(lambda: "校验发现数据库有问题" in daemon.log(), 10, "the log line")
        second = edit(workbook(folder, "dorm"), {(ROSTER[1].student_no, "清理宿舍物品"): True})
        (folder / "inbox" / "宿管.xlsx").write_bytes(second)
        time.sleep(4)  # several rescans and settle waits: a daemon still taking returns would have taken it
        assert (folder / "inbox" / "宿管.xlsx").exists() and len(ledger(folder)) == 1
        check = CliRunner().invoke(main, ["--data", str(folder), "watch", "--check"])
        assert check.exit_code == 1 and "数据库有问题" in check.output, check.output
        assert daemon.process.poll() is None  # still running, refusing: not crashed
    finally:
        assert daemon.stop() == 0
