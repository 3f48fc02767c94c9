"""A really full disk (the kernel's file-size limit, EFBIG) during a merge and during report writing."""

from __future__ import annotations

import os
import resource
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

from ..conftest import cohort_folder

pytestmark = pytest.mark.slow


def limited(limit: int) -> object:
    """preexec_fn: every file the child writes may grow to ``limit`` bytes, and writing past it fails."""
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return apply


def lixiao(data: Path, *args: str, limit: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a child process, optionally with a file-size limit."""
    return subprocess.run([sys.executable, "-m", "lixiao.sync.cli", "--data", str(data), *args],
                          preexec_fn=limited(limit) if limit else None,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def ticked(tmp_path: Path) -> Path:
    """300 students, the utilities workbook issued and returned with every box ticked."""
    root = cohort_folder(tmp_path / "d", 300)
    assert CliRunner().invoke(main, ["--data", str(root), "issue", "--checkpoint", "utilities"]).exit_code == 0
    book = openpyxl.load_workbook(next((root / "outbox" / "utilities").glob("*.xlsx")))
    sheet = book["办理"]
    for row in range(5, sheet.max_row + 1):
        sheet.cell(row, 11).value = True  # 清理电费, after 前置条件 and 离校进度
    book.save(root / "inbox" / "u.xlsx")
    past = time.time() - 60
    os.utime(root / "inbox" / "u.xlsx", (past, past))
    with sqlite3.connect(root / "store.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return root


def passed(root: Path) -> int:
    """How many cells are stored as passed."""
    with sqlite3.connect(root / "store.db") as conn:
        return int(conn.execute("SELECT count(*) FROM statuses WHERE status = 'passed'").fetchone()[0])


def test_disk_full_during_the_merge(ticked: Path) -> None:
    """The WAL cannot grow: the merge rolls back whole, the file stays, the next sync merges it once."""
    result = lixiao(ticked, "sync", limit=100_000)
    assert result.returncode == 2 and result.stderr.startswith("错误：磁盘已满或无法写入")
    assert "Traceback" not in result.stderr
    assert passed(ticked) == 0 and (ticked / "inbox" / "u.xlsx").exists()
    again = lixiao(ticked, "sync")
    assert again.returncode == 0, again.stdout + again.stderr
    assert passed(ticked) == 300
    assert lixiao(ticked, "verify").returncode == 0


def test_disk_full_while_writing_the_reports(ticked: Path) -> None:
    """A page that cannot be written fails with one line; no partial file is left behind."""
    result = lixiao(ticked, "report", limit=400_000)  # the 1.1 MB chart library cannot be written
    assert result.returncode == 2 and result.stderr.startswith("错误：磁盘已满")
    assert not list((ticked / "reports").rglob("*.partial"))
    assert lixiao(ticked, "report").returncode == 0
    assert (ticked / "reports" / "static" / "echarts.min.js").stat().st_size > 1_000_000
