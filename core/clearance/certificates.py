"""The 可领证名单 of a certificate desk: who may be handed a certificate now, by class (pure data)."""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lixiao.core.manual import rules
from lixiao.core.manual.model import Checkpoint, Flow, Status, Step, Student
from lixiao.core.manual.stats import Board

from .clearance import Clearance
from .issuance import WorkbookPlan, workbook_steps

if TYPE_CHECKING:
    from lixiao.core.storage.store import Store


@dataclass(frozen=True, slots=True)
class ReadyStudent:
    """A student whose prerequisites are met, and the desk's steps not yet passed (尚未领取)."""

    student: Student
    pending: tuple[Step, ...]

    @property
    def pending_names(self) -> str:
        """尚未领取 in words: 领取学位证、领取报到证."""
        return "、".join(s.name for s in self.pending)


@dataclass(frozen=True, slots=True)
class ReadyClass:
    """The ready students of one class, by 学号."""

    name: str
    students: tuple[ReadyStudent, ...]


@dataclass(frozen=True, slots=True)
class ReadyList:
    """One certificate office's 可领证名单 and its counts; the three counts cover every student it concerns."""

    checkpoint: str
    title: str  # the office as staff know it: 机电工程学院领取证件, 教务处离校点
    classes: tuple[ReadyClass, ...]
    ready: int  # 可领证: prerequisites met, something still to collect
    blocked: int  # 前置未满足: something to collect, prerequisites unmet (do not hand over)
    done: int  # 已领完: every applicable step passed

    def students(self) -> list[ReadyStudent]:
        """Every ready student, class by class."""
        return [s for c in self.classes for s in c.students]


def is_certificate_desk(checkpoint: Checkpoint) -> bool:
    """True for a desk that must refuse before handing over: an office checkpoint with prerequisites."""
    return bool(checkpoint.requires) and checkpoint.kind != "waiver"


@dataclass(frozen=True, slots=True)
class _Entry:
    student: Student
    pending: tuple[Step, ...]  # applicable desk steps not passed
    blocked: bool


def _ready_list(checkpoint: str, title: str, entries: Iterable[_Entry]) -> ReadyList:
    """The one place a desk's students are sorted into 可领证 / 前置未满足 / 已领完."""
    ready: dict[str, list[ReadyStudent]] = {}
    blocked = done = 0
    for entry in entries:
        if not entry.pending:
            done += 1
        elif entry.blocked:
            blocked += 1
        else:
            ready.setdefault(entry.student.class_group, []).append(
                ReadyStudent(entry.student, entry.pending))
    classes = tuple(ReadyClass(name, tuple(sorted(members, key=lambda s: s.student.student_no)))
                    for name, members in sorted(ready.items()))
    return ReadyList(checkpoint, title, classes, sum(len(c.students) for c in classes), blocked, done)


def ready_list(plan: WorkbookPlan) -> ReadyList:
    """The 可领证名单 of one issued certificate workbook, as the store stood at issue.

    Uses the plan's own 前置条件 (rules.missing_prerequisites, waivers counting as met) and ticks (passed).
    """
    entries = (
        _Entry(row.student,
               tuple(step for step, cell in zip(plan.steps, row.cells, strict=True)
                     if cell.applicable and not cell.ticked),
               row.blocked)
        for row in plan.rows
    )
    return _ready_list(plan.checkpoint.code, plan.title, entries)


def board_ready_lists(flow: Flow, board: Board, year: int) -> list[ReadyList]:
    """The 可领证名单 of every certificate office of the school (per college where the desk is), from a board.

    Students are the ones the desk's workbook lists (some desk step applies); the decision is
    rules.missing_prerequisites on the board's effective statuses and waivers, worked out once per
    distinct pattern of those steps' statuses and waivers, not once per student.
    """
    desks = [cp for cp in flow.checkpoints if is_certificate_desk(cp) and workbook_steps(cp, year)]
    position = {s.code: i for i, s in enumerate(board.steps)}
    grouped: dict[tuple[int, str], list[_Entry]] = {}
    for number, checkpoint in enumerate(desks):
        steps = workbook_steps(checkpoint, year)
        # The codes of the desk's and its prerequisites' steps (which say too whether a step applies: "-")
        # and the waivers among them decide everything.
        relevant = [*steps, *rules.prerequisite_steps(flow, checkpoint)]
        gather = operator.itemgetter(*(position[s.code] for s in relevant))
        watched = {s.code for s in relevant}
        memo: dict[tuple[object, frozenset[str]], tuple[tuple[Step, ...], bool] | None] = {}
        no_waivers: frozenset[str] = frozenset()
        for i, student in enumerate(board.students):
            waived = board.waived.get(student.student_no)
            key = (gather(board.codes[i]), frozenset(waived & watched) if waived else no_waivers)
            if key not in memo:
                memo[key] = _decide(flow, student, steps, board.statuses(i), waived or set(), year)
            decided = memo[key]
            if decided is None:
                continue
            pending, blocked = decided
            college = student.college if checkpoint.per_college else ""
            grouped.setdefault((number, college), []).append(_Entry(student, pending, blocked))
    return [_ready_list(desks[number].code, desks[number].title_for(college), entries)
            for (number, college), entries in sorted(grouped.items())]  # the order lixiao issue plans them in


def _decide(flow: Flow, student: Student, steps: tuple[Step, ...], statuses: dict[str, Status], waived: set[str],
            year: int) -> tuple[tuple[Step, ...], bool] | None:
    """(applicable desk steps not passed, prerequisites unmet), or None when no desk step applies."""
    applicable = [s for s in steps if rules.effective_status(s, student, statuses.get(s.code), year) is not Status.NA]
    if not applicable:
        return None
    pending = tuple(s for s in applicable if statuses.get(s.code) is not Status.PASSED)
    missing = rules.missing_prerequisites(flow, student, steps[0].code, statuses, waived, year)
    return pending, bool(missing)


def school_ready_lists(store: Store, flow: Flow, board: Board | None = None) -> list[ReadyList]:
    """The school's 可领证名单 for reports, read from the store (``board``: one just read from it, if any)."""
    clearance = Clearance(store, flow)
    return board_ready_lists(flow, board or clearance.board(), clearance.year)
