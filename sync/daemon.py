"""``lixiao watch``: a dumb watcher that routes inbox events to the one-writer sync pipeline."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from lixiao.core.store import DAMAGED

from .datafolder import DataFolder, DataFolderError, secret_key
from .pipeline import FileOutcome, is_debris, process_file, recover_staging, refresh_reports

LOCK_NAME = ".lixiao.lock"
ROUTED_EVENTS = frozenset({"created", "modified", "closed", "moved"})


@contextmanager
def writer_lock(root: Path, wait: float = 0.0) -> Iterator[None]:
    """One writer per data folder: the daemon holds this lock; `lixiao sync` takes it too."""
    handle = (root / LOCK_NAME).open("a")
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                raise DataFolderError("另一个 lixiao 进程（lixiao watch 或 sync）正在处理此数据文件夹；"
                                      "守护进程运行时会自动处理收件箱，无需再运行 sync") from None
            time.sleep(0.2)
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


@dataclass
class _Pending:
    due: float
    snapshot: tuple[int, int] | None = None
    attempts: int = 0


class _Router(FileSystemEventHandler):
    """Only routes: inbox paths from created, modified, closed and moved-into events go to ``notify``."""

    def __init__(self, inbox: Path, notify: Callable[[Path], None]) -> None:
        self.inbox = inbox
        self.notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type not in ROUTED_EVENTS:
            return
        raw = event.dest_path if event.event_type == "moved" else event.src_path
        path = Path(os.fsdecode(raw))
        if path.parent == self.inbox and not is_debris(path):
            self.notify(path)


class Watcher:
    """Debounces inbox events, checks that a file is complete, and processes it once, in one thread."""

    def __init__(self, folder: DataFolder, settle: float = 1.5, rescan: float = 30.0, poll: float | None = None,
                 on_outcome: Callable[[FileOutcome], None] | None = None) -> None:
        self.folder = folder
        self.inbox = folder.root / "inbox"
        self.settle = settle
        self.rescan = rescan
        self.poll = poll
        self.on_outcome = on_outcome
        self.stop_event = threading.Event()
        self._pending: dict[Path, _Pending] = {}
        self._lock = threading.Lock()
        self._refusing = False
        self.log = logging.getLogger("lixiao.watch")

    def notify(self, path: Path) -> None:
        """An event touched ``path``: (re)start its settle timer."""
        with self._lock:
            entry = self._pending.get(path)
            due = time.monotonic() + self.settle
            if entry is None:
                self._pending[path] = _Pending(due)
            else:
                entry.due = due

    def scan(self) -> None:
        """Queue every candidate in the inbox (events can be lost: inotify overflow, network shares)."""
        for path in self.inbox.iterdir():
            if path.is_file() and not is_debris(path):
                with self._lock:
                    self._pending.setdefault(path, _Pending(time.monotonic()))

    def _due(self) -> list[tuple[Path, _Pending]]:
        now = time.monotonic()
        with self._lock:
            return [(p, e) for p, e in self._pending.items() if e.due <= now]

    def _settled(self, path: Path, entry: _Pending) -> bool:
        """True when size and mtime are the same as at the last look (a file still being copied is not)."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            with self._lock:
                self._pending.pop(path, None)
            return False
        snapshot = (stat.st_size, stat.st_mtime_ns)
        if entry.snapshot != snapshot or stat.st_size == 0:
            entry.snapshot = snapshot
            entry.due = time.monotonic() + self.settle
            return False
        return True

    def step(self, key: bytes) -> int:
        """Process every settled pending file once; returns how many merged (so the reports need refreshing).
        Nothing is processed while verify has marked the store damaged (the files wait in the inbox)."""
        merged = 0
        if (self.folder.store.path.with_name(DAMAGED)).exists():
            if not self._refusing:
                self.log.error("lixiao verify 发现数据库有问题（%s），暂停收件；请停止 lixiao watch，运行 "
                               "lixiao verify --repair 或用备份恢复", DAMAGED)
            self._refusing = True
            return 0
        self._refusing = False
        for path, entry in self._due():
            if self.stop_event.is_set():
                break
            if not self._settled(path, entry):
                continue
            outcome = process_file(self.folder, path, key, min_age=0)
            if outcome.outcome == "deferred":
                entry.attempts += 1
                entry.due = time.monotonic() + min(60.0, self.settle * 2 ** min(entry.attempts, 5))
                entry.snapshot = None
                continue
            with self._lock:
                self._pending.pop(path, None)
            merged += outcome.outcome == "merged"
            self.log.info("%s: %s (记录 %d, 拒绝 %d, 冲突 %d) %s", outcome.file, outcome.outcome, outcome.applied,
                          outcome.refused, outcome.conflicts, "; ".join(outcome.reasons[:3]))
            if self.on_outcome:
                self.on_outcome(outcome)
        return merged

    def _refresh(self) -> None:
        try:
            index = refresh_reports(self.folder)
            self.log.info("报表已更新：%s", index)
        except Exception as exc:  # noqa: BLE001 - a report failure must not stop the daemon taking returns
            self.log.error("报表生成失败（不影响收件）：%s: %s", type(exc).__name__, exc)

    def run(self) -> None:
        """Watch until stop_event is set (SIGINT/SIGTERM in the CLI)."""
        key = secret_key(self.folder.root)
        recover_staging(self.folder)
        observer: Any = PollingObserver(timeout=self.poll) if self.poll else Observer()
        observer.schedule(_Router(self.inbox, self.notify), str(self.inbox), recursive=False)
        observer.start()
        self.log.info("开始监视 %s（%s）", self.inbox, f"轮询 {self.poll} 秒" if self.poll else "inotify")
        try:
            self.scan()
            next_scan = time.monotonic() + self.rescan
            dirty = False
            while not self.stop_event.is_set():
                dirty = self.step(key) > 0 or dirty
                with self._lock:
                    busy = bool(self._pending)
                if dirty and not busy:  # coalesced: once after a burst, not per file
                    self._refresh()
                    dirty = False
                if time.monotonic() >= next_scan:
                    self.scan()
                    next_scan = time.monotonic() + self.rescan
                self.stop_event.wait(0.2)
        finally:
            observer.stop()
            observer.join(timeout=5)
            self.log.info("已停止")


def run_daemon(folder: DataFolder, settle: float, rescan: float, poll: float | None) -> None:
    """The CLI door: log file, signal handling, the writer lock, then the watch loop."""
    log_path = folder.root / "watch.log"
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log = logging.getLogger("lixiao.watch")
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    log.addHandler(console)
    watcher = Watcher(folder, settle, rescan, poll)

    def stop(signum: int, _frame: object) -> None:
        log.info("收到信号 %s，处理完当前文件后退出", signal.Signals(signum).name)
        watcher.stop_event.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        with writer_lock(folder.root):
            watcher.run()
    finally:
        log.removeHandler(handler)
        log.removeHandler(console)
        handler.close()
