"""Applying an external export (library, finance, loans) to the store: each row through the same rule as
``lixiao set``, national loans held at several lenders confirmed lender by lender, and the students a
whole-school export left out (a Clearance mixin)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from lixiao.core.manual import loans, rules
from lixiao.core.manual.identity import mask_id_card
from lixiao.core.manual.model import Flow, Status, Step, Student
from lixiao.core.manual.rules import ClearanceError, Decision

from .exports import WHOLE_SCHOOL_FEEDS, FeedEntry, feed_label

if TYPE_CHECKING:
    from lixiao.core.storage.store import Store


@dataclass
class FeedReport:
    """What applying a feed did, counted and listed for the coordinator."""

    passed: int = 0
    failed: int = 0
    unchanged: int = 0
    reverted: list[str] = field(default_factory=list)  # passed → failed, listed by name
    unknown: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    absent: list[Student] = field(default_factory=list)  # roster students a whole-school export left out
    absent_kept: dict[str, Status] = field(default_factory=dict)  # of those, 学号 → a status other than 未办理 kept

    @property
    def absent_pending(self) -> list[Student]:
        """The students left out whose step is still 未办理 (what a partial export leaves blocking them)."""
        return [s for s in self.absent if s.student_no not in self.absent_kept]
    partial: list[str] = field(default_factory=list)  # national loans some but not all lenders confirmed


class FeedApplication:
    """apply_feed for Clearance (which provides the store, the flow, the year, statuses and set_step)."""

    store: Store
    flow: Flow
    year: int

    def statuses(self, student_no: str) -> dict[str, Status]:
        raise NotImplementedError

    def set_step(self, student: Student, step_code: str, new: Status, *, remark: str = "", source: str,
                 operator: str = "", source_hash: str = "") -> Decision:
        raise NotImplementedError

    def apply_feed(self, entries: list[FeedEntry], source: str, operator: str = "",
                   absent: Status | None = None) -> FeedReport:
        """Set feed steps from an external export in one transaction; passed → failed is reported. Students of
        the roster that a whole-school export (library, finance) leaves out are listed in ``absent``; with
        ``absent`` set (the [feeds] absent setting) their step is set to it, with a remark saying why."""
        report = FeedReport()
        seen: set[tuple[str, str]] = set()
        by_no = {s.student_no: s for s in self.store.students()}
        by_id = {s.id_card: s for s in by_no.values()}
        feed_steps = {s.feed: s for s in self.flow.all_steps() if s.feed}
        with self.store.transaction():
            for entry in entries:
                step = feed_steps.get(entry.feed)
                if step is None:
                    raise ClearanceError(f"当前流程中没有由数据源 {entry.feed} 设置的步骤")
                # Loans match by 身份证号 first (the bank's key), falling back to 学号; a row naming both must name
                # one student.
                student = by_id.get(entry.id_card) if entry.id_card else None
                if entry.id_card and entry.student_no and student is not by_no.get(entry.student_no):
                    report.refused.append(f"第 {entry.row} 行：学号 {entry.student_no} 与身份证号 "
                                          f"{mask_id_card(entry.id_card)} 不是学生名单中的同一名学生，未应用")
                    continue
                student = student or by_no.get(entry.student_no)
                if student is None:
                    shown = entry.student_no or mask_id_card(entry.id_card)
                    report.unknown.append(f"第 {entry.row} 行：{shown}")
                    continue
                seen.add((student.student_no, step.code))
                old = self.statuses(student.student_no).get(step.code)
                if not rules.applies(step, student) or not step.enabled(self.year):
                    if step.feed.startswith("loans"):
                        report.refused.append(
                            f"第 {entry.row} 行：{student.name}（{student.student_no}）在学生名单中没有该贷款标记"
                        )
                    else:
                        report.unchanged += 1
                    continue
                if step.feed == loans.NATIONAL_FEED and loans.named(student):
                    confirmed = self._lender(student, entry, old, source, operator, report)
                    if confirmed is None:
                        continue
                    entry = confirmed
                elif step.feed == loans.NATIONAL_FEED and entry.lender:  # kept, should the roster name lenders later
                    self.store.confirm_lender(student.student_no, entry.lender, source, operator)
                decision = self.set_step(
                    student, step.code, entry.status, remark=entry.remark, source=source, operator=operator
                )
                if decision.unchanged:
                    report.unchanged += 1
                elif not decision.allowed:
                    report.refused.append(f"第 {entry.row} 行：{student.name}：{decision.reason}")
                elif old is Status.PASSED and entry.status is Status.FAILED:
                    report.reverted.append(f"{student.student_no} {student.name}：{entry.remark}")
                elif entry.status is Status.PASSED:
                    report.passed += 1
                elif entry.status is Status.FAILED:
                    report.failed += 1  # (a partial loan confirmation is listed in report.partial)
            self._absent(entries, feed_steps, seen, by_no, report, source, operator, absent)
        return report

    def _lender(self, student: Student, entry: FeedEntry, current: Status | None, source: str, operator: str,
                report: FeedReport) -> FeedEntry | None:
        """One lender's confirmation of a loan whose lenders the roster names: recorded, and the entry becomes what
        all the confirmations so far mean (passed once every lender has confirmed). None when the row cannot count
        (no lender named for a loan at several, or a lender the student does not have), or when a partial
        confirmation meets a status an office set (未通过, 可办可不办): that status stays."""
        who = f"第 {entry.row} 行：{student.name}（{student.student_no}）"
        lender = entry.lender or (student.lenders[0] if not loans.several(student) else "")
        if lender not in student.lenders:
            shown = loans.lender_label(lender) if lender else "没有写明经办单位"
            report.refused.append(f"{who}{shown}：该生的国家助学贷款由 "
                                  f"{'、'.join(map(loans.lender_label, student.lenders))} 经办，请写明是哪一处的确认"
                                  "（“经办单位”列或 --lender）")
            return None
        self.store.confirm_lender(student.student_no, lender, source, operator)
        status, remark = loans.lenders_outcome(student, self.store.confirmed_lenders([student.student_no]).get(
            student.student_no, set()))
        if status is not Status.PASSED:
            report.partial.append(f"{student.student_no} {student.name}：{remark}")
            if current not in (None, Status.PENDING):
                return None
        return replace(entry, status=status, remark=remark)

    def recheck_lenders(self, source: str, operator: str) -> list[str]:
        """After a roster import: each national loan whose named lenders changed gets the status its confirmations
        mean now (a pass whose lenders are no longer all confirmed goes back to 未办理); lines saying what changed."""
        step = next((s for s in self.flow.all_steps() if s.feed == loans.NATIONAL_FEED), None)
        if step is None or not step.enabled(self.year):
            return []
        changed = []
        confirmed = self.store.confirmed_lenders()
        stored = self.store.step_rows(step.code)
        with self.store.transaction():
            for student in self.store.students():
                row = stored.get(student.student_no)
                if not rules.applies(step, student) or row is None:
                    continue
                if not loans.named(student):
                    if row.status is Status.PENDING and row.remark.startswith("已确认："):
                        self.set_step(student, step.code, Status.PENDING, remark="", source=source, operator=operator)
                    continue
                if row.status not in (Status.PASSED, Status.PENDING):
                    continue
                status, remark = loans.lenders_outcome(student, confirmed.get(student.student_no, set()))
                if (status, remark) == (row.status, row.remark) or (status is row.status is Status.PASSED):
                    continue
                self.set_step(student, step.code, status, remark=remark, source=source, operator=operator)
                if row.status is Status.PASSED and status is not Status.PASSED:
                    changed.append(f"{student.student_no} {student.name}：{step.name} 由已通过改为未办理（{remark}）")
        return changed

    def _absent(self, entries: list[FeedEntry], feed_steps: dict[str, Step], seen: set[tuple[str, str]],
                by_no: dict[str, Student], report: FeedReport, source: str, operator: str,
                absent: Status | None) -> None:
        """Roster students a whole-school export did not mention (a confirmation list, the loans, is partial by
        nature and is never read this way)."""
        for feed in sorted({e.feed for e in entries if e.feed in WHOLE_SCHOOL_FEEDS}):
            step = feed_steps[feed]
            for student in by_no.values():
                if (student.student_no, step.code) in seen or not step.enabled(self.year) \
                        or not rules.applies(step, student):
                    continue
                report.absent.append(student)
                kept = self.statuses(student.student_no).get(step.code, Status.PENDING)
                if kept is not Status.PENDING:
                    report.absent_kept[student.student_no] = kept
                if absent is not None:
                    self.set_step(student, step.code, absent, remark=f"不在{feed_label(feed)}导出中（按设置记为"
                                  f"{absent.label}）", source=source, operator=operator)
