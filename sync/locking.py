"""The data folder's locks: one writer at a time (every writing command), one ``lixiao watch`` per folder."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

WRITER_LOCK = ".lixiao.lock"
WATCH_LOCK = ".lixiao-watch.lock"
WRITER_WAIT = 30.0  # seconds a writing command waits for another writer before it gives up
WAITING_MESSAGE = "正在等待另一个 lixiao 进程完成写入…"
BUSY_MESSAGE = ("另一个 lixiao 进程已占用此数据文件夹 {wait:g} 秒仍未完成写入；"
                "请等它结束后重试（lixiao watch 只在处理文件时短暂占用，不必停止它）")
WATCHING_MESSAGE = "此数据文件夹已有一个 lixiao watch 在运行；同一文件夹只需一个守护进程，请勿重复启动"
_POLL = 0.05
WATCH_GRACE = 0.2  # seconds a starting daemon waits for the watch lock


class LockBusyError(Exception):
    """Another process holds the lock and did not release it in time."""


def _try_lock(handle: TextIO) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def _held(path: Path, wait: float, busy: str, on_wait: Callable[[], None] | None) -> Iterator[None]:
    handle = path.open("a")
    try:
        deadline = time.monotonic() + wait
        waited = False
        while not _try_lock(handle):
            if time.monotonic() >= deadline:
                raise LockBusyError(busy)
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            time.sleep(_POLL)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


@contextmanager
def writer_lock(root: Path, wait: float | None = None, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the one writer lock of the folder at ``root``.

    Waits up to ``wait`` seconds (default ``WRITER_WAIT``), calling ``on_wait`` once when it has to wait,
    then raises LockBusyError. Not re-entrant: a process must not nest two writer_lock blocks.
    """
    limit = WRITER_WAIT if wait is None else wait
    with _held(root / WRITER_LOCK, limit, BUSY_MESSAGE.format(wait=limit), on_wait):
        yield


@contextmanager
def watch_lock(root: Path) -> Iterator[None]:
    """Hold the folder's watch lock for a daemon's whole life; a second daemon is refused at once (after
    WATCH_GRACE, so that a ``watch_running`` probe holding it for an instant does not refuse a daemon)."""
    with _held(root / WATCH_LOCK, WATCH_GRACE, WATCHING_MESSAGE, None):
        yield


def watch_running(root: Path) -> bool:
    """True while a ``lixiao watch`` holds the folder's watch lock (probed by taking it for an instant)."""
    try:
        handle = (root / WATCH_LOCK).open("r")
    except FileNotFoundError:  # no daemon ever ran here (the daemon creates the file)
        return False
    with handle:
        if not _try_lock(handle):
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
