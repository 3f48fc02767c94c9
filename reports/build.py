"""``lixiao report``: gather, render HTML and Excel, and write reports/ file by file atomically."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from lixiao.core.model import Flow
from lixiao.core.store import Store

from .data import collect
from .excel import build_excel
from .html import render_pages

EXCEL_NAME = "离校进度.xlsx"


@dataclass(frozen=True, slots=True)
class Built:
    """What was written."""

    index: Path
    excel: Path
    files: int
    students: int


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside the target, fsync, then rename over it: readers never see half a
    file, and a crash leaves the old one or the new one (used for reports, outbox, archive, receipts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with partial.open("wb") as handle:
            if os.environ.get("LIXIAO_FAULT") == "report:enospc" and path.suffix == ".html":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(partial))  # fault tests
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def render_report(store: Store, flow: Flow, dest: Path, user_templates: Path | None = None) -> Built:
    """Regenerate every report file under ``dest``; on any error the previous files stay as they were."""
    data = collect(store, flow)
    pages = render_pages(data, user_templates)
    pages[EXCEL_NAME] = build_excel(data)
    static = dest / "static"
    for name, content in pages.items():
        target = dest / name
        if target.parent == static and target.exists() and target.stat().st_size == len(content):
            continue  # bundled assets rarely change; skip rewriting a megabyte each time
        write_atomically(target, content)
    return Built(dest / "index.html", dest / EXCEL_NAME, len(pages), data.school.expected)
