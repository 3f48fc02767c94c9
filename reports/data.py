"""Everything a report shows, gathered once from the store and the flow (no rendering here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lixiao.core.clearance import Clearance
from lixiao.core.identity import mask_id_card
from lixiao.core.model import Flow
from lixiao.core.rules import prerequisite_steps
from lixiao.core.stats import (
    Board,
    GroupProgress,
    Progress,
    bottlenecks,
    checkpoint_progress,
    group_progress,
    school_progress,
)
from lixiao.core.store import Store

REVIEW_LIMIT = 1000


@dataclass
class ReportData:
    """The figures and lists of one report, ready for any renderer."""

    session: str
    year: int
    generated_at: str
    flow: Flow
    school: Progress
    checkpoints: list[tuple[Progress, list[Progress]]]
    colleges: list[GroupProgress]
    classes: dict[str, list[GroupProgress]]  # college → classes
    buildings: list[GroupProgress]
    bottleneck_colleges: list[str]
    bottlenecks: list[tuple[str, str, dict[str, int], int]]
    waivers: list[dict[str, Any]]
    conflicts: list[dict[str, Any]]
    refused: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    offices: list[dict[str, Any]]
    history: list[tuple[str, int, int]]
    js_flow: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, Any] = field(default_factory=dict)
    board: Board | None = None  # the status matrix itself (student search, Excel report)


def student_rows(data: ReportData) -> list[list[Any]]:
    """One row per student for the search page (students.js): identity with the ID masked, 往届, 全部完成,
    the status codes in flow order and the indexes of waived steps."""
    board = data.board
    if board is None:
        return []
    index = {s.code: i for i, s in enumerate(board.steps)}
    return [
        [student.student_no, student.name, student.gender, mask_id_card(student.id_card), student.college,
         student.major, student.class_name, student.dorm, int(student.previous), int(complete), codes,
         sorted(index[c] for c in board.waived[student.student_no] if c in index)
         if student.student_no in board.waived else []]
        for student, codes, complete in zip(board.students, board.codes, board.complete, strict=True)
    ]


def _days_since(stamp: str | None, now: datetime) -> int | None:
    if not stamp:
        return None
    return (now - datetime.fromisoformat(stamp)).days


def collect(store: Store, flow: Flow, stale_days: int = 3, board: Board | None = None) -> ReportData:
    """Gather the report's data in one pass over the store (``board``: the one just read from it, if
    any); records today's progress snapshot."""
    session = store.session()
    clearance = Clearance(store, flow)
    board = board or clearance.board()
    school = school_progress(board)
    store.record_progress(school.expected, school.expected - school.unfinished)
    now = datetime.now().astimezone()
    steps = board.steps
    index = {s.code: i for i, s in enumerate(steps)}
    js_flow = {
        "steps": [s.name for s in steps],
        "checkpoints": [
            {"name": cp.name, "display": cp.display if cp.per_college else "",
             "steps": [index[s.code] for s in cp.steps],
             "requires": [index[s.code] for s in prerequisite_steps(flow, cp)], "record": cp.in_record}
            for cp in flow.checkpoints if cp.steps
        ],
    }
    classes: dict[str, list[GroupProgress]] = {}
    by_class_college: dict[str, str] = {}
    for student in board.students:
        by_class_college.setdefault(student.class_name, student.college)
    for group in group_progress(board, "class"):
        classes.setdefault(by_class_college[group.name], []).append(group)
    bottleneck_colleges, bottleneck_rows = bottlenecks(flow, board)
    names = {s.code: s.name for s in steps}
    people = {s.student_no: s.name for s in board.students}
    conflicts = [dict(r, name=people.get(r["student_no"], ""), step_name=names.get(r["step"], r["step"]))
                 for r in store.open_conflicts(REVIEW_LIMIT)]
    refused = [dict(r, name=people.get(r["student_no"], ""), step_name=names.get(r["step"], r["step"]))
               for r in store.recent_refusals(REVIEW_LIMIT)]
    rejected = store.recent_rejections(REVIEW_LIMIT)
    offices = []
    for row in store.office_returns():
        checkpoint = flow.checkpoint(row["checkpoint"]) if row["checkpoint"] in {c.code for c in flow.checkpoints} \
            else None
        since = _days_since(row["returned_at"] or row["issued_at"], now)
        offices.append(dict(row, title=checkpoint.name if checkpoint else row["checkpoint"],
                            days=since, stale=since is not None and since >= stale_days))
    ledger = store.merged_summary()
    return ReportData(
        session=session.name, year=session.year, generated_at=now.isoformat(timespec="seconds"), flow=flow,
        school=school, checkpoints=checkpoint_progress(flow, board), colleges=group_progress(board, "college"),
        classes=classes, buildings=group_progress(board, "building"), bottleneck_colleges=bottleneck_colleges,
        bottlenecks=bottleneck_rows, waivers=clearance.waiver_list(), conflicts=conflicts, refused=refused,
        rejected=rejected, offices=offices, history=store.progress_history(), js_flow=js_flow,
        sources={"returns": ledger[0], "last_return": ledger[1] or "", "store": str(store.path.name)},
        board=board,
    )
