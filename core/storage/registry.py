"""The issued workbooks (generations per checkpoint and scope, each office's newest) and what was delivered where:
the Store's part for issuing and delivery (a mixin)."""

from __future__ import annotations

from dataclasses import astuple, dataclass

from .chain import AuditChain, Event, now
from .trusted import row_digest


@dataclass(frozen=True, slots=True)
class WorkbookRow:
    """An issued workbook as registered: its id, checkpoint, scope, generation, issue time, the hash of its
    student list, its baseline (canonical JSON, see issuance.Baseline) and its path in the data folder."""

    id: str
    checkpoint: str
    scope: str
    generation: int
    issued_at: str
    students_hash: str
    baseline: str
    path: str
    office: str = ""  # the office (Office.key) it was issued for
    readiness: str = ""  # digest of its students and their 前置条件 at issue (issuance.readiness_digest)


_WORKBOOK_COLUMNS = "id, checkpoint, scope, generation, issued_at, students_hash, baseline, path, office, readiness"



class WorkbookRegistry(AuditChain):
    """Issued workbooks and deliveries (a Store mixin)."""

    def next_generation(self, checkpoint: str, scope: str) -> int:
        """The generation the next workbook of this checkpoint and scope gets (1, 2, …)."""
        row = self.db.execute(
            "SELECT max(generation) FROM workbooks WHERE checkpoint = ? AND scope = ?", [checkpoint, scope]
        ).fetchone()
        return int(row[0] or 0) + 1

    def record_workbook(self, row: WorkbookRow) -> None:
        """Register an issued workbook; inside a transaction."""
        self.db.execute(f"INSERT INTO workbooks ({_WORKBOOK_COLUMNS}) VALUES ({', '.join('?' * 10)})",
                        list(astuple(row)))
        # the row's hash: verify holds the table against it (baseline, scope, path … as issued)
        self.append_audit([Event("workbook", new=row.id, decision="issued", source="issue",
                                 source_hash=row_digest(astuple(row)),
                                 detail=f"{row.checkpoint} {row.scope} 第 {row.generation} 版")])

    def latest_workbooks(self, office: str) -> list[WorkbookRow]:
        """The newest generation of each scope issued for an office (what it should be working on)."""
        cursor = self.db.execute(
            f"SELECT {_WORKBOOK_COLUMNS} FROM workbooks w WHERE office = ? AND generation = "
            "(SELECT max(generation) FROM workbooks v WHERE v.checkpoint = w.checkpoint AND v.scope = w.scope) "
            "ORDER BY scope", [office])
        return [WorkbookRow(*row) for row in cursor]

    def last_issued(self, office: str) -> str:
        """When the office's newest workbook was issued ('' if never)."""
        row = self.db.execute("SELECT max(issued_at) FROM workbooks WHERE office = ?", [office]).fetchone()
        return str(row[0] or "")

    def record_delivery(self, office: str, workbook_id: str, channel: str, target: str, ok: bool,
                        detail: str = "") -> None:
        """Remember one delivery attempt (a workbook to an address or a shared folder)."""
        with self.transaction():
            self.db.execute("INSERT INTO deliveries (office, workbook_id, channel, target, at, ok, detail) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)",
                            [office, workbook_id, channel, target, now(), int(ok), detail])

    def delivered(self, workbook_id: str, channel: str, target: str) -> bool:
        """True when this workbook already reached this target."""
        row = self.db.execute("SELECT 1 FROM deliveries WHERE workbook_id = ? AND channel = ? AND target = ? AND ok",
                              [workbook_id, channel, target]).fetchone()
        return row is not None

    def last_deliveries(self) -> dict[str, tuple[str, str, str, bool, str]]:
        """Per office, its newest delivery: (at, channel, target, ok, detail)."""
        cursor = self.db.execute("SELECT office, at, channel, target, ok, detail FROM deliveries ORDER BY id")
        return {office: (at, channel, target, bool(ok), detail) for office, at, channel, target, ok, detail in cursor}

    def workbook(self, workbook_id: str) -> WorkbookRow | None:
        """An issued workbook's row, or None."""
        row = self.db.execute(f"SELECT {_WORKBOOK_COLUMNS} FROM workbooks WHERE id = ?", [workbook_id]).fetchone()
        return WorkbookRow(*row) if row else None
