"""Each lender's confirmation of a student's national loan (the Store's part, a mixin; the rule: manual/loans.py)."""

from __future__ import annotations

from collections.abc import Iterable

from .chain import AuditChain, Event, now
from .schema import student_filter


class LoanRecords(AuditChain):
    """Lender confirmations from the loans feed (a Store mixin)."""

    def confirm_lender(self, student_no: str, lender: str, source: str, operator: str) -> bool:
        """Record one lender's confirmation of a student's national loan (audited); False when it was already
        recorded. Call inside a transaction."""
        stamp = now()
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO loan_confirmations (student_no, lender, source, operator, confirmed_at) "
            "VALUES (?, ?, ?, ?, ?)", [student_no, lender, source, operator, stamp])
        if cursor.rowcount:
            self.append_audit([Event("loan", student_no=student_no, new=lender, decision="confirmed", source=source,
                                     operator=operator, at=stamp)])
        return bool(cursor.rowcount)

    def confirmed_lenders(self, student_nos: Iterable[str] | None = None) -> dict[str, set[str]]:
        """学号 → the lenders that confirmed that student's national loan (of the given students, or all)."""
        result: dict[str, set[str]] = {}
        where, args = student_filter(student_nos)
        for no, lender in self.db.execute(f"SELECT student_no, lender FROM loan_confirmations{where}", args):
            result.setdefault(no, set()).add(lender)
        return result
