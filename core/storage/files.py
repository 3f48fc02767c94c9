"""Atomic file writes: readers never see half a file, and a crash leaves the old file or the new one."""

from __future__ import annotations

import os
from pathlib import Path

from .faults import fault_point


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside the target, fsync, then rename over it (reports, outbox, archive,
    receipts, explanations)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with partial.open("wb") as handle:
            if path.suffix == ".html":
                fault_point("report")  # the fault tests: a disk that fills while the reports are written
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_small(path: Path, text: str, durable: bool) -> None:
    """Replace a small file atomically (temp file + rename); ``durable`` also fsyncs the file and its folder."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    temp.replace(path)
    if durable:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
