"""lixiao watch as a service: the systemd unit it prints, its rotating log, its heartbeat and --check."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from lixiao.sync.live.service import (
    STATE,
    Heartbeat,
    WatchSettings,
    log_file_handler,
    render_unit,
    watch_settings,
)
from lixiao.sync.locking import WATCH_LOCK, watch_lock, watch_running

from .conftest import Cli

LIXIAO = Path(sys.executable).parent / "lixiao"  # the venv's real script: ExecStart must exist for verify
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or ("/usr/bin/systemd-analyze"
                                                       if Path("/usr/bin/systemd-analyze").exists() else None)


def _systemd_analyze() -> str:
    """systemd-analyze, or skip (fail under CI=true, where it must be installed)."""
    if SYSTEMD_ANALYZE is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the unit test needs systemd-analyze on CI (Debian: apt-get install systemd)")
        pytest.skip("systemd-analyze is not installed")
    return SYSTEMD_ANALYZE


def _set_watch(data: Path, text: str) -> None:
    settings = data / "lixiao.toml"
    settings.write_text(settings.read_text("utf-8") + f"\n[watch]\n{text}\n", "utf-8")


def test_unit_names_this_lixiao_the_folder_and_its_owner(cli: Cli) -> None:
    """--unit prints a unit running this install's lixiao on the folder, as the folder's owner, with the options."""
    result = cli("watch", "--unit", "--poll", "5")
    assert result.exit_code == 0, result.output
    text = result.stdout
    data = cli.data.resolve()
    lines = set(text.splitlines())
    assert f"ExecStart={LIXIAO.absolute()} watch --poll 5" in lines
    assert f"Environment=LIXIAO_DATA={data}" in lines
    assert f"ReadWritePaths={data}" in lines
    assert f"User={Path(data).owner()}" in lines
    for setting in ("Restart=on-failure", "KillSignal=SIGTERM", "KillMode=mixed", "ProtectSystem=strict",
                    "NoNewPrivileges=yes", "PrivateTmp=yes"):
        assert setting in lines
    # a folder under /tmp cannot be seen by a PrivateTmp service: the coordinator is told (tmp_path may be elsewhere)
    assert ("PrivateTmp=yes，看不到 /tmp" in result.stderr) == str(data).startswith("/tmp/")


def test_unit_passes_systemd_analyze_verify_without_a_warning(tmp_path: Path, cli: Cli) -> None:
    """systemd-analyze verify accepts the unit (for a path with a space, a % and Chinese) and prints nothing."""
    analyze = _systemd_analyze()
    data = tmp_path / "2026 离校%届"
    cli.data.rename(data)
    unit = render_unit(data, ["--poll", "5"], command=[str(LIXIAO)])
    path = tmp_path / "lixiao-watch.service"
    path.write_text(unit.text, "utf-8")
    done = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    assert f'ReadWritePaths="{data}"'.replace("%", "%%") in unit.text


def test_unit_makes_the_offices_shared_folders_writable(tmp_path: Path, cli: Cli) -> None:
    """With [delivery] share_root outside the data folder, the unit lets the daemon write there too (optional,
    "-": a share not mounted yet does not stop the service) and still passes systemd-analyze verify."""
    analyze = _systemd_analyze()
    share = tmp_path / "离校共享"
    settings = cli.data / "lixiao.toml"
    settings.write_text(settings.read_text("utf-8") + f'\n[delivery]\nshare_root = "{share}"\n', "utf-8")
    result = cli("watch", "--unit")
    assert result.exit_code == 0, result.output
    assert f"ReadWritePaths={cli.data.resolve()} -{share.resolve()}" in result.stdout.splitlines()
    path = tmp_path / "lixiao-watch.service"
    path.write_text(result.stdout, "utf-8")
    done = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_unit_verify_catches_a_missing_executable(tmp_path: Path, cli: Cli) -> None:
    """The verify test can fail: a unit whose lixiao does not exist is refused by systemd-analyze."""
    analyze = _systemd_analyze()
    path = tmp_path / "lixiao-watch.service"
    path.write_text(render_unit(cli.data, [], command=[str(tmp_path / "no-such-lixiao")]).text, "utf-8")
    done = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "no-such-lixiao" in done.stderr


def test_unit_refuses_a_path_systemd_cannot_hold(tmp_path: Path, cli: Cli) -> None:
    """A data folder whose path holds a quote cannot be written into a unit: one clear line, exit 2."""
    odd = tmp_path / 'a"b'
    cli.data.rename(odd)
    result = Cli(odd, cli.runner)("watch", "--unit")
    assert result.exit_code == 2 and "无法写入 systemd 单元" in result.stderr


def test_check_without_a_daemon_is_unhealthy(cli: Cli) -> None:
    """--check on a folder no daemon watches: exit 1 and a line saying to start it."""
    result = cli("watch", "--check")
    assert result.exit_code == 1
    assert result.stdout.startswith("异常：没有 lixiao watch 在监视")
    assert "systemctl start lixiao-watch" in result.stdout and "收件箱待处理 0 个" in result.stdout
    facts = json.loads(cli("watch", "--check", "--json").stdout)
    assert facts["healthy"] is False and facts["running"] is False


def _beating(data: Path, age: float = 0.0) -> None:
    """Write watch.state as a daemon (this process) would, its last beat ``age`` seconds ago."""
    heartbeat = Heartbeat(data, rescan=30)
    heartbeat.beat()
    state = json.loads((data / STATE).read_text("utf-8"))
    state["last_beat"] = (datetime.now().astimezone() - timedelta(seconds=age)).isoformat(timespec="seconds")
    (data / STATE).write_text(json.dumps(state), "utf-8")


def test_check_with_a_beating_daemon_is_healthy_and_counts_the_inbox(cli: Cli) -> None:
    """A held watch lock and a fresh heartbeat: exit 0, 正常, with the files waiting in inbox/."""
    (cli.data / "inbox" / "水电.xlsx").write_bytes(b"x")
    (cli.data / "inbox" / "~$水电.xlsx").write_bytes(b"x")  # editor debris is not waiting
    with watch_lock(cli.data):
        _beating(cli.data)
        result = cli("watch", "--check")
        facts = json.loads(cli("watch", "--check", "--json").stdout)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"正常：lixiao watch 运行中（进程 {os.getpid()}")
    assert "收件箱待处理 1 个" in result.stdout
    assert facts["healthy"] is True and facts["inbox_waiting"] == 1 and facts["pid"] == os.getpid()


def test_check_reports_a_stale_heartbeat(cli: Cli) -> None:
    """A daemon holding the lock whose last beat is older than its stale_after is called stuck (exit 1)."""
    with watch_lock(cli.data):
        _beating(cli.data, age=3600)
        result = cli("watch", "--check")
    assert result.exit_code == 1
    assert "已 1 小时 0 分 没有心跳" in result.stdout and "systemctl restart lixiao-watch" in result.stdout


def test_check_reports_a_frozen_daemon_with_a_file_waiting(cli: Cli) -> None:
    """A beat 75 s old (under stale_after) is healthy on its own, but with a file waiting 70 s in inbox/ the
    daemon is called stuck (the adversarial pass froze one with SIGSTOP and --check said 正常)."""
    path = cli.data / "inbox" / "水电.xlsx"
    path.write_bytes(b"x")
    with watch_lock(cli.data):
        _beating(cli.data, age=75)
        fresh = cli("watch", "--check")
        past = time.time() - 70
        os.utime(path, (past, past))
        stuck = cli("watch", "--check")
    assert fresh.exit_code == 0
    assert stuck.exit_code == 1 and "可能卡住了" in stuck.stdout


def test_check_reports_a_damaged_store(cli: Cli) -> None:
    """store.damaged beside store.db makes the check fail with what to do."""
    (cli.data / "store.damaged").write_text("x")
    with watch_lock(cli.data):
        _beating(cli.data)
        result = cli("watch", "--check")
    assert result.exit_code == 1 and "lixiao verify --repair" in result.stdout


def test_probing_the_watch_lock_does_not_take_it_from_a_daemon(tmp_path: Path) -> None:
    """watch_running sees a held lock, and a daemon starting while a probe holds it still gets it."""
    assert watch_running(tmp_path) is False
    with watch_lock(tmp_path):
        assert watch_running(tmp_path) is True
    assert watch_running(tmp_path) is False
    with (tmp_path / WATCH_LOCK).open("r") as probe:  # a probe that holds the lock for 50 ms
        fcntl.flock(probe, fcntl.LOCK_EX)
        threading.Timer(0.05, fcntl.flock, (probe, fcntl.LOCK_UN)).start()
        with watch_lock(tmp_path):
            assert watch_running(tmp_path) is True


def test_heartbeat_keeps_the_last_error_and_counts_files(tmp_path: Path) -> None:
    """Errors logged by the daemon and files taken reach watch.state (身份证号 masked by the formatter)."""
    from lixiao.sync.live.daemon import _SafeFormatter
    from lixiao.sync.takeback.outcomes import FileOutcome, Outcome

    heartbeat = Heartbeat(tmp_path, rescan=30)
    heartbeat.setFormatter(_SafeFormatter("%(message)s"))
    log = logging.getLogger("lixiao.test.heartbeat")
    log.addHandler(heartbeat)
    try:
        log.error("处理 430103200401010017.xlsx 时出错")
        log.info("一切正常")  # below ERROR: not an error
    finally:
        log.removeHandler(heartbeat)
    heartbeat.taken(FileOutcome("a.xlsx", Outcome.MERGED))
    heartbeat.stopped()
    state = json.loads((tmp_path / STATE).read_text("utf-8"))
    assert state["files_taken"] == 1 and state["last_batch_at"] and state["stopped_at"]
    assert state["last_error"].endswith("处理 430103********0017.xlsx 时出错")


def test_watch_settings_defaults_and_a_clear_error(tmp_path: Path, cli: Cli) -> None:
    """[watch] is optional; a wrong value is one Chinese line naming the key, and lixiao watch refuses to start."""
    assert watch_settings(cli.data) == WatchSettings()
    _set_watch(cli.data, 'log_max_mb = "十"')
    result = cli("watch")
    assert result.exit_code == 2
    assert result.stderr == ("错误：lixiao.toml 中 [watch] log_max_mb 应为正数（watch.log 达到多少 MB 后轮换），"
                             "现为 '十'\n")
    assert not (cli.data / "watch.log").exists()


def test_watch_log_rotates_at_log_max_mb(cli: Cli) -> None:
    """With log_max_mb = 0.001 and log_backups = 2, watch.log rotates and keeps two old logs of ≈1 KB."""
    _set_watch(cli.data, "log_max_mb = 0.001\nlog_backups = 2")
    handler = log_file_handler(cli.data, watch_settings(cli.data))
    log = logging.getLogger("lixiao.test.rotation")
    log.addHandler(handler)
    try:
        for number in range(100):
            log.warning("第 %d 行：收件箱中的文件已处理", number)  # ≈ 60 bytes
    finally:
        log.removeHandler(handler)
        handler.close()
    logs = sorted(p.name for p in cli.data.glob("watch.log*"))
    assert logs == ["watch.log", "watch.log.1", "watch.log.2"]
    # the stdlib compares characters with the limit, so a file may pass it by one (Chinese) line
    assert all((cli.data / name).stat().st_size < 1048 + 100 for name in logs)
    assert "第 99 行" in (cli.data / "watch.log").read_text("utf-8")


def test_unit_and_check_together_are_a_usage_error(cli: Cli) -> None:
    """--unit with --check, or --json without --check, is a usage error (exit 2)."""
    assert cli("watch", "--unit", "--check").exit_code == 2
    assert cli("watch", "--json").exit_code == 2


def test_console_lines_under_journald_carry_a_priority_and_no_time(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    """Under systemd (JOURNAL_STREAM, stderr not a terminal) a line is <priority> + level + message, no stamp."""
    from lixiao.sync.live.daemon import _SafeFormatter
    from lixiao.sync.live.service import JournalFormatter, under_journal

    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    with (tmp_path / "stderr").open("w") as not_a_terminal:
        monkeypatch.setattr(sys, "stderr", not_a_terminal)
        assert under_journal()
    record = logging.LogRecord("lixiao.watch", logging.ERROR, __file__, 1, "处理 %s 时出错", ("a.xlsx",), None)
    assert JournalFormatter(_SafeFormatter("%(levelname)s %(message)s")).format(record) == "<3>错误 处理 a.xlsx 时出错"
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not under_journal()
