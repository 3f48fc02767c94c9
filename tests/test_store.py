"""The store: WAL and durability settings, migrations, one transaction per write, an append-only audit chain."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lixiao.core.manual.model import Status
from lixiao.core.storage.chain import chain_text
from lixiao.core.storage.schema import LINE_MARKS, SCHEMA_VERSION
from lixiao.core.storage.store import Store, StoreError

from .conftest import make_student


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A fresh store with two students."""
    s = Store.create(tmp_path / "store.db", "2026届本科毕业生离校", 2026, "undergrad")
    s.upsert_students([make_student("0803010103"), make_student("0803010104", name="沈睿")], source="test")
    return s


def test_pragmas(store: Store) -> None:
    """WAL, synchronous=FULL, foreign keys on, a busy timeout, and the schema version recorded."""
    db = store.db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_contract_tables_exist(store: Store) -> None:
    """Sessions, students, statuses, waivers, workbooks, returns, refused ticks, conflicts and audit."""
    names = set(store.db.table_names())
    assert {"sessions", "students", "statuses", "waivers", "workbooks", "returns", "refused_ticks", "conflicts",
            "audit"} <= names


def test_audit_refuses_update_and_delete(store: Store) -> None:
    """The audit table is append-only: UPDATE and DELETE abort."""
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("UPDATE audit SET operator = 'x'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("DELETE FROM audit")


def test_audit_chain_detects_tampering(store: Store) -> None:
    """Editing an event behind the triggers' back breaks the hash chain, and verify says which event."""
    assert store.audit_problems() == []
    store.db.execute("DROP TRIGGER audit_no_update")
    store.db.execute("UPDATE audit SET operator = 'mallory' WHERE seq = 2")
    store.db.conn.commit()
    assert store.audit_problems() == ["审计记录 2 的内容与哈希不符（记录被改动）"]


def test_audit_chain_detects_deleted_event(store: Store) -> None:
    """Removing an event leaves a gap in prev_hash that verify reports."""
    store.db.execute("DROP TRIGGER audit_no_delete")
    store.db.execute("DELETE FROM audit WHERE seq = 2")
    store.db.conn.commit()
    assert store.audit_problems() == ["审计记录 3 的前一哈希不连续（记录被删除或插入）"]


def test_status_write_raises_version_and_audits(store: Store) -> None:
    """Every change raises the cell's version and appends an event with old and new value."""
    with store.transaction():
        first = store.write_status("0803010103", "electricity", Status.PASSED, remark="", source="cli",
                                   operator="张老师", decision="applied")
    with store.transaction():
        second = store.write_status("0803010103", "electricity", Status.PENDING, remark="撤销", source="cli",
                                    operator="张老师", decision="reverted")
    assert (first.version, second.version) == (1, 2)
    events = [e for e in store.history("0803010103") if e.kind == "status"]
    assert [(e.old, e.new, e.operator) for e in events] == [("", "passed", "张老师"),
                                                                    ("passed", "pending", "张老师")]


def test_failed_transaction_leaves_nothing(store: Store) -> None:
    """An error inside a transaction rolls back the status and its audit event together."""
    events_before = store.db.execute("SELECT count(*) FROM audit").fetchone()[0]
    with pytest.raises(RuntimeError), store.transaction():
        store.write_status("0803010103", "electricity", Status.PASSED, remark="", source="cli", operator="",
                           decision="applied")
        raise RuntimeError("crash mid-way")
    assert store.status_rows("0803010103") == {}
    assert store.db.execute("SELECT count(*) FROM audit").fetchone()[0] == events_before


def test_status_for_unknown_student_is_refused_by_foreign_key(store: Store) -> None:
    """A status row cannot point at a student who is not in the roster."""
    with pytest.raises(sqlite3.IntegrityError), store.transaction():
        store.write_status("9999", "electricity", Status.PASSED, remark="", source="cli", operator="",
                           decision="applied")


def test_upsert_is_idempotent_and_audits_changes_masked(store: Store) -> None:
    """Re-importing unchanged students writes nothing; a change is audited with the 身份证号 masked."""
    assert store.upsert_students([make_student("0803010103")], source="test") == {
        "added": 0, "updated": 0, "unchanged": 1}
    changed = make_student("0803010103", dorm="2区-3栋-3层-0309", id_card="11010519491231002X")
    assert store.upsert_students([changed], source="test")["updated"] == 1
    event = store.history("0803010103")[-1]
    assert "2区-3栋-3层-0309" in event.new and "110105********002X" in event.new
    assert "11010519491231002X" not in event.new


def test_open_refuses_a_corrupt_file(tmp_path: Path) -> None:
    """A file that is not SQLite is refused with a restore hint, not a traceback."""
    path = tmp_path / "store.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match=r"已损坏或不是 SQLite 文件.*lixiao backup"):
        Store.open(path)


def test_open_refuses_a_newer_schema(store: Store) -> None:
    """A store written by a newer lixiao is not touched."""
    store.db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    store.close()
    with pytest.raises(StoreError, match="请升级 lixiao"):
        Store.open(store.path)


def test_backup_is_a_verified_copy(store: Store, tmp_path: Path) -> None:
    """backup_to writes a copy that opens, has the same rows and a valid chain; it never overwrites."""
    dest = tmp_path / "copy.db"
    store.backup_to(dest)
    copy = Store.open(dest)
    assert len(copy.students()) == 2 and copy.audit_problems() == []
    with pytest.raises(StoreError, match="已存在"):
        store.backup_to(dest)


def _lines(store: Store) -> dict[str, dict[str, str]]:
    """The status lines as 学号 → step → status value."""
    value = {mark: status.value for status, mark in LINE_MARKS.items()}
    return {no: {step: value[m] for step, m in zip(steps.split(":"), marks, strict=True)}
            for no, (steps, marks) in store.status_lines().items()}


def _lines_agree(store: Store) -> bool:
    wanted = {no: {step: s.value for step, s in steps.items()} for no, steps in store.all_statuses().items()}
    return _lines(store) == wanted


def test_status_lines_follow_every_write(store: Store) -> None:
    """The per-student status lines (what reports read) equal the statuses after inserts, changes,
    remark-only edits, a cell written twice in one batch, a rollback, and direct SQL edits."""
    with store.transaction():
        store.write_statuses([("0803010103", "electricity", Status.PASSED, "", "applied"),
                              ("0803010103", "dorm_items", Status.FAILED, "", "applied"),
                              ("0803010104", "electricity", Status.PENDING, "", "applied"),
                              ("0803010104", "electricity", Status.OPTIONAL, "", "applied")], source="t", operator="")
    assert _lines_agree(store) and _lines(store)["0803010104"] == {"electricity": "optional"}
    with store.transaction():
        store.write_status("0803010103", "dorm_items", Status.PASSED, remark="", source="t", operator="",
                           decision="applied")
        store.write_status("0803010103", "electricity", Status.PASSED, remark="只改备注", source="t", operator="",
                           decision="applied")
    assert _lines_agree(store)
    assert _lines(store)["0803010103"] == {"electricity": "passed", "dorm_items": "passed"}
    with pytest.raises(RuntimeError), store.transaction():
        store.write_status("0803010104", "dorm_items", Status.PASSED, remark="", source="t", operator="",
                           decision="applied")
        raise RuntimeError("crash mid-way")
    assert _lines_agree(store) and "dorm_items" not in _lines(store)["0803010104"]
    store.db.execute("UPDATE statuses SET status = 'na' WHERE student_no = '0803010103' AND step = 'electricity'")
    store.db.execute("DELETE FROM statuses WHERE student_no = '0803010104'")
    store.db.conn.commit()
    assert _lines_agree(store) and "0803010104" not in _lines(store)


# What migrations 6 to 10 added, taken away again, for tests that make a store of an older version.
_UNDO_6 = ("DROP TABLE query_codes; DROP TABLE loan_confirmations; ALTER TABLE students DROP COLUMN lenders; "
           "ALTER TABLE conflicts DROP COLUMN remark; "
           "DROP TABLE acknowledged; ALTER TABLE conflicts DROP COLUMN resolution; "
           "ALTER TABLE refused_ticks DROP COLUMN resolved_at; ALTER TABLE refused_ticks DROP COLUMN resolution; "
           "DROP TABLE offices; DROP TABLE deliveries; DROP TABLE mail_messages; DROP INDEX workbooks_office; "
           "ALTER TABLE workbooks DROP COLUMN office; ALTER TABLE workbooks DROP COLUMN readiness; "
           "ALTER TABLE returns DROP COLUMN channel; ALTER TABLE returns DROP COLUMN sender; "
           "ALTER TABLE returns DROP COLUMN message_id;")


def test_migration_builds_status_lines_and_verify_compares_them(store: Store, tmp_path: Path) -> None:
    """A version-2 store gets its lines on opening; lines that disagree with the statuses are a problem."""
    with store.transaction():
        store.write_status("0803010103", "electricity", Status.PASSED, remark="", source="t", operator="",
                           decision="applied")
    store.db.conn.executescript("DROP TRIGGER status_lines_insert; DROP TRIGGER status_lines_update;"
                                "DROP TRIGGER status_lines_delete; DROP TABLE status_lines; PRAGMA user_version=2;"
                                + _UNDO_6)
    store.close()
    reopened = Store.open(tmp_path / "store.db")
    assert _lines(reopened) == {"0803010103": {"electricity": "passed"}}
    assert reopened.integrity_problems() == []
    reopened.db.execute("UPDATE status_lines SET marks = 'f'")
    reopened.db.conn.commit()
    assert reopened.integrity_problems() == ["状态汇总与状态表不一致：1 名学生（如 0803010103）"]


def test_migration_5_moves_stored_not_applicable_to_the_one_alphabet(store: Store, tmp_path: Path) -> None:
    """A version-4 store marks a stored 不适用 "x" in its lines, with triggers that do too: opening it rewrites
    the lines and the triggers to the board's "-", and later writes agree with the statuses."""
    from lixiao.core.storage import schema

    with store.transaction():
        store.write_status("0803010103", "electricity", Status.NA, remark="", source="t", operator="",
                           decision="applied")
    old_mark = schema._MARK.replace("THEN '-'", "THEN 'x'")
    store.db.conn.executescript(
        "DROP TRIGGER status_lines_insert; DROP TRIGGER status_lines_update; DROP TRIGGER status_lines_delete;"
        + schema._TRIGGERS.replace("MARK", old_mark)
        + "UPDATE status_lines SET marks = replace(marks, '-', 'x'); PRAGMA user_version=4;" + _UNDO_6)
    assert store.status_lines()["0803010103"][1] == "x"
    store.close()
    reopened = Store.open(tmp_path / "store.db")
    assert reopened.status_lines()["0803010103"][1] == "-"
    with reopened.transaction():
        reopened.write_status("0803010104", "dorm_items", Status.NA, remark="", source="t", operator="",
                              decision="applied")
    assert reopened.status_lines()["0803010104"][1] == "-" and reopened.integrity_problems() == []
    assert reopened.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 10


def test_the_ledger_refuses_a_transition_outside_its_state_machine(store: Store) -> None:
    """received → staged → held → merged is allowed; a merged file can never be received, staged or refused
    again, and nothing is written by a refused transition."""
    from lixiao.core.storage.ledger import LedgerError
    from lixiao.core.storage.ledger import LedgerState as S

    with store.transaction():
        store.set_ledger("a" * 64, "f.xlsx", S.RECEIVED)
        store.set_ledger("a" * 64, "f.xlsx", S.STAGED)
        store.set_ledger("a" * 64, "f.xlsx", S.HELD, S.HELD)
        store.set_ledger("a" * 64, "f.xlsx", S.MERGED, S.MERGED)
    for state in (S.RECEIVED, S.STAGED, S.REJECTED, S.HELD):
        with pytest.raises(LedgerError, match="台账状态不能从 merged"), store.transaction():
            store.set_ledger("a" * 64, "f.xlsx", state, None if state in (S.RECEIVED, S.STAGED) else state)
    row = store.ledger("a" * 64)
    assert row is not None and row.outcome is S.MERGED


@given(st.lists(st.text(), min_size=1, max_size=14))
def test_the_chain_text_is_json_dumps(items: list[str]) -> None:
    """The text an audit hash is taken over is json.dumps(..., ensure_ascii=False) of the fields, whatever they hold
    (quotes, backslashes, control characters, any Unicode): old chains keep verifying."""
    assert chain_text(items) == json.dumps(items, ensure_ascii=False)
    assert chain_text(tuple(items)) == json.dumps(items, ensure_ascii=False)


def test_the_chain_text_of_a_field_that_is_not_text_is_json_dumps() -> None:
    """A field a hand-edited store made a number or NULL is encoded as json.dumps does, not refused."""
    assert chain_text(["a", 1, None]) == json.dumps(["a", 1, None], ensure_ascii=False)  # type: ignore[list-item]
