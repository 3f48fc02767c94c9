"""Progress figures of the manual's 实时统计: 应离校人数 (往届), 未完成, % per checkpoint and step."""

from __future__ import annotations

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


def _all_done(statuses: dict[str, Status], codes: list[str]) -> bool | None:
    """None when no step applies, else whether every applicable step is done."""
    applicable = [statuses[c] for c in codes if statuses[c] is not Status.NA]
    return all(st in _DONE for st in applicable) if applicable else None


def step_done(statuses: dict[str, Status], code: str) -> bool | None:
    """None when the step does not apply, else whether it is passed or optional."""
    status = statuses[code]
    return None if status is Status.NA else status in _DONE


def school_progress(matrix: list[Row]) -> Progress:
    """The school-wide header: every student, 未完成 = not 全部完成."""
    return _count("school", "全校", ((s, complete) for s, _, _, complete in matrix))


def checkpoint_progress(flow: Flow, matrix: list[Row]) -> list[tuple[Progress, list[Progress]]]:
    """Per checkpoint (a student counts when any step applies) and per step, in flow order."""
    result = []
    for cp in flow.checkpoints:
        if not cp.steps:
            continue
        codes = [s.code for s in cp.steps if s.required]
        overall = _count(cp.code, cp.name, ((s, _all_done(st, codes)) for s, st, _, _ in matrix))
        steps = [_count(step.code, step.name, ((s, step_done(st, step.code)) for s, st, _, _ in matrix))
                 for step in cp.steps]
        result.append((overall, steps))
    return result
