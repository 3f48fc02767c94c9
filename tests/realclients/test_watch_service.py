"""The real daemon as a service: lixiao watch --check follows it from start to SIGTERM; its log rotates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .test_watch import Daemon, folder, wait_for

pytestmark = pytest.mark.slow
__all__ = ["folder"]  # the fixture, imported from test_watch


def check(data: Path) -> subprocess.CompletedProcess[str]:
    """`lixiao watch --check` as a separate process, as cron or a monitoring agent runs it."""
    return subprocess.run([sys.executable, "-m", "lixiao.sync.cli", "--data", str(data), "watch", "--check"],
                          capture_output=True, text=True, timeout=30, check=False)


def test_check_follows_a_real_daemon_from_start_to_sigterm(folder: Path) -> None:
    """--check is 1 before the daemon, 0 once it beats (with its pid and the inbox count), 1 after SIGTERM."""
    assert check(folder).returncode == 1
    running = Daemon(folder, "--poll", "0.5", "--rescan", "2")
    try:
        wait_for(lambda: (folder / "watch.state").exists(), 10, "the heartbeat")
        healthy = check(folder)
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert healthy.stdout.startswith(f"正常：lixiao watch 运行中（进程 {running.process.pid}")
        assert "收件箱待处理 0 个" in healthy.stdout
        first = json.loads((folder / "watch.state").read_text("utf-8"))["last_beat"]
        wait_for(lambda: json.loads((folder / "watch.state").read_text("utf-8"))["last_beat"] != first, 10,
                 "a second beat")
    finally:
        assert running.stop() == 0
    stopped = check(folder)
    assert stopped.returncode == 1 and stopped.stdout.startswith("异常：没有 lixiao watch 在监视")
    assert json.loads((folder / "watch.state").read_text("utf-8"))["stopped_at"]


def test_a_real_daemon_rotates_watch_log(folder: Path) -> None:
    """With [watch] log_max_mb = 0.001 the daemon's own lines (15 refused files) rotate watch.log, 2 kept."""
    settings = folder / "lixiao.toml"
    settings.write_text(settings.read_text("utf-8") + "\n[watch]\nlog_max_mb = 0.001\nlog_backups = 2\n", "utf-8")
    running = Daemon(folder, "--poll", "0.5", "--rescan", "2")
    try:
        for number in range(15):
            (folder / "inbox" / f"不是工作簿{number}.xlsx").write_bytes(f"not a workbook {number}".encode())
        wait_for(lambda: len(list((folder / "rejected").glob("*.xlsx"))) == 15, 30, "15 refusals")
        wait_for(lambda: (folder / "watch.log.2").exists(), 10, "two rotations")
    finally:
        assert running.stop() == 0
    assert not (folder / "watch.log.3").exists()
    text = "".join((folder / name).read_text("utf-8") for name in ("watch.log.2", "watch.log.1", "watch.log"))
    assert "已停止" in (folder / "watch.log").read_text("utf-8") and "不是工作簿14.xlsx" in text
