"""P2, the take-back of one returned workbook, measured the two ways the performance issue names:

- in the running daemon: the folder open, the parser server up and another thread running (as ``lixiao watch``
  has its observer), the clock runs from the settled file to its ledger row committed and its receipt written
  (``process_file``), against a bare in-process python-calamine read of the same file;
- one-shot: ``lixiao sync FILE`` as a whole process against a whole Python process doing the bare read; with
  the folder's ``[sync] reports = false`` (the take-back alone) and as installed (it also regenerates
  reports/, which P4 measures on its own).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import python_calamine

from lixiao.sync.datafolder import open_folder, secret_key
from lixiao.sync.takeback.pipeline import process_file
from lixiao.workbooks import sandbox
from lixiao.workbooks.sandbox import parse_ahead, parse_untrusted, start_server

BARE_SCRIPT = ("import io, sys, python_calamine\n"
               "book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(open(sys.argv[1], 'rb').read()))\n"
               "print(sum(len(book.get_sheet_by_name(n).to_python()) for n in book.sheet_names))\n")


def daemon_take_back(root: Path, path: Path, parsed_ahead: bool = False) -> dict[str, Any]:
    """The file settled in inbox/ → committed and answered, in a process set up like ``lixiao watch``.

    ``parsed_ahead``: as ``lixiao watch`` now runs it — the file was handed to the parser while it settled
    (``parse_ahead``, whose answer is in before the settle time is over), so the clock starts with the parse done.
    """
    folder = open_folder(root)
    key = secret_key(root)
    start_server()
    threading.Thread(target=threading.Event().wait, daemon=True).start()  # the observer's stand-in
    parse_untrusted(b"PK\x03\x04 warm-up", key)  # the server has imported its reader
    target = root / "inbox" / path.name
    shutil.copy(path, target)
    if parsed_ahead:
        parse_ahead(target.read_bytes(), key)
        for answer in list(sandbox._AHEAD.values()):  # the settle time is longer than the parse
            answer.result()
    started = time.perf_counter()
    outcome = process_file(folder, target, key, min_age=0)
    seconds = time.perf_counter() - started
    folder.close()
    if outcome.outcome != "merged":
        raise RuntimeError(f"{outcome.outcome}: {outcome.reasons}")
    return {"inner_seconds": seconds, "applied": outcome.applied}


def bare_in_process(path: Path) -> dict[str, Any]:
    """python-calamine reading every sheet of the file's bytes, timed inside the process."""
    started = time.perf_counter()
    book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(path.read_bytes()))
    rows = sum(len(book.get_sheet_by_name(name).to_python()) for name in book.sheet_names)
    return {"inner_seconds": time.perf_counter() - started, "rows": rows}


def sync_command(root: Path, path: Path, reports: bool) -> int:
    """``lixiao sync FILE`` as a user runs it (``reports``: as installed; otherwise [sync] reports = false)."""
    if not reports:
        settings = root / "lixiao.toml"
        text = settings.read_text("utf-8")
        if "[sync]" not in text:
            settings.write_text(text + "\n[sync]\nreports = false\n", "utf-8")
    done = subprocess.run([sys.executable, "-m", "lixiao.sync.cli", "--data", str(root), "sync", "--json", str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode or '"merged"' not in done.stdout:
        raise RuntimeError(done.stdout[-2000:] + done.stderr[-2000:])
    return done.returncode


def bare_command(path: Path) -> int:
    """A whole Python process doing the bare read."""
    done = subprocess.run([sys.executable, "-c", BARE_SCRIPT, str(path)], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)
