"""Progress figures of the manual's 实时统计: 应离校人数 (往届), 未完成, % per checkpoint and step."""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .model import Flow, Status, Student

_DONE = frozenset({Status.PASSED, Status.OPTIONAL})


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


Row = tuple[Student, dict[str, Status], set[str], bool]


def _count(code: str, name: str, pairs: Iterable[tuple[Student, bool | None]]) -> Progress:
    expected = previous = unfinished = unfinished_previous = 0
    for student, done in pairs:
        if done is None:
            continue
        expected += 1
        previous += student.previous
        if not done:
            unfinished += 1
            unfinished_previous += student.previous
    return Progress(code, name, expected, previous, unfinished, unfinished_previous)


def school_progress(matrix: list[Row]) -> Progress:
    """The school-wide header: every student, 未完成 = not 全部完成."""
    return _count("school", "全校", ((s, complete) for s, _, _, complete in matrix))


def status_patterns(flow: Flow, matrix: list[Row]) -> Counter[tuple[tuple[Status, ...], bool, str]]:
    """How many students share each (statuses in flow order, 往届, college) pattern.

    Thousands of students share a few hundred patterns, so figures computed per pattern and
    weighted by its count cost a fraction of a pass over every student and step.
    """
    getter = operator.itemgetter(*(s.code for s in flow.all_steps()))
    return Counter((getter(statuses), student.previous, student.college) for student, statuses, _, _ in matrix)


def checkpoint_progress(flow: Flow, matrix: list[Row]) -> list[tuple[Progress, list[Progress]]]:
    """Per checkpoint (a student counts when any required step applies) and per step, in flow order."""
    position = {s.code: i for i, s in enumerate(flow.all_steps())}
    checkpoints = [cp for cp in flow.checkpoints if cp.steps]
    required = [[position[s.code] for s in cp.steps if s.required] for cp in checkpoints]
    step_counts = [[0, 0, 0, 0] for _ in position]  # expected, 往届, unfinished, unfinished 往届
    cp_counts = [[0, 0, 0, 0] for _ in checkpoints]
    for (statuses, previous, _), n in status_patterns(flow, matrix).items():
        old = n if previous else 0
        for counter, status in zip(step_counts, statuses, strict=True):
            if status is Status.NA:
                continue
            counter[0] += n
            counter[1] += old
            if status not in _DONE:
                counter[2] += n
                counter[3] += old
        for counter, indexes in zip(cp_counts, required, strict=True):
            applicable = [statuses[i] for i in indexes if statuses[i] is not Status.NA]
            if applicable:
                counter[0] += n
                counter[1] += old
                if any(st not in _DONE for st in applicable):
                    counter[2] += n
                    counter[3] += old
    return [
        (Progress(cp.code, cp.name, *counter),
         [Progress(s.code, s.name, *step_counts[position[s.code]]) for s in cp.steps])
        for cp, counter in zip(checkpoints, cp_counts, strict=True)
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


def group_progress(matrix: list[Row], key: str) -> list[GroupProgress]:
    """Completion per ``college``, ``class`` or ``building`` (dorm 区-栋), sorted by name."""
    counts: dict[str, list[int]] = {}
    for student, _, _, complete in matrix:
        if key == "college":
            name = student.college
        elif key == "class":
            name = student.class_name
        else:
            parts = student.dorm.split("-")
            name = "-".join(parts[:2]) if len(parts) == 4 else "无住宿信息"
        entry = counts.setdefault(name, [0, 0, 0])
        entry[0] += 1
        entry[1] += student.previous
        entry[2] += complete
    return [GroupProgress(name, *values) for name, values in sorted(counts.items())]


def bottlenecks(flow: Flow, matrix: list[Row]) -> tuple[list[str], list[tuple[str, str, dict[str, int], int]]]:
    """Which steps hold students back from 全部完成: (colleges, [(step code, step name, {college: n}, total)]).

    A student counts for a step when the step applies, is required, and is not passed or optional
    (so only students not 全部完成 are counted). Sorted by total, most blocking first.
    """
    steps = flow.all_steps()
    colleges = sorted({s.college for s, _, _, _ in matrix})
    table: dict[str, dict[str, int]] = {}
    for (statuses, _, college), n in status_patterns(flow, matrix).items():
        for step, status in zip(steps, statuses, strict=True):
            if step.required and status is not Status.NA and status not in _DONE:
                per = table.setdefault(step.code, {})
                per[college] = per.get(college, 0) + n
    rows = [(code, flow.steps[code].name, per, sum(per.values())) for code, per in table.items()]
    rows.sort(key=lambda r: -r[3])
    return colleges, rows
