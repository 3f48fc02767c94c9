"""The real daemon on a real folder: editor-style saves, slow copies, lost events, SIGKILL mid-merge."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from lixiao.sync.cli.main import main

from ..conftest import ROSTER, edit

pytestmark = pytest.mark.slow


def wait_for(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll until ``check`` holds or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def ledger(data: Path) -> list[tuple[str, str, str]]:
    """(file name, state, outcome) of every ledger row."""
    with sqlite3.connect(data / "store.db") as conn:
        return list(conn.execute("SELECT file_name, state, coalesce(outcome, '') FROM returns ORDER BY received_at"))


def passed(data: Path) -> set[tuple[str, str]]:
    """Cells stored as passed."""
    with sqlite3.connect(data / "store.db") as conn:
        return set(conn.execute("SELECT student_no, step FROM statuses WHERE status = 'passed'"))


@pytest.fixture
def folder(tmp_path: Path, roster_file: Path) -> Path:
    """A data folder with the five-student roster and every workbook issued."""
    runner = CliRunner()
    data = tmp_path / "data"
    assert runner.invoke(main, ["init", str(data)]).exit_code == 0
    assert runner.invoke(main, ["--data", str(data), "students", "import", str(roster_file)]).exit_code == 0
    assert runner.invoke(main, ["--data", str(data), "issue"]).exit_code == 0
    return data


def workbook(data: Path, checkpoint: str) -> Path:
    """The first issued workbook of a checkpoint."""
    return sorted((data / "outbox" / checkpoint).glob("*.xlsx"))[0]


class Daemon:
    """`lixiao watch` as a child process."""

    def __init__(self, data: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.data = data
        log = data / "watch.log"
        self.start_size = log.stat().st_size if log.exists() else 0
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lixiao.sync.cli", "--data", str(data), "watch", "--settle", "0.5", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        wait_for(lambda: "开始监视" in self.log(), 30, "the daemon to start")

    def log(self) -> str:
        """What this run wrote to watch.log."""
        path = self.data / "watch.log"
        return path.read_text("utf-8")[self.start_size:] if path.exists() else ""

    def stop(self) -> int:
        """SIGTERM and wait: the daemon finishes the current file and exits."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


@pytest.fixture
def daemon(folder: Path) -> Iterator[Daemon]:
    """A running daemon, stopped (cleanly) at the end of the test."""
    running = Daemon(folder, "--rescan", "3")
    yield running
    if running.process.poll() is None:
        assert running.stop() == 0


def test_excel_style_save_is_processed_once(folder: Path, daemon: Daemon) -> None:
    """Excel writes a temp file without extension and renames it onto the name: one merge."""
    data = edit(workbook(folder, "utilities"), {(ROSTER[0].student_no, "清理电费"): True})
    temp = folder / "inbox" / "5A3F0C21"
    temp.write_bytes(data)
    (folder / "inbox" / "~$水电.xlsx").write_bytes(b"owner lock")
    temp.rename(folder / "inbox" / "水电.xlsx")
    wait_for(lambda: ledger(folder) and ledger(folder)[-1][2] == "merged", what="the merge")
    time.sleep(2)
    assert ledger(folder) == [("水电.xlsx", "merged", "merged")]
    assert passed(folder) == {(ROSTER[0].student_no, "electricity")}


def test_libreoffice_style_save_is_processed_once(folder: Path, daemon: Daemon) -> None:
    """LibreOffice writes lu….tmp, moves it onto the target, then touches it again: still one merge."""
    data = edit(workbook(folder, "dorm"), {(ROSTER[1].student_no, "清理宿舍物品"): True})
    (folder / "inbox" / ".~lock.宿管.xlsx#").write_text("lock")
    temp = folder / "inbox" / "lu12345abc.tmp"
    temp.write_bytes(data)
    target = folder / "inbox" / "宿管.xlsx"
    temp.rename(target)
    for _ in range(3):
        os.utime(target)
        time.sleep(0.1)
    wait_for(lambda: any(row[2] == "merged" for row in ledger(folder)), what="the merge")
    time.sleep(2)
    assert [row[2] for row in ledger(folder)] == ["merged"]


def test_slow_chunked_copy_is_processed_after_it_completes(folder: Path, daemon: Daemon) -> None:
    """A file copied in chunks over a few seconds is taken once, whole, never as a truncated file."""
    data = edit(workbook(folder, "utilities"), {(ROSTER[2].student_no, "清理电费"): True})
    target = folder / "inbox" / "慢慢复制.xlsx"
    with target.open("wb") as handle:
        for start in range(0, len(data), len(data) // 8 + 1):
            handle.write(data[start:start + len(data) // 8 + 1])
            handle.flush()
            time.sleep(0.3)
    archived = folder / "archive" / f"{hashlib.sha256(data).hexdigest()}.xlsx"
    # the archive copy is written just after the commit the ledger shows: wait for both, not for the first
    wait_for(lambda: any(row[2] == "merged" for row in ledger(folder)) and archived.exists(), what="the merge")
    assert ledger(folder) == [("慢慢复制.xlsx", "merged", "merged")]
    assert archived.read_bytes() == data


def test_files_that_arrived_while_down_and_polling_mode(folder: Path) -> None:
    """Files dropped while the daemon was down are found by the start-up scan; polling mode also works."""
    for index, (checkpoint, column) in enumerate((("utilities", "清理电费"), ("dorm", "清理宿舍物品"))):
        ticked = edit(workbook(folder, checkpoint), {(ROSTER[index].student_no, column): True})
        (folder / "inbox" / f"{checkpoint}.xlsx").write_bytes(ticked)
    running = Daemon(folder, "--poll", "0.5", "--rescan", "2")
    try:
        wait_for(lambda: len([r for r in ledger(folder) if r[2] == "merged"]) == 2, what="both merges")
        (folder / "inbox" / "later.xlsx").write_bytes(
            edit(workbook(folder, "utilities"), {(ROSTER[3].student_no, "清理电费"): True}))
        wait_for(lambda: len([r for r in ledger(folder) if r[2] == "merged"]) == 3, what="the polled file")
    finally:
        assert running.stop() == 0
    assert "已停止" in running.log()


def test_sigkill_in_the_middle_of_a_merge(folder: Path) -> None:
    """Killed inside the merge transaction, the store is as before; after restart the file merges exactly once."""
    data = edit(workbook(folder, "utilities"), {(ROSTER[0].student_no, "清理电费"): True,
                                              (ROSTER[1].student_no, "清理电费"): True})
    digest = hashlib.sha256(data).hexdigest()
    running = Daemon(folder, env={"LIXIAO_FAULT": "merge:30"})
    (folder / "inbox" / "水电.xlsx").write_bytes(data)
    wait_for(lambda: ("水电.xlsx", "staged", "") in ledger(folder), what="the file to be staged")
    time.sleep(1.0)  # now inside the merge transaction, sleeping at the fault point
    running.process.send_signal(signal.SIGKILL)
    running.process.wait(timeout=10)
    assert passed(folder) == set()  # before: nothing of that workbook
    assert (folder / "inbox" / "水电.xlsx").exists()
    restarted = Daemon(folder, "--rescan", "2")
    try:
        wait_for(lambda: ("水电.xlsx", "merged", "merged") in ledger(folder), what="the merge after restart")
    finally:
        assert restarted.stop() == 0
    assert passed(folder) == {(ROSTER[0].student_no, "electricity"), (ROSTER[1].student_no, "electricity")}
    with sqlite3.connect(folder / "store.db") as conn:
        merges = conn.execute("SELECT count(*) FROM audit WHERE kind = 'return' AND decision = 'merged' "
                              "AND source_hash = ?", [digest]).fetchone()[0]
        writes = conn.execute("SELECT count(*) FROM audit WHERE kind = 'status' AND source_hash = ?",
                              [digest]).fetchone()[0]
    assert (merges, writes) == (1, 2)
    result = CliRunner().invoke(main, ["--data", str(folder), "verify"])
    assert result.exit_code == 0, result.output


def lixiao(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `lixiao --data DATA ARGS…` as its own process."""
    return subprocess.run([sys.executable, "-m", "lixiao.sync.cli", "--data", str(data), *args],
                          capture_output=True, text=True, timeout=90, check=False)


def test_sync_while_the_daemon_runs_waits_and_processes(folder: Path, daemon: Daemon, tmp_path: Path) -> None:
    """One writer at a time, not one writer all season: `lixiao sync FILE` runs while watch runs, once."""
    data = edit(workbook(folder, "utilities"), {(ROSTER[0].student_no, "清理电费"): True})
    outside = tmp_path / "邮件附件.xlsx"
    outside.write_bytes(data)
    result = lixiao(folder, "sync", str(outside))
    assert result.returncode == 0, result.stderr
    assert ("邮件附件.xlsx", "merged", "merged") in ledger(folder)
    assert passed(folder) == {(ROSTER[0].student_no, "electricity")}


def test_set_and_waive_work_while_the_daemon_runs(folder: Path, daemon: Daemon) -> None:
    """The coordinator can record a change by hand all season while `lixiao watch` runs."""
    result = lixiao(folder, "set", ROSTER[1].student_no, "dorm_items", "passed", "--operator", "宿管李老师")
    assert result.returncode == 0, result.stderr
    assert lixiao(folder, "waive", ROSTER[1].student_no, "pay_arrears", "--reason", "欠费缓交").returncode == 0
    assert (ROSTER[1].student_no, "dorm_items") in passed(folder)
    data = edit(workbook(folder, "utilities"), {(ROSTER[2].student_no, "清理电费"): True})
    (folder / "inbox" / "水电.xlsx").write_bytes(data)  # and the daemon still takes returns afterwards
    wait_for(lambda: ("水电.xlsx", "merged", "merged") in ledger(folder), what="the merge")


def test_a_second_watch_on_the_same_folder_is_refused(folder: Path, daemon: Daemon) -> None:
    """A second `lixiao watch` stops at once with one line saying a daemon already runs (exit 1)."""
    started = time.monotonic()
    result = lixiao(folder, "watch")
    assert result.returncode == 1
    assert result.stderr.strip() == ("错误：此数据文件夹已有一个 lixiao watch 在运行；"
                                     "同一文件夹只需一个守护进程，请勿重复启动")
    assert time.monotonic() - started < 20 and daemon.process.poll() is None


def test_a_file_that_fails_is_retried_then_left_and_the_daemon_goes_on(folder: Path) -> None:
    """A file whose processing raises is logged in one line, retried, then left in inbox/; a good one merges."""
    running = Daemon(folder, "--rescan", "2", env={"LIXIAO_FAULT": "daemon:raise:坏.xlsx", "LIXIAO_DEBUG": ""})
    try:
        bad = edit(workbook(folder, "dorm"), {(ROSTER[1].student_no, "清理宿舍物品"): True})
        (folder / "inbox" / "坏.xlsx").write_bytes(bad)
        wait_for(lambda: "处理 坏.xlsx 时出错（第 1 次）" in running.log(), what="the first failure")
        good = edit(workbook(folder, "utilities"), {(ROSTER[0].student_no, "清理电费"): True})
        (folder / "inbox" / "好.xlsx").write_bytes(good)
        wait_for(lambda: ("好.xlsx", "merged", "merged") in ledger(folder), what="the good return")
        wait_for(lambda: "处理 坏.xlsx 连续 3 次出错" in running.log(), what="giving up")
        time.sleep(3)  # a rescan later the file is still left alone
        assert running.process.poll() is None
    finally:
        assert running.stop() == 0
    log = running.log()
    assert log.count("处理 坏.xlsx") == 3 and "Traceback" not in log
    assert (folder / "inbox" / "坏.xlsx").exists() and not (folder / "inbox" / "好.xlsx").exists()
    assert passed(folder) == {(ROSTER[0].student_no, "electricity")}


def test_odd_names_and_id_numbers_never_break_the_log(folder: Path, daemon: Daemon) -> None:
    """A name that is not UTF-8 is logged with � for its bad bytes; a 身份证号 in a file name is masked in the
    log and in the ledger."""
    id_card = ROSTER[0].id_card
    (folder / "inbox" / os.fsdecode(b"\xff\xfe\xb0\xec.xlsx")).write_bytes(b"not a workbook")  # bytes, not UTF-8
    data = edit(workbook(folder, "utilities"), {(ROSTER[0].student_no, "清理电费"): True})
    (folder / "inbox" / f"{id_card}.xlsx").write_bytes(data)
    masked = f"{id_card[:6]}********{id_card[-4:]}"
    wait_for(lambda: (f"{masked}.xlsx", "merged", "merged") in ledger(folder), what="the merge")
    wait_for(lambda: "��.xlsx：已拒绝" in daemon.log(), what="the odd name in the log")
    wait_for(lambda: f"{masked}.xlsx：已合并" in daemon.log(), what="the merge in the log")  # logged after commit
    log = daemon.log() + (daemon.data / "watch.log").read_text("utf-8")
    assert id_card not in log and f"{id_card[:6]}********{id_card[-4:]}" in log
    assert "Logging error" not in log and daemon.process.poll() is None


def test_two_hundred_files_while_the_daemon_was_down(folder: Path) -> None:
    """200 returns that arrived while the daemon was down are all taken, each exactly once."""
    source = workbook(folder, "utilities")
    for index in range(200):
        data = edit(source, {(ROSTER[index % len(ROSTER)].student_no, "备注"): f"第 {index} 次交回"})
        (folder / "inbox" / f"return-{index:03d}.xlsx").write_bytes(data)
    running = Daemon(folder, "--rescan", "5")
    try:
        wait_for(lambda: len(ledger(folder)) == 200 and all(r[2] for r in ledger(folder)), timeout=600,
                 what="200 files")
    finally:
        assert running.stop() == 0
    assert [r[2] for r in ledger(folder)] == ["merged"] * 200
    assert not any((folder / "inbox").iterdir())
    assert len(list((folder / "archive").glob("*.xlsx"))) == 200
    result = CliRunner().invoke(main, ["--data", str(folder), "verify"])
    assert result.exit_code == 0, result.output
