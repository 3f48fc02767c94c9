"""What the daemon knows of a file waiting in inbox/: the events that route it there, and its settle state."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from lixiao.sync.takeback.inbox import is_debris

ROUTED_EVENTS = frozenset({"created", "modified", "closed", "moved"})


@dataclass
class Pending:
    """A file waiting in inbox/: when it is next looked at, how it looked at its last event, what became of it."""

    due: float
    snapshot: tuple[int, int] | None = None
    attempts: int = 0  # deferrals (still being copied)
    failures: int = 0  # processing raised
    ahead: tuple[int, int] | None = None  # the snapshot last looked at for parse_ahead
    parsed_ahead: bool = False  # its bytes were handed to parse_ahead once (never again while it waits)


def snapshot_of(path: Path) -> tuple[int, int] | None:
    """(size, mtime) of a regular file now; None when it cannot be looked at or is not a regular file."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns) if stat.S_ISREG(info.st_mode) else None


class Router(FileSystemEventHandler):
    """Only routes: inbox paths from created, modified, closed and moved-into events go to ``notify``."""

    def __init__(self, inbox: Path, notify: Callable[[Path], None]) -> None:
        self.inbox = inbox
        self.notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type not in ROUTED_EVENTS:
            return
        raw = event.dest_path if event.event_type == "moved" else event.src_path
        path = Path(os.fsdecode(raw))
        if self.inbox in path.parents and not is_debris(path):
            self.notify(path)
