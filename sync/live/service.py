"""``lixiao watch`` as a service: the systemd unit, the rotating log, the heartbeat file and the health check."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import shutil
import string
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib import resources
from logging.handlers import RotatingFileHandler
from pathlib import Path

from lixiao.core.storage.files import write_small
from lixiao.core.storage.store import DAMAGED
from lixiao.sync.datafolder import SETTINGS, DataFolderError
from lixiao.sync.locking import watch_running
from lixiao.sync.takeback.inbox import inbox_entries
from lixiao.sync.takeback.outcomes import FileOutcome
from lixiao.workbooks.sandbox import parse_timeout

STATE = "watch.state"
LOG = "watch.log"
UNIT_NAME = "lixiao-watch"
BEAT_SECONDS = 5.0  # watch.state is rewritten at most this often (and at least 3 times per rescan interval)


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """The [watch] section of lixiao.toml (every key optional)."""

    log_max_mb: float = 10.0  # watch.log is rotated when it reaches this size
    log_backups: int = 5  # rotated logs kept: watch.log.1 … watch.log.N
    verify_every_minutes: float = 30.0  # the daemon runs lixiao verify's checks at start and this often

    @property
    def log_max_bytes(self) -> int:
        """The rotation size in bytes (at least 1)."""
        return max(1, int(self.log_max_mb * 1024 * 1024))


def watch_settings(root: Path) -> WatchSettings:
    """The folder's [watch] settings, defaults where absent; a wrong value is a clear error."""
    try:
        section = tomllib.loads((root / SETTINGS).read_text("utf-8")).get("watch", {})
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return WatchSettings()
    defaults = WatchSettings()
    size = section.get("log_max_mb", defaults.log_max_mb)
    if isinstance(size, bool) or not isinstance(size, int | float) or size <= 0:
        raise DataFolderError(f"{SETTINGS} 中 [watch] log_max_mb 应为正数（watch.log 达到多少 MB 后轮换），"
                              f"现为 {size!r}")
    backups = section.get("log_backups", defaults.log_backups)
    if isinstance(backups, bool) or not isinstance(backups, int) or backups < 1:
        raise DataFolderError(f"{SETTINGS} 中 [watch] log_backups 应为正整数（保留几个轮换下来的旧日志），"
                              f"现为 {backups!r}")
    every = section.get("verify_every_minutes", defaults.verify_every_minutes)
    if isinstance(every, bool) or not isinstance(every, int | float) or every <= 0:
        raise DataFolderError(f"{SETTINGS} 中 [watch] verify_every_minutes 应为正数（守护进程每隔多少分钟校验一次"
                              f"数据库），现为 {every!r}")
    return WatchSettings(log_max_mb=float(size), log_backups=backups, verify_every_minutes=float(every))


def log_file_handler(root: Path, settings: WatchSettings) -> RotatingFileHandler:
    """watch.log, rotated at ``log_max_mb`` into watch.log.1 … watch.log.N."""
    return RotatingFileHandler(root / LOG, maxBytes=settings.log_max_bytes, backupCount=settings.log_backups,
                               encoding="utf-8", errors="backslashreplace")


def under_journal() -> bool:
    """True when stderr goes to journald (systemd sets JOURNAL_STREAM), which stamps every line itself."""
    return bool(os.environ.get("JOURNAL_STREAM")) and not sys.stderr.isatty()


SYSLOG_PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """Another formatter's line with its syslog priority as a ``<N>`` prefix, which journald reads."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return f"<{SYSLOG_PRIORITIES.get(record.levelno, 6)}>{self.inner.format(record)}"


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


@dataclass(slots=True)
class WatchState:
    """What watch.state holds: who beats, since when, and what the daemon last did."""

    pid: int
    started_at: str
    last_beat: str
    stale_after: float  # seconds without a beat after which lixiao watch --check calls the daemon stuck
    files_taken: int = 0
    last_batch_at: str | None = None
    last_error: str | None = None
    stopped_at: str | None = None
    verified_at: str | None = None  # the daemon's last check of the store (lixiao verify's), and its verdict
    verified_ok: bool | None = None


STUCK_SECONDS = 60.0  # a file waiting this long while the daemon has not beaten for as long: it is stuck


def stale_after(rescan: float) -> float:
    """Three rescan intervals, but never less than one sandboxed parse may legitimately take, plus a margin."""
    return max(3 * rescan, parse_timeout() + 60)


class Heartbeat(logging.Handler):
    """Writes watch.state for ``lixiao watch --check``; as a logging handler (level ERROR) it keeps the last
    error, as the watcher's ``on_outcome`` it counts the files taken."""

    def __init__(self, root: Path, rescan: float) -> None:
        super().__init__(logging.ERROR)
        self.path = root / STATE
        self.every = min(BEAT_SECONDS, rescan / 3)
        now = _now()
        self.state = WatchState(os.getpid(), now, now, stale_after(rescan))
        self._written = float("-inf")

    def emit(self, record: logging.LogRecord) -> None:
        self.state.last_error = f"{_now()} {self.format(record)[:300]}"

    def taken(self, _outcome: FileOutcome) -> None:
        """One file was processed (whatever its outcome)."""
        self.state.files_taken += 1
        self.state.last_batch_at = _now()

    def verified(self, ok: bool) -> None:
        """The daemon checked the store: when, and whether it was sound (written at once)."""
        self.state.verified_at, self.state.verified_ok = _now(), ok
        self._write()

    def beat(self) -> None:
        """Called on every turn of the watch loop; rewrites watch.state at most every ``every`` seconds."""
        if time.monotonic() - self._written >= self.every:
            self._write()

    def stopped(self) -> None:
        """The daemon is exiting: say so in watch.state."""
        self.state.stopped_at = _now()
        self._write()

    def _write(self) -> None:
        self.state.last_beat = _now()
        self._written = time.monotonic()
        # no fsync: a heartbeat lost in a crash says nothing wrong; a full disk is logged by what fails next
        with contextlib.suppress(OSError):
            write_small(self.path, json.dumps(asdict(self.state), ensure_ascii=False), durable=False)


def read_state(root: Path) -> WatchState | None:
    """watch.state, or None when it is absent or unreadable."""
    try:
        data = json.loads((root / STATE).read_text("utf-8"))
        return WatchState(**data)
    except (OSError, ValueError, TypeError):
        return None


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} 秒"
    if seconds < 3600:
        return f"{seconds // 60} 分钟"
    if seconds < 86400:
        return f"{seconds // 3600} 小时 {seconds % 3600 // 60} 分"
    return f"{seconds // 86400} 天 {seconds % 86400 // 3600} 小时"


def _age(stamp: str | None, now: datetime) -> float | None:
    if not stamp:
        return None
    try:
        return (now - datetime.fromisoformat(stamp)).total_seconds()
    except (ValueError, TypeError):
        return None


def _shown(stamp: str) -> str:
    """An ISO time stamp of watch.state as a line shows it: 06-20 10:32:05."""
    return stamp[5:19].replace("T", " ")


def _waited(path: Path, now: datetime) -> float | None:
    """Seconds since ``path`` was last written (None when it has just been taken away)."""
    try:
        return now.timestamp() - os.lstat(path).st_mtime
    except OSError:
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True, slots=True)
class Health:
    """The answer of ``lixiao watch --check``: healthy or not, one Chinese line saying what to do, the facts."""

    healthy: bool
    line: str
    facts: dict[str, object] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        """The --json form."""
        return {"healthy": self.healthy, "message": self.line, **self.facts}


RESTART = f"sudo systemctl restart {UNIT_NAME}（或重新运行 lixiao watch）"


def check_health(root: Path) -> Health:
    """Is a daemon running on the folder at ``root``, beating, and taking returns? (Opens no store.)"""
    now = datetime.now().astimezone()
    running = watch_running(root)
    state = read_state(root)
    damaged = (root / DAMAGED).exists()
    waiting = inbox_entries(root)
    oldest = _waited(waiting[0], now) if waiting else None
    beat_age = _age(state.last_beat, now) if state else None
    facts: dict[str, object] = {
        "running": running, "damaged": damaged, "inbox_waiting": len(waiting),
        "inbox_oldest_seconds": None if oldest is None else round(oldest),
        "beat_age_seconds": None if beat_age is None else round(beat_age), **(asdict(state) if state else {})}
    inbox = f"收件箱待处理 {len(waiting)} 个" + (f"（最早的已等 {_duration(oldest)}）" if oldest is not None else "")
    if damaged:
        return Health(False, f"异常：lixiao verify 发现数据库有问题（{DAMAGED}），收件、报表和工作簿已暂停；{inbox}。"
                             "请停止 lixiao watch，运行 lixiao verify --repair 或用备份恢复（见 README“备份与恢复”）",
                      facts)
    if not running:
        since = f"（上次于 {_shown(state.stopped_at or state.last_beat)} 停止）" if state else ""
        return Health(False, f"异常：没有 lixiao watch 在监视 {root}{since}；{inbox}。请启动：sudo systemctl start "
                             f"{UNIT_NAME}（或运行 lixiao watch），启动失败的原因见 watch.log 或 "
                             f"journalctl -u {UNIT_NAME}", facts)
    if state is None or state.stopped_at or not _alive(state.pid):
        return Health(False, f"异常：lixiao watch 在运行，但没有它的心跳（{STATE}）；它可能刚启动，稍后再查；"
                             f"仍然如此请重启：{RESTART}", facts)
    if beat_age is None or beat_age > state.stale_after:
        return Health(False, f"异常：lixiao watch（进程 {state.pid}）已 {_duration(beat_age or 0)} 没有心跳（超过 "
                             f"{_duration(state.stale_after)}），可能卡住了；{inbox}。请查看 watch.log，然后重启："
                             f"{RESTART}", facts)
    stuck = STUCK_SECONDS
    if oldest is not None and oldest > stuck and beat_age > stuck:
        return Health(False, f"异常：收件箱中的文件已等 {_duration(oldest)}，lixiao watch（进程 {state.pid}）也已 "
                             f"{_duration(beat_age)}没有心跳：可能卡住了（或正在解析一个异常的大文件，最长 "
                             f"{_duration(parse_timeout())}）；请查看 watch.log，仍然如此请重启：{RESTART}", facts)
    uptime = _age(state.started_at, now) or 0
    last = f"，最近一次 {_shown(state.last_batch_at)}" if state.last_batch_at else ""
    error = f"；最近的错误：{state.last_error}" if state.last_error else ""
    return Health(True, f"正常：lixiao watch 运行中（进程 {state.pid}，已运行 {_duration(uptime)}），心跳 "
                        f"{_duration(beat_age)}前；已处理 {state.files_taken} 个文件{last}；{inbox}{error}", facts)


# ---- the systemd unit ----

class UnitError(DataFolderError):
    """The data folder's path cannot be written into a systemd unit."""


def lixiao_command() -> list[str]:
    """The absolute command that runs this lixiao: the script we were started as, the one beside this Python,
    the one on PATH, or this Python with -m."""
    started = Path(sys.argv[0])
    candidates = [started] if started.name == "lixiao" else []
    candidates.append(Path(sys.executable).parent / "lixiao")
    found = shutil.which("lixiao")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return [str(candidate.absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "lixiao.sync.cli.main"]


def _unit_word(text: str, in_exec: bool = False) -> str:
    """``text`` as one word of a unit file line: specifiers (and in ExecStart, variables) escaped, quoted when it
    holds spaces."""
    if any(c in text for c in "\"'\\") or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise UnitError(f"路径 {text!r} 含引号、反斜杠或控制字符，无法写入 systemd 单元；请把数据文件夹"
                        "（或 lixiao）放到一个普通名字的路径下")
    text = text.replace("%", "%%")
    if in_exec:
        text = text.replace("$", "$$")
    return f'"{text}"' if any(c.isspace() for c in text) or text == ";" else text


def watch_arguments(poll: float | None, settle: float, rescan: float) -> list[str]:
    """The watch options given with --unit that differ from the defaults, repeated in ExecStart."""
    args: list[str] = []
    if poll:
        args += ["--poll", f"{poll:g}"]
    if settle != 1.5:
        args += ["--settle", f"{settle:g}"]
    if rescan != 30.0:
        args += ["--rescan", f"{rescan:g}"]
    return args


@dataclass(frozen=True, slots=True)
class Unit:
    """A systemd unit for one data folder, and notes for the coordinator (printed on stderr)."""

    text: str
    notes: list[str]


def render_unit(root: Path, watch_args: list[str], command: list[str] | None = None,
                shares: list[Path] | None = None) -> Unit:
    """The bundled templates/lixiao-watch.service filled in for the data folder at ``root``: its owner as User=;
    ``shares`` (the offices' shared folders) are writable too."""
    data = root.resolve()
    extra: set[Path] = set()
    for share in sorted({s.resolve() for s in shares or []}, key=lambda p: len(p.parts)):
        if not any(known in (share, *share.parents) for known in (data, *extra)):
            extra.add(share)
    owner = pwd.getpwuid(data.stat().st_uid).pw_name
    notes = []
    if owner == "root":
        notes.append("数据文件夹属于 root，服务将以 root 运行；建议建一个专用用户并把文件夹交给它："
                     "sudo useradd --system --create-home lixiao && sudo chown -R lixiao: 数据文件夹，再重新生成单元")
    if any(Path(tmp) in data.parents for tmp in ("/tmp", "/var/tmp")):
        notes.append(f"数据文件夹在 {data.parent} 下；服务使用 PrivateTmp=yes，看不到 /tmp 和 /var/tmp，"
                     "请把数据文件夹放到 /srv 等固定位置")
    # "-": a shared folder not mounted yet must not keep the service from starting
    writable = " ".join([_unit_word(str(data)), *("-" + _unit_word(str(w)) for w in sorted(extra))])
    argv = [*(command or lixiao_command()), "watch", *watch_args]
    template = string.Template(resources.files("lixiao.templates").joinpath(f"{UNIT_NAME}.service")
                               .read_text("utf-8"))
    text = template.substitute(
        data=_unit_word(str(data)), writable=writable, data_comment=str(data), description=str(data).replace("%", "%%"),
        user=_unit_word(owner), environment=_unit_word(f"LIXIAO_DATA={data}"),
        exec_start=" ".join(_unit_word(word, in_exec=True) for word in argv),
        parse_seconds=f"{parse_timeout():g}", stop_seconds=f"{parse_timeout() + 120:g}")
    return Unit(text, notes)
