"""``lixiao verify``: the store, its audit chain, the ledger against the archive, and the inbox."""

from __future__ import annotations

import hashlib
import time

from .datafolder import DataFolder
from .pipeline import is_debris

INBOX_GRACE_SECONDS = 120


def folder_problems(folder: DataFolder) -> list[str]:
    """Every integrity problem found (empty when all verifies)."""
    store = folder.store
    problems = store.integrity_problems() + store.audit_problems()
    archive = folder.root / "archive"
    for row in store.ledger_rows():
        if row["outcome"] != "merged":
            continue
        path = archive / f"{row['hash']}.xlsx"
        if not path.exists():
            problems.append(f"已合并的文件“{row['file_name']}”在 archive/ 中找不到（{row['hash'][:12]}…）")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != row["hash"]:
            problems.append(f"archive/{path.name} 的内容与其哈希不符（文件被改动）")
    known = {row["hash"] for row in store.ledger_rows()}
    now = time.time()
    for path in (folder.root / "inbox").iterdir():
        if not path.is_file() or is_debris(path) or now - path.stat().st_mtime < INBOX_GRACE_SECONDS:
            continue
        if hashlib.sha256(path.read_bytes()).hexdigest() not in known:
            problems.append(f"收件箱中的“{path.name}”已放置超过 {INBOX_GRACE_SECONDS} 秒仍未处理（请运行 lixiao sync）")
    return problems
