"""The returns ledger (one row per returned file's content hash, every change audited), the refused ticks and
conflicts kept for each return, and the lifted restrictions (waivers): mixins of the Store."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from .chain import AuditChain, now


class LedgerState(StrEnum):
    """Where a returned file (keyed by its content hash) stands; the last four are its outcome."""

    RECEIVED = "received"  # seen; nothing else done yet
    STAGED = "staged"  # an exact copy kept in archive/.staging, so a crash cannot lose it
    MERGED = "merged"
    REJECTED = "rejected"
    QUARANTINED = "quarantined"
    HELD = "held"  # waiting for `lixiao sync --confirm`


_DECIDED = frozenset({LedgerState.MERGED, LedgerState.REJECTED, LedgerState.QUARANTINED, LedgerState.HELD})
# The exactly-once state machine of a returned file, at a glance: from (None = no row yet) → allowed next states.
# A file too large to stage, or refused before staging, is decided straight away; a crash between received
# and staged leaves "received", from which the next attempt decides without staging; only a held return is
# decided again (merged, when the coordinator confirms it). A decided file is never taken again (duplicate).
TRANSITIONS: dict[LedgerState | None, frozenset[LedgerState]] = {
    None: frozenset({LedgerState.RECEIVED, LedgerState.REJECTED, LedgerState.QUARANTINED}),
    LedgerState.RECEIVED: frozenset({LedgerState.STAGED}) | _DECIDED,
    LedgerState.STAGED: _DECIDED,
    LedgerState.HELD: frozenset({LedgerState.MERGED}),
    LedgerState.MERGED: frozenset(),
    LedgerState.REJECTED: frozenset(),
    LedgerState.QUARANTINED: frozenset(),
}


class LedgerError(RuntimeError):
    """A ledger change the exactly-once state machine does not allow (a bug, never a user's doing)."""


class Ledger(AuditChain):
    """Returned files and what was kept of each (a Store mixin)."""

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
        was = LedgerState(previous[0]) if previous else None
        if LedgerState(state) not in TRANSITIONS[was]:
            raise LedgerError(f"台账状态不能从 {was or '（无）'} 变为 {state}（{digest_hex[:12]}）")
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

    # -- what the reports show of the returns ------------------------------------------------
    def open_conflicts(self, limit: int) -> list[dict[str, Any]]:
        """Unresolved conflicts, newest first, with the returned file's name."""
        return list(self.db.query(
            "SELECT c.*, r.file_name FROM conflicts c LEFT JOIN returns r ON r.hash = c.return_hash "
            "WHERE c.resolved_at IS NULL ORDER BY c.id DESC LIMIT ?", [limit]))

    def recent_refusals(self, limit: int) -> list[dict[str, Any]]:
        """Refused ticks, newest first, with the returned file's name."""
        return list(self.db.query(
            "SELECT t.*, r.file_name FROM refused_ticks t LEFT JOIN returns r ON r.hash = t.return_hash "
            "ORDER BY t.id DESC LIMIT ?", [limit]))

    def recent_rejections(self, limit: int) -> list[dict[str, Any]]:
        """Files refused as a whole (rejected or quarantined), newest first."""
        return list(self.db.query(
            "SELECT file_name, outcome, detail, updated_at FROM returns WHERE outcome IN ('rejected', 'quarantined') "
            "ORDER BY updated_at DESC LIMIT ?", [limit]))

    def office_returns(self) -> list[dict[str, Any]]:
        """Per issued checkpoint and scope: the latest generation and issue time, and the last merged return."""
        return list(self.db.query(
            "SELECT w.checkpoint, w.scope, max(w.generation) AS generation, max(w.issued_at) AS issued_at, "
            "(SELECT max(r.updated_at) FROM returns r JOIN workbooks w2 ON w2.id = r.workbook_id "
            " WHERE w2.checkpoint = w.checkpoint AND w2.scope = w.scope AND r.outcome = 'merged') AS returned_at "
            "FROM workbooks w GROUP BY w.checkpoint, w.scope ORDER BY w.checkpoint, w.scope"))

    def merged_summary(self) -> tuple[int, str | None]:
        """How many returns were merged, and when the last one was."""
        count, last = self.db.execute(
            "SELECT count(*), max(updated_at) FROM returns WHERE outcome = 'merged'").fetchone()
        return int(count), last


class WaiverRecords(AuditChain):
    """Lifted restrictions (解除限制), each its own record, audited (a Store mixin)."""

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
