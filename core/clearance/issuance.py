"""What each office's workbook must hold: its students, step cells, batch groups and baseline (pure data)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lixiao.core.manual import loans, rules
from lixiao.core.manual.identity import mask_id_card
from lixiao.core.manual.model import SPLITS, Checkpoint, Flow, Status, Step, Student
from lixiao.core.storage.signing import digest

from .baseline import ISSUED_STATUSES
from .baseline import Baseline as Baseline
from .baseline import BaselineError as BaselineError
from .baseline import IssuedCell as IssuedCell

if TYPE_CHECKING:
    from lixiao.core.storage.store import StatusRow

BATCH_SHEETS = {"class": "按班级", "dorm": "按宿舍", "college": "按学院"}
IDENTITY_COLUMNS = ("学号", "姓名", "性别", "身份证号", "院系", "专业", "班级", "宿舍")
LEVEL_COLUMN = "培养层次"
ALL_SCOPE = "全部"


class IssueError(ValueError):
    """Workbooks cannot be planned as asked (unknown checkpoint, nothing to tick)."""


@dataclass(frozen=True, slots=True)
class CellPlan:
    """One step cell: blank when not applicable, else its status (a tick, empty, 未通过, 可办可不办), with the version
    it was issued at."""

    step: str
    applicable: bool
    status: Status = Status.PENDING
    version: int = 0

    @property
    def ticked(self) -> bool:
        """True when the cell is issued ticked (已通过)."""
        return self.status is Status.PASSED


@dataclass(frozen=True, slots=True)
class RowPlan:
    """One student row of the 办理 sheet."""

    student: Student
    identity: tuple[str, ...]
    prerequisite: str  # 已满足, or 未满足：… in the manual's words
    cells: tuple[CellPlan, ...]
    remark: str
    progress: str = ""  # 离校进度 of the whole record (rules.progress_text): shown, never read back

    @property
    def blocked(self) -> bool:
        """True when the row's prerequisites are unmet."""
        return self.prerequisite != PREREQ_MET


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """One row of a batch sheet: a class, dorm room or college and its members."""

    key: str
    names: tuple[str, ...]
    student_nos: tuple[str, ...]
    counts: tuple[tuple[int, int], ...]  # per step: (passed, applicable)
    ticked: tuple[bool, ...]  # per step: every applicable member already passed


@dataclass(frozen=True, slots=True)
class WaiverRowPlan:
    """One row of the special desk: a student's restricted step and whether its restriction is lifted."""

    student: Student
    step: Step
    checkpoint_title: str
    status: Status
    waived: bool
    reason: str
    note: str = ""  # why the step is not passed, as stored (the finance feed's 欠费 120.00 元, 未还图书 2 册)
    checkpoint_done: bool = False  # 离校点当前状态: the step's checkpoint 已完成 for this student (else 未完成)
    initial: Status = Status.PENDING  # the 初始 of 步骤当前状态(初始): the status the cell first received


PREREQ_MET = "已满足"


@dataclass
class WorkbookPlan:
    """Everything a workbook shows, independent of the file format."""

    session: str
    checkpoint: Checkpoint
    title: str
    scope: str
    steps: tuple[Step, ...]
    identity_columns: tuple[str, ...]
    rows: list[RowPlan] = field(default_factory=list)
    groups: dict[str, list[GroupPlan]] = field(default_factory=dict)
    waiver_rows: list[WaiverRowPlan] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """``waiver`` for the special desk, ``office`` otherwise."""
        return "waiver" if self.checkpoint.kind == "waiver" else "office"

    def student_nos(self) -> list[str]:
        """The issued students, sorted."""
        if self.kind == "waiver":
            return sorted({r.student.student_no for r in self.waiver_rows})
        return sorted(r.student.student_no for r in self.rows)

    def baseline(self) -> Baseline:
        """The issued values the three-way merge compares a return against."""
        return Baseline(
            cells={r.student.student_no: {c.step: IssuedCell(c.status, c.version) for c in r.cells if c.applicable}
                   for r in self.rows},
            remarks={r.student.student_no: r.remark for r in self.rows},
            identity_columns=self.identity_columns,
            identity={r.student.student_no: r.identity for r in self.rows},
            batch={mode: {g.key: dict(zip((s.code for s in self.steps), g.ticked, strict=True)) for g in groups}
                   for mode, groups in self.groups.items()},
            groups={mode: {g.key: g.student_nos for g in groups} for mode, groups in self.groups.items()},
            waivers={f"{w.student.student_no}|{w.step.code}": (w.waived, w.reason) for w in self.waiver_rows},
        )

    def students_hash(self) -> str:
        """Hash of the issued student list."""
        return digest(self.student_nos())

    @property
    def office(self) -> str:
        """The directory key of the office this workbook is for (offices.office_key)."""
        college = ""
        if self.checkpoint.per_college and self.rows:
            college = self.rows[0].student.college
        return f"{self.checkpoint.code}|{college}"

    def readiness_digest(self) -> str:
        """What a fresh generation is due for: the students and, for each, the 前置条件 the workbook shows (and, at
        a certificate desk, whether it has collected everything). A workbook is stale when this differs from the
        one of its office's newest generation of the same scope."""
        if self.kind == "waiver":
            return digest(sorted([w.student.student_no, w.step.code, w.waived] for w in self.waiver_rows))
        if self.checkpoint.requires:  # a certificate desk: its 可领证名单 also drops whoever has collected everything
            return digest([[r.student.student_no, r.prerequisite, all(c.ticked for c in r.cells if c.applicable)]
                           for r in self.rows])
        return digest([[r.student.student_no, r.prerequisite] for r in self.rows])


def batch_ident(mode: str, group: str) -> str:
    """What a batch-sheet row's 行校验 key signs: its mode and group."""
    return f"batch|{mode}|{group}"


def waiver_ident(student_no: str, step: str) -> str:
    """What a special-desk row's 行校验 key signs: the student and the restricted step."""
    return f"waiver|{student_no}|{step}"


def _group_key(student: Student, mode: str) -> str:
    return {"class": student.class_name, "dorm": student.dorm, "college": student.college}[mode]


def identity_columns(students: list[Student]) -> tuple[str, ...]:
    """The identity columns of a workbook: with 培养层次 (硕士/博士) after 专业 where some student is not 本科."""
    if all(s.level == "本科" for s in students):
        return IDENTITY_COLUMNS
    at = IDENTITY_COLUMNS.index("专业") + 1
    return (*IDENTITY_COLUMNS[:at], LEVEL_COLUMN, *IDENTITY_COLUMNS[at:])


def identity_values(student: Student, columns: tuple[str, ...], show_id: bool) -> tuple[str, ...]:
    """The identity cells of one student in column order (身份证号 masked unless ``show_id``)."""
    values = {
        "学号": student.student_no, "姓名": student.name, "性别": student.gender,
        "身份证号": student.id_card if show_id else mask_id_card(student.id_card),
        "院系": student.college, "专业": student.major, LEVEL_COLUMN: student.level, "班级": student.class_name,
        "宿舍": student.dorm or "无住宿信息",
    }
    return tuple(values[c] for c in columns)


def workbook_steps(checkpoint: Checkpoint, year: int) -> tuple[Step, ...]:
    """The steps staff tick in this office's workbook: enabled and not set by a feed."""
    return tuple(s for s in checkpoint.steps if s.enabled(year) and s.source == "workbook")


def issuable(flow: Flow, year: int) -> list[Checkpoint]:
    """Checkpoints that get a workbook by default: those with steps to tick, and the special desk."""
    return [cp for cp in flow.checkpoints if cp.kind == "waiver" or workbook_steps(cp, year)]


def plan_workbooks(
    flow: Flow,
    year: int,
    session: str,
    checkpoint: Checkpoint,
    students: list[Student],
    stored: Mapping[str, Mapping[str, StatusRow]],
    waived: Mapping[str, Mapping[str, str]],
    split: str | None = None,
    initial: Mapping[str, Mapping[str, Status]] | None = None,
) -> list[WorkbookPlan]:
    """Plan the workbooks of one checkpoint: one per college where it is per college, split further on request
    (``initial``: for the special desk, the status each restricted cell first received, Store.first_statuses)."""
    if split is not None and split not in SPLITS:
        raise IssueError(f"--split 只能是 {'、'.join(SPLITS)}")
    if checkpoint.kind == "waiver":
        return [_plan_waivers(flow, year, session, checkpoint, students, stored, waived, initial or {})]
    steps = workbook_steps(checkpoint, year)
    if not steps:
        raise IssueError(f"{checkpoint.name}的步骤都由数据源设置（或已取消），不需要工作簿")
    concerned = [s for s in students if any(st.enabled(year) and rules.applies(st, s) for st in steps)]
    scopes: dict[tuple[str, ...], list[Student]] = {}
    for student in concerned:
        key: tuple[str, ...] = ()
        if checkpoint.per_college or split == "college":
            key += (student.college,)
        if split in ("class", "dorm"):
            key += (_group_key(student, split) or "无住宿信息",)
        scopes.setdefault(key, []).append(student)
    plans = []
    show_id_steps = {s.code for s in steps if s.feed.startswith("loans")}
    for key, members in sorted(scopes.items()):
        college = key[0] if checkpoint.per_college else ""
        title = checkpoint.title_for(college)
        columns = identity_columns(members)
        plan = WorkbookPlan(session=session, checkpoint=checkpoint, title=title,
                            scope="-".join(key) if key else ALL_SCOPE, steps=steps, identity_columns=columns)
        for student in sorted(members, key=lambda s: (s.class_name, s.student_no)):
            rows = stored.get(student.student_no, {})
            statuses = {code: row.status for code, row in rows.items()}
            missing = rules.missing_prerequisites(
                flow, student, steps[0].code, statuses, set(waived.get(student.student_no, {})), year
            )
            prerequisite = PREREQ_MET if not missing else "未满足：" + "；".join(
                rules.step_title(flow, student, m) for m in missing)
            cells = []
            remarks = []
            for step in steps:
                row = rows.get(step.code)
                applicable = rules.applies(step, student)
                status = row.status if row and row.status in ISSUED_STATUSES else Status.PENDING
                cells.append(CellPlan(step.code, applicable, status, row.version if row else 0))
                if applicable and row and row.remark:
                    remarks.append(row.remark)
                elif applicable and step.feed == loans.NATIONAL_FEED and loans.named(student):
                    remarks.append(loans.awaiting_text(student))  # which lenders must confirm, before any has
            show_id = any(rules.applies(s, student) for s in steps if s.code in show_id_steps)
            plan.rows.append(RowPlan(student, identity_values(student, columns, show_id), prerequisite,
                                     tuple(cells), "；".join(dict.fromkeys(remarks)),
                                     rules.progress_text(flow, student, statuses, year)))
        for mode in checkpoint.batch:
            plan.groups[mode] = _plan_groups(plan.rows, steps, mode)
        plans.append(plan)
    return plans


def _plan_groups(rows: list[RowPlan], steps: tuple[Step, ...], mode: str) -> list[GroupPlan]:
    grouped: dict[str, list[RowPlan]] = {}
    for row in rows:
        key = _group_key(row.student, mode)
        if key:
            grouped.setdefault(key, []).append(row)
    groups = []
    for key, members in sorted(grouped.items()):
        counts = []
        for index in range(len(steps)):
            applicable = [m.cells[index] for m in members if m.cells[index].applicable]
            counts.append((sum(c.ticked for c in applicable), len(applicable)))
        groups.append(GroupPlan(
            key=key,
            names=tuple(m.student.name for m in members),
            student_nos=tuple(m.student.student_no for m in members),
            counts=tuple(counts),
            ticked=tuple(bool(total) and passed == total for passed, total in counts),
        ))
    return groups


def _plan_waivers(
    flow: Flow,
    year: int,
    session: str,
    checkpoint: Checkpoint,
    students: list[Student],
    stored: Mapping[str, Mapping[str, StatusRow]],
    waived: Mapping[str, Mapping[str, str]],
    initial: Mapping[str, Mapping[str, Status]],
) -> WorkbookPlan:
    """The special desk: every student with an unfinished restricted step, and its restriction state (with the
    manual's 离校点当前状态 and 步骤当前状态(初始), §3.9)."""
    plan = WorkbookPlan(session=session, checkpoint=checkpoint, title=checkpoint.name, scope=ALL_SCOPE, steps=(),
                        identity_columns=("学号", "姓名", "院系", "班级"))
    for student in sorted(students, key=lambda s: (s.college, s.class_name, s.student_no)):
        for code in checkpoint.lifts:
            step = flow.steps[code]
            row = stored.get(student.student_no, {}).get(code)
            status = rules.effective_status(step, student, row.status if row else None, year)
            if status in (Status.PASSED, Status.NA, Status.OPTIONAL):
                continue
            reason = waived.get(student.student_no, {}).get(code)
            checkpoint_of = flow.checkpoint(step.checkpoint)
            statuses = {c: r.status for c, r in stored.get(student.student_no, {}).items()}
            plan.waiver_rows.append(WaiverRowPlan(
                student, step, checkpoint_of.title_for(student.college), status, reason is not None, reason or "",
                row.remark if row else "", rules.checkpoint_complete(checkpoint_of, student, statuses, year),
                initial.get(student.student_no, {}).get(code, Status.PENDING)))
    return plan
