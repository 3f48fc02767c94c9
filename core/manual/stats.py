"""Progress figures of the manual's 实时统计: 应离校人数 (往届), 未完成, % per checkpoint and step."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property

from .model import STATUS_CODES, Flow, Status, Step, Student


@dataclass(frozen=True, slots=True)
class Progress:
    """应离校人数 and 未完成 for one checkpoint or step, with the 往届 students counted apart."""

    code: str
    name: str
    expected: int
    expected_previous: int
    unfinished: int
    unfinished_previous: int

    @property
    def percent_unfinished(self) -> float:
        """未完成 as a percentage of 应离校人数 (0 when nobody is expected)."""
        return 100.0 * self.unfinished / self.expected if self.expected else 0.0


CODES = STATUS_CODES
STATUS_OF_CODE = {code: status for status, code in CODES.items()}
_OPEN_CODES = frozenset("fn")  # applicable and not done


@dataclass(frozen=True)
class Board:
    """Every student's effective status of every step as one character per step in flow order
    (p 已通过, f 未通过, o 可办可不办, n 未办理, - 不适用), with waived steps and 全部完成.

    Text instead of a dict per student: the figures below count characters of whole columns
    (``str.count``), which keeps a 30,000-student report within its time budget.
    """

    steps: tuple[Step, ...]
    students: list[Student]
    codes: list[str]
    complete: list[bool]
    waived: dict[str, set[str]]

    def statuses(self, index: int) -> dict[str, Status]:
        """Student ``index``'s statuses by step code."""
        return {step.code: STATUS_OF_CODE[c] for step, c in zip(self.steps, self.codes[index], strict=True)}

    @cached_property
    def blocks(self) -> list[Block]:
        """The students split by (college, 往届), each block's codes turned into one text per step
        (worked out once per board: the checkpoint figures and the bottlenecks both count them)."""
        grouped: dict[tuple[str, bool], list[str]] = {}
        for student, codes in zip(self.students, self.codes, strict=True):
            grouped.setdefault((student.college, student.previous), []).append(codes)
        return [Block(college, previous, len(codes), ["".join(column) for column in zip(*codes, strict=True)])
                for (college, previous), codes in grouped.items()]


@dataclass(frozen=True, slots=True)
class Block:
    """Students of one college and 往届 flag: ``columns[i]`` holds their codes of step i."""

    college: str
    previous: bool
    count: int
    columns: list[str]

    def tally(self, indexes: list[int]) -> tuple[int, int]:
        """(students to whom any of these steps applies, students with any of them unfinished)."""
        if len(indexes) == 1:
            column = self.columns[indexes[0]]
            return self.count - column.count("-"), column.count("f") + column.count("n")
        applicable = unfinished = 0
        for key, n in Counter(zip(*(self.columns[i] for i in indexes), strict=True)).items():
            if any(c != "-" for c in key):
                applicable += n
                if any(c in _OPEN_CODES for c in key):
                    unfinished += n
        return applicable, unfinished


def school_progress(board: Board) -> Progress:
    """The school-wide header: every student, 未完成 = not 全部完成."""
    counts = Counter(zip((s.previous for s in board.students), board.complete, strict=True))
    return Progress("school", "全校", len(board.students), counts[True, True] + counts[True, False],
                    counts[False, False] + counts[True, False], counts[True, False])


def _progress(code: str, name: str, blocks: list[Block], indexes: list[int]) -> Progress:
    counter = [0, 0, 0, 0]  # 应离校, 往届, 未完成, 未完成往届
    for block in blocks:
        if not indexes:
            break
        applicable, unfinished = block.tally(indexes)
        counter[0] += applicable
        counter[2] += unfinished
        if block.previous:
            counter[1] += applicable
            counter[3] += unfinished
    return Progress(code, name, *counter)


def checkpoint_progress(flow: Flow, board: Board, college: str | None = None) -> list[tuple[Progress, list[Progress]]]:
    """Per checkpoint (a student counts when any required step applies; unfinished when any applicable
    required step is not done) and per step, in flow order; ``college``: that college's students only (the
    manual's 实时统计 for a college secretary)."""
    position = {s.code: i for i, s in enumerate(board.steps)}
    blocks = board.blocks if college is None else [b for b in board.blocks if b.college == college]
    return [
        (_progress(cp.code, cp.name, blocks, [position[s.code] for s in cp.steps if s.required]),
         [_progress(s.code, s.name, blocks, [position[s.code]]) for s in cp.steps])
        for cp in flow.checkpoints if cp.steps
    ]


@dataclass(frozen=True, slots=True)
class GroupProgress:
    """Completion of one college, class or dorm building."""

    name: str
    expected: int
    expected_previous: int
    complete: int

    @property
    def unfinished(self) -> int:
        """Students not yet 全部完成."""
        return self.expected - self.complete

    @property
    def percent_complete(self) -> float:
        """全部完成 as a percentage (0 when the group is empty)."""
        return 100.0 * self.complete / self.expected if self.expected else 0.0


def group_progress(board: Board, key: str) -> list[GroupProgress]:
    """Completion per ``college``, ``class`` (班级, or 培养层次 专业 where a student has none: Student.class_group),
    ``level`` (本科/硕士/博士) or ``building`` (dorm 区-栋), sorted by name."""
    if key == "college":
        names = [s.college for s in board.students]
    elif key == "class":
        names = [s.class_group for s in board.students]
    elif key == "level":
        names = [s.level for s in board.students]
    else:
        names = [building(s.dorm) for s in board.students]
    counts: dict[str, list[int]] = {}
    previous = (s.previous for s in board.students)
    for (name, old, complete), n in Counter(zip(names, previous, board.complete, strict=True)).items():
        entry = counts.setdefault(name, [0, 0, 0])
        entry[0] += n
        entry[1] += n if old else 0
        entry[2] += n if complete else 0
    return [GroupProgress(name, *values) for name, values in sorted(counts.items())]


def building(dorm: str) -> str:
    """The dorm building (区-栋) of a 区-栋-层-房 address, or 无住宿信息."""
    parts = dorm.split("-")
    return "-".join(parts[:2]) if len(parts) == 4 else "无住宿信息"


def bottlenecks(flow: Flow, board: Board) -> tuple[list[str], list[tuple[str, str, dict[str, int], int]]]:
    """Which steps hold students back from 全部完成: (colleges, [(step code, step name, {college: n}, total)]).

    A student counts for a step when the step applies, is required, and is not passed or optional
    (so only students not 全部完成 are counted). Sorted by total, most blocking first.
    """
    blocks = board.blocks
    rows = []
    for i, step in enumerate(board.steps):
        if not step.required:
            continue
        per: dict[str, int] = {}
        for block in blocks:
            unfinished = block.tally([i])[1]
            if unfinished:
                per[block.college] = per.get(block.college, 0) + unfinished
        if per:
            rows.append((step.code, flow.step_label(step.code), per, sum(per.values())))
    rows.sort(key=lambda r: -r[3])
    return sorted({s.college for s in board.students}), rows
