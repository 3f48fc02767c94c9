"""The store's schema, one migration per version (PRAGMA user_version), and the status-line marks."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict

from lixiao.core.manual.model import FLAG_COLUMNS, STATUS_CODES, Student

# students.withheld holds which certificates 暂缓发证 withholds, as one code: 1 was the only value before the roster
# named a certificate and meant both, so it still does (no migration).
WITHHELD_CODES: dict[tuple[bool, bool], int] = {(False, False): 0, (True, True): 1, (True, False): 2, (False, True): 3}
WITHHELD_OF_CODE = {code: pair for pair, code in WITHHELD_CODES.items()}
STUDENT_COLUMNS = ("student_no", "name", "gender", "id_card", "college", "major", "class_name", "dorm", "level",
                   *FLAG_COLUMNS.values(), "withheld", "lenders")


def student_row(student: Student) -> dict[str, object]:
    """The students table's values of one Student: flags 0/1, the withheld certificates one WITHHELD_CODES code,
    the lenders comma-joined."""
    row: dict[str, object] = asdict(student)
    withheld = WITHHELD_CODES[bool(row.pop("withheld_degree")), bool(row.pop("withheld_diploma"))]
    row.update({f: int(bool(row[f])) for f in FLAG_COLUMNS.values()}, withheld=withheld,
               lenders=",".join(student.lenders))
    return row


def student_from_row(row: tuple[str | int, ...]) -> Student:
    """A Student from a row of STUDENT_COLUMNS (the inverse of student_row); positional, as a take-back loads
    every student of a workbook (_FLAGS_IN_ORDER pins the flags' order to Student's fields)."""
    withheld = WITHHELD_OF_CODE.get(int(row[-2]))
    if withheld is None:
        raise ValueError(f"学生 {row[0]} 的暂缓发证记录无法识别（{row[-2]}）")
    no, name, gender, id_card, college, major, class_name, dorm, level, previous, national, local, switch = row[:13]
    return Student(str(no), str(name), str(gender), str(id_card), str(college), str(major), str(class_name),
                   str(dorm), str(level), bool(previous), bool(national), bool(local), bool(switch), withheld[0],
                   withheld[1], tuple(code for code in str(row[-1]).split(",") if code))


_FLAGS_IN_ORDER = ("previous", "national_loan", "local_loan", "switch")
if tuple(FLAG_COLUMNS.values()) != _FLAGS_IN_ORDER or len(STUDENT_COLUMNS) != 15:
    raise ImportError("student_from_row reads the flags positionally: update it with FLAG_COLUMNS")

# The mark of each stored status in status_lines (migration 3), one character per step.
LINE_MARKS = STATUS_CODES  # the board's alphabet (p 已通过, f 未通过, o 可办可不办, n 未办理, - 不适用)
_MARK = "CASE status " + " ".join(f"WHEN '{s.value}' THEN '{m}'" for s, m in LINE_MARKS.items()) + " END"
_TRIGGERS = """    CREATE TRIGGER status_lines_insert AFTER INSERT ON statuses BEGIN
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
"""
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
    ("""
    CREATE TABLE status_lines (
        student_no TEXT PRIMARY KEY,
        steps TEXT NOT NULL,
        marks TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO status_lines
        SELECT student_no, group_concat(step, ':'), group_concat(MARK, '') FROM statuses GROUP BY student_no;
    """ + _TRIGGERS).replace("MARK", _MARK),
    # 4: every ledger change is an audit event too; a return's events (for its receipt) by its hash.
    """
    CREATE INDEX IF NOT EXISTS audit_source_hash ON audit(source_hash);
    """,
    # 5: one status alphabet: a stored 不适用 is marked "-" in the lines, as on the board (was "x").
    ("""
    DROP TRIGGER IF EXISTS status_lines_insert;
    DROP TRIGGER IF EXISTS status_lines_update;
    DROP TRIGGER IF EXISTS status_lines_delete;
    UPDATE status_lines SET marks = replace(marks, 'x', '-') WHERE instr(marks, 'x') > 0;
    """ + _TRIGGERS).replace("MARK", _MARK),
]
MIGRATIONS.append(
    # 6: where each return came from (the live loop: inbox, share, mail) and who sent it.
    """
    ALTER TABLE returns ADD COLUMN channel TEXT NOT NULL DEFAULT 'inbox';
    ALTER TABLE returns ADD COLUMN sender TEXT NOT NULL DEFAULT '';
    ALTER TABLE returns ADD COLUMN message_id TEXT NOT NULL DEFAULT '';
    """)
MIGRATIONS.append(
    # 7: the live loop — the office directory (who receives which office's workbooks, and how), each issued
    # workbook's office and readiness digest (a fresh generation is due when readiness changed), what was
    # delivered where, and the mail messages taken from the IMAP mailbox (each exactly once).
    """
    CREATE TABLE offices (
        office TEXT PRIMARY KEY,
        checkpoint TEXT NOT NULL,
        college TEXT NOT NULL,
        title TEXT NOT NULL,
        contact TEXT NOT NULL DEFAULT '',
        emails TEXT NOT NULL DEFAULT '',
        share TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL
    ) WITHOUT ROWID;
    ALTER TABLE workbooks ADD COLUMN office TEXT NOT NULL DEFAULT '';
    ALTER TABLE workbooks ADD COLUMN readiness TEXT NOT NULL DEFAULT '';
    CREATE INDEX workbooks_office ON workbooks(office, issued_at);
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        office TEXT NOT NULL,
        workbook_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        target TEXT NOT NULL,
        at TEXT NOT NULL,
        ok INTEGER NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX deliveries_office ON deliveries(office, at);
    CREATE TABLE mail_messages (
        message_key TEXT PRIMARY KEY,
        sender TEXT NOT NULL,
        subject TEXT NOT NULL,
        sent_at TEXT NOT NULL,
        taken_at TEXT NOT NULL,
        state TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    ) WITHOUT ROWID;
    """)
MIGRATIONS.append(
    # 8: the 待核对 queue empties — a conflict or refused tick resolved (keep / take / dismiss) with its
    # resolution, a refused file acknowledged.
    """
    ALTER TABLE conflicts ADD COLUMN resolution TEXT NOT NULL DEFAULT '';
    ALTER TABLE refused_ticks ADD COLUMN resolved_at TEXT;
    ALTER TABLE refused_ticks ADD COLUMN resolution TEXT NOT NULL DEFAULT '';
    CREATE TABLE acknowledged (
        hash TEXT PRIMARY KEY,
        at TEXT NOT NULL,
        operator TEXT NOT NULL,
        reason TEXT NOT NULL
    ) WITHOUT ROWID;
    """)
MIGRATIONS.append(
    # 9: national loans at several lenders (manual §2.1-1) — each student's lenders, and each lender's
    # confirmation from the loans feed; a conflict keeps the returned 备注 (a 未通过's reason) for review take.
    """
    ALTER TABLE students ADD COLUMN lenders TEXT NOT NULL DEFAULT '';
    ALTER TABLE conflicts ADD COLUMN remark TEXT NOT NULL DEFAULT '';
    CREATE TABLE loan_confirmations (
        student_no TEXT NOT NULL,
        lender TEXT NOT NULL,
        source TEXT NOT NULL,
        operator TEXT NOT NULL,
        confirmed_at TEXT NOT NULL,
        PRIMARY KEY (student_no, lender)
    ) WITHOUT ROWID;
    """)
MIGRATIONS.append(
    # 10: each student's 查询码 for the page safe to publish (random, handed out on the counsellors' slips; never
    # derived from anything lixiao prints): the page's key is derived from 学号 + 查询码.
    """
    CREATE TABLE query_codes (
        student_no TEXT PRIMARY KEY,
        code TEXT NOT NULL,
        created_at TEXT NOT NULL
    ) WITHOUT ROWID;
    """)
SCHEMA_VERSION = len(MIGRATIONS)


def student_filter(student_nos: Iterable[str] | None) -> tuple[str, list[str]]:
    """A WHERE clause keeping the rows of the given 学号 (one JSON parameter however many), or none."""
    if student_nos is None:
        return "", []
    return " WHERE student_no IN (SELECT value FROM json_each(?))", [json.dumps(sorted(set(student_nos)))]
