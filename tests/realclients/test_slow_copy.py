"""The real daemon and a slow Windows-style copy: a file arriving in chunks, its mtime hours old after each one
(Explorer and robocopy keep the source's), is left alone while incomplete and taken once whole."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lixiao.sync.cli.main import main

from ..conftest import ROSTER, edit
from .test_watch import Daemon, ledger, passed, wait_for

pytestmark = pytest.mark.slow

PAUSE = 1.5  # seconds between chunks: several share polls (0.5 s) and inbox settles (0.3 s)
HOURS_AGO = time.time() - 6 * 3600


def _cuts(data: bytes) -> list[int]:
    """Where the copy pauses: inside the members, inside the central directory, inside the end record, the end."""
    end = data.rfind(b"PK\x05\x06")
    directory = int.from_bytes(data[end + 16:end + 20], "little")
    return sorted({len(data) // 3, directory // 2 + directory // 4, directory + 40, len(data) - 10, len(data)})


class SlowCopy(threading.Thread):
    """Writes ``data`` to ``path`` chunk by chunk through one open handle, pausing between chunks and setting
    the file's mtime back to the source's after each (as a Windows copy does)."""

    def __init__(self, path: Path, data: bytes) -> None:
        super().__init__(daemon=True)
        self.path, self.data = path, data
        self.first_chunk = threading.Event()  # set once the file exists with its first chunk
        self.last_chunk = threading.Event()  # set before the chunk that makes the file whole is written
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.path.open("wb") as handle:
                written = 0
                for cut in _cuts(self.data):
                    if cut == len(self.data):
                        self.last_chunk.set()
                    handle.write(self.data[written:cut])
                    handle.flush()
                    os.utime(self.path, (HOURS_AGO, HOURS_AGO))
                    self.first_chunk.set()
                    written = cut
                    if cut < len(self.data):
                        time.sleep(PAUSE)
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost in the thread
            self.error = exc
            self.first_chunk.set()
            self.last_chunk.set()


def _watch_while_copying(copy: SlowCopy, untouched: list[Path], rejected: Path, data: Path) -> list[str]:
    """What went wrong while the copy was incomplete: the file moved, something in 已处理/ 回执/ rejected/, or a
    ledger row. A look counts only if the last chunk had not begun when it ended."""
    wrong: list[str] = []
    copy.start()
    assert copy.first_chunk.wait(timeout=10)
    while not copy.last_chunk.is_set():
        seen = []
        if not copy.path.exists():
            seen.append("the file left its folder")
        seen += [f"{p} holds {sorted(q.name for q in p.iterdir())}" for p in untouched if p.is_dir()
                 and any(p.iterdir())]
        if rejected.is_dir() and any(rejected.iterdir()):
            seen.append(f"rejected/ holds {sorted(q.name for q in rejected.iterdir())}")
        with sqlite3.connect(data / "store.db") as conn:
            seen += [f"ledger: {row}" for row in conn.execute("SELECT file_name, state FROM returns")]
        if seen and not copy.last_chunk.is_set():
            wrong += seen
        time.sleep(0.1)
    copy.join(timeout=30)
    if copy.error is not None:
        wrong.append(f"the copy failed: {copy.error!r}")  # the file was moved away under it
    return wrong


@pytest.fixture
def shared(tmp_path: Path, roster_file: Path) -> tuple[Path, Path]:
    """A data folder whose dorm office has a shared folder (offices import, 共享文件夹 column), sent once."""
    runner = CliRunner()
    data, share = tmp_path / "data", tmp_path / "共享" / "宿管"
    assert runner.invoke(main, ["init", str(data)]).exit_code == 0
    assert runner.invoke(main, ["--data", str(data), "students", "import", str(roster_file)]).exit_code == 0
    directory = tmp_path / "通讯录.csv"
    directory.write_text(f"离校点,联系人,电子邮箱,共享文件夹\n宿管中心离校点,王老师,,{share}\n", "utf-8")
    result = runner.invoke(main, ["--data", str(data), "offices", "import", str(directory)])
    assert result.exit_code == 0, result.output
    with (data / "lixiao.toml").open("a", encoding="utf-8") as handle:
        handle.write("\n[delivery]\nshare_poll = 0.5\nauto_refresh = false\n")
    result = runner.invoke(main, ["--data", str(data), "send", "--checkpoint", "dorm"])
    assert result.exit_code == 0, result.output
    return data, share


def test_a_slow_copy_into_an_offices_share_is_taken_only_once_whole(shared: tuple[Path, Path]) -> None:
    """While the copy into 交回/ is incomplete (old mtime), the daemon neither moves nor refuses nor records it;
    once whole it is merged, moved to 已处理/, and its receipt is in 回执/."""
    data, share = shared
    issued = next((share / "待办").glob("*.xlsx"))
    whole = edit(issued, {(ROSTER[0].student_no, "清理宿舍物品"): True})
    back = share / "交回"
    daemon = Daemon(data, "--settle", "0.3", "--rescan", "2")
    try:
        copy = SlowCopy(back / "宿管-已办.xlsx", whole)
        wrong = _watch_while_copying(copy, [back / "已处理", back / "回执"], data / "rejected", data)
        assert wrong == []
        wait_for(lambda: (back / "已处理" / "宿管-已办.xlsx").exists(), 60, "the whole copy to be taken")
        wait_for(lambda: (back / "回执" / "宿管-已办-回执.xlsx").exists(), 30, "its receipt")
    finally:
        assert daemon.stop() == 0
    assert (back / "已处理" / "宿管-已办.xlsx").read_bytes() == whole and not (back / "宿管-已办.xlsx").exists()
    assert ledger(data) == [("宿管-已办.xlsx", "merged", "merged")]
    assert (ROSTER[0].student_no, "dorm_items") in passed(data)


def test_a_slow_copy_into_the_inbox_is_taken_only_once_whole(shared: tuple[Path, Path]) -> None:
    """The same through inbox/ (the daemon's event path): left alone while incomplete, merged once whole."""
    data, share = shared
    issued = next((share / "待办").glob("*.xlsx"))
    whole = edit(issued, {(ROSTER[1].student_no, "清理宿舍物品"): True})
    daemon = Daemon(data, "--settle", "0.3", "--rescan", "2")
    try:
        copy = SlowCopy(data / "inbox" / "宿管.xlsx", whole)
        wrong = _watch_while_copying(copy, [], data / "rejected", data)
        assert wrong == []
        wait_for(lambda: any(row[2] == "merged" for row in ledger(data)), 60, "the whole copy to be merged")
    finally:
        assert daemon.stop() == 0
    assert ledger(data) == [("宿管.xlsx", "merged", "merged")] and not (data / "inbox" / "宿管.xlsx").exists()
    assert (ROSTER[1].student_no, "dorm_items") in passed(data)
    assert list((data / "receipts").glob("*宿管*-回执.xlsx"))
