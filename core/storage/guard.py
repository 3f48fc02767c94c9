"""The write guard: a store marked damaged, behind its audit anchor, failing quick_check or whose tables disagree
with the audit chain is never written to nor published from; the verdict is cached by the files' size and mtime and
the chain head, so a store only lixiao wrote is not checked again (a change behind lixiao's back — the sqlite3
shell, a copied file — is: quick_check and the chain replayed against the tables)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from lixiao.core.manual.model import Status

from .chain import Replay
from .files import write_small
from .schema import LINE_MARKS, SCHEMA_VERSION
from .trusted import TrustedTables

CHECK_CACHE = ".check"
DAMAGED = "store.damaged"
RESTORE_HINT = "停止 lixiao，用 lixiao backup 的备份恢复（见 README“备份与恢复”）"
DAMAGED_HEADER = "lixiao verify 发现以下问题，数据库拒绝写入，报表和工作簿停止发布：\n"
CONTENT_LINES = 3  # problem lines the guard's refusal names


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


def mark_damaged(path: Path, problems: list[str]) -> None:
    """Write ``store.damaged`` beside ``path`` (store.db) naming the problems: writing, publishing and the daemon's
    taking of returns stop until lixiao verify passes again."""
    write_small(path.with_name(DAMAGED), DAMAGED_HEADER + "\n".join(problems) + "\n", durable=True)


def damaged_refusal(path: Path, what: str) -> str:
    """The Chinese line refusing ``what`` while ``store.damaged`` lies beside ``path`` ("" when it does not)."""
    marker = path.with_name(DAMAGED)
    if not marker.exists():
        return ""
    return (f"lixiao verify 发现数据库有问题（见 {marker.name}），{what}；请运行 lixiao verify 查看，"
            f"lixiao verify --repair 修复，或{RESTORE_HINT}")


class WriteGuard(TrustedTables):
    """The guard's part of the Store (a mixin)."""

    def refuse_if_damaged(self, what: str = "拒绝发布报表和工作簿") -> None:
        """Raise StoreError while the last check found damage (``store.damaged``): nothing is published from it."""
        refusal = damaged_refusal(self.path, what)
        if refusal:
            raise StoreError(refusal)

    def content_problems(self) -> list[str]:
        """The tables held against the replayed chain in one snapshot: chain links, statuses, waivers, ledger,
        status lines, students, workbooks and loan confirmations (what verify checks inside store.db)."""
        conn = self.db.conn
        began = not conn.in_transaction
        if began:
            conn.execute("BEGIN")
        try:
            replay = self.replay()
            return (replay.chain[:CONTENT_LINES] + self.table_problems(replay)
                    + self.trusted_differences(self.trusted_replay()).lines())
        except (sqlite3.DatabaseError, ValueError, KeyError, TypeError, StoreError) as exc:
            return [f"数据库内容无法读取（{exc}）"]
        finally:
            if began:
                conn.rollback()

    def _guard(self, before: list[list[int] | None]) -> None:
        """Refuse to write to a store marked damaged, behind its anchor, or failing quick_check."""
        self.refuse_if_damaged("拒绝写入")
        problem = self.anchor_problem()
        if problem:
            raise StoreError(f"{problem}，拒绝写入；请运行 lixiao verify --repair，或{RESTORE_HINT}")
        head = list(self.head())
        if read_json(self.path.with_name(CHECK_CACHE)) == {"files": before, "head": head}:
            return
        check = self._quick_check()
        if check != "ok":
            raise StoreError(f"数据库 {self.path} 已损坏（{check}），拒绝写入；请{RESTORE_HINT}")
        # changed behind lixiao's back since its last write: the tables against the chain (≈ verify's replay)
        version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        problems = self.content_problems() if version == SCHEMA_VERSION else []
        if problems:
            mark_damaged(self.path, problems)
            raise StoreError(f"数据库在 lixiao 之外被改动，与审计记录不符：{'；'.join(problems[:CONTENT_LINES])}。"
                             f"已停止写入和发布（{DAMAGED}）；请运行 lixiao verify --repair 修复，或{RESTORE_HINT}")
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

    def table_problems(self, replay: Replay) -> list[str]:
        """The status lines against the statuses, then the statuses, waivers and ledger against the replayed chain,
        in one pass over the statuses table."""
        statuses: dict[str, dict[str, str]] = {}
        replayed = self.replay_differences(replay, statuses).lines()
        return self.line_problems(statuses) + replayed

    def line_problems(self, statuses: dict[str, dict[str, str]] | None = None) -> list[str]:
        """Status lines that disagree with the statuses (empty when they agree); ``statuses``: the table's rows
        already read (学号 → step → status), or None to read them."""
        problems = []
        if statuses is None:
            statuses = {}
            for no, step, status in self.db.execute("SELECT student_no, step, status FROM statuses"):
                statuses.setdefault(no, {})[step] = status
        marks = {s.value: m for s, m in LINE_MARKS.items()}
        stored = {no: {step: marks.get(status) or LINE_MARKS[Status(status)] for step, status in steps.items()}
                  for no, steps in statuses.items()}
        lines = {no: dict(zip(steps.split(":"), marks, strict=True))
                 for no, steps, marks in self.db.execute("SELECT student_no, steps, marks FROM status_lines")}
        wrong = sorted(no for no in stored.keys() | lines.keys() if stored.get(no) != lines.get(no))
        if wrong:
            problems.append(f"状态汇总与状态表不一致：{len(wrong)} 名学生（如 {wrong[0]}）")
        return problems
