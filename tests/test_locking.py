"""One writer per data folder: writing commands wait for each other; readers never wait."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lixiao.sync import locking
from lixiao.sync.locking import WAITING_MESSAGE, LockBusyError, watch_lock, writer_lock
from lixiao.sync.takeback.outcomes import FileOutcome, Outcome

from .conftest import Cli

HOLD = """
import sys, time
from pathlib import Path
from lixiao.sync.locking import writer_lock
with writer_lock(Path(sys.argv[1])):
    print("held", flush=True)
    if sys.argv[2] == "stdin":
        sys.stdin.readline()  # hold until the test says so
    else:
        time.sleep(float(sys.argv[2]))
"""


def lixiao(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real `lixiao` console entry in its own process."""
    return subprocess.run([sys.executable, "-m", "lixiao.sync.cli", "--data", str(data), *args],
                          capture_output=True, text=True, timeout=90, check=False)


def test_set_waits_for_another_writer_then_succeeds(cli: Cli) -> None:
    """While another process holds the writer lock, `lixiao set` says it is waiting once, keeps waiting, and records
    the change as soon as the lock is released."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(cli.data), "stdin"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "held"
        setter = subprocess.Popen([sys.executable, "-m", "lixiao.sync.cli", "--data", str(cli.data), "set",
                                   "0803010103", "electricity", "passed"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        assert setter.stderr is not None
        assert setter.stderr.readline().strip() == WAITING_MESSAGE
        time.sleep(0.3)
        assert setter.poll() is None  # still waiting while the lock is held
        holder.stdin.write("release\n")
        holder.stdin.flush()
        _, rest = setter.communicate(timeout=60)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert setter.returncode == 0, rest
    assert WAITING_MESSAGE not in rest  # said once
    steps = {s["step"]: s["status"] for s in cli.json("status", "0803010103")["steps"]}
    assert steps["electricity"] == "passed"


def test_a_writer_gives_up_with_one_line_after_the_wait(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the lock stays taken past the wait, the command refuses (exit 1) and says to retry; nothing written."""
    monkeypatch.setattr(locking, "WRITER_WAIT", 0.3)
    with writer_lock(cli.data, wait=0):
        result = cli("waive", "0803010103", "pay_arrears", "--reason", "欠费缓交")
        status = cli("status", "0803010103")  # readers never wait for the writer lock
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == [WAITING_MESSAGE, "错误：另一个 lixiao 进程已占用此数据文件夹 0.3 秒仍未完成写入；"
                     "请等它结束后重试（lixiao watch 只在处理文件时短暂占用，不必停止它）"]
    assert status.exit_code == 0
    assert cli.json("waivers") == []


@pytest.mark.parametrize("args", [("students", "import", "x.xlsx"), ("feed", "finance", "x.csv"), ("issue",),
                                  ("sync",), ("report",), ("unwaive", "0803010103", "pay_arrears")])
def test_every_writing_command_takes_the_writer_lock(cli: Cli, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path, args: tuple[str, ...]) -> None:
    """import, feed, issue, sync, report and unwaive all wait for the one writer lock."""
    monkeypatch.setattr(locking, "WRITER_WAIT", 0.1)
    (tmp_path / "x.csv").write_text("学号,欠费金额\n0803010103,0\n", "utf-8")
    (tmp_path / "x.xlsx").write_bytes((cli.data.parent / "roster.xlsx").read_bytes())
    monkeypatch.chdir(tmp_path)
    with writer_lock(cli.data, wait=0):
        result = cli(*args)
    assert result.exit_code == 1 and "仍未完成写入" in result.output


def test_a_second_watch_lock_is_refused_at_once(tmp_path: Path) -> None:
    """The watch lock does not wait: a second daemon on the same folder is told one is already running."""
    with watch_lock(tmp_path):
        started = time.monotonic()
        with pytest.raises(LockBusyError, match="已有一个 lixiao watch 在运行"), watch_lock(tmp_path):
            pass
        assert time.monotonic() - started < 0.5
        with writer_lock(tmp_path, wait=0):  # the watch lock leaves the writer lock free
            pass


def test_sync_masks_id_numbers_in_the_reasons_it_prints(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 身份证号 quoted in a reason is printed masked, in the text and in the --json output."""
    reason = "第 3 行 备注：430103200401010017 不是学号"
    monkeypatch.setattr("lixiao.sync.live.batch.sync",
                        lambda *a, **k: [FileOutcome("u.xlsx", Outcome.REJECTED, reasons=[reason])])
    text = cli("sync").output
    document = json.loads(cli("sync", "--json").output)
    assert "430103********0017" in text and "430103200401010017" not in text
    assert document["files"][0]["reasons"] == ["第 3 行 备注：430103********0017 不是学号"]


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.slow  # ≈ 10 s: a cohort big enough for the pool
def test_issue_killed_with_9_leaves_no_worker_holding_the_lock(tmp_path: Path) -> None:
    """kill -9 of ``lixiao issue`` takes its pool workers with it: the next writer gets the lock at once."""
    import os
    import signal

    from .conftest import cohort_folder

    root = cohort_folder(tmp_path / "big", 3000)
    issue = subprocess.Popen([sys.executable, "-m", "lixiao.sync.cli", "--data", str(root), "issue"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while time.monotonic() < deadline and len(workers) < 2:
        time.sleep(0.1)
        workers = _children(issue.pid) if issue.poll() is None else set()
        assert issue.poll() is None, "issue finished before its workers were seen"
    assert len(workers) >= 2
    os.kill(issue.pid, signal.SIGKILL)
    issue.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "a worker outlived the killed issue"
    with writer_lock(root, wait=0.5):
        pass
