"""``lixiao watch``: a dumb watcher that routes inbox events to the one-writer sync pipeline."""

from __future__ import annotations

import logging
import os
import signal
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from lixiao.core.manual.identity import mask_ids_in_text
from lixiao.core.storage.faults import fault_point
from lixiao.core.storage.store import DAMAGED
from lixiao.sync.datafolder import DataFolder, secret_key
from lixiao.sync.locking import WAITING_MESSAGE, LockBusyError, writer_lock
from lixiao.sync.messages import OUTCOME_LABELS, strip_code
from lixiao.sync.takeback.arrival import zip_complete
from lixiao.sync.takeback.inbox import inbox_files, read_regular, sync_settings
from lixiao.sync.takeback.integrity import check_folder, record_findings
from lixiao.sync.takeback.outcomes import FileOutcome
from lixiao.sync.takeback.pipeline import process_file
from lixiao.workbooks.sandbox import ahead_busy, parse_ahead, start_server

from .batch import recover_receipts, recover_staging, refresh_reports
from .loop import LiveLoop
from .service import Heartbeat, JournalFormatter, WatchSettings, log_file_handler, under_journal, watch_settings
from .waiting import Pending, Router, snapshot_of

LOOP_PAUSE = 0.2  # seconds the loop sleeps at most between turns (files due sooner wake it sooner)
LOCK_ATTEMPT = 1.0  # seconds one try for the writer lock lasts; the loop tries again (and stays stoppable)
BATCH_SECONDS = 5.0  # the writer lock is given back at least this often, so `lixiao set` never waits long
RETRY_DELAYS = (2.0, 8.0)  # a file whose processing raised is retried after these; then it is left in inbox/
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1


class _SafeFormatter(logging.Formatter):
    """Every logged line: 身份证号 masked, undecodable file-name bytes shown as \\xNN, never an encoding error."""

    def format(self, record: logging.LogRecord) -> str:
        record.levelname = LEVELS.get(record.levelno, record.levelname)
        return printable(mask_ids_in_text(super().format(record)))


LEVELS = {logging.DEBUG: "调试", logging.INFO: "信息", logging.WARNING: "警告", logging.ERROR: "错误",
          logging.CRITICAL: "严重"}


def printable(text: str) -> str:
    """``text`` with bytes that were not UTF-8 (os.fsdecode's surrogates) written as \\xNN."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


class Watcher:
    """Debounces inbox events, checks that a file is complete, and processes it once, in one thread."""

    def __init__(self, folder: DataFolder, settle: float = 1.5, rescan: float = 30.0, poll: float | None = None,
                 on_outcome: Callable[[FileOutcome], None] | None = None, verify_every: float | None = None) -> None:
        self.folder = folder
        self.inbox = folder.root / "inbox"
        self.settle = settle
        self.rescan = rescan
        self.poll = poll
        self.on_outcome = on_outcome
        self.stop_event = threading.Event()
        self._pending: dict[Path, Pending] = {}
        self._lock = threading.Lock()
        self._given_up: dict[Path, tuple[int, int]] = {}
        self._waiting = False
        self._refusing = False
        self.log = logging.getLogger("lixiao.watch")
        self.live = LiveLoop(folder, self.log)  # shared folders, the mailbox, fresh workbooks
        self.on_beat: Callable[[], None] = lambda: None  # the service's heartbeat (watch.state)
        self.verify_every = verify_every  # seconds between the store's checks in run() (None: never)
        self.next_verify = 0.0  # due at start
        self.on_verified: Callable[[bool], None] = lambda ok: None
        self.max_bytes = sync_settings(folder.root).max_bytes  # a file over it is refused, never parsed ahead

    def damaged(self) -> bool:
        """Whether a check found the store damaged (store.damaged): nothing is taken, written or published."""
        return self.folder.store.path.with_name(DAMAGED).exists()

    def verify(self) -> bool:
        """lixiao verify's checks (at start, then every ``verify_every`` seconds); True when the store is sound.
        On damage store.damaged is written (returns, reports and workbooks stop), the reports already built get a
        banner and one line is logged."""
        found = check_folder(self.folder)
        self.on_verified(not found.damage)
        if not found.damage:
            return True
        if not self.damaged():
            record_findings(self.folder, found)
            from lixiao.reports.banner import mark_stale

            mark_stale(self.folder.root / "reports", time.strftime("%Y-%m-%d %H:%M"), found.damage)
            self.log.error("校验发现数据库有问题，已暂停收件，报表和工作簿停止发布：%s。请运行 lixiao verify 查看，"
                           "停止 lixiao watch 后运行 lixiao verify --repair 修复，或用备份恢复",
                           "；".join(found.damage[:3]))
        return False

    def notify(self, path: Path) -> None:
        """An event touched ``path``: (re)start its settle timer."""
        if self._left_alone(path):
            return
        snapshot = snapshot_of(path)  # what the file looked like at its last event: settled when still so at due
        with self._lock:
            entry = self._pending.get(path)
            due = time.monotonic() + self.settle
            if entry is None:
                self._pending[path] = Pending(due, snapshot)
            else:
                entry.due, entry.snapshot = due, snapshot

    def scan(self) -> None:
        """Queue every candidate in the inbox (events can be lost: inotify overflow, network shares)."""
        if not self.inbox.is_dir():
            self.log.error("无法读取收件箱 %s；稍后再试", self.inbox)
            return
        # subfolders too (an unzipped archive); links, FIFOs and other odd entries are queued as well: the
        # pipeline refuses them with a reason
        for path in inbox_files(self.folder):
            if self._left_alone(path):
                continue
            with self._lock:
                self._pending.setdefault(path, Pending(time.monotonic()))

    def _left_alone(self, path: Path) -> bool:
        """True for a file given up after repeated failures, until its content changes."""
        given_up = self._given_up.get(path)
        if given_up is None:
            return False
        try:
            info = os.lstat(path)
        except OSError:
            self._given_up.pop(path, None)
            return True
        if (info.st_size, info.st_mtime_ns) == given_up:
            return True
        self._given_up.pop(path, None)
        return False

    def _due(self) -> list[tuple[Path, Pending]]:
        now = time.monotonic()
        with self._lock:
            return [(p, e) for p, e in self._pending.items() if e.due <= now]

    def _settled(self, path: Path, entry: Pending) -> bool:
        """True when size and mtime are the same as at the last look (a file still being copied is not)."""
        try:
            info = os.lstat(path)
        except OSError:  # gone (another writer took it, or the user moved it)
            with self._lock:
                self._pending.pop(path, None)
            return False
        if not stat.S_ISREG(info.st_mode):
            return True  # a link or a FIFO never "settles": the pipeline refuses it at once
        snapshot = (info.st_size, info.st_mtime_ns)
        if entry.snapshot != snapshot or info.st_size == 0:
            entry.snapshot = snapshot
            entry.due = time.monotonic() + self.settle
            return False
        return True

    def _pause(self) -> float:
        """How long the loop sleeps: until the next file is due, at most LOOP_PAUSE (the mailbox, the shares,
        the stop signal), at least a few milliseconds."""
        if self.damaged():
            return LOOP_PAUSE  # nothing is taken until the store is repaired
        with self._lock:
            due = min((e.due for e in self._pending.values()), default=None)
        return LOOP_PAUSE if due is None else min(LOOP_PAUSE, max(0.005, due - time.monotonic()))

    def parse_ahead(self, key: bytes) -> None:
        """Hand a waiting file's bytes to the parser while it settles (whole, as at its last event, not yet due):
        its take then finds the parse done. The take decides on the bytes it reads then, parsed again if changed.
        One file at a time, each waiting file once: a file rewritten again and again costs one parse ahead."""
        if ahead_busy():
            return
        now = time.monotonic()
        with self._lock:
            waiting = [(p, e) for p, e in self._pending.items() if e.due > now and e.snapshot is not None
                       and not e.parsed_ahead and e.ahead != e.snapshot]
        for path, entry in waiting:
            entry.ahead = entry.snapshot  # looked at: not read again until it changes
            if entry.snapshot is None or entry.snapshot[0] > self.max_bytes:
                continue
            try:
                data = read_regular(path)
            except OSError:
                continue
            if len(data) == entry.snapshot[0] and zip_complete(data) and parse_ahead(data, key):
                entry.parsed_ahead = True
                return

    def _say_waiting(self) -> None:
        if not self._waiting:
            self.log.info(WAITING_MESSAGE)
        self._waiting = True

    def step(self, key: bytes) -> int:
        """Process settled pending files (one batch, under the writer lock); returns how many merged.
        Nothing is processed while verify has marked the store damaged (the files wait in the inbox)."""
        if self.damaged():
            if not self._refusing:
                self.log.error("lixiao verify 发现数据库有问题（%s），暂停收件；请停止 lixiao watch，运行 "
                               "lixiao verify --repair 或用备份恢复", DAMAGED)
            self._refusing = True
            return 0
        self._refusing = False
        ready = [(p, e) for p, e in self._due() if not self.stop_event.is_set() and self._settled(p, e)]
        if not ready:
            return 0
        merged = 0
        try:
            with writer_lock(self.folder.root, wait=LOCK_ATTEMPT, on_wait=self._say_waiting):
                self._waiting = False
                recover_staging(self.folder)
                started = time.monotonic()
                for path, entry in ready:
                    if self.stop_event.is_set() or time.monotonic() - started > BATCH_SECONDS:
                        break  # the rest stay due: the next batch takes them after others had their turn
                    merged += self._take(path, entry, key)
        except LockBusyError:
            return merged  # still pending and due: tried again on the next turn of the loop
        return merged

    def _take(self, path: Path, entry: Pending, key: bytes) -> int:
        """Process one file (holding the writer lock); 1 when it merged. Never raises for a bad file."""
        if not os.path.lexists(path):  # another writer took it while we waited for the lock
            with self._lock:
                self._pending.pop(path, None)
            return 0
        try:
            fault_point("daemon", path.name)
            outcome = process_file(self.folder, path, key, min_age=0)
        except Exception as exc:  # noqa: BLE001 - one bad file must never stop the daemon taking the others
            self._failed(path, entry, exc)
            return 0
        if outcome.outcome == "deferred":
            entry.attempts += 1
            entry.due = time.monotonic() + min(60.0, self.settle * 2 ** min(entry.attempts, 5))
            entry.snapshot = None
            return 0
        with self._lock:
            self._pending.pop(path, None)
        self.log.info("%s：%s（记录 %d，拒绝 %d，冲突 %d）%s", outcome.file, OUTCOME_LABELS[outcome.outcome],
                      outcome.applied, outcome.refused, outcome.conflicts,
                      "；".join(strip_code(r) for r in outcome.reasons[:3]))
        if self.on_outcome:
            self.on_outcome(outcome)
        return int(outcome.outcome == "merged")

    def _failed(self, path: Path, entry: Pending, exc: Exception) -> None:
        """Log one line; retry after a back-off, or after MAX_ATTEMPTS leave the file where it is."""
        entry.failures += 1
        debug = bool(os.environ.get("LIXIAO_DEBUG"))
        what = f"{type(exc).__name__}: {exc}"
        name = os.fsdecode(path.name)
        if entry.failures < MAX_ATTEMPTS:
            delay = RETRY_DELAYS[entry.failures - 1]
            self.log.error("处理 %s 时出错（第 %d 次）：%s；%g 秒后重试", name, entry.failures, what, delay,
                           exc_info=debug)
            entry.due = time.monotonic() + delay
            entry.snapshot = None
            return
        self.log.error("处理 %s 连续 %d 次出错（%s），已放弃：文件留在 inbox/ 中，改动或替换该文件后会重新处理"
                       "（设置 LIXIAO_DEBUG=1 可在日志中查看详情）", name, entry.failures, what, exc_info=debug)
        with self._lock:
            self._pending.pop(path, None)
        try:
            info = os.lstat(path)
            self._given_up[path] = (info.st_size, info.st_mtime_ns)
        except OSError:
            pass

    def _refresh(self) -> bool:
        """Regenerate the reports under the writer lock; False when another writer kept it (try later)."""
        try:
            with writer_lock(self.folder.root, wait=LOCK_ATTEMPT, on_wait=self._say_waiting):
                self._waiting = False
                index = refresh_reports(self.folder)
            self.log.info("报表已更新：%s", index)
        except LockBusyError:
            return False
        except Exception as exc:  # a report failure must not stop the daemon taking returns
            self.log.error("报表生成失败（不影响收件）：%s: %s", type(exc).__name__, exc,
                           exc_info=bool(os.environ.get("LIXIAO_DEBUG")))
        return True

    def run(self) -> None:
        """Watch until stop_event is set (SIGINT/SIGTERM in the CLI)."""
        key = secret_key(self.folder.root)
        start_server()  # before the observer's threads: the first return then waits for no Python start
        observer: BaseObserver = PollingObserver(timeout=self.poll) if self.poll else Observer()
        observer.schedule(Router(self.inbox, self.notify), str(self.inbox), recursive=True)
        observer.start()
        self.log.info("开始监视 %s（%s）", self.inbox, f"轮询 {self.poll} 秒" if self.poll else "inotify")
        try:
            try:
                recover_receipts(self.folder)  # receipts a crash left unwritten (the batches recover staging)
            except Exception as exc:  # noqa: BLE001 - a receipt that cannot be rebuilt must not stop the daemon
                self.log.error("补写回执失败（不影响收件）：%s: %s", type(exc).__name__, exc)
            self.scan()
            next_scan = time.monotonic() + self.rescan
            dirty = False
            while not self.stop_event.is_set():
                try:
                    if self.verify_every is not None and time.monotonic() >= self.next_verify:
                        self.verify()
                        self.next_verify = time.monotonic() + self.verify_every
                    self.parse_ahead(key)
                    merged = self.step(key)
                    if self.live.active and not self.damaged():
                        merged += self.live.tick(key, merged > 0)
                    dirty = merged > 0 or dirty
                    with self._lock:  # files waiting for a retry or a slow copy do not hold the reports back
                        busy = any(e.due <= time.monotonic() + self.settle for e in self._pending.values())
                    if dirty and not busy and not self.damaged():  # coalesced: once after a burst, not per file
                        dirty = not self._refresh()
                    if time.monotonic() >= next_scan:
                        self.scan()
                        next_scan = time.monotonic() + self.rescan
                except Exception as exc:  # the daemon outlives any one failure
                    self.log.error("守护进程出错：%s: %s；1 秒后继续", type(exc).__name__, exc,
                                   exc_info=bool(os.environ.get("LIXIAO_DEBUG")))
                    self.stop_event.wait(1.0)
                self.on_beat()
                self.stop_event.wait(self._pause())
        finally:
            observer.stop()
            observer.join(timeout=5)
            self.log.info("已停止")


def run_daemon(folder: DataFolder, settle: float, rescan: float, poll: float | None,
               settings: WatchSettings | None = None) -> None:
    """The CLI door (holding the watch lock): rotating log file, heartbeat, signal handling, then the watch loop."""
    handler = log_file_handler(folder.root, settings := settings or watch_settings(folder.root))
    handler.setFormatter(_SafeFormatter("%(asctime)s %(levelname)s %(message)s"))
    console = logging.StreamHandler()  # sys.stderr, which writes what it cannot encode as \\x escapes
    console.setFormatter(JournalFormatter(_SafeFormatter("%(levelname)s %(message)s")) if under_journal()
                         else _SafeFormatter("%(asctime)s %(message)s", "%H:%M:%S"))
    heartbeat = Heartbeat(folder.root, rescan)
    heartbeat.setFormatter(_SafeFormatter("%(message)s"))
    log = logging.getLogger("lixiao.watch")
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    log.addHandler(console)
    log.addHandler(heartbeat)
    watcher = Watcher(folder, settle, rescan, poll, on_outcome=heartbeat.taken,
                      verify_every=settings.verify_every_minutes * 60)
    watcher.on_beat, watcher.on_verified = heartbeat.beat, heartbeat.verified
    heartbeat.beat()

    def stop(signum: int, _frame: object) -> None:
        log.info("收到信号 %s，处理完当前文件后退出", signal.Signals(signum).name)
        watcher.stop_event.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        watcher.run()
    finally:
        heartbeat.stopped()
        for each in (handler, console, heartbeat):
            log.removeHandler(each)
        handler.close()
