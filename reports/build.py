"""``lixiao report``: gather, render HTML and Excel, and write reports/ file by file atomically."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lixiao.core.clearance.clearance import Clearance
from lixiao.core.manual.model import Flow
from lixiao.core.storage.files import write_atomically
from lixiao.core.storage.memory import no_cycle_collection
from lixiao.core.storage.store import Store

from .data import collect
from .excel import add_matrix, build_views, matrix_xml
from .html import render_pages

EXCEL_NAME = "离校进度.xlsx"


@dataclass(frozen=True, slots=True)
class Built:
    """What was written."""

    index: Path
    excel: Path
    files: int
    students: int


class ReportError(RuntimeError):
    """A report could not be built (the previous files stay as they were)."""


def in_parallel(build: Callable[[], bytes]) -> Callable[[], bytes]:
    """Start ``build`` in a forked child (the second core) and return a function that waits for its bytes.

    The child only computes in memory and writes to a pipe: no store, no files, no locks of other
    threads (which a fork does not copy) are touched. Where fork is unavailable the work runs here.
    """
    if not hasattr(os, "fork"):
        result = build()
        return lambda: result
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():  # Python 3.12 warns about forking with threads alive; see above
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its work is checked through the parent's result
        os.close(read_end)
        code = 0
        try:
            payload = b"\x00" + build()
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            payload, code = b"\x01" + f"{type(exc).__name__}: {exc}".encode(), 1
        try:
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
        finally:
            os._exit(code)
    os.close(write_end)

    def wait() -> bytes:
        with os.fdopen(read_end, "rb") as pipe:
            payload = pipe.read()
        _, status = os.waitpid(pid, 0)
        if payload[:1] == b"\x00" and os.waitstatus_to_exitcode(status) == 0:
            return payload[1:]
        detail = payload[1:].decode(errors="replace") or f"子进程异常退出（{os.waitstatus_to_exitcode(status)}）"
        raise ReportError(f"生成 Excel 报表失败：{detail}")

    return wait


def render_report(store: Store, flow: Flow, dest: Path, user_templates: Path | None = None) -> Built:
    """Regenerate every report file under ``dest``; on any error the previous files stay as they were.

    As soon as the status board is read, a second process builds and compresses the Excel report's
    status matrix (the biggest single piece of work) while this one gathers the figures, writes the
    other sheets and renders the HTML; the pieces are joined at the end.
    """
    with no_cycle_collection():
        board = Clearance(store, flow).board()
        matrix = in_parallel(lambda: matrix_xml(board))
        try:
            data = collect(store, flow, board=board)
            views = build_views(data)
            pages = render_pages(data, user_templates)
        except BaseException:
            with contextlib.suppress(ReportError):
                matrix()  # reap the child; the first error is the one to report
            raise
        pages[EXCEL_NAME] = add_matrix(*views, board, matrix())
    static = dest / "static"
    for name, content in pages.items():
        target = dest / name
        if target.parent == static and target.exists() and target.stat().st_size == len(content):
            continue  # bundled assets rarely change; skip rewriting a megabyte each time
        write_atomically(target, content)
    return Built(dest / "index.html", dest / EXCEL_NAME, len(pages), data.school.expected)
