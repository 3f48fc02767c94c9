"""Clearance operations on one store: set a step, lift or restore a restriction, apply a feed, read records."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, TypedDict

from lixiao.core.feeds.apply import FeedApplication
from lixiao.core.feeds.apply import FeedReport as FeedReport
from lixiao.core.manual import loans, rules
from lixiao.core.manual.identity import mask_id_card
from lixiao.core.manual.model import FLAGS, Flow, Status, Step, Student
from lixiao.core.manual.rules import ClearanceError as ClearanceError
from lixiao.core.manual.rules import RefusedError as RefusedError
from lixiao.core.manual.stats import CODES, STATUS_OF_CODE, Board
from lixiao.core.storage.guard import StoreError
from lixiao.core.storage.schema import LINE_MARKS

if TYPE_CHECKING:
    from lixiao.core.storage.store import Store

# A stored mark (schema.LINE_MARKS) as a board code; 不适用 stored on a step that applies counts as 未办理
# (rules.effective_status). Two fill characters follow the marks: 未办理 for a step nothing was stored
# for, 不适用 for a step that does not apply to the student.
_MARK_TO_CODE = str.maketrans({**{LINE_MARKS[s]: CODES[s] for s in Status if s is not Status.NA},
                               LINE_MARKS[Status.NA]: CODES[Status.PENDING]})
_FILL = CODES[Status.PENDING] + CODES[Status.NA]
_DONE = CODES[Status.PASSED] + CODES[Status.OPTIONAL]  # what counts towards 全部完成


flags_of = operator.attrgetter(*FLAGS)  # every roster flag, in model order: what applicability depends on


class _Plan:
    """How to read the board codes of students sharing one combination of roster flags."""

    def __init__(self, steps: tuple[Step, ...], applicable: list[bool]) -> None:
        self._steps = steps
        self._applicable = applicable
        self.blank = "".join(_FILL[0] if a else _FILL[1] for a in applicable)  # nothing stored yet
        required = [i for i, (s, a) in enumerate(zip(steps, applicable, strict=True)) if a and s.required]
        self._required = operator.itemgetter(*required) if required else None
        self._gathers: dict[str, Callable[[str], tuple[str, ...]]] = {}

    def codes(self, present: str, marks: str) -> str:
        """The codes in flow order of a student whose stored steps are ``present`` (joined by ":") with
        ``marks`` (one per step, in the same order); the gather is made once per distinct ``present``."""
        gather = self._gathers.get(present)
        if gather is None:
            gather = self._gathers[present] = self._gather(present.split(":"))
        return "".join(gather(marks.translate(_MARK_TO_CODE) + _FILL))

    def _gather(self, present: list[str]) -> Callable[[str], tuple[str, ...]]:
        where = {step: i for i, step in enumerate(present)}
        pending, not_applicable = len(present), len(present) + 1  # where the fill characters are
        indexes = [where.get(s.code, pending) if a else not_applicable
                   for s, a in zip(self._steps, self._applicable, strict=True)]
        if not indexes:
            return lambda _: ()
        if len(indexes) == 1:  # itemgetter of one index returns the item, not a tuple
            only = indexes[0]
            return lambda text: (text[only],)
        gather: Callable[[str], tuple[str, ...]] = operator.itemgetter(*indexes)
        return gather

    def complete(self, code: str) -> bool:
        """全部完成: every applicable required step passed or optional."""
        return self._required is None or not "".join(self._required(code)).strip(_DONE)


class StepRecord(TypedDict):
    """One step of a student's 离校记录 (``status --json``)."""

    checkpoint: str
    checkpoint_name: str
    step: str
    step_name: str
    status: str
    status_label: str
    waived: bool
    remark: str
    updated_at: str
    source: str


class BlockedRecord(TypedDict):
    """A step the student may not pass yet, and what is missing."""

    step: str
    step_name: str
    missing: list[str]
    message: str


class RestrictionRecord(TypedDict):
    """One row of the special desk's screen (§3.9, 具有的前置条件的离校点): a step whose restriction it may lift."""

    checkpoint_name: str
    checkpoint_status: str  # 离校点当前状态: 已完成 / 未完成
    step: str
    step_name: str
    status: str  # 步骤当前状态 (its label)
    initial: str  # (初始): the status the cell first received, 未办理 if nothing was ever recorded
    restriction: str  # 限制已开启 / 限制已关闭


StudentRecord = TypedDict("StudentRecord", {
    "student_no": str, "name": str, "gender": str, "id_card": str, "college": str, "major": str, "class": str,
    "dorm": str, "level": str, "previous": bool, "withheld": str, "complete": bool, "progress": str,
    "steps": list[StepRecord], "blocked": list[BlockedRecord], "restrictions": list[RestrictionRecord]})
StudentRecord.__doc__ = "The ``status --json`` document: a student's 基本信息 and 离校记录."


class MatrixEntry(TypedDict):
    """One cell of the full status matrix (``export FILE.json``)."""

    student_no: str
    step: str
    status: str
    waived: bool


WaiverListing = TypedDict("WaiverListing", {
    "student_no": str, "name": str, "college": str, "class": str, "step": str, "step_name": str,
    "checkpoint_name": str, "checkpoint_status": str, "status": str, "initial": str, "reason": str, "evidence": str,
    "operator": str, "created_at": str})
WaiverListing.__doc__ = "One entry of the 已解除限制名单."


class Clearance(FeedApplication):
    """The rules of one session's flow applied to its store."""

    def __init__(self, store: Store, flow: Flow) -> None:
        self.store = store
        self.flow = flow
        self.year = store.session().year

    # -- lookups -------------------------------------------------------------------------
    def student(self, query: str) -> Student:
        """Exactly one student by 学号, 姓名 or 身份证号, or a ClearanceError saying why not."""
        matches = self.store.find_students(query.strip())
        if not matches:
            raise ClearanceError(f"找不到学生“{query}”（可用学号、姓名或身份证号查询）")
        if len(matches) > 1:
            listed = "、".join(f"{s.student_no} {s.name}（{s.college}）" for s in matches[:10])
            raise ClearanceError(f"“{query}”对应 {len(matches)} 名学生：{listed}；请改用学号")
        return matches[0]

    def step(self, code_or_name: str) -> Step:
        """A step by its code, or by its Chinese name when that name is unique in the flow."""
        if code_or_name in self.flow.steps:
            return self.flow.steps[code_or_name]
        named = [s for s in self.flow.all_steps() if s.name == code_or_name]
        if len(named) == 1:
            return named[0]
        if named:
            codes = "、".join(s.code for s in named)
            raise ClearanceError(f"有多个步骤叫“{code_or_name}”，请用代码：{codes}")
        raise ClearanceError(f"没有步骤“{code_or_name}”；lixiao flow show 列出所有步骤代码")

    def statuses(self, student_no: str) -> dict[str, Status]:
        """Stored statuses of one student by step code."""
        return {k: v.status for k, v in self.store.status_rows(student_no).items()}

    def waived(self, student_no: str) -> set[str]:
        """Steps of one student whose restriction is lifted."""
        return {w.step for w in self.store.active_waivers(student_no)}

    # -- changes -------------------------------------------------------------------------
    def set_step(
        self,
        student: Student,
        step_code: str,
        new: Status,
        *,
        remark: str = "",
        source: str,
        operator: str = "",
        source_hash: str = "",
    ) -> rules.Decision:
        """Apply one status change if the rules allow it; the refusal reason otherwise."""
        with self.store.transaction():
            rows = self.store.status_rows(student.student_no)
            statuses = {k: v.status for k, v in rows.items()}
            confirmed = self.store.confirmed_lenders([student.student_no]) if loans.named(student) else {}
            decision = rules.may_set(
                self.flow, student, step_code, new, statuses, self.waived(student.student_no), self.year,
                confirmed.get(student.student_no, set()),
            )
            if not decision.allowed:
                return decision
            old = rows.get(step_code)
            if old and old.status is new and old.remark == remark:
                return rules.Decision(True, unchanged=True)
            reverted = old is not None and old.status is Status.PASSED and new is not Status.PASSED
            kind = "reverted" if reverted else "applied"
            self.store.write_status(
                student.student_no, step_code, new, remark=remark, source=source,
                operator=operator, decision=kind, source_hash=source_hash,
            )
        return decision

    def waive(self, student: Student, step: Step, reason: str, operator: str, evidence: str = "") -> None:
        """Lift the restriction of one student's step (毕业生特殊离校点), refused on a passed step."""
        if not rules.waiver_reason(reason).allowed:
            raise ClearanceError(rules.WAIVER_NEEDS_REASON + "；请用 --reason 写明")
        with self.store.transaction():
            stored = self.statuses(student.student_no).get(step.code, Status.PENDING)
            decision = rules.may_waive(
                self.flow, student, step.code, stored, step.code in self.waived(student.student_no), self.year
            )
            if not decision.allowed:
                raise RefusedError(decision.reason)
            self.store.add_waiver(student.student_no, step.code, reason.strip(), operator, evidence)

    def unwaive(self, student: Student, step: Step, operator: str) -> None:
        """Restore a lifted restriction (限制重新开启)."""
        with self.store.transaction():
            if not self.store.restore_waiver(student.student_no, step.code, operator):
                raise RefusedError(f"{student.name} 的“{step.name}”没有已解除的限制")

    # -- records -------------------------------------------------------------------------
    def record(self, student: Student) -> StudentRecord:
        """The ``status --json`` document: the student's 离校记录, blocked steps, 全部完成."""
        rows = self.store.status_rows(student.student_no)
        statuses = {k: v.status for k, v in rows.items()}
        waived = self.waived(student.student_no)
        steps: list[StepRecord] = []
        for cp in self.flow.checkpoints:
            for step in cp.steps:
                row = rows.get(step.code)
                status = rules.effective_status(step, student, row.status if row else None, self.year)
                steps.append({
                    "checkpoint": cp.code,
                    "checkpoint_name": cp.title_for(student.college),
                    "step": step.code,
                    "step_name": step.name,
                    "status": status.value,
                    "status_label": status.label,
                    "waived": step.code in waived,
                    "remark": row.remark if row else "",
                    "updated_at": row.updated_at if row else "",
                    "source": row.source if row else "",
                })
        blocked = rules.blocked_steps(self.flow, student, statuses, waived, self.year)
        return {
            "student_no": student.student_no,
            "name": student.name,
            "gender": student.gender,
            "id_card": mask_id_card(student.id_card),
            "college": student.college,
            "major": student.major,
            "class": student.class_name,
            "dorm": student.dorm,
            "level": student.level,
            "previous": student.previous,
            "withheld": student.withheld_word,
            "complete": rules.is_complete(self.flow, student, statuses, self.year),
            "progress": rules.progress_text(self.flow, student, statuses, self.year),
            "steps": steps,
            "blocked": [
                {
                    "step": step.code,
                    "step_name": step.name,
                    "missing": [rules.step_title(self.flow, student, m) for m in missing],
                    "message": rules.describe_missing(self.flow, student, missing),
                }
                for step, missing in blocked
            ],
            "restrictions": self.restrictions(student, statuses, waived),
        }

    def restrictions(self, student: Student, statuses: dict[str, Status], waived: set[str]) -> list[RestrictionRecord]:
        """The special desk's screen for one student (§3.9): each step it may lift that applies to the student, with
        离校点当前状态, 步骤当前状态(初始) and 限制状态."""
        lifted = [s for s in rules.liftable_steps(self.flow)
                  if rules.effective_status(s, student, statuses.get(s.code), self.year) is not Status.NA]
        initial = self.store.first_statuses([s.code for s in lifted], student.student_no).get(student.student_no, {})
        return [{
            "checkpoint_name": self.flow.checkpoint(step.checkpoint).title_for(student.college),
            "checkpoint_status": rules.checkpoint_word(rules.checkpoint_complete(
                self.flow.checkpoint(step.checkpoint), student, statuses, self.year)),
            "step": step.code, "step_name": step.name,
            "status": rules.effective_status(step, student, statuses.get(step.code), self.year).label,
            "initial": initial.get(step.code, Status.PENDING).label,
            "restriction": "限制已关闭" if step.code in waived else "限制已开启",
        } for step in lifted]

    def board(self) -> Board:
        """Every student's effective status of every step, waived steps and 全部完成 (see stats.Board)."""
        steps = tuple(self.flow.all_steps())
        lines = self.store.status_lines()
        waivers: dict[str, set[str]] = {}
        for w in self.store.active_waivers():
            waivers.setdefault(w.student_no, set()).add(w.step)
        # Applicability depends on the roster flags only (applies_to names a flag), so it is worked out
        # once per combination of flags: same answers as rules.effective_status / rules.is_complete
        # (tests/test_rules.py pins this), a fraction of the cost at 30,000 students.
        plans: dict[tuple[bool, ...], _Plan] = {}
        students = self.store.students()
        codes, complete = [], []
        for student in students:
            flags = flags_of(student)
            plan = plans.get(flags)
            if plan is None:
                plan = plans[flags] = _Plan(steps, [s.enabled(self.year) and rules.applies(s, student) for s in steps])
            line = lines.get(student.student_no)
            code = plan.blank if line is None else plan.codes(*line)
            codes.append(code)
            complete.append(plan.complete(code))
        return Board(steps, students, codes, complete, waivers)

    def student_matrix(self) -> list[tuple[Student, dict[str, Status], set[str], bool]]:
        """Every student with the effective status of every step (by code), waived steps and 全部完成."""
        board = self.board()
        return [(student, board.statuses(i), board.waived.get(student.student_no, set()), board.complete[i])
                for i, student in enumerate(board.students)]

    def matrix(self) -> list[MatrixEntry]:
        """The full status matrix: one entry per student and step (``export FILE.json``)."""
        board = self.board()
        values = {code: STATUS_OF_CODE[code].value for code in STATUS_OF_CODE}
        return [
            {"student_no": student.student_no, "step": step.code, "status": values[code],
             "waived": step.code in board.waived.get(student.student_no, ())}
            for student, codes in zip(board.students, board.codes, strict=True)
            for step, code in zip(board.steps, codes, strict=True)
        ]

    def waiver_list(self) -> list[WaiverListing]:
        """已解除限制名单: every restriction in force, with the student and the step's current status."""
        result: list[WaiverListing] = []
        waivers = self.store.active_waivers()
        students = {s.student_no: s for s in self.store.students({w.student_no for w in waivers})}
        rows = self.store.all_status_rows(students)
        initial = self.store.first_statuses({w.step for w in waivers})
        for w in waivers:
            student = students.get(w.student_no)
            if w.name is None or student is None:
                raise StoreError(f"解除限制记录引用了不存在的学生 {w.student_no}")
            step = self.flow.steps.get(w.step)
            status = Status(w.stored) if w.stored else Status.PENDING
            statuses = {code: row.status for code, row in rows.get(w.student_no, {}).items()}
            done = step is not None and rules.checkpoint_complete(
                self.flow.checkpoint(step.checkpoint), student, statuses, self.year)
            result.append({
                "student_no": w.student_no, "name": w.name, "college": w.college, "class": w.class_name,
                "step": w.step, "step_name": step.name if step else w.step,
                "checkpoint_name": self.flow.checkpoint(step.checkpoint).title_for(w.college) if step else "",
                "checkpoint_status": rules.checkpoint_word(done), "status": status.label,
                "initial": initial.get(w.student_no, {}).get(w.step, Status.PENDING).label,
                "reason": w.reason, "evidence": w.evidence, "operator": w.operator, "created_at": w.created_at,
            })
        return result
