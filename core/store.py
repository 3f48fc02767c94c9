"""The SQLite store (WAL, synchronous=FULL): schema migrations, students, statuses, waivers, audit chain."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from .identity import mask_id_card
from .model import FLAGS, Status, Student

BUSY_TIMEOUT_MS = 15_000
GENESIS = "0" * 64
# Beside store.db: the chain head after the last commit ("seq hash"), the write guard's cache of the last
# passed quick_check, and the marker `lixiao verify` leaves while it finds damage.
ANCHOR = "audit.head"
CHECK_CACHE = ".check"
DAMAGED = "store.damaged"
RESTORE_HINT = "停止 lixiao，用 lixiao backup 的备份恢复（见 README“备份与恢复”）"
# How many examples a problem line names, and how many restored rows a repair event lists.
EXAMPLES = 3
REPAIR_LISTED = 1000

# The mark of each stored status in status_lines (migration 3), one character per step.
LINE_MARKS = {Status.PASSED: "p", Status.FAILED: "f", Status.OPTIONAL: "o", Status.PENDING: "n", Status.NA: "x"}
MIGRATIONS: list[str] = [
    # 1: the whole first schema.
    """
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        year INTEGER NOT NULL,
        flow_name TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE students (
        student_no TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        gender TEXT NOT NULL DEFAULT '',
        id_card TEXT NOT NULL DEFAULT '',
        college TEXT NOT NULL DEFAULT '',
        major TEXT NOT NULL DEFAULT '',
        class_name TEXT NOT NULL DEFAULT '',
        dorm TEXT NOT NULL DEFAULT '',
        level TEXT NOT NULL DEFAULT '本科',
        previous INTEGER NOT NULL DEFAULT 0,
        national_loan INTEGER NOT NULL DEFAULT 0,
        local_loan INTEGER NOT NULL DEFAULT 0,
        switch INTEGER NOT NULL DEFAULT 0,
        withheld INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX students_name ON students(name);
    CREATE INDEX students_id_card ON students(id_card);
    CREATE TABLE statuses (
        student_no TEXT NOT NULL REFERENCES students(student_no),
        step TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending','passed','failed','optional','na')),
        remark TEXT NOT NULL DEFAULT '',
        version INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        source TEXT NOT NULL,
        operator TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (student_no, step)
    );
    CREATE TABLE waivers (
        id INTEGER PRIMARY KEY,
        student_no TEXT NOT NULL REFERENCES students(student_no),
        step TEXT NOT NULL,
        reason TEXT NOT NULL,
        evidence TEXT NOT NULL DEFAULT '',
        operator TEXT NOT NULL,
        created_at TEXT NOT NULL,
        restored_at TEXT,
        restored_by TEXT
    );
    CREATE UNIQUE INDEX waivers_active ON waivers(student_no, step) WHERE restored_at IS NULL;
    CREATE TABLE workbooks (
        id TEXT PRIMARY KEY,
        checkpoint TEXT NOT NULL,
        scope TEXT NOT NULL,
        generation INTEGER NOT NULL,
        issued_at TEXT NOT NULL,
        students_hash TEXT NOT NULL,
        baseline TEXT NOT NULL,
        path TEXT NOT NULL
    );
    CREATE TABLE returns (
        hash TEXT PRIMARY KEY,
        file_name TEXT NOT NULL,
        state TEXT NOT NULL,
        outcome TEXT,
        workbook_id TEXT,
        received_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE refused_ticks (
        id INTEGER PRIMARY KEY,
        return_hash TEXT NOT NULL,
        student_no TEXT NOT NULL,
        step TEXT NOT NULL,
        value TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE conflicts (
        id INTEGER PRIMARY KEY,
        return_hash TEXT NOT NULL,
        student_no TEXT NOT NULL,
        step TEXT NOT NULL,
        baseline TEXT NOT NULL,
        returned TEXT NOT NULL,
        current TEXT NOT NULL,
        created_at TEXT NOT NULL,
        resolved_at TEXT
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        student_no TEXT NOT NULL DEFAULT '',
        step TEXT NOT NULL DEFAULT '',
        old TEXT NOT NULL DEFAULT '',
        new TEXT NOT NULL DEFAULT '',
        decision TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT '',
        source_hash TEXT NOT NULL DEFAULT '',
        operator TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '',
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE
    );
    CREATE INDEX audit_student ON audit(student_no);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
    """,
    # 2: a daily snapshot of completion for the progress-over-time chart.
    """
    CREATE TABLE progress (
        day TEXT PRIMARY KEY,
        expected INTEGER NOT NULL,
        complete INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    );
    """,
    # 3: every student's statuses as one line — the steps, and one mark per step in the same order —
    # kept by triggers in the same transaction as the statuses: a report reads 30,000 lines instead
    # of 500,000 rows.
    """
    CREATE TABLE status_lines (
        student_no TEXT PRIMARY KEY,
        steps TEXT NOT NULL,
        marks TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO status_lines
        SELECT student_no, group_concat(step, ':'), group_concat(MARK, '') FROM statuses GROUP BY student_no;
    CREATE TRIGGER status_lines_insert AFTER INSERT ON statuses BEGIN
        INSERT OR REPLACE INTO status_lines
            SELECT NEW.student_no, group_concat(step, ':'), group_concat(MARK, '') FROM statuses
            WHERE student_no = NEW.student_no;
    END;
    CREATE TRIGGER status_lines_update AFTER UPDATE OF student_no, step, status ON statuses
        WHEN OLD.status IS NOT NEW.status OR OLD.step IS NOT NEW.step OR OLD.student_no IS NOT NEW.student_no
    BEGIN
        DELETE FROM status_lines WHERE student_no IN (OLD.student_no, NEW.student_no);
        INSERT INTO status_lines
            SELECT student_no, group_concat(step, ':'), group_concat(MARK, '') FROM statuses
            WHERE student_no IN (OLD.student_no, NEW.student_no) GROUP BY student_no;
    END;
    CREATE TRIGGER status_lines_delete AFTER DELETE ON statuses BEGIN
        DELETE FROM status_lines WHERE student_no = OLD.student_no;
        INSERT INTO status_lines
            SELECT student_no, group_concat(step, ':'), group_concat(MARK, '') FROM statuses
            WHERE student_no = OLD.student_no GROUP BY student_no;
    END;
    """.replace("MARK", "CASE status " + " ".join(f"WHEN '{s.value}' THEN '{m}'" for s, m in LINE_MARKS.items())
                + " END"),
    # 4: every ledger change is an audit event too; a return's events (for its receipt) by its hash.
    """
    CREATE INDEX IF NOT EXISTS audit_source_hash ON audit(source_hash);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
_AUDIT_FIELDS = (
    "at", "kind", "student_no", "step", "old", "new", "decision", "source", "source_hash",
    "operator", "detail",
)


class StoreError(RuntimeError):
    """The store cannot be opened or is not in a usable state."""


@dataclass
class Replay:
    """The state the audit chain describes, rebuilt by streaming it once."""

    events: int = 0
    chain: list[str] = field(default_factory=list)
    # (学号, step) → (status, remark, version, updated_at, source, operator), as the statuses table holds it
    statuses: dict[tuple[str, str], tuple[str, str, int, str, str, str]] = field(default_factory=dict)
    # (学号, step) → (reason, evidence, operator, created_at) of the waivers in force
    waivers: dict[tuple[str, str], tuple[str, str, str, str]] = field(default_factory=dict)
    # content hash → (state, outcome, first file name)
    ledger: dict[str, tuple[str, str | None, str]] = field(default_factory=dict)
    # (content hash, decision) of every "return" event: explains ledger rows written before schema 4
    returns: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class Differences:
    """Rows of the statuses, waivers and returns tables that disagree with the replayed chain."""

    status_changed: list[tuple[tuple[str, str], tuple[Any, ...], tuple[Any, ...]]] = field(default_factory=list)
    status_missing: list[tuple[str, str]] = field(default_factory=list)
    status_extra: list[tuple[str, str]] = field(default_factory=list)
    waiver_missing: list[tuple[str, str]] = field(default_factory=list)
    waiver_extra: list[tuple[str, str]] = field(default_factory=list)
    ledger_missing: list[tuple[str, str]] = field(default_factory=list)
    ledger_changed: list[tuple[str, str]] = field(default_factory=list)
    ledger_extra: list[tuple[str, str]] = field(default_factory=list)

    def any(self) -> bool:
        """Whether anything disagrees."""
        return any(getattr(self, name) for name in self.__dataclass_fields__)

    def lines(self) -> list[str]:
        """One Chinese problem line per kind of disagreement, naming the first few."""
        fix = "；运行 lixiao verify --repair 可按审计记录恢复"

        def cells(keys: list[tuple[str, str]]) -> str:
            return "、".join(f"{no} {step}" for no, step in keys[:EXAMPLES])

        def files(rows: list[tuple[str, str]]) -> str:
            return "、".join(f"“{name}”（{digest[:12]}）" for digest, name in rows[:EXAMPLES])

        lines = []
        if self.status_changed:
            examples = "、".join(f"{no} {step}：{_status_difference(row, want)}"
                                 for (no, step), row, want in self.status_changed[:EXAMPLES])
            lines.append(f"状态表中 {len(self.status_changed)} 处与审计记录不符（状态被改动），如 {examples}{fix}")
        if self.status_missing:
            lines.append(f"状态表缺少 {len(self.status_missing)} 行审计记录中的状态（状态行被删除），"
                         f"如 {cells(self.status_missing)}{fix}")
        if self.status_extra:
            lines.append(f"状态表中 {len(self.status_extra)} 行没有审计记录（状态行被伪造），"
                         f"如 {cells(self.status_extra)}{fix}")
        if self.waiver_missing:
            lines.append(f"解除限制表缺少 {len(self.waiver_missing)} 条审计记录中仍有效的解除限制（记录被删除或撤销），"
                         f"如 {cells(self.waiver_missing)}{fix}")
        if self.waiver_extra:
            lines.append(f"解除限制表中 {len(self.waiver_extra)} 条有效记录与审计记录不符（记录被伪造或改动），"
                         f"如 {cells(self.waiver_extra)}{fix}")
        if self.ledger_missing:
            lines.append(f"台账缺少 {len(self.ledger_missing)} 个审计记录中处理过的文件（台账行被删除），"
                         f"如 {files(self.ledger_missing)}{fix}")
        if self.ledger_changed:
            lines.append(f"台账中 {len(self.ledger_changed)} 个文件的状态与审计记录不符（台账被改动），"
                         f"如 {files(self.ledger_changed)}{fix}")
        if self.ledger_extra:
            lines.append(f"台账中 {len(self.ledger_extra)} 个文件没有审计记录（台账行被伪造），"
                         f"如 {files(self.ledger_extra)}{fix}")
        return lines


_STATUS_FIELDS = ("状态", "备注", "版本", "时间", "来源", "操作人")


def _status_difference(row: tuple[Any, ...], want: tuple[Any, ...]) -> str:
    """Which fields of a status row differ from the replayed chain: 表中 … 审计记录为 …."""
    parts = [f"{name}表中为“{a}”，审计记录为“{b}”" for name, a, b in zip(_STATUS_FIELDS, row, want, strict=False)
             if a != b]
    return "；".join(parts[:3])


@dataclass(frozen=True, slots=True)
class StatusRow:
    """The stored state of one (student, step) cell."""

    status: Status
    remark: str
    version: int
    updated_at: str
    source: str
    operator: str


@dataclass(frozen=True, slots=True)
class Session:
    """The 离校会话 held by a store."""

    name: str
    year: int
    flow_name: str
    created_at: str


def now() -> str:
    """The local time as an ISO string to the second, the store's timestamp format."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def audit_hash(prev_hash: str, event: dict[str, Any]) -> str:
    """The hash that chains one audit event to the previous one."""
    body = json.dumps([prev_hash, *(event[f] for f in _AUDIT_FIELDS)], ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _connect(path: Path) -> sqlite_utils.Database:
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
    db = sqlite_utils.Database(conn)
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA synchronous=FULL")
    return db


class Store:
    """One data folder's SQLite store; every multi-row write goes through ``transaction()``."""

    def __init__(self, db: sqlite_utils.Database, path: Path) -> None:
        self.db = db
        self.path = path

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, session_name: str, year: int, flow_name: str) -> Store:
        """Create a new store with the current schema and its session."""
        if path.exists():
            raise StoreError(f"{path} 已存在，不会覆盖")
        db = _connect(path)
        db.enable_wal()
        store = cls(db, path)
        store._migrate()
        with store.transaction():
            db.execute(
                "INSERT INTO sessions (name, year, flow_name, created_at) VALUES (?, ?, ?, ?)",
                [session_name, year, flow_name, now()],
            )
            store.append_audit([{"kind": "session", "new": session_name, "detail": flow_name}])
        return store

    @classmethod
    def open(cls, path: Path, guard: bool = True) -> Store:
        """Open an existing store, migrating its schema forward if needed. With ``guard`` (every writing
        command) the store must pass the write guard: no ``store.damaged`` marker, the chain head not behind
        ``audit.head``, and PRAGMA quick_check unless ``.check`` says the files are as last checked."""
        if not path.exists():
            raise StoreError(f"找不到数据库 {path}，请先运行 lixiao init")
        before = _file_stats(path)
        try:
            db = _connect(path)
            version = db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"数据库 {path} 已损坏或不是 SQLite 文件（{exc}）；请用 lixiao backup 的备份恢复"
            ) from None
        if version > SCHEMA_VERSION:
            db.conn.close()
            raise StoreError(f"数据库 {path} 的版本 {version} 比本程序新（{SCHEMA_VERSION}），请升级 lixiao")
        store = cls(db, path)
        if guard:
            try:
                store._guard(before)
            except BaseException:
                db.conn.close()
                raise
        if version < SCHEMA_VERSION:
            store._migrate()
        return store

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
        if _read_json(self.path.with_name(CHECK_CACHE)) == {"files": before, "head": head}:
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

    def _record_check(self, head: list[Any] | None = None) -> None:
        """Remember the files as they are now as checked (a cache: written without fsync)."""
        cache = {"files": _file_stats(self.path), "head": head if head is not None else list(self.head())}
        _write_file(self.path.with_name(CHECK_CACHE), json.dumps(cache), durable=False)

    def _advance_check(self, before: list[list[int] | None], head: list[Any] | None = None) -> None:
        """Move the check cache over our own change, only when it described the files just before it."""
        cache = _read_json(self.path.with_name(CHECK_CACHE))
        if cache is not None and cache.get("files") == before:
            self._record_check(head)

    def close(self) -> None:
        """Close the connection (SQLite then checkpoints the WAL; the check cache follows when it was current)."""
        before = _file_stats(self.path)
        head = list(self.head())
        self.db.conn.close()
        self._advance_check(before, head)

    def backup_to(self, dest: Path) -> None:
        """A consistent online copy (SQLite backup API), verified before it is kept."""
        if dest.exists():
            raise StoreError(f"{dest} 已存在，不会覆盖；请换一个文件名")
        if not dest.parent.is_dir():
            raise StoreError(f"备份位置 {dest.parent} 不存在（U 盘未插好？）；请先确认文件夹存在再备份")
        partial = dest.with_name(dest.name + ".partial")
        target = sqlite3.connect(str(partial))
        try:
            self.db.conn.backup(target)
        finally:
            target.close()
        copy = Store(_connect(partial), partial)
        try:
            problems = copy.integrity_problems() + copy.audit_problems()
        finally:
            copy.close()
        if problems:
            partial.unlink()
            raise StoreError(f"备份校验失败：{problems[0]}")
        partial.replace(dest)

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            # executescript commits first; each migration and its version bump is one transaction.
            self.db.conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version={number};\nCOMMIT;")

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """One write transaction (BEGIN IMMEDIATE): everything inside commits or nothing does. After the
        outermost commit the chain head is written to ``audit.head`` and the check cache follows."""
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():
                yield self
            return
        before = _file_stats(self.path)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
            head = self.head()
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        self.write_anchor(head)
        self._advance_check(before, list(head))

    @contextmanager
    def snapshot(self) -> Iterator[Store]:
        """One read transaction: every query inside sees the same committed state, whatever another
        process commits meanwhile (WAL)."""
        conn = self.db.conn
        if conn.in_transaction:
            yield self
            return
        conn.execute("BEGIN")
        try:
            yield self
        finally:
            conn.rollback()

    # -- the chain head outside the database ------------------------------------------------
    def head(self) -> tuple[int, str]:
        """The newest audit event's (seq, hash); (0, GENESIS) for an empty chain."""
        row = self.db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def anchor(self) -> tuple[int, str] | None:
        """The chain head written after the last commit (``audit.head``), or None when there is none yet."""
        try:
            seq, digest = self.path.with_name(ANCHOR).read_text("ascii").split()
            return int(seq), digest
        except FileNotFoundError:
            return None
        except (OSError, ValueError, UnicodeDecodeError):
            return (-1, "")

    def anchor_problem(self) -> str:
        """Why the chain disagrees with ``audit.head`` ("" when it does not)."""
        return self.anchor_disagreement(self.anchor())

    def anchor_disagreement(self, anchor: tuple[int, str] | None) -> str:
        """Why the chain disagrees with an anchor read earlier ("" when it does not): the database's chain must
        reach the anchor's seq with the anchor's hash (it may be ahead: a crash between commit and anchor).
        Read the anchor before a snapshot begins, as another process writes it after its commit."""
        if anchor is None:
            return ""
        seq, digest = anchor
        if seq < 0:
            return f"审计链尾部锚点 {ANCHOR} 无法读取（文件被改动）"
        head_seq, _ = self.head()
        row = self.db.execute("SELECT hash FROM audit WHERE seq = ?", [seq]).fetchone()
        if seq == 0 and digest == GENESIS:
            return ""
        if head_seq < seq or row is None or row[0] != digest:
            return (f"审计链尾部丢失或被改动：锚点 {ANCHOR} 记录到第 {seq} 条，数据库审计链只到第 {head_seq} 条"
                    + ("" if head_seq < seq or row is None else "且该条哈希不同"))
        return ""

    def write_anchor(self, head: tuple[int, str] | None = None, force: bool = False) -> None:
        """Write the chain head to ``audit.head`` (temp file, fsync, rename). An anchor the chain disagrees
        with is evidence of a lost tail and is kept, unless ``force`` (verify --repair accepting the loss)."""
        if not force and self.anchor_problem():
            return
        seq, digest = head or self.head()
        _write_file(self.path.with_name(ANCHOR), f"{seq} {digest}\n", durable=True)

    # -- session -------------------------------------------------------------------------
    def session(self) -> Session:
        """The store's session."""
        row = self.db.execute("SELECT name, year, flow_name, created_at FROM sessions ORDER BY id LIMIT 1").fetchone()
        if row is None:
            raise StoreError("数据库中没有离校会话，请重新 lixiao init")
        return Session(*row)

    # -- audit ---------------------------------------------------------------------------
    def append_audit(self, events: Iterable[dict[str, Any]]) -> int:
        """Append events to the hash-chained audit log; call inside a transaction."""
        row = self.db.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        prev = row[0] if row else GENESIS
        stamp = now()
        rows = []
        for raw in events:
            event = {f: str(raw.get(f, "") or "") for f in _AUDIT_FIELDS}
            event["at"] = event["at"] or stamp
            digest = audit_hash(prev, event)
            rows.append([*(event[f] for f in _AUDIT_FIELDS), prev, digest])
            prev = digest
        self.db.conn.executemany(
            f"INSERT INTO audit ({', '.join(_AUDIT_FIELDS)}, prev_hash, hash) "
            f"VALUES ({', '.join('?' * (len(_AUDIT_FIELDS) + 2))})",
            rows,
        )
        return len(rows)

    def history(self, student_no: str) -> list[dict[str, Any]]:
        """Every audit event of one student, oldest first."""
        return list(self.db.query("SELECT * FROM audit WHERE student_no = ? ORDER BY seq", [student_no]))

    def audit_problems(self) -> list[str]:
        """Breaks in the audit hash chain (empty when the chain verifies)."""
        return self.replay().chain

    def replay(self, progress: Callable[[int, int], None] | None = None) -> Replay:
        """Stream the audit chain once: check every link and rebuild the statuses, the waivers in force and the
        ledger it describes. ``progress(done, total)`` is called every 50,000 events."""
        result = Replay()
        total = int(self.db.execute("SELECT count(*) FROM audit").fetchone()[0])
        statuses, waivers, ledger, returns = result.statuses, result.waivers, result.ledger, result.returns
        prev = GENESIS
        chain = result.chain
        # One encoder for the whole stream: json.dumps(..., ensure_ascii=False) builds a new one per call.
        dumps, sha256 = json.JSONEncoder(ensure_ascii=False).encode, hashlib.sha256
        cursor = self.db.execute(f"SELECT seq, {', '.join(_AUDIT_FIELDS)}, prev_hash, hash FROM audit ORDER BY seq")
        done = 0
        for seq, at, kind, no, step, old, new, decision, source, source_hash, operator, detail, prev_hash, digest \
                in cursor:
            done += 1
            if prev_hash != prev:
                chain.append(f"审计记录 {seq} 的前一哈希不连续（记录被删除或插入）")
            body = dumps([prev_hash, at, kind, no, step, old, new, decision, source, source_hash, operator, detail])
            if sha256(body.encode("utf-8")).hexdigest() != digest:
                chain.append(f"审计记录 {seq} 的内容与哈希不符（记录被改动）")
            prev = digest
            if kind == "status":
                key = (no, step)
                version = statuses[key][2] + 1 if key in statuses else 1
                statuses[key] = (new, detail, version, at, source, operator)
            elif kind == "waiver":
                if decision == "lifted":
                    reason, evidence = _split_evidence(detail)
                    waivers[(no, step)] = (reason, evidence, operator, at)
                elif decision == "restored":
                    waivers.pop((no, step), None)
            elif kind == "ledger":
                state, _, outcome = new.partition("/")
                first = ledger[source_hash][2] if source_hash in ledger else detail
                ledger[source_hash] = (state, outcome or None, first)
            elif kind == "return":
                returns.add((source_hash, decision))
            if progress is not None and done % 50_000 == 0:
                progress(done, total)
        result.events = done
        if progress is not None:
            progress(done, total)
        return result

    def replay_differences(self, replay: Replay) -> Differences:
        """Where the statuses, waivers in force and ledger disagree with the replayed chain."""
        found = Differences()
        replayed = replay.statuses
        seen = 0
        for no, step, *row in self.db.execute(
                "SELECT student_no, step, status, remark, version, updated_at, source, operator FROM statuses"):
            want = replayed.get((no, step))
            if want is None:
                found.status_extra.append((no, step))
                continue
            seen += 1
            if want != tuple(row):
                found.status_changed.append(((no, step), tuple(row), want))
        if seen != len(replayed):
            table = {(r[0], r[1]) for r in self.db.execute("SELECT student_no, step FROM statuses")}
            found.status_missing = [key for key in replayed if key not in table]
        waived = {(r[0], r[1]): tuple(r[2:]) for r in self.db.execute(
            "SELECT student_no, step, reason, evidence, operator, created_at FROM waivers WHERE restored_at IS NULL")}
        # A waiver changed behind the chain's back is both: its row goes, the replayed one comes back.
        found.waiver_extra = [key for key, row in waived.items() if replay.waivers.get(key) != row]
        found.waiver_missing = [key for key, row in replay.waivers.items() if waived.get(key) != row]
        ledger = {r[0]: (r[1], r[2], r[3])
                  for r in self.db.execute("SELECT hash, file_name, state, outcome FROM returns")}
        for digest, (name, state, outcome) in ledger.items():
            replayed_row = replay.ledger.get(digest)
            if replayed_row is None:
                # Rows written before schema 4 have no ledger events: their "return" event explains them.
                if outcome is None or (digest, outcome) not in replay.returns:
                    found.ledger_extra.append((digest, name))
            elif replayed_row[:2] != (state, outcome):
                found.ledger_changed.append((digest, name))
        found.ledger_missing = [(digest, row[2]) for digest, row in replay.ledger.items() if digest not in ledger]
        return found

    def replay_problems(self, replay: Replay) -> list[str]:
        """The disagreements with the replayed chain as Chinese problem lines (a few examples, counts)."""
        return self.replay_differences(replay).lines()

    def repair_from_replay(self, replay: Replay, operator: str) -> list[str]:
        """Rewrite statuses, waivers in force and ledger rows that disagree with the replayed chain back to the
        replayed values, with one audit event "repair" listing them; returns what was restored."""
        found = self.replay_differences(replay)
        restored: list[str] = []
        if not found.any():
            return restored
        stamp = now()
        with self.transaction():
            cells = [key for key, _, _ in found.status_changed] + found.status_missing
            self.db.conn.executemany(
                "INSERT INTO statuses (student_no, step, status, remark, version, updated_at, source, operator) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (student_no, step) DO UPDATE SET "
                "status = excluded.status, remark = excluded.remark, version = excluded.version, "
                "updated_at = excluded.updated_at, source = excluded.source, operator = excluded.operator",
                [(*key, *replay.statuses[key]) for key in cells])
            self.db.conn.executemany("DELETE FROM statuses WHERE student_no = ? AND step = ?", found.status_extra)
            restored += [f"状态 {no} {step} → {replay.statuses[(no, step)][0]}" for no, step in cells]
            restored += [f"删除无审计记录的状态 {no} {step}" for no, step in found.status_extra]
            self.db.conn.executemany("DELETE FROM waivers WHERE student_no = ? AND step = ? AND restored_at IS NULL",
                                     found.waiver_extra)
            restored += [f"撤销无审计记录的解除限制 {no} {step}" for no, step in found.waiver_extra]
            self.db.conn.executemany(
                "INSERT INTO waivers (student_no, step, reason, evidence, operator, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)", [(*key, *replay.waivers[key]) for key in found.waiver_missing])
            restored += [f"解除限制 {no} {step}" for no, step in found.waiver_missing]
            self.db.conn.executemany("DELETE FROM returns WHERE hash = ?", [(d,) for d, _ in found.ledger_extra])
            restored += [f"删除无审计记录的台账“{name}”（{digest[:12]}）" for digest, name in found.ledger_extra]
            for digest, name in found.ledger_missing + found.ledger_changed:
                state, outcome, first = replay.ledger[digest]
                self.db.execute(
                    "INSERT INTO returns (hash, file_name, state, outcome, received_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (hash) DO UPDATE SET state = excluded.state, "
                    "outcome = excluded.outcome, updated_at = excluded.updated_at",
                    [digest, first, state, outcome, stamp, stamp])
                restored.append(f"台账“{name}”（{digest[:12]}）→ {state}/{outcome or ''}")
            shown = restored[:REPAIR_LISTED] + ([f"等共 {len(restored)} 处"] if len(restored) > REPAIR_LISTED else [])
            self.append_audit([{"at": stamp, "kind": "repair", "decision": "restored", "source": "verify --repair",
                                "operator": operator, "detail": "按审计记录恢复：" + "；".join(shown)}])
        return restored

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
        stored = {no: {step: LINE_MARKS[status] for step, status in steps.items()}
                  for no, steps in self.all_statuses().items()}
        lines = {no: dict(zip(steps.split(":"), marks, strict=True))
                 for no, (steps, marks) in self.status_lines().items()}
        wrong = sorted(no for no in stored.keys() | lines.keys() if stored.get(no) != lines.get(no))
        if wrong:
            problems.append(f"状态汇总与状态表不一致：{len(wrong)} 名学生（如 {wrong[0]}）")
        return problems

    # -- students ------------------------------------------------------------------------
    def upsert_students(self, students: list[Student], source: str, operator: str = "") -> dict[str, int]:
        """Insert new and update changed students (idempotent); returns added/updated/unchanged counts."""
        existing = {s.student_no: s for s in self.students()}
        stamp = now()
        counts = {"added": 0, "updated": 0, "unchanged": 0}
        rows, events = [], []
        for student in students:
            old = existing.get(student.student_no)
            if old == student:
                counts["unchanged"] += 1
                continue
            counts["updated" if old else "added"] += 1
            row = asdict(student)
            row.update({f: int(row[f]) for f in FLAGS}, updated_at=stamp)
            rows.append(row)
            changes = _student_changes(old, student)
            events.append({
                "kind": "student",
                "student_no": student.student_no,
                "old": json.dumps(changes[0], ensure_ascii=False) if old else "",
                "new": json.dumps(changes[1], ensure_ascii=False),
                "decision": "updated" if old else "added",
                "source": source,
                "operator": operator,
            })
        with self.transaction():
            if rows:
                self.db.table("students").upsert_all(rows, pk="student_no")
            self.append_audit(events)
        return counts

    def students(self) -> list[Student]:
        """All students ordered by 学号."""
        cursor = self.db.execute(f"SELECT {', '.join(_STUDENT_COLUMNS)} FROM students ORDER BY student_no")
        return [Student(*row[:9], *(bool(v) for v in row[9:])) for row in cursor]

    def student(self, student_no: str) -> Student | None:
        """One student by 学号, or None."""
        rows = list(self.db.query("SELECT * FROM students WHERE student_no = ?", [student_no]))
        return _student(rows[0]) if rows else None

    def find_students(self, query: str) -> list[Student]:
        """Students matching a 学号, a 姓名 or a 身份证号 exactly."""
        rows = self.db.query(
            "SELECT * FROM students WHERE student_no = ? OR name = ? OR id_card = ? ORDER BY student_no",
            [query, query, query.upper()],
        )
        return [_student(r) for r in rows]

    def student_names(self, student_nos: Iterable[str]) -> dict[str, str]:
        """姓名 by 学号 for the given students (unknown numbers are left out)."""
        wanted = sorted(set(student_nos))
        names: dict[str, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            names.update(self.db.execute(
                f"SELECT student_no, name FROM students WHERE student_no IN ({', '.join('?' * len(chunk))})", chunk))
        return names

    # -- statuses ------------------------------------------------------------------------
    def status_rows(self, student_no: str) -> dict[str, StatusRow]:
        """Stored status rows of one student by step code (absent steps are pending)."""
        rows = self.db.execute(
            "SELECT step, status, remark, version, updated_at, source, operator FROM statuses WHERE student_no = ?",
            [student_no],
        )
        return {r[0]: StatusRow(Status(r[1]), *r[2:]) for r in rows}

    def all_status_rows(self) -> dict[str, dict[str, StatusRow]]:
        """Every stored status row: 学号 → step → row."""
        result: dict[str, dict[str, StatusRow]] = {}
        cursor = self.db.execute(
            "SELECT student_no, step, status, remark, version, updated_at, source, operator FROM statuses")
        for no, step, status, *rest in cursor:
            result.setdefault(no, {})[step] = StatusRow(Status(status), *rest)
        return result

    def all_statuses(self) -> dict[str, dict[str, Status]]:
        """Every stored status: 学号 → step → status."""
        result: dict[str, dict[str, Status]] = {}
        for no, step, status in self.db.execute("SELECT student_no, step, status FROM statuses"):
            result.setdefault(no, {})[step] = Status(status)
        return result

    def status_lines(self) -> dict[str, tuple[str, str]]:
        """Every student's stored statuses as the triggers keep them: 学号 → (steps joined by ":", one
        mark per step in the same order — LINE_MARKS). A tenth of the time of a row per cell."""
        return {no: (steps, marks) for no, steps, marks in
                self.db.execute("SELECT student_no, steps, marks FROM status_lines")}

    def write_status(
        self,
        student_no: str,
        step: str,
        status: Status,
        *,
        remark: str,
        source: str,
        operator: str,
        decision: str,
        source_hash: str = "",
    ) -> StatusRow:
        """Store a new status (version raised) with its audit event; call inside a transaction."""
        return self.write_statuses([(student_no, step, status, remark, decision)], source=source,
                                   operator=operator, source_hash=source_hash)[0]

    def write_statuses(
        self,
        changes: list[tuple[str, str, Status, str, str]],
        *,
        source: str,
        operator: str,
        source_hash: str = "",
    ) -> list[StatusRow]:
        """Store many (学号, step, status, remark, decision) changes at once, each raising its version and
        audited in order; call inside a transaction. A cell changed twice in one call is raised twice."""
        stamp = now()
        current: dict[tuple[str, str], tuple[str, int]] = {}
        for no in {c[0] for c in changes}:
            for step, status, version in self.db.execute(
                    "SELECT step, status, version FROM statuses WHERE student_no = ?", [no]):
                current[(no, step)] = (status, version)
        rows, events, written = [], [], []
        for no, step, status, remark, decision in changes:
            old_status, old_version = current.get((no, step), ("", 0))
            version = old_version + 1
            current[(no, step)] = (status.value, version)
            rows.append((no, step, status.value, remark, version, stamp, source, operator))
            events.append({"at": stamp, "kind": "status", "student_no": no, "step": step, "old": old_status,
                           "new": status.value, "decision": decision, "source": source,
                           "source_hash": source_hash, "operator": operator, "detail": remark})
            written.append(StatusRow(status, remark, version, stamp, source, operator))
        self.db.conn.executemany(
            "INSERT INTO statuses (student_no, step, status, remark, version, updated_at, source, operator) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (student_no, step) DO UPDATE SET "
            "status = excluded.status, remark = excluded.remark, version = excluded.version, "
            "updated_at = excluded.updated_at, source = excluded.source, operator = excluded.operator",
            rows,
        )
        self.append_audit(events)
        return written

    # -- workbooks ------------------------------------------------------------------------
    def next_generation(self, checkpoint: str, scope: str) -> int:
        """The generation the next workbook of this checkpoint and scope gets (1, 2, …)."""
        row = self.db.execute(
            "SELECT max(generation) FROM workbooks WHERE checkpoint = ? AND scope = ?", [checkpoint, scope]
        ).fetchone()
        return int(row[0] or 0) + 1

    def record_workbook(self, row: dict[str, Any]) -> None:
        """Register an issued workbook (id, checkpoint, scope, generation, baseline…); inside a transaction."""
        self.db.table("workbooks").insert(row)
        self.append_audit([{"kind": "workbook", "new": row["id"], "decision": "issued", "source": "issue",
                            "detail": f"{row['checkpoint']} {row['scope']} 第 {row['generation']} 版"}])

    def workbook(self, workbook_id: str) -> dict[str, Any] | None:
        """An issued workbook's row, or None."""
        rows = list(self.db.query("SELECT * FROM workbooks WHERE id = ?", [workbook_id]))
        return rows[0] if rows else None

    # -- progress over time ----------------------------------------------------------------
    def record_progress(self, expected: int, complete: int) -> None:
        """Keep today's completion figure (the latest of the day wins)."""
        stamp = now()
        with self.transaction():
            self.db.execute(
                "INSERT INTO progress (day, expected, complete, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (day) DO UPDATE SET expected = excluded.expected, complete = excluded.complete, "
                "updated_at = excluded.updated_at", [stamp[:10], expected, complete, stamp])

    def progress_history(self) -> list[tuple[str, int, int]]:
        """(day, expected, complete) for every day a report was built, oldest first."""
        return [tuple(r) for r in self.db.execute("SELECT day, expected, complete FROM progress ORDER BY day")]

    # -- returns ledger --------------------------------------------------------------------
    def ledger(self, digest_hex: str) -> dict[str, Any] | None:
        """The ledger row of a returned file's content hash, or None."""
        rows = list(self.db.query("SELECT * FROM returns WHERE hash = ?", [digest_hex]))
        return rows[0] if rows else None

    def set_ledger(self, digest_hex: str, file_name: str, state: str, outcome: str | None = None,
                   workbook_id: str | None = None, detail: str = "") -> None:
        """Create or advance a ledger row (received → staged → outcome) with its audit event
        (old and new "state/outcome"); inside a transaction."""
        stamp = now()
        previous = self.db.execute("SELECT state, outcome FROM returns WHERE hash = ?", [digest_hex]).fetchone()
        new_outcome = outcome if outcome is not None else (previous[1] if previous else None)
        self.db.execute(
            "INSERT INTO returns (hash, file_name, state, outcome, workbook_id, received_at, updated_at, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hash) DO UPDATE SET state = excluded.state, "
            "outcome = coalesce(excluded.outcome, returns.outcome), "
            "workbook_id = coalesce(excluded.workbook_id, returns.workbook_id), "
            "updated_at = excluded.updated_at, detail = excluded.detail",
            [digest_hex, file_name, state, outcome, workbook_id, stamp, stamp, detail],
        )
        self.append_audit([{"at": stamp, "kind": "ledger", "source_hash": digest_hex,
                            "old": f"{previous[0]}/{previous[1] or ''}" if previous else "",
                            "new": f"{state}/{new_outcome or ''}", "detail": file_name}])

    def audit_events(self, source_hash: str) -> list[dict[str, Any]]:
        """Every audit event of one returned file (its content hash), oldest first: what its receipt says."""
        return list(self.db.query("SELECT * FROM audit WHERE source_hash = ? ORDER BY seq", [source_hash]))

    def ledger_rows(self) -> list[dict[str, Any]]:
        """Every ledger row, oldest first."""
        return list(self.db.query("SELECT * FROM returns ORDER BY received_at, hash"))

    def add_refused(self, digest_hex: str, rows: list[tuple[str, str, str, str]]) -> None:
        """Keep refused ticks (学号, step, value, reason) of one return; inside a transaction."""
        stamp = now()
        self.db.conn.executemany(
            "INSERT INTO refused_ticks (return_hash, student_no, step, value, reason, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)", [(digest_hex, *r, stamp) for r in rows])

    def add_conflicts(self, digest_hex: str, rows: list[tuple[str, str, str, str, str]]) -> None:
        """Keep conflicts (学号, step, issued, returned, current) of one return; inside a transaction."""
        stamp = now()
        self.db.conn.executemany(
            "INSERT INTO conflicts (return_hash, student_no, step, baseline, returned, current, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", [(digest_hex, *r, stamp) for r in rows])

    def refused_of(self, digest_hex: str) -> list[tuple[str, str, str, str]]:
        """The refused ticks (学号, step, value, reason) kept for one return, in order."""
        return [tuple(r) for r in self.db.execute(
            "SELECT student_no, step, value, reason FROM refused_ticks WHERE return_hash = ? ORDER BY id",
            [digest_hex])]

    def conflicts_of(self, digest_hex: str) -> list[tuple[str, str, str, str, str]]:
        """The conflicts (学号, step, issued, returned, current) kept for one return, in order."""
        return [tuple(r) for r in self.db.execute(
            "SELECT student_no, step, baseline, returned, current FROM conflicts WHERE return_hash = ? ORDER BY id",
            [digest_hex])]

    # -- waivers -------------------------------------------------------------------------
    def active_waivers(self, student_no: str | None = None) -> list[dict[str, Any]]:
        """Lifted restrictions still in force, optionally of one student, each with the student's name,
        college and class_name (None if the student is missing) and the step's ``stored`` status value
        ("" when nothing was stored) — one query, however many there are."""
        sql = ("SELECT w.*, s.name, s.college, s.class_name, coalesce(st.status, '') AS stored FROM waivers w "
               "LEFT JOIN students s ON s.student_no = w.student_no "
               "LEFT JOIN statuses st ON st.student_no = w.student_no AND st.step = w.step "
               "WHERE w.restored_at IS NULL")
        args: list[str] = []
        if student_no is not None:
            sql += " AND w.student_no = ?"
            args.append(student_no)
        return list(self.db.query(sql + " ORDER BY w.created_at, w.id", args))

    def add_waiver(self, student_no: str, step: str, reason: str, operator: str, evidence: str = "",
                   source: str = "cli", source_hash: str = "") -> None:
        """Record a lifted restriction with its audit event; call inside a transaction."""
        stamp = now()
        self.db.execute(
            "INSERT INTO waivers (student_no, step, reason, evidence, operator, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [student_no, step, reason, evidence, operator, stamp],
        )
        self.append_audit([{
            "at": stamp, "kind": "waiver", "student_no": student_no, "step": step, "old": "限制已开启",
            "new": "限制已关闭", "decision": "lifted", "source": source, "source_hash": source_hash,
            "operator": operator,
            "detail": reason if not evidence else f"{reason}（证明：{evidence}）",
        }])

    def restore_waiver(self, student_no: str, step: str, operator: str, source: str = "cli",
                       source_hash: str = "") -> bool:
        """Restore a lifted restriction; False when none was in force. Call inside a transaction."""
        stamp = now()
        cursor = self.db.execute(
            "UPDATE waivers SET restored_at = ?, restored_by = ? "
            "WHERE student_no = ? AND step = ? AND restored_at IS NULL",
            [stamp, operator, student_no, step],
        )
        if cursor.rowcount == 0:
            return False
        self.append_audit([{
            "at": stamp, "kind": "waiver", "student_no": student_no, "step": step, "old": "限制已关闭",
            "new": "限制已开启", "decision": "restored", "source": source, "source_hash": source_hash,
            "operator": operator,
        }])
        return True


_STUDENT_COLUMNS = ("student_no", "name", "gender", "id_card", "college", "major", "class_name", "dorm", "level",
                    *FLAGS)


def _student(row: dict[str, Any]) -> Student:
    fields = {k: v for k, v in row.items() if k != "updated_at"}
    for flag in FLAGS:
        fields[flag] = bool(fields[flag])
    return Student(**fields)


def _student_changes(old: Student | None, new: Student) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields that differ, masked where they hold a 身份证号."""
    before = asdict(old) if old else {}
    after = asdict(new)
    keys = [k for k in after if before.get(k) != after[k]]

    def shown(d: dict[str, Any], k: str) -> Any:
        return mask_id_card(d[k]) if k == "id_card" and d.get(k) else d.get(k)
    return ({k: shown(before, k) for k in keys}, {k: shown(after, k) for k in keys})


_EVIDENCE = re.compile(r"^(.*)（证明：(.*)）$", re.S)


def _split_evidence(detail: str) -> tuple[str, str]:
    """A waiver event's detail back into (reason, evidence) — add_waiver's format."""
    found = _EVIDENCE.match(detail)
    return (found.group(1), found.group(2)) if found else (detail, "")


def _file_stats(path: Path) -> list[list[int] | None]:
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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def _write_file(path: Path, text: str, durable: bool) -> None:
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
