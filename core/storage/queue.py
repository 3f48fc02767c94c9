"""The 待核对 queue's part of the Store (a mixin): open conflicts, refused ticks and refused files, and marking
them resolved (the rules of what is open live in core/clearance/review.py)."""

from __future__ import annotations

from .chain import AuditChain, now
from .ledger import ConflictRow, RefusalRow, RejectionRow


class ReviewRecords(AuditChain):
    """Open review items and their resolution (a Store mixin)."""

    def open_conflicts(self, limit: int) -> list[ConflictRow]:
        """Unresolved conflicts, newest first, with the returned file's name."""
        return [ConflictRow(*r) for r in self.db.execute(
            "SELECT c.id, c.return_hash, c.student_no, c.step, c.baseline, c.returned, c.current, c.created_at, "
            "c.resolved_at, coalesce(r.file_name, '') FROM conflicts c LEFT JOIN returns r ON r.hash = c.return_hash "
            "WHERE c.resolved_at IS NULL ORDER BY c.id DESC LIMIT ?", [limit])]

    def open_refusals(self, limit: int) -> list[RefusalRow]:
        """Refused ticks not yet resolved, newest first."""
        return [RefusalRow(*r) for r in self.db.execute(
            "SELECT t.id, t.return_hash, t.student_no, t.step, t.value, t.reason, t.created_at, "
            "coalesce(r.file_name, '') FROM refused_ticks t LEFT JOIN returns r ON r.hash = t.return_hash "
            "WHERE t.resolved_at IS NULL ORDER BY t.id DESC LIMIT ?", [limit])]

    def open_rejections(self, limit: int) -> list[RejectionRow]:
        """Returns the coordinator must look at as a whole, not yet acknowledged, newest first: files refused (also
        for where they were put, until taken from the right place), held (waiting for a confirmation), and merged
        ones flagged for a look (a sender not in the directory)."""
        return [RejectionRow(*r) for r in self.db.execute(
            "SELECT hash, file_name, outcome, detail, updated_at FROM returns "
            "WHERE (outcome IN ('rejected', 'quarantined', 'misdirected', 'held') "
            "OR (outcome = 'merged' AND coalesce(json_extract(detail, '$.flagged'), '') != '')) "
            "AND hash NOT IN (SELECT hash FROM acknowledged) "
            "ORDER BY updated_at DESC LIMIT ?", [limit])]

    def return_numbers(self, hashes: set[str]) -> dict[str, int]:
        """The short number of each return (its row number in the ledger, shown as F12), by content hash."""
        found: dict[str, int] = {}
        for digest_hex in hashes:
            row = self.db.execute("SELECT rowid FROM returns WHERE hash = ?", [digest_hex]).fetchone()
            if row:
                found[digest_hex] = int(row[0])
        return found

    def conflict_returned(self, conflict_id: int) -> tuple[str, str]:
        """The returned value of a conflict and the 备注 returned with it (('', '') when there is none)."""
        row = self.db.execute("SELECT returned, remark FROM conflicts WHERE id = ?", [conflict_id]).fetchone()
        return (str(row[0]), str(row[1])) if row else ("", "")

    def refusal_value(self, refusal_id: int) -> str:
        """What the refused cell held, as its label ('' when there is none)."""
        row = self.db.execute("SELECT value FROM refused_ticks WHERE id = ?", [refusal_id]).fetchone()
        return str(row[0]) if row else ""

    def mark_resolved(self, kind: str, ident: str, resolution: str, operator: str, reason: str) -> None:
        """Close a conflict, a refused tick (by id) or a refused file (by hash prefix); inside a transaction."""
        stamp = now()
        if kind == "conflict":
            self.db.execute("UPDATE conflicts SET resolved_at = ?, resolution = ? WHERE id = ?",
                            [stamp, resolution, int(ident)])
        elif kind == "refused":
            self.db.execute("UPDATE refused_ticks SET resolved_at = ?, resolution = ? WHERE id = ?",
                            [stamp, resolution, int(ident)])
        else:
            row = self.db.execute("SELECT hash FROM returns WHERE hash LIKE ?", [ident + "%"]).fetchone()
            if row:
                self.db.execute("INSERT OR REPLACE INTO acknowledged (hash, at, operator, reason) VALUES (?, ?, ?, ?)",
                                [row[0], stamp, operator, reason])
