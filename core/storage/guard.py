"""The write guard: a store marked damaged, behind its audit anchor, or failing quick_check is never written to;
quick_check's verdict is cached by the files' size and mtime and the chain head, so a store only lixiao wrote
is not checked again."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from lixiao.core.manual.model import Status

from .chain import AuditChain
from .files import write_small
from .schema import LINE_MARKS

CHECK_CACHE = ".check"
DAMAGED = "store.damaged"
RESTORE_HINT = "停止 lixiao，用 lixiao backup 的备份恢复（见 README“备份与恢复”）"


class StoreError(RuntimeError):
    """The store cannot be opened or is not in a usable state."""


def file_stats(path: Path) -> list[list[int] | None]:
    """(size, mtime_ns) of store.db and store.db-wal: what the check cache keys on. An empty WAL counts as
    absent (opening a connection creates one; closing the last one deletes it)."""
    stats: list[list[int] | None] = []
    for candidate in (path, path.with_name(path.name + "-wal")):
        try:
            st = candidate.stat()
        except FileNotFoundError:
            stats.append(None)
            continue
        stats.append([st.st_size, st.st_mtime_ns] if st.st_size or candidate == path else None)
    return stats


def read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


class WriteGuard(AuditChain):
    """The guard's part of the Store (a mixin)."""

    def _guard(self, before: list[list[int] | None]) -> None:
        """Refuse to write to a store marked damaged, behind its anchor, or failing quick_check."""
        damaged = self.path.with_name(DAMAGED)
        if damaged.exists():
            raise StoreError(f"lixiao verify 发现数据库有问题（见 {damaged.name}），拒绝写入；请运行 lixiao verify "
                             f"查看，lixiao verify --repair 修复，或{RESTORE_HINT}")
        problem = self.anchor_problem()
        if problem:
            raise StoreError(f"{problem}，拒绝写入；请运行 lixiao verify --repair，或{RESTORE_HINT}")
        head = list(self.head())
        if read_json(self.path.with_name(CHECK_CACHE)) == {"files": before, "head": head}:
            return
        check = self._quick_check()
        if check != "ok":
            raise StoreError(f"数据库 {self.path} 已损坏（{check}），拒绝写入；请{RESTORE_HINT}")
        self._record_check(head)

    def _quick_check(self) -> str:
        """PRAGMA quick_check's verdict ("ok" when sound): ≈1.4 s on a 280 MB store, hence the cache."""
        try:
            return str(self.db.execute("PRAGMA quick_check").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            return str(exc)

    def _record_check(self, head: list[object] | None = None) -> None:
        """Remember the files as they are now as checked (a cache: written without fsync)."""
        cache = {"files": file_stats(self.path), "head": head if head is not None else list(self.head())}
        write_small(self.path.with_name(CHECK_CACHE), json.dumps(cache), durable=False)

    def _advance_check(self, before: list[list[int] | None], head: list[object] | None = None) -> None:
        """Move the check cache over our own change, only when it described the files just before it."""
        cache = read_json(self.path.with_name(CHECK_CACHE))
        if isinstance(cache, dict) and cache.get("files") == before:
            self._record_check(head)

    def integrity_problems(self) -> list[str]:
        """SQLite integrity and foreign-key problems, and status lines that disagree with the statuses
        (empty when the file is sound)."""
        return self.sqlite_problems() or self.line_problems()

    def sqlite_problems(self) -> list[str]:
        """SQLite integrity and foreign-key problems (empty when the file is sound)."""
        problems = [r[0] for r in self.db.execute("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [f"外键错误：{r[0]} 第 {r[1]} 行引用 {r[2]}" for r in self.db.execute("PRAGMA foreign_key_check")]
        return problems

    def line_problems(self) -> list[str]:
        """Status lines that disagree with the statuses (empty when they agree)."""
        problems = []
        stored: dict[str, dict[str, str]] = {}
        for no, step, status in self.db.execute("SELECT student_no, step, status FROM statuses"):
            stored.setdefault(no, {})[step] = LINE_MARKS[Status(status)]
        lines = {no: dict(zip(steps.split(":"), marks, strict=True))
                 for no, steps, marks in self.db.execute("SELECT student_no, steps, marks FROM status_lines")}
        wrong = sorted(no for no in stored.keys() | lines.keys() if stored.get(no) != lines.get(no))
        if wrong:
            problems.append(f"状态汇总与状态表不一致：{len(wrong)} 名学生（如 {wrong[0]}）")
        return problems
