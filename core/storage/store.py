"""The SQLite store (WAL, synchronous=FULL): schema migrations, students, statuses, waivers, audit chain."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import sqlite_utils

from lixiao.core.manual.identity import mask_id_card
from lixiao.core.manual.model import Status, Student

from .chain import AuditEvent, Event, now
from .guard import CHECK_CACHE as CHECK_CACHE
from .guard import DAMAGED as DAMAGED
from .guard import StoreError as StoreError
from .guard import WriteGuard, file_stats
from .ledger import Ledger, WaiverRecords
from .loanrecords import LoanRecords
from .offices import OfficeDirectory
from .queue import ReviewRecords
from .registry import WorkbookRegistry
from .registry import WorkbookRow as WorkbookRow
from .schema import MIGRATIONS, SCHEMA_VERSION, STUDENT_COLUMNS, student_filter, student_from_row, student_row
from .trusted import student_detail

BUSY_TIMEOUT_MS = 15_000
# Beside store.db: the chain head after the last commit ("seq hash"), the write guard's cache of the last
# passed quick_check, and the marker `lixiao verify` leaves while it finds damage.



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


def _connect(path: Path) -> sqlite_utils.Database:
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
    db = sqlite_utils.Database(conn)
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA synchronous=FULL")
    return db


class Store(Ledger, ReviewRecords, WaiverRecords, LoanRecords, OfficeDirectory, WorkbookRegistry, WriteGuard):
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
            store.append_audit([Event("session", new=session_name, detail=flow_name)])
        return store

    @classmethod
    def open(cls, path: Path, guard: bool = True) -> Store:
        """Open an existing store, migrating its schema forward if needed. With ``guard`` (every writing
        command) the store must pass the write guard: no ``store.damaged`` marker, the chain head not behind
        ``audit.head``, and PRAGMA quick_check unless ``.check`` says the files are as last checked."""
        if not path.exists():
            raise StoreError(f"找不到数据库 {path}，请先运行 lixiao init")
        before = file_stats(path)
        try:
            db = _connect(path)
            version = db.execute("PRAGMA user_version").fetchone()[0]
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:  # a flipped byte in the schema
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

    def close(self) -> None:
        """Close the connection (SQLite then checkpoints the WAL; the check cache follows when it was current)."""
        before = file_stats(self.path)
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
        before = file_stats(self.path)
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

    # -- session -------------------------------------------------------------------------
    def session(self) -> Session:
        """The store's session."""
        row = self.db.execute("SELECT name, year, flow_name, created_at FROM sessions ORDER BY id LIMIT 1").fetchone()
        if row is None:
            raise StoreError("数据库中没有离校会话，请重新 lixiao init")
        return Session(*row)

    # -- audit ---------------------------------------------------------------------------
    def history(self, student_no: str) -> list[AuditEvent]:
        """Every audit event of one student, oldest first."""
        return self.events_where("student_no", student_no)

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
            rows.append({**student_row(student), "updated_at": stamp})
            changes = _student_changes(old, student)
            events.append(Event(
                "student", student_no=student.student_no, detail=student_detail(student.id_card, changes[1]),
                old=json.dumps(changes[0], ensure_ascii=False) if old else "",
                new=json.dumps(changes[1], ensure_ascii=False),
                decision="updated" if old else "added", source=source, operator=operator))
        with self.transaction():
            if rows:
                self.db.table("students").upsert_all(rows, pk="student_no")
            self.append_audit(events)
        return counts

    def students(self, among: Iterable[str] | None = None) -> list[Student]:
        """All students (or those of the 学号 ``among``) ordered by 学号."""
        where, args = student_filter(among)
        cursor = self.db.execute(f"SELECT {', '.join(STUDENT_COLUMNS)} FROM students{where} ORDER BY student_no", args)
        return [student_from_row(row) for row in cursor]

    def student_count(self) -> int:
        """How many students the roster holds."""
        return int(self.db.execute("SELECT count(*) FROM students").fetchone()[0])

    def colleges(self) -> list[str]:
        """The colleges of the roster, sorted."""
        return [str(r[0]) for r in self.db.execute("SELECT DISTINCT college FROM students ORDER BY college")]

    def student(self, student_no: str) -> Student | None:
        """One student by 学号, or None."""
        row = self.db.execute(f"SELECT {', '.join(STUDENT_COLUMNS)} FROM students WHERE student_no = ?",
                              [student_no]).fetchone()
        return student_from_row(row) if row else None

    def find_students(self, query: str) -> list[Student]:
        """Students matching a 学号, a 姓名 or a 身份证号 exactly."""
        rows = self.db.execute(
            f"SELECT {', '.join(STUDENT_COLUMNS)} FROM students WHERE student_no = ? OR name = ? OR id_card = ? "
            "ORDER BY student_no", [query, query, query.upper()])
        return [student_from_row(r) for r in rows]

    def student_names(self, student_nos: Iterable[str]) -> dict[str, str]:
        """姓名 by 学号 for the given students (unknown numbers are left out)."""
        where, args = student_filter(student_nos)
        return dict(self.db.execute(f"SELECT student_no, name FROM students{where}", args))

    # -- statuses ------------------------------------------------------------------------
    def status_rows(self, student_no: str) -> dict[str, StatusRow]:
        """Stored status rows of one student by step code (absent steps are pending)."""
        rows = self.db.execute(
            "SELECT step, status, remark, version, updated_at, source, operator FROM statuses WHERE student_no = ?",
            [student_no],
        )
        return {r[0]: StatusRow(Status(r[1]), *r[2:]) for r in rows}

    def step_rows(self, step: str) -> dict[str, StatusRow]:
        """The stored rows of one step: 学号 → row (the refund queries; absent students are pending)."""
        rows = self.db.execute("SELECT student_no, status, remark, version, updated_at, source, operator FROM statuses "
                               "WHERE step = ?", [step])
        return {r[0]: StatusRow(Status(r[1]), *r[2:]) for r in rows}

    def all_status_rows(self, among: Iterable[str] | None = None) -> dict[str, dict[str, StatusRow]]:
        """Every stored status row (or those of the 学号 ``among``): 学号 → step → row."""
        result: dict[str, dict[str, StatusRow]] = {}
        where, args = student_filter(among)
        cursor = self.db.execute("SELECT student_no, step, status, remark, version, updated_at, source, operator "
                                 f"FROM statuses{where}", args)
        for no, step, status, *rest in cursor:
            result.setdefault(no, {})[step] = StatusRow(Status(status), *rest)
        return result

    def first_statuses(self, steps: Iterable[str], student_no: str | None = None) -> dict[str, dict[str, Status]]:
        """学号 → step → the status each cell of ``steps`` first received (its first status event): the 初始 beside
        the special desk's 步骤当前状态; a cell never written is absent (未办理)."""
        steps = sorted(set(steps))
        if not steps:
            return {}  # no step asked about: no scan of the audit table (≈ 0.1 s at 30,000 students)
        known = ", ".join(f"'{s.value}'" for s in Status)
        sql = (f"SELECT student_no, step, new, min(seq) FROM audit WHERE kind = 'status' AND new IN ({known}) "
               "AND step IN (SELECT value FROM json_each(?))" + (" AND student_no = ?" if student_no else "")
               + " GROUP BY student_no, step")
        found: dict[str, dict[str, Status]] = {}
        for no, step, new, _ in self.db.execute(sql, [json.dumps(steps), *filter(None, [student_no])]):
            found.setdefault(no, {})[step] = Status(new)
        return found

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
        where, args = student_filter(c[0] for c in changes)  # one query, not one per student
        for no, step, status, version in self.db.conn.execute(
                f"SELECT student_no, step, status, version FROM statuses{where}", args):
            current[(no, step)] = (status, version)
        rows, events, written = [], [], []
        for no, step, status, remark, decision in changes:
            old_status, old_version = current.get((no, step), ("", 0))
            version = old_version + 1
            current[(no, step)] = (status.value, version)
            rows.append((no, step, status.value, remark, version, stamp, source, operator))
            events.append(Event("status", student_no=no, step=step, old=old_status, new=status.value,
                                decision=decision, source=source, source_hash=source_hash, operator=operator,
                                detail=remark, at=stamp))
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

def _student_changes(old: Student | None, new: Student) -> tuple[dict[str, str | bool], dict[str, str | bool]]:
    """The fields that differ, masked where they hold a 身份证号."""
    before: dict[str, str | bool] = asdict(old) if old else {}
    after: dict[str, str | bool] = asdict(new)
    keys = [k for k in after if before.get(k) != after[k]]

    def shown(d: dict[str, str | bool], k: str) -> str | bool:
        value = d.get(k, "")
        return mask_id_card(value) if k == "id_card" and isinstance(value, str) and value else value
    return ({k: shown(before, k) for k in keys if k in before}, {k: shown(after, k) for k in keys})


