"""统计查询: 财务退费查询 (every student's refund state, by college and status) and 学生退费查询 (one student's),
for flows whose finance office records a 退费状态 (a step with ``refund = true`` in use this session)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lixiao.core.manual import rules
from lixiao.core.manual.model import Flow, Status, Step, Student

if TYPE_CHECKING:
    from lixiao.core.storage.store import StatusRow

NO_REFUND_STEP = "本届流程没有在用的退费步骤（如“退费状态”自 2017 年起已取消），没有退费可查"
# The manual's 退费状态 in the words a finance office uses for it.
REFUND_WORDS = {Status.PASSED: "已退费", Status.PENDING: "未退费", Status.FAILED: "退费未通过",
                Status.OPTIONAL: "无需退费"}


@dataclass(frozen=True, slots=True)
class RefundLine:
    """One student's refund state."""

    student_no: str
    name: str
    college: str
    group: str  # 班级, or 培养层次 专业
    status: Status
    remark: str
    updated_at: str

    @property
    def word(self) -> str:
        """已退费 / 未退费 / 退费未通过 / 无需退费."""
        return REFUND_WORDS.get(self.status, self.status.label)


def refund_lines(flow: Flow, year: int, students: Iterable[Student], stored: Mapping[str, StatusRow],
                 step: Step | None = None) -> list[RefundLine]:
    """The refund state of every student the refund step applies to, by college, group and 学号 (``stored``: the
    step's rows, Store.step_rows)."""
    step = step or flow.refund_step(year)
    if step is None:
        return []
    lines = []
    for student in sorted(students, key=lambda s: (s.college, s.class_group, s.student_no)):
        row = stored.get(student.student_no)
        status = rules.effective_status(step, student, row.status if row else None, year)
        if status is Status.NA:
            continue
        lines.append(RefundLine(student.student_no, student.name, student.college, student.class_group, status,
                                row.remark if row else "", row.updated_at if row else ""))
    return lines


def refund_counts(lines: Iterable[RefundLine]) -> dict[str, Counter[Status]]:
    """Per college: how many students are in each refund state (财务退费查询's table)."""
    counts: dict[str, Counter[Status]] = {}
    for line in lines:
        counts.setdefault(line.college, Counter())[line.status] += 1
    return dict(sorted(counts.items()))
